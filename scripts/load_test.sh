#!/usr/bin/env bash
# Load test of `foley serve` with hey (Debian package `hey`), on 127.0.0.1 only, bounded counts:
#   (a) GET /health/ready and GET /v1/generations/{id}: HTTP-layer throughput;
#   (b) POST /generate (synchronous, tiny model, 1 s clip) at concurrency 4 and 8.
# Usage: BUILD_DIR=build scripts/load_test.sh [MODEL_BUNDLE]
# Without a bundle argument a tiny model is generated (python3-torch) and converted.
# Knobs: LIGHT_REQUESTS (default 20000), GEN_REQUESTS (default 48), GEN_STEPS (default 4),
# JOBS_PER_DEVICE (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
FOLEY=$BUILD_DIR/bin/foley
LIGHT_REQUESTS=${LIGHT_REQUESTS:-20000}
GEN_REQUESTS=${GEN_REQUESTS:-48}
GEN_STEPS=${GEN_STEPS:-4}
JOBS_PER_DEVICE=${JOBS_PER_DEVICE:-2}
# Sleeping OpenMP waits: on a shared, oversubscribed box spinning waits slow everything down.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
command -v hey >/dev/null || { echo "load_test: needs hey (apt-get install hey)" >&2; exit 1; }
[ -x "$FOLEY" ] || { echo "load_test: $FOLEY not built" >&2; exit 1; }

WORK=$(mktemp -d /tmp/foley-load-XXXXXX)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

MODEL=${1:-}
if [ -z "$MODEL" ]; then
  /usr/bin/python3 scripts/make_tiny_models.py "$WORK/tiny" --seed 1 >/dev/null
  "$FOLEY" convert --model-dir "$WORK/tiny" --dtype f32 -o "$WORK/tiny.safetensors" >/dev/null
  MODEL=$WORK/tiny.safetensors
fi
ffmpeg -nostdin -y -v error -f lavfi -i testsrc=s=128x96:r=25:d=1 -pix_fmt yuv420p "$WORK/clip.mp4"

"$FOLEY" serve --model "$MODEL" --host 127.0.0.1 --port 0 --queue-size 64 \
  --jobs-per-device "$JOBS_PER_DEVICE" --max-clip-seconds 2 >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
  grep -q "ready on" "$WORK/serve.log" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.log"; exit 1; }
  sleep 0.2
done
grep "ready on" "$WORK/serve.log"
URL=$(sed -n 's/.*ready on \(http:[^ ]*\).*/\1/p' "$WORK/serve.log" | head -1)

# One finished job to poll.
ID=$(curl -sf -F video=@"$WORK/clip.mp4" -F prompt=rain -F steps=2 "$URL/v1/generations" |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
until curl -sf "$URL/v1/generations/$ID" | grep -q '"state":"succeeded"'; do sleep 0.1; done

# A multipart body for POST /generate, built once.
BOUNDARY=foleyloadtest
{
  printf -- '--%s\r\nContent-Disposition: form-data; name="video"; filename="clip.mp4"\r\n' "$BOUNDARY"
  printf 'Content-Type: video/mp4\r\n\r\n'
  cat "$WORK/clip.mp4"
  printf '\r\n--%s\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nfootsteps\r\n' "$BOUNDARY"
  printf -- '--%s\r\nContent-Disposition: form-data; name="steps"\r\n\r\n%s\r\n' "$BOUNDARY" "$GEN_STEPS"
  printf -- '--%s--\r\n' "$BOUNDARY"
} >"$WORK/body"

summary() { grep -E "Requests/sec|Average|Slowest|Fastest|10%|50%|90%|99%|\[[0-9]+\]" || true; }
echo "== (a) GET /health/ready, $LIGHT_REQUESTS requests, concurrency 16"
hey -n "$LIGHT_REQUESTS" -c 16 "$URL/health/ready" | summary
echo "== (a) GET /v1/generations/{id}, $LIGHT_REQUESTS requests, concurrency 16"
hey -n "$LIGHT_REQUESTS" -c 16 "$URL/v1/generations/$ID" | summary
for c in 4 8; do
  echo "== (b) POST /generate (tiny model, 1 s clip, $GEN_STEPS steps), $GEN_REQUESTS requests, concurrency $c, $JOBS_PER_DEVICE workers"
  hey -n "$GEN_REQUESTS" -c "$c" -t 300 -m POST -T "multipart/form-data; boundary=$BOUNDARY" \
    -D "$WORK/body" "$URL/generate" | summary
done
