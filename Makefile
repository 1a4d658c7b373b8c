# Nymote: personal cloud appliances in Go. See README.md.
#
#   make run        boot the mail appliance under QEMU with a demo data disk
#   make test       install what the tests need, then every test level that this machine can run
#   make test-deps  only install (with apt-get) what the tests need
#   make fuzz       each fuzz target for FUZZTIME (default 1m)
#   make bench      benchmarks; figures go into bench/README.md

GO      ?= go
DATA    ?= $(CURDIR)/.nymote-data
LISTEN  ?= 127.0.0.1:9418
# Time bound of each test package (go test -timeout). On a fresh machine
# the boards and images packages wait for the first builds of our own
# kernels: 12-15 minutes on 2 cores; the whole of make test then takes
# about 35, and up to 20 once the kernels are cached.
TESTTIMEOUT ?= 40m

# Debian packages the tests drive; test-deps installs the missing ones.
#   store, CLI:        git
#   netstack:          iproute2 iputils-ping dnsmasq-base
#   mail:              swaks python3 curl isync dovecot-imapd (IMAP conformance compared with Dovecot)
#                      python3-dkim (dkimpy: an independent check of our DKIM signatures)
#   signpost:          wireguard-go wireguard-tools nftables (a laptop's stock WireGuard
#                      behind a NAT, in network namespaces)
#   web console:       chromium (a real browser driven by chromedp)
#   contacts/calendar: vdirsyncer python3-caldav litmus
#   images (boot tests): qemu-system-x86 qemu-system-arm e2fsprogs
#     (and the armhf architecture in apt, for Debian's armmp kernel: see test-deps)
#   jitsu:             bind9-dnsutils
#   SD card images:    u-boot-sunxi:armhf (U-Boot for the Cubieboards; the
#                      armhf architecture is added), fdisk (sfdisk), dosfstools,
#                      mtools, u-boot-tools (mkimage, dumpimage),
#                      libubootenv-tool (fw_printenv), device-tree-compiler
#   our own kernel:    build-essential flex bison bc libelf-dev xz-utils
#                      gcc-aarch64-linux-gnu (the kernel package builds the
#                      kernels of microvm-x86_64, firecracker-x86_64 and
#                      qemu-arm64 from Debian's linux-source package, fetched
#                      with apt-get download, on first use)
#   Xen launcher:      libxen-dev (Xen's own parser, libxlutil, reads the xl
#                      configurations the launcher writes; built with gcc)
TEST_PKGS := git iproute2 iputils-ping dnsmasq-base \
	swaks libnet-ssleay-perl python3 curl isync dovecot-imapd python3-dkim \
	wireguard-go wireguard-tools nftables chromium \
	vdirsyncer python3-caldav litmus \
	qemu-system-x86 qemu-system-arm e2fsprogs \
	bind9-dnsutils \
	u-boot-sunxi:armhf fdisk dosfstools mtools u-boot-tools libubootenv-tool device-tree-compiler \
	build-essential flex bison bc libelf-dev xz-utils gcc-aarch64-linux-gnu \
	libxen-dev

.PHONY: all build run serve-store test test-short test-deps vet fuzz bench clean

all: build

build:
	$(GO) build -o bin/nymote ./cmd/nymote

# run boots the mail appliance under QEMU (KVM when it works, TCG otherwise)
# on board $(BOARD) with a demo data disk, created on first use with user "demo" and a random
# password (printed, and kept in $(DEMO)/password, mode 0600). IMAP is then
# on 127.0.0.1:1143 (STARTTLS), IMAPS on 1993, submission on 1587, HTTP on
# 1080 and HTTPS on 1443; log in as demo (or demo@localhost) and send as
# demo@localhost. Ctrl-C powers the appliance off cleanly.
DEMO ?= $(CURDIR)/.nymote-demo
# BOARD=microvm-x86_64 boots QEMU's microvm on our own kernel, which the
# first run builds (about 6 minutes; it needs the build tools below).
BOARD ?= qemu-x86_64
RUN_PKGS := qemu-system-x86 e2fsprogs
ifeq ($(BOARD),microvm-x86_64)
RUN_PKGS += build-essential flex bison bc libelf-dev xz-utils
endif

