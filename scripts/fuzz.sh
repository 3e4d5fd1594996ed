#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) into ${BUILD_DIR:-build-fuzz} and runs each
# for SECONDS (default 300), all at once, one core each. The corpus accumulates in
# $BUILD_DIR/corpus/<target> (seeded from fuzz/seeds/<name>); crashes land in
# $BUILD_DIR/artifacts/<target>/ and make the script fail. Logs: $BUILD_DIR/<target>.log.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     TARGET: safetensors_fuzz torch_checkpoint_fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-300}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(safetensors_fuzz torch_checkpoint_fuzz)
BUILD_DIR=${BUILD_DIR:-build-fuzz}

CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFOLEY_FUZZ=ON -DFOLEY_CUDA=OFF -DFOLEY_TESTS=OFF -DFOLEY_BENCH=OFF -DFOLEY_FFMPEG=OFF \
  -DFOLEY_HTTP=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target "${TARGETS[@]}"

pids=()
for target in "${TARGETS[@]}"; do
  name=${target%_fuzz}
  corpus="$BUILD_DIR/corpus/$target"
  artifacts="$BUILD_DIR/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  cp -n fuzz/seeds/"$name"/* "$corpus"/ 2>/dev/null || true
  "$BUILD_DIR/bin/$target" "$corpus" -dict="fuzz/$name.dict" -max_total_time="$SECONDS_EACH" \
    -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$BUILD_DIR/$target.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || status=1
  target=${TARGETS[$i]}
  echo "== $target: $(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$BUILD_DIR/$target.log" | tail -1)"
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$BUILD_DIR/$target.log" || true
done
found=$(find "$BUILD_DIR/artifacts" -type f | wc -l)
echo "artifacts: $found"
[ "$status" -eq 0 ] && [ "$found" -eq 0 ]
