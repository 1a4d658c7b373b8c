#!/bin/sh
# Benchmarks the netstack against the kernel's TCP/IP stack on one veth
# pair (see bench_test.go) and prints the ratios. Needs root.
#
#   bench/netstack/run.sh [COUNT] [BENCHTIME]
#
# It runs twice: with the client's transmit offloads on (checksum, TSO:
# a host's own stack) and off (complete frames, as from a wire).
#
# COUNT (default 3) rounds of each measurement, BENCHTIME (default 3s)
# each. The kernel and netstack runs of a round follow each other, so
# that a noisy neighbour on a shared machine hits both alike; the figures
# are the medians over the rounds.
set -eu
count=${1:-3}
benchtime=${2:-3s}
cd "$(dirname "$0")/../.."
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
go test -c -o "$bin" ./bench/netstack
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r), GOMAXPROCS=${GOMAXPROCS:-default}"
for offload in on off; do
echo "# client transmit offloads (checksum, TSO): $offload"
NYMOTE_BENCH_OFFLOAD=$offload "$bin" -test.run '^$' -test.bench TCP -test.benchtime "$benchtime" -test.count "$count" |
	tee /dev/stderr |
	awk '
	/^BenchmarkTCP\// {
		split($1, p, "/"); stack = p[2]; sub(/-[0-9]+$/, "", p[3]); what = p[3]
		for (i = 3; i < NF; i++) {
			if ($(i+1) == "MB/s" || $(i+1) == "conns/s") { v = $i; unit = $(i+1) }
		}
		key = stack "/" what
		n[key]++; vals[key, n[key]] = v; units[what] = unit; whats[what] = 1
	}
	function median(key,   i, j, t, m, a) {
		m = n[key]
		for (i = 1; i <= m; i++) a[i] = vals[key, i]
		for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
	}
	END {
		printf "\n%-10s %14s %14s %8s\n", "", "kernel", "netstack", "ratio"
		split("upload download connect", order, " ")
		for (k = 1; k <= 3; k++) {
			w = order[k]
			if (!(w in whats)) continue
			kv = median("kernel/" w); nv = median("netstack/" w)
			printf "%-10s %9.0f %-7s %6.0f %-7s %6.2fx\n", w, kv, units[w], nv, units[w], nv / kv
		}
	}'
done