run: build
	@missing=""; for pkg in $(RUN_PKGS); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "run: installing$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "run: run as root, or install:$$missing" >&2; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@if [ ! -f "$(DEMO)/data.img" ]; then \
		set -e; mkdir -p "$(DEMO)"; chmod 700 "$(DEMO)"; \
		pw=$$(head -c 12 /dev/urandom | base64 | tr -d '/+=' | head -c 16); \
		./bin/nymote store init --data "$(DEMO)/data" >/dev/null; \
		echo "$$pw" | ./bin/nymote user add demo --password-stdin --data "$(DEMO)/data" >/dev/null; \
		./bin/nymote disk create --data "$(DEMO)/data" -o "$(DEMO)/data.img" --size 1G; \
		rm -rf "$(DEMO)/data"; \
		(umask 077; echo "$$pw" > "$(DEMO)/password"); \
		echo "run: created a demo data disk: user demo (address demo@localhost), password $$pw (kept in $(DEMO)/password)"; \
	fi
	./bin/nymote run mail --board $(BOARD) --disk "$(DEMO)/data.img"

# serve-store serves a store on the host over git smart HTTP (no VM).
serve-store: build
	@test -d "$(DATA)/store.git" || ./bin/nymote store init --data "$(DATA)"
	./bin/nymote store serve --data "$(DATA)" --listen $(LISTEN) --log-level info

# The 32-bit ARM boards boot Debian's armmp kernel, which the kernel package
# fetches with apt-get download linux-image-...:armhf: apt needs the armhf
# architecture and its index. apt-get update may fail for one suite's index
# (the security suite's armhf index does on some mirrors): that is reported
# and tolerated, since the kernels come from the main suite.
test-deps:
	@update=""; \
	if ! dpkg --print-foreign-architectures | grep -qx armhf; then \
		if [ "$$(id -u)" != 0 ]; then echo "test-deps: run as root to add the armhf architecture (dpkg --add-architecture armhf)" >&2; exit 1; fi; \
		echo "test-deps: adding the armhf architecture (Debian's armmp kernel, u-boot-sunxi)"; \
		dpkg --add-architecture armhf; update=1; \
	fi; \
	if ! apt-cache show --no-all-versions linux-image-armmp:armhf >/dev/null 2>&1; then update=1; fi; \
	missing=""; for pkg in $(TEST_PKGS); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ] || [ -n "$$update" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "test-deps: run as root to install:$$missing" >&2; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q || \
			echo "test-deps: apt-get update reported errors (see above); going on with the indexes it got" >&2; \
		apt-cache show --no-all-versions linux-image-armmp:armhf >/dev/null 2>&1 || \
			{ echo "test-deps: apt has no index of linux-image-armmp:armhf (armhf packages of the main suite)" >&2; exit 1; }; \
	fi; \
	if [ -n "$$missing" ]; then \
		echo "test-deps: installing$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else echo "test-deps: all present"; fi
	@# QEMU 10 for the SD card boot test, unpacked beside the system's QEMU.
	@if [ "$$(id -u)" = 0 ]; then sh scripts/install-qemu10.sh; else echo "test-deps: run as root to extract QEMU 10 (SD card boot test)"; fi

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting" >&2; exit 1; }

# test does its own set-up (test-deps installs only what is missing), then
# runs every test, then each fuzz target past its seed corpus for the count
# of inputs written above it (no deadline a loaded machine can miss).
FUZZTIME ?= 1m
test: test-deps vet
	$(GO) test -count=1 -timeout $(TESTTIMEOUT) ./...
	GO=$(GO) sh scripts/fuzz-short.sh

fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) sh scripts/fuzz-short.sh

test-short:
	$(GO) test -short ./...

# Store benchmarks: commit cost at 1k/10k/100k items, repack size against
# git gc, merge time. Figures and how to read them: bench/README.md.
bench:
	$(GO) test -run '^$$' -bench BenchmarkCommit -benchtime 300x -timeout 60m ./store/
	$(GO) test -run '^$$' -bench 'BenchmarkRepack|BenchmarkMerge' -benchtime 1x -timeout 60m ./store/

clean:
	rm -rf bin
