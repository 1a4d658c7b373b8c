#!/bin/sh
# fuzz-short.sh runs every fuzz target of the module for a short time
# (FUZZTIME, default 10s each), after go test has run their seed corpora
# (testdata/fuzz). A crash is a failure: go test writes the input that
# found it into the package's testdata/fuzz/FuzzName/ and prints how to
# replay it. Targets are found with grep, so that nothing is compiled
# twice; each package is built once per target.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
n=0
for file in $(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort); do
	pkg=./$(dirname "$file")
	for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		echo "fuzz: $pkg $target for $FUZZTIME"
		$GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 2s "$pkg"
		n=$((n + 1))
	done
done
echo "fuzz: $n targets ran $FUZZTIME each without a crash"
