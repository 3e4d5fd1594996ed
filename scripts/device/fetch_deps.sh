#!/usr/bin/env bash
# Run HERE (the Debian development machine), not on the device: downloads the Debian packages that
# foley builds against into .devdeps/ (ignored by git, about 10 MB compressed), so that a device
# run can carry them (`carry: [".devdeps"]`). The device machine (Ubuntu, no Debian libraries and
# no network) unpacks them into a private sysroot in scripts/device/build.sh.
#
# .devdeps/http/ (about 8 MB more) holds what FOLEY_HTTP=ON builds against, unpacked only by a
# build with FOLEY_DEVICE_HTTP=1: cpp-httplib, SQLite and hiredis with their runtime libraries,
# and what cpp-httplib.pc's Requires.private names (pkg-config refuses the module without them,
# and httplib.h includes their headers): OpenSSL, zlib and brotli headers, OpenSSL and brotli
# runtimes (zlib's, libz.so.1, is part of every Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.devdeps/' .git/info/exclude 2>/dev/null || echo '/.devdeps/' >>.git/info/exclude
mkdir -p .devdeps
cd .devdeps
apt-get download libdnnl2 libdnnl-dev libyaml-cpp0.7 libyaml-cpp-dev nlohmann-json3-dev \
  libpcre2-dev libpcre2-8-0 libgtest-dev googletest libcli11-dev libbenchmark-dev \
  libbenchmark1debian 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
HTTP_DEBS="libcpp-httplib-dev libcpp-httplib0.11 libsqlite3-dev libsqlite3-0 libhiredis-dev
  libhiredis0.14 libssl-dev libssl3 zlib1g-dev libbrotli-dev libbrotli1"
mkdir -p http
cd http
# shellcheck disable=SC2086
apt-get download $HTTP_DEBS 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
for p in $HTTP_DEBS; do
  ls "${p}"_*.deb >/dev/null 2>&1 || { echo "fetch_deps: $p was not downloaded" >&2; exit 1; }
done
cd ..
ls . http
du -sh .
