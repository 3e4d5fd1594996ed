#!/usr/bin/env bash
# ON THE DEVICE MACHINE, from a snapshot made with `scripts/device/snapshot.sh --golden` plus a
# baseline tree at .snap/base (`git archive BASE | tar -x -C .snap/base`): the candidate's step
# times, then the baseline's on the same card and bundle, then the GPU tests, then the
# candidate with each kernel switch turned the other way - so every number of a before/after
# comparison comes from one machine, in the order of what matters most if time runs out.
#
#   cd .snap/src && OUT=$OUT WORK=/root/fw bash bench/step_ab.sh
# AB_ENVS lists the settings to re-run `e2e_bench dit` under, each "VAR=value[,VAR=value...]"
# (default: each switch flipped alone - the scalar row kernels, the opt-in GEMV and key-split
# attention - then all of them together).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/foley-bench-out}
W=${WORK:-$PWD/.bench-work}
mkdir -p "$OUT" "$W"
BASE=../base
T0=$(date +%s)
say() { echo "== $* (t=$(($(date +%s) - T0)) s)" | tee -a "$OUT/ab.txt"; }
export LD_LIBRARY_PATH=/tmp/foley-sysroot/usr/lib/x86_64-linux-gnu
# The candidate's first build also unpacks the sysroot both builds share.
bash scripts/device/build.sh foley_cli e2e_bench 2>&1 | tail -1
if [ -d "$BASE" ]; then
  (cd "$BASE" && mkdir -p scripts/device && cp ../src/scripts/device/build.sh scripts/device/ &&
    bash scripts/device/build.sh e2e_bench >"$OUT/base_build.txt" 2>&1) &
  BASE_PID=$!
fi
(bash scripts/device/build.sh foley_tests >"$OUT/tests_build.txt" 2>&1) &
TESTS_PID=$!
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$OUT/ab.txt"
say "generate and convert the XXL model"
python3 bench/make_full_model.py "$W/model" --size xxl >"$OUT/model.txt" 2>&1
BUNDLE=$W/bundle.safetensors
build-device/bin/foley convert --model-dir "$W/model" --dtype bf16 --synchformer-dtype f16 \
  -o "$BUNDLE" >>"$OUT/model.txt" 2>&1 || { tail "$OUT/model.txt"; exit 1; }
ab() {
  say "$1"
  shift
  timeout 150 "$@" 2>&1 | grep -E 'dit_step|sample50|ready|error' | tee -a "$OUT/ab.txt"
}
# The candidate runs the whole bench (its 50-step sampling too); the others the step times only.
ab "candidate" build-device/bin/e2e_bench dit "$BUNDLE"
export E2E_STEPS_ONLY=1
if [ -n "${BASE_PID:-}" ]; then
  wait "$BASE_PID"
  [ -x "$BASE/build-device/bin/e2e_bench" ] || tail -20 "$OUT/base_build.txt"
  ab "baseline $(cat "$BASE/.commit" 2>/dev/null)" "$BASE/build-device/bin/e2e_bench" dit "$BUNDLE"
fi
wait "$TESTS_PID"
say "GPU tests"
timeout 300 bash tests/cuda/run_gpu_tests.sh build-device 2>&1 | tail -40 | tee -a "$OUT/ab.txt"
NEW="FOLEY_CUDA_VECTOR_ROWS=0 FOLEY_CUDA_GEMV=1 FOLEY_CUDA_FLASH_SPLIT=auto"
for e in ${AB_ENVS:-$NEW ${NEW// /,}}; do
  IFS=, read -ra vars <<<"$e"
  ab "candidate with $e" env "${vars[@]}" build-device/bin/e2e_bench dit "$BUNDLE"
done
say "done"
