#!/usr/bin/env bash
# Run HERE (the Debian development machine), not on the device: downloads the Debian packages that
# foley builds against into .devdeps/ (ignored by git, about 10 MB compressed), so that a device
# run can carry them (`carry: [".devdeps"]`). The device machine (Ubuntu, no Debian libraries and
# no network) unpacks them into a private sysroot in scripts/device/build.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.devdeps/' .git/info/exclude 2>/dev/null || echo '/.devdeps/' >>.git/info/exclude
mkdir -p .devdeps
cd .devdeps
apt-get download libdnnl2 libdnnl-dev libyaml-cpp0.7 libyaml-cpp-dev nlohmann-json3-dev \
  libpcre2-dev libpcre2-8-0 libgtest-dev googletest libcli11-dev libbenchmark-dev \
  libbenchmark1debian 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
ls
