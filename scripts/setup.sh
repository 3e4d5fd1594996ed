#!/usr/bin/env bash
# Installs everything foley needs to build, test and run on Debian 12: the Debian packages (with
# sudo for apt-get only, when not run as root), then the pinned npm test tools that the browser
# test (tests/browser) and the tokenizer oracle (tests/tokenizer_oracle) use, each with `npm ci`
# from its committed package-lock.json into its own node_modules. Idempotent: packages already
# present are not fetched again, and an npm folder whose node_modules matches its lock file is
# left alone. Run it as yourself; run as root through sudo, the npm folders still belong to
# $SUDO_USER.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ccache
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
  libdnnl-dev ocl-icd-opencl-dev opencl-headers libopenblas-dev
  ffmpeg libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libswresample-dev
  libpcre2-dev libyaml-cpp-dev
  python3-numpy python3-torch python3-pil python3-yaml
  clang libclang-rt-14-dev
  chromium
  hey
  redis-server libhiredis-dev libsqlite3-dev sqlite3
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm (the browser test and the tokenizer oracle): Debian's nodejs and npm, unless a
# node and an npm are already on the PATH from elsewhere (e.g. NodeSource's nodejs, which bundles
# npm and conflicts with Debian's npm package).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if ((${#missing[@]} == 0)); then
  echo "setup: all Debian packages present"
else
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The npm test tools, pinned by the committed lock files. node_modules/.package-lock.json.foley
# is a copy of the lock file it was installed from (the test scripts compare it too).
as_user=()
if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  as_user=(runuser -u "$SUDO_USER" --)
fi
npm_ci() {  # npm_ci DIR PACKAGE_DIR...: `npm ci` in DIR unless node_modules matches its lock
  local dir=$1; shift
  local current=1
  cmp -s "$dir/package-lock.json" "$dir/node_modules/.package-lock.json.foley" || current=0
  for p in "$@"; do [ -d "$dir/node_modules/$p" ] || current=0; done
  if [ $current = 1 ]; then
    echo "setup: $dir/node_modules matches package-lock.json"
    return
  fi
  echo "setup: npm ci in $dir (pinned by package-lock.json)"
  "${as_user[@]}" bash -c 'cd "$1" && rm -rf node_modules && npm ci --no-audit --no-fund &&
    cp package-lock.json node_modules/.package-lock.json.foley' sh "$dir"
}
npm_ci tests/browser playwright-core
npm_ci tests/tokenizer_oracle gpt-3-encoder @huggingface/tokenizers
