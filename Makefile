# Nymote: personal cloud appliances in Go. See README.md.
#
#   make run        build and run the service on this machine
#   make test       every test level that this machine can run
#   make test-deps  install (with apt-get) what the tests need
#   make bench      benchmarks; figures go into bench/README.md

GO      ?= go
DATA    ?= $(CURDIR)/.nymote-data
LISTEN  ?= 127.0.0.1:9418
# Test time bound for the whole suite (make test stays well under it).
TESTTIMEOUT ?= 25m

# Debian packages the tests drive; test-deps installs the missing ones.
#   store, CLI:        git
#   netstack:          iproute2 iputils-ping dnsmasq-base
#   mail:              swaks python3 curl isync
#   contacts/calendar: vdirsyncer python3-caldav litmus
#   images (boot tests): qemu-system-x86 qemu-system-arm e2fsprogs
TEST_PKGS := git iproute2 iputils-ping dnsmasq-base \
	swaks libnet-ssleay-perl python3 curl isync \
	vdirsyncer python3-caldav litmus \
	qemu-system-x86 qemu-system-arm e2fsprogs

.PHONY: all build run test test-short test-deps vet bench clean

all: build

build:
	$(GO) build -o bin/nymote ./cmd/nymote

# Until the appliance images land, run serves a store on the host: it creates
# the store in $(DATA) on first use and serves it over git smart HTTP.
run: build
	@test -d "$(DATA)/store.git" || ./bin/nymote store init --data "$(DATA)"
	@echo "Add a user with:  ./bin/nymote user add NAME --git write --data $(DATA)"
	./bin/nymote store serve --data "$(DATA)" --listen $(LISTEN) --log-level info

test-deps:
	@missing=""; for pkg in $(TEST_PKGS); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "test-deps: installing$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "test-deps: run as root to install:$$missing" >&2; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else echo "test-deps: all present"; fi

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting" >&2; exit 1; }

test: vet
	$(GO) test -timeout $(TESTTIMEOUT) ./...

test-short:
	$(GO) test -short ./...

# Store benchmarks: commit cost at 1k/10k/100k items, repack size against
# git gc, merge time. Figures and how to read them: bench/README.md.
bench:
	$(GO) test -run '^$$' -bench BenchmarkCommit -benchtime 300x -timeout 60m ./store/
	$(GO) test -run '^$$' -bench 'BenchmarkRepack|BenchmarkMerge' -benchtime 1x -timeout 60m ./store/

clean:
	rm -rf bin
