#!/bin/sh
# install-qemu10.sh [DIR]: extract qemu-system-arm 10 from Debian's
# bookworm-backports suite into DIR (default /opt/nymote-qemu10), for the
# SD card boot test on -M cubieboard (QEMU 7.2 cannot boot an SD card there).
#
# The system's QEMU (7.2, used by the x86-64 and arm64 boot tests) is left as
# it is: the backports packages are unpacked with dpkg-deb -x, not installed,
# and only the libraries they need are installed (from bookworm). The
# backports suite is added to apt's sources by deriving an entry from the
# machine's own Debian entry (same archive, Suites: bookworm-backports).
set -eu
dir=${1:-/opt/nymote-qemu10}
bin="$dir/usr/bin/qemu-system-arm"
if [ -x "$bin" ] && QEMU_MODULE_DIR=/nonexistent "$bin" --version 2>/dev/null | grep -q 'version [1-9][0-9]\.'; then
	echo "qemu10: $("$bin" --version | head -1) in $dir"
	exit 0
fi
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != bookworm ]; then
	echo "qemu10: this is not Debian bookworm (${VERSION_CODENAME:-?}); install QEMU 10 yourself (the SD card boot test is skipped without it)"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "qemu10: run as root to extract QEMU 10 into $dir" >&2
	exit 1
fi

if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	out=/etc/apt/sources.list.d/nymote-backports.sources
	# The first deb822 stanza whose Suites has bookworm itself.
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'BEGIN { RS = ""; ORS = "\n" }
			{
				n = split($0, lines, "\n"); found = 0; deb = 0
				for (i = 1; i <= n; i++) {
					if (lines[i] ~ /^Types:.*(^|[ \t])deb([ \t]|$)/) deb = 1
					if (lines[i] ~ /^Suites:/) {
						m = split(lines[i], w, /[ \t]+/)
						for (j = 2; j <= m; j++) if (w[j] == "bookworm") found = 1
					}
				}
				if (found && deb) {
					for (i = 1; i <= n; i++) {
						if (lines[i] ~ /^Types:/) print "Types: deb"
						else if (lines[i] ~ /^Suites:/) print "Suites: bookworm-backports"
						else print lines[i]
					}
					exit
				}
			}' "$f" > "$out.tmp"
		if [ -s "$out.tmp" ]; then break; fi
	done
	if [ -s "$out.tmp" ]; then
		mv "$out.tmp" "$out"
	else
		rm -f "$out.tmp"
		# One-line style: deb [options] URI bookworm components...
		line=$(grep -hE '^deb[[:space:]].*[[:space:]]bookworm[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1 || true)
		if [ -z "$line" ]; then
			echo "qemu10: no Debian bookworm entry in apt's sources to derive bookworm-backports from" >&2
			exit 1
		fi
		echo "$line" | sed -E 's/[[:space:]]bookworm[[:space:]]/ bookworm-backports /' > /etc/apt/sources.list.d/nymote-backports.list
	fi
	echo "qemu10: added the bookworm-backports suite (derived from the machine's Debian entry)"
fi
DEBIAN_FRONTEND=noninteractive apt-get update -q || echo "qemu10: apt-get update reported errors (an unrelated suite's index?); going on"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
(cd "$tmp" && apt-get download -q qemu-system-arm/bookworm-backports qemu-system-common/bookworm-backports qemu-system-data/bookworm-backports)
deps=""
for deb in "$tmp"/*.deb; do
	deps="$deps $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -e 's/(.*)//' -e 's/|.*//' -e 's/[[:space:]]//g' | grep -v '^qemu-' | grep -v '^$' | tr '\n' ' ')"
done
# The libraries QEMU 10 links against, from bookworm: only the missing
# ones are installed (installed ones are not upgraded).
missing=""
for p in $deps; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
rm -rf "$dir.new"
mkdir -p "$dir.new"
for deb in "$tmp"/*.deb; do
	dpkg-deb -x "$deb" "$dir.new"
done
if ldd "$dir.new/usr/bin/qemu-system-arm" | grep 'not found'; then
	echo "qemu10: libraries missing (above)" >&2
	exit 1
fi
rm -rf "$dir"
mv "$dir.new" "$dir"
echo "qemu10: $("$bin" --version | head -1) in $dir"
