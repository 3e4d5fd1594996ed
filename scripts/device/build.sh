#!/usr/bin/env bash
# Builds foley ON THE DEVICE MACHINE (Ubuntu with CUDA, no Debian libraries): unpacks the carried
# Debian packages (.devdeps/, made by scripts/device/fetch_deps.sh) into /tmp/foley-sysroot and
# builds with the device's own nvcc and g++, FFmpeg and HTTP off, SASS for sm_90a only (fast
# build; the release build keeps every architecture).
#
#   device run: carry [".devdeps"], command "bash scripts/device/build.sh [targets...] && ..."
# Then: export LD_LIBRARY_PATH=/tmp/foley-sysroot/usr/lib/x86_64-linux-gnu (build.sh prints it).
#
# FOLEY_DEVICE_HTTP=1 builds the HTTP server too (`foley serve`, FOLEY_HTTP=ON): it unpacks
# .devdeps/http/ into the same sysroot (its OpenSSL and brotli runtimes then come first on
# LD_LIBRARY_PATH). Use one setting for every build.sh call of a run: switching it reconfigures
# BUILD_DIR, which rebuilds what depends on the option.
set -euo pipefail
cd "$(dirname "$0")/../.."
SYSROOT=/tmp/foley-sysroot
DEBS=.devdeps
[ -d "$DEBS" ] || DEBS=../../.devdeps  # building from .snap/src
if [ ! -d "$SYSROOT/usr" ]; then
  for f in "$DEBS"/*.deb; do dpkg -x "$f" "$SYSROOT"; done
fi
HTTP=OFF
if [ "${FOLEY_DEVICE_HTTP:-0}" = 1 ]; then
  HTTP=ON
  if [ ! -f "$SYSROOT/.http" ]; then
    ls "$DEBS"/http/*.deb >/dev/null 2>&1 ||
      { echo "FOLEY_DEVICE_HTTP=1: no $DEBS/http/*.deb (run scripts/device/fetch_deps.sh here)"; exit 1; }
    for f in "$DEBS"/http/*.deb; do dpkg -x "$f" "$SYSROOT"; done
    # OpenSSL's two generated headers sit in the multiarch folder, which the compiler searches
    # only under /usr, not under the sysroot: beside the others they are found.
    cp "$SYSROOT"/usr/include/x86_64-linux-gnu/openssl/*.h "$SYSROOT/usr/include/openssl/"
    touch "$SYSROOT/.http"
  fi
fi
LIB=$SYSROOT/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Only the sysroot's .pc files (none of the device's own), with their paths moved into it.
export PKG_CONFIG_LIBDIR=$LIB/pkgconfig:$SYSROOT/usr/share/pkgconfig
export PKG_CONFIG_PATH=
export PKG_CONFIG_SYSROOT_DIR=$SYSROOT
BUILD_DIR=${BUILD_DIR:-build-device}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$SYSROOT/usr;$LIB/cmake" \
  -DFOLEY_CUDA=ON -DFOLEY_FFMPEG=OFF -DFOLEY_HTTP=$HTTP -DFOLEY_PYTHON="$(command -v python3)" \
  -DCMAKE_CUDA_ARCHITECTURES=90a-real >"$BUILD_DIR.configure.log" 2>&1 ||
  { tail -40 "$BUILD_DIR.configure.log"; exit 1; }
if ! cmake --build "$BUILD_DIR" -j "$(nproc)" ${1:+--target "$@"} >"$BUILD_DIR.build.log" 2>&1; then
  grep -E -A3 "error|FAILED" "$BUILD_DIR.build.log" | head -80
  exit 1
fi
echo "built $BUILD_DIR; run with: export LD_LIBRARY_PATH=$LIB"
