#!/usr/bin/env bash
# The GPU benchmark behind BENCHMARKS.md, run ON THE DEVICE MACHINE in one call (the machine
# forgets everything between calls): build, generate a full-size model with seeded random weights
# in the official formats, convert it to a bundle (DiT bf16, Synchformer f16 as the reference's
# autocast), then measure foley (loader, MMDiT, pipeline) and the PyTorch baselines. Every result
# line lands in $OUT/bench.txt.
#
#   SIZE=xxl|small  PARTS="tests model read load dit pipeline torch"  bash bench/run_h100.sh
#   (PARTS="model precision": --precision fast against exact; PARTS="model serve": the server's
#    throughput, bench/serve_bench.py)
#   (PARTS="model long": long clips and text only, bench/long_clip_bench)
#   (PARTS="gputests": tests/cuda/run_gpu_tests.sh, every Cuda* test and the golden cases on CUDA)
#   (PARTS="model read ready": start->ready alone, cold and warm;
#    PARTS="model profile": per-op times of one MMDiT step and of the encoders for a 10 s clip,
#    also in $OUT/profile_{dit,siglip2,synchformer,dac}.txt;
#    PARTS="model serve": `foley serve` throughput and latency at 1/2/4/8 concurrent 10 s
#    requests, one job at a time and batched (bench/serve_bench.py; builds with HTTP,
#    FOLEY_DEVICE_HTTP=1; JSON in $OUT/serve_*.json; SERVE_CONFIGS overrides the runs))
#
# Cold runs evict the files from the page cache with posix_fadvise(DONTNEED) (no privileges
# needed); /proc/sys/vm/drop_caches is tried too and its outcome logged.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/foley-bench-out}
SIZE=${SIZE:-xxl}
PARTS=${PARTS:-tests model read load dit pipeline torch}
W=${WORK:-$PWD/.bench-work}  # on the checkout's disk: /tmp may be a tmpfs (no O_DIRECT, no cold reads)
mkdir -p "$OUT" "$W"
LOG=$OUT/bench.txt
T0=$(date +%s)
say() { echo "== $* (t=$(($(date +%s) - T0)) s)" | tee -a "$LOG"; }
has() { [[ " $PARTS " == *" $1 "* ]]; }
run() { "$@" 2>&1 | tee -a "$LOG"; }
# Wall time of a whole process, exec to exit, in seconds.
wall() {
  local a b
  a=$(date +%s.%N)
  "$@" 2>&1 | tee -a "$LOG"
  b=$(date +%s.%N)
  echo "process_wall_s $(awk "BEGIN{print $b - $a}")" | tee -a "$LOG"
}
# Synthetic 5, 10 and 15 s Y4M clips (320x240, 25 fps) in $W for the pipeline benchmarks.
make_clips() {
  python3 - "$W" <<'EOF'
import sys
import numpy as np
w, h = 320, 240
for sec in (5, 10, 15):
    with open("%s/clip%d.y4m" % (sys.argv[1], sec), "wb") as f:
        f.write(b"YUV4MPEG2 W%d H%d F25:1 Ip A1:1 C420jpeg\n" % (w, h))
        for i in range(sec * 25):
            y = ((np.arange(w)[None, :] + np.arange(h)[:, None] + 3 * i) % 256).astype(np.uint8)
            f.write(b"FRAME\n" + y.tobytes() + bytes([128]) * (w * h // 2))
EOF
}
drop_caches() {
  sync
  if echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then echo "drop_caches ok"; else
    echo "drop_caches refused (using posix_fadvise eviction)"; fi | tee -a "$LOG"
}

say "build"
# The server needs FOLEY_HTTP=ON: set for every build.sh call of the run, so one configuration.
has serve && export FOLEY_DEVICE_HTTP=1
# The test binary only for the parts that run tests (a serve-only run skips its long build).
TARGETS="foley_cli e2e_bench"
{ has tests || has quant || has precision || has gputests; } && TARGETS="$TARGETS foley_tests"
bash scripts/device/build.sh $TARGETS 2>&1 | tail -5 | tee -a "$LOG"
# Separately: the whole-pipeline bench needs src/pipeline, which may not be there yet.
if has pipeline; then
  bash scripts/device/build.sh pipeline_bench 2>&1 | tail -5 | tee -a "$LOG"
fi
if has multi; then
  bash scripts/device/build.sh registry_bench 2>&1 | tail -5 | tee -a "$LOG"
fi
if has quant; then
  bash scripts/device/build.sh quant_quality pipeline_bench dit_profile 2>&1 | tail -5 | tee -a "$LOG"
fi
if has precision; then
  bash scripts/device/build.sh quant_quality 2>&1 | tail -5 | tee -a "$LOG"
fi
if has long; then
  bash scripts/device/build.sh long_clip_bench 2>&1 | tail -5 | tee -a "$LOG"
fi
if has profile; then
  bash scripts/device/build.sh dit_profile 2>&1 | tail -5 | tee -a "$LOG"
fi
export LD_LIBRARY_PATH=/tmp/foley-sysroot/usr/lib/x86_64-linux-gnu
B=build-device
[ -x $B/bin/e2e_bench ] || { say "build failed"; exit 1; }
run nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
run bash -c "nproc; free -g | head -2; df -hT $W /tmp | tail -2"

if has gputests; then
  say "every CUDA op test against the CPU oracle, then the golden cases on the CUDA backend"
  run timeout 400 bash tests/cuda/run_gpu_tests.sh $B
fi
if has tests; then
  say "loader tests"
  run $B/tests/foley_tests --gtest_filter='Loader*:CudaLoader*' --gtest_brief=1
fi

BUNDLE=$W/bundle.safetensors
if has model; then
  say "generate $SIZE model"
  XL_ARG=""; has multi && XL_ARG="--with-xl"
  run timeout 300 python3 bench/make_full_model.py "$W/model" --size "$SIZE" $XL_ARG
  say "convert"
  SIZE_ARG=""; has multi && SIZE_ARG="--model-size xxl"
  run timeout 200 $B/bin/foley convert --model-dir "$W/model" --dtype bf16 --synchformer-dtype f16 \
    $SIZE_ARG -o "$BUNDLE"
  run ls -la "$W/model" "$BUNDLE"
fi
[ -f "$BUNDLE" ] || { say "no bundle"; exit 1; }

if has read; then
  say "disk read time of the bundle (cold, O_DIRECT) and page-cache read (warm), default readers"
  drop_caches
  run $B/bin/e2e_bench evict "$BUNDLE"
  run $B/bin/e2e_bench read_direct "$BUNDLE"
  run $B/bin/e2e_bench evict "$BUNDLE"
  run dd if="$BUNDLE" of=/dev/null bs=64M iflag=direct
  cat "$BUNDLE" >/dev/null
  run $B/bin/e2e_bench read "$BUNDLE"
fi
if has load; then
  say "loader sweep (warm page cache) + byte check"
  cat "$BUNDLE" >/dev/null
  run timeout 90 $B/bin/e2e_bench load "$BUNDLE" verify
fi
if has ready; then
  say "start->ready only (MMDiT): cold, then warm twice"
  drop_caches
  run $B/bin/e2e_bench evict "$BUNDLE"
  wall timeout 60 $B/bin/e2e_bench dit "$BUNDLE" ready
  cat "$BUNDLE" >/dev/null
  wall timeout 60 $B/bin/e2e_bench dit "$BUNDLE" ready
  wall timeout 60 $B/bin/e2e_bench dit "$BUNDLE" ready
fi
if has dit; then
  say "MMDiT start->ready, cold (evicted)"
  drop_caches
  run $B/bin/e2e_bench evict "$BUNDLE"
  wall timeout 60 $B/bin/e2e_bench dit "$BUNDLE" ready
  say "MMDiT start->ready warm + steps + sampling + drift"
  cat "$BUNDLE" >/dev/null
  wall timeout 200 $B/bin/e2e_bench dit "$BUNDLE"
fi
if has profile && [ -x $B/bin/dit_profile ]; then
  say "per-op profiles, 10 s clip (each op timed between two syncs): MMDiT step, then encoders"
  cat "$BUNDLE" >/dev/null
  timeout 200 $B/bin/dit_profile --model "$BUNDLE" --seconds 10 --device cuda --steps 5 2>&1 |
    tee "$OUT/profile_dit.txt" | tee -a "$LOG"
  for net in siglip2 synchformer dac; do
    timeout 120 $B/bin/dit_profile --model "$BUNDLE" --seconds 10 --device cuda --network $net \
      --warm 1 --steps 2 2>&1 | tee "$OUT/profile_$net.txt" | tee -a "$LOG"
  done
elif has profile; then
  say "dit_profile was not built"
fi
if has torch; then
  say "PyTorch baselines"
  run timeout 150 python3 bench/torch_baseline.py "$W/model" ${TORCH_ARGS:-}
fi
if has pipeline && [ -x $B/bin/pipeline_bench ]; then
  say "pipeline (Generator on CUDA)"
  make_clips
  cat "$BUNDLE" >/dev/null
  wall timeout 150 $B/bin/pipeline_bench "$BUNDLE" "$W/clip5.y4m" "$W/clip10.y4m" "$W/clip15.y4m"
fi
if has long && [ -x $B/bin/long_clip_bench ]; then
  say "long clips and text only (issue 15): one process each; REPEAT 2 reports the second request"
  python3 - "$W" <<'EOF'
import sys
import numpy as np
w, h = 320, 240
for sec in (10, 60):
    with open("%s/long%d.y4m" % (sys.argv[1], sec), "wb") as f:
        f.write(b"YUV4MPEG2 W%d H%d F25:1 Ip A1:1 C420jpeg\n" % (w, h))
        for i in range(sec * 25):
            y = ((np.arange(w)[None, :] * (1 + i // 50) + np.arange(h)[:, None] + 3 * i) % 256).astype(np.uint8)
            f.write(b"FRAME\n" + y.tobytes() + bytes([128]) * (w * h // 2))
EOF
  cat "$BUNDLE" >/dev/null
  # LONG_RUNS: ';'-separated long_clip_bench arguments after the device (VIDEO STEPS REPEAT WINDOW)
  IFS=';' read -ra runs <<<"${LONG_RUNS:-long10 50 2 9;long60 50 2 9;long60 50 1 10;text:8 50 2 9;long60 50 1 12}"
  for args in "${runs[@]}"; do
    args=${args//long10/$W/long10.y4m}
    args=${args//long60/$W/long60.y4m}
    run timeout 150 $B/bin/long_clip_bench "$BUNDLE" cuda $args
  done
fi
if has multi && [ -x $B/bin/registry_bench ]; then
  say "several models: XXL + XL through ModelRegistry (issue 14)"
  [ -f "$W/bundle_xl.safetensors" ] || run timeout 200 $B/bin/foley convert --model-dir "$W/model" \
    --model-size xl --dtype bf16 --synchformer-dtype f16 -o "$W/bundle_xl.safetensors"
  [ -f "$W/long10.y4m" ] || python3 -c "
import numpy as np
w, h = 320, 240
with open('$W/long10.y4m', 'wb') as f:
    f.write(b'YUV4MPEG2 W%d H%d F25:1 Ip A1:1 C420jpeg\\n' % (w, h))
    for i in range(250):
        y = ((np.arange(w)[None, :] + np.arange(h)[:, None] + 3 * i) % 256).astype(np.uint8)
        f.write(b'FRAME\\n' + y.tobytes() + bytes([128]) * (w * h // 2))
"
  cat "$BUNDLE" "$W/bundle_xl.safetensors" >/dev/null
  run timeout 200 $B/bin/registry_bench "$BUNDLE" "$W/bundle_xl.safetensors" "$W/long10.y4m"
fi
if has quant && [ -x $B/bin/quant_quality ]; then
  say "quantised DiT (issue 12): GPU tests, then bf16 / fp8 / int8 bundles of the same checkpoint"
  run $B/tests/foley_tests --gtest_filter='CudaQuant.*:QuantizedDit.*:LinearQuantized.*:CudaGraph.*:CudaHalf.*'
  if [ -f ../shared/golden/tiny-a/case.json ]; then
    for d in f32 bf16 int8 fp8; do
      run $B/bin/foley golden ../shared/golden/tiny-a --backend cuda --stage dit --stage sample \
        --dit-dtype $d
    done
  fi
  for q in fp8 int8; do
    [ -f "$W/bundle_$q.safetensors" ] || wall timeout 300 $B/bin/foley convert --model-dir "$W/model" \
      --dtype $q --synchformer-dtype f16 -o "$W/bundle_$q.safetensors"
  done
  run ls -la "$W"/*.safetensors
  make_clips
  export FOLEY_BENCH_REPEATS=${FOLEY_BENCH_REPEATS:-5}
  for b in bundle bundle_fp8 bundle_int8; do
    say "quant: $b"
    cat "$W/$b.safetensors" >/dev/null
    wall timeout 150 $B/bin/e2e_bench dit "$W/$b.safetensors"
    wall timeout 150 $B/bin/pipeline_bench "$W/$b.safetensors" "$W/clip5.y4m" "$W/clip10.y4m" \
      "$W/clip15.y4m"
  done
  if [ -x $B/bin/dit_profile ]; then
    say "quant: per-op profile of the int8 and fp8 DiT steps (10 s)"
    for q in int8 fp8; do
      timeout 120 $B/bin/dit_profile --model "$W/bundle_$q.safetensors" --seconds 10 --device cuda \
        --steps 3 2>&1 | tee "$OUT/profile_dit_$q.txt" | head -40 | tee -a "$LOG"
    done
  fi
  say "quant: quality against the bf16 bundle"
  run timeout 200 $B/bin/quant_quality "$W/clip10.y4m" "$BUNDLE" "$W/bundle_fp8.safetensors" \
    "$W/bundle_int8.safetensors"
fi
if has precision && [ -x $B/bin/quant_quality ]; then
  say "--precision fast (issue 13): GPU tests, then exact vs fast on a 10 s clip"
  run $B/tests/foley_tests --gtest_filter='CudaPipeline.*:CudaQuant.*'
  make_clips
  run timeout 200 $B/bin/quant_quality --precision "$W/clip10.y4m" "$BUNDLE"
fi
if has serve; then
  say "server throughput: foley serve on CUDA, 10 s Y4M uploads, closed loop of C clients"
  run nvidia-smi -L
  # grep without -q reads the whole help: with -q it may close the pipe early, foley dies of
  # SIGPIPE, and under pipefail the test fails though the server is there.
  if $B/bin/foley serve --help 2>&1 | grep -- --max-batch >/dev/null; then
    make_clips
    cat "$BUNDLE" >/dev/null
    # NAME|CONCURRENCY|REQUESTS PER LEVEL|SERVER FLAGS; --jobs-per-device 1 (the CUDA default
    # is 4 workers) so --max-batch 1 is one job at a time and a batch runs alone.
    IFS=';' read -ra cfgs <<<"${SERVE_CONFIGS:-serial|1,2,4,8|6,6,8,16|--jobs-per-device 1 --max-batch 1;batch4|1,2,4,8|6,6,8,16|--jobs-per-device 1 --max-batch 4 --batch-window-ms 50;batch8|8|16|--jobs-per-device 1 --max-batch 8 --batch-window-ms 50}"
    for cfg in "${cfgs[@]}"; do
      IFS='|' read -r name conc reqs flags <<<"$cfg"
      say "serve $name: $flags"
      run timeout 240 python3 bench/serve_bench.py --foley $B/bin/foley --bundle "$BUNDLE" \
        --clip "$W/clip10.y4m" --device cuda --server-args "$flags" --concurrency "$conc" \
        --requests-per-level "$reqs" --label "$name" --json "$OUT/serve_$name.json"
    done
  else
    say "serve: this foley has no HTTP server (see build-device.configure.log)"
    run bash -c "$B/bin/foley serve --help 2>&1 | head -5; ldd $B/bin/foley | grep 'not found'"
  fi
fi
say "done"
