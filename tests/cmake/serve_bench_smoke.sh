#!/bin/sh
# bench/serve_bench.py on the CPU with the tiny model, so the GPU server benchmark cannot rot:
# `foley serve --max-batch 2`, 1 then 2 concurrent clients, 2 requests each, 2 steps; the JSON
# must hold both levels with every request done, latencies, stage timings, a step time, and at
# least one batch of 2 at 2 clients (the long batch window makes that certain).
# Usage: serve_bench_smoke.sh FOLEY PYTHON SOURCE_DIR WORK_DIR. Exit 77 = skipped (no
# python3-torch for the tiny model; in CI, CI=true, a failure: tests/cmake/skip_missing.sh).
set -eu
FOLEY=$1 PY=$2 SRC=$3 WORK=$4
. "$SRC/tests/cmake/skip_missing.sh"
. "$SRC/tests/cmake/tiny_model.sh"
tiny_work "$PY" "$WORK"
tiny=$(tiny_model_dir "$PY" "$SRC")
"$FOLEY" convert --model-dir "$tiny" --dtype f32 -o tiny.safetensors >/dev/null
tiny_y4m "$PY" clip.y4m 1
"$PY" "$SRC/bench/serve_bench.py" --foley "$FOLEY" --bundle tiny.safetensors --clip clip.y4m \
  --device cpu --concurrency 1,2 --requests-per-level 2 --steps 2 \
  --server-args "--max-batch 2 --batch-window-ms 1000" --json out.json
"$PY" - <<'PY'
import json
r = json.load(open("out.json"))
lv = r["levels"]
assert [l["concurrency"] for l in lv] == [1, 2], lv
for l in lv:
    assert l["ok"] == 2 and l["failed"] == 0, l
    assert 0 < l["p50_s"] <= l["p99_s"] and l["clips_per_min"] > 0, l
    assert "denoise" in l["stages_mean_s"] and l["denoise_per_step_ms"] > 0, l
assert lv[0]["batch_sizes"] == {"1": 2}, lv[0]["batch_sizes"]
assert "2" in lv[1]["batch_sizes"], lv[1]["batch_sizes"]
print("serve_bench smoke: ok")
PY
