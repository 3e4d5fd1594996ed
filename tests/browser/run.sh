#!/bin/sh
# ctest's browser_generate entry (tests/cmake/browser.cmake), also usable by hand:
#   run.sh SOURCE_ROOT WORK_DIR FOLEY_BINARY [BUNDLE CLIP]
# Starts `foley serve --port 0` on BUNDLE (twice, as the models "tiny", the default, and "also",
# which is not preloaded), opens its page in headless Chromium (generate.mjs) and generates audio
# for CLIP through the page, on the model "also" picked in the page's model picker. Without BUNDLE and CLIP it makes the tiny model
# (scripts/make_tiny_models.py -> `foley convert --dtype f32`, the model directory cached in
# WORK_DIR by the generator scripts' checksum) and a 2 s H.264 clip with the ffmpeg CLI.
# playwright-core (pinned in package-lock.json) is installed with `npm ci` into WORK_DIR once.
# The screenshot goes to $FOLEY_SCREENSHOT or WORK_DIR/screenshot.png; the server log to
# WORK_DIR/serve.log. Exits 77 (ctest SKIP) when node, npm, Chromium or ffmpeg is missing, 1 in
# CI (CI=true: tests/cmake/skip_missing.sh). scripts/setup.sh installs playwright-core into
# tests/browser/node_modules (npm ci); that copy is used when it matches package-lock.json.
set -eu
root=$1 work=$2 foley=$3
bundle=${4:-} clip=${5:-}
src="$root/tests/browser"
chromium=${FOLEY_CHROMIUM:-/usr/bin/chromium}
python=${FOLEY_PYTHON:-/usr/bin/python3}
screenshot=${FOLEY_SCREENSHOT:-$work/screenshot.png}

. "$root/tests/cmake/skip_missing.sh"
skip() { skip_missing "$1: the browser test cannot run"; }
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || skip "node/npm not found"
[ -x "$chromium" ] || skip "$chromium not found (apt-get install chromium)"
if [ -z "$bundle" ] || [ -z "$clip" ]; then
  command -v ffmpeg >/dev/null 2>&1 || skip "ffmpeg CLI not found"
fi

mkdir -p "$work"
cp "$src/package.json" "$src/package-lock.json" "$src/generate.mjs" "$work/"
# setup.sh's install in the source folder when it matches the lock file, else one of our own.
if [ -d "$src/node_modules/playwright-core" ] &&
   cmp -s "$src/package-lock.json" "$src/node_modules/.package-lock.json.foley"; then
  rm -rf "$work/node_modules"
  ln -s "$src/node_modules" "$work/node_modules"
elif [ -L "$work/node_modules" ] || [ ! -d "$work/node_modules/playwright-core" ] ||
     ! cmp -s "$src/package-lock.json" "$work/node_modules/.package-lock.json.foley"; then
  rm -rf "$work/node_modules"
  (cd "$work" && npm ci --no-audit --no-fund)
  cp "$src/package-lock.json" "$work/node_modules/.package-lock.json.foley"
fi

if [ -z "$bundle" ] || [ -z "$clip" ]; then
  key=$(cat "$root/scripts/make_tiny_models.py" "$root"/scripts/tiny_models/*.py | cksum)
  if [ ! -f "$work/tiny-official.key" ] || [ "$(cat "$work/tiny-official.key")" != "$key" ]; then
    rm -rf "$work/tiny-official"
    "$python" "$root/scripts/make_tiny_models.py" "$work/tiny-official" --seed 1
    echo "$key" > "$work/tiny-official.key"
  fi
  bundle="$work/tiny.safetensors" clip="$work/clip.mp4"
  "$foley" convert --model-dir "$work/tiny-official" --dtype f32 -o "$bundle" >/dev/null
  ffmpeg -nostdin -y -v error -f lavfi -i "testsrc=s=320x240:r=25:d=2" \
    -c:v libx264 -pix_fmt yuv420p -movflags +faststart "$clip"
fi

log="$work/serve.log"
"$foley" serve --model tiny="$bundle" --model also="$bundle" --port 0 --max-clip-seconds 4 \
  >"$log" 2>&1 &
server=$!
stop_server() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# The server prints "listening on URL" once the socket is bound (the model loads after that; the
# page shows it loading until /health/ready says ready) and "ready on URL" when warmed.
url=""
tries=0
while [ -z "$url" ]; do
  url=$(sed -n 's/.*\(listening\|ready\) on \(http:\/\/[^ ]*\).*/\2/p' "$log" | head -n 1)
  [ -n "$url" ] && break
  if ! kill -0 "$server" 2>/dev/null; then
    echo "foley serve exited before listening:"; cat "$log"; exit 1
  fi
  tries=$((tries + 1))
  if [ "$tries" -gt 600 ]; then echo "foley serve printed no URL within 60 s:"; cat "$log"; exit 1; fi
  sleep 0.1
done
echo "foley serve at $url"

status=0
node "$work/generate.mjs" "$url/" "$clip" "$screenshot" --steps 4 --model also || status=$?
if [ "$status" -ne 0 ]; then echo "--- foley serve log"; cat "$log"; fi
exit "$status"
