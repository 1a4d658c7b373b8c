#!/bin/sh
# Builds the minimal x86-64 appliance kernel of kernel/addenda from Debian's
# linux-source-6.1 package: tinyconfig, plus kernel/addenda/appliance.config
# and x86_64.config, then make bzImage. Not part of `nymote build` yet (the
# boards use the pinned stock kernels); bench/README.md ("## images") has
# what it gives. About 6 minutes on 2 cores.
#
#   scripts/build-minimal-kernel.sh OUTDIR
#
# Needs: apt-get (for the source package), build-essential flex bison bc
# libelf-dev xz-utils. Writes OUTDIR/bzImage and OUTDIR/config, and prints
# the source package's sha256 and the kernel release.
set -eu
out=${1:?usage: scripts/build-minimal-kernel.sh OUTDIR}
addenda=$(cd "$(dirname "$0")/../kernel/addenda" && pwd)
missing=""
for tool in gcc make flex bison bc xz; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -e /usr/include/libelf.h ] || missing="$missing libelf-dev"
if [ -n "$missing" ]; then
	echo "build-minimal-kernel: missing:$missing (apt-get install -y build-essential flex bison bc libelf-dev xz-utils)" >&2
	exit 1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "build-minimal-kernel: downloading linux-source-6.1" >&2
apt-get download linux-source-6.1 >&2
deb=$(ls linux-source-6.1_*.deb)
echo "build-minimal-kernel: $deb sha256 $(sha256sum "$deb" | cut -d' ' -f1)" >&2
dpkg-deb --fsys-tarfile "$deb" | tar -x --wildcards '*/linux-source-6.1.tar.xz'
echo "build-minimal-kernel: unpacking the source" >&2
tar -xJf usr/src/linux-source-6.1.tar.xz
cd linux-source-6.1
cat "$addenda/appliance.config" "$addenda/x86_64.config" >"$work/addenda.config"
make -s tinyconfig >/dev/null
./scripts/kconfig/merge_config.sh -m .config "$work/addenda.config" >/dev/null
make -s olddefconfig
# Reproducible: no build time, user or host in the image.
export KBUILD_BUILD_TIMESTAMP=1970-01-01 KBUILD_BUILD_USER=nymote KBUILD_BUILD_HOST=nymote
echo "build-minimal-kernel: building (progress: one line per 500 objects)" >&2
make -j"$(nproc)" bzImage 2>&1 | awk '/^  (CC|LD|AR)/ { n++; if (n % 500 == 0) { print "build-minimal-kernel: " n " objects" > "/dev/stderr" } } / error: |Error [0-9]/ { print > "/dev/stderr" }'
[ -f arch/x86/boot/bzImage ] || { echo "build-minimal-kernel: the build failed" >&2; exit 1; }
cp arch/x86/boot/bzImage "$out/bzImage"
cp .config "$out/config"
echo "build-minimal-kernel: $out/bzImage ($(stat -c %s "$out/bzImage") bytes, release $(make -s kernelrelease), sha256 $(sha256sum "$out/bzImage" | cut -d' ' -f1))" >&2
