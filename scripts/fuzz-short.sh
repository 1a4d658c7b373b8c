#!/bin/sh
# fuzz-short.sh runs every fuzz target of the module past its seed corpus
# (testdata/fuzz, which go test has already run).
#
# By default (make test) each target runs for a number of inputs, not a
# time: the count is on the line above the target, "(fuzz-short: 800x)",
# sized for about ten seconds on a 2-core machine. A count has no deadline,
# so a loaded machine only makes the run slower. With FUZZTIME set (make
# fuzz FUZZTIME=5m) each target runs for that long instead.
#
# A crash is a failure: go test writes the input that found it into the
# package's testdata/fuzz/FuzzName/ and prints how to replay it. Go 1.26's
# fuzz coordinator can also fail a time-limited run at its deadline with a
# bare "context deadline exceeded" and no input written (go.dev/issue/75804,
# fixed in Go 1.27): that case is said, and the target is run again for its
# count of inputs, whose verdict counts.
#
# Targets are found with grep, so that nothing is compiled twice; each
# package is built once per target.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# fuzz PKG TARGET BUDGET: one run, its output kept in $log and shown after.
fuzz() {
	rc=0
	$GO test -run '^$' -fuzz "^$2\$" -fuzztime "$3" -fuzzminimizetime 2s "$1" >"$log" 2>&1 || rc=$?
	cat "$log"
	return $rc
}

n=0
for file in $(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort); do
	pkg=./$(dirname "$file")
	for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		count=$(grep -B1 "^func $target(" "$file" | sed -n 's/.*(fuzz-short: \([0-9]*x\)).*/\1/p')
		if [ -z "$count" ]; then
			echo "fuzz: $file: $target has no \"(fuzz-short: Nx)\" line above it: how many inputs make test gives it" >&2
			exit 1
		fi
		budget=${FUZZTIME:-$count}
		echo "fuzz: $pkg $target for $budget"
		if ! fuzz "$pkg" "$target" "$budget"; then
			if [ -n "$FUZZTIME" ] && grep -q 'context deadline exceeded' "$log" &&
				! grep -q -e 'Failing input written to' -e 'panic:' -e '_test.go:[0-9]*:' "$log"; then
				echo "fuzz: $target: \"context deadline exceeded\" with no failing input is Go's fuzz coordinator at its deadline (go.dev/issue/75804), not a finding; running it again for $count inputs"
				fuzz "$pkg" "$target" "$count" || exit 1
			else
				exit 1
			fi
		fi
		n=$((n + 1))
	done
done
echo "fuzz: $n targets ran ${FUZZTIME:-their counts of inputs} without a crash"
