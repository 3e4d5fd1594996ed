#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with ctest, then runs
# the server, pipeline and parser tests again in an AddressSanitizer + UBSan build (use-after-free,
# overflows and undefined behaviour fail the suite instead of passing by luck).
# FOLEY_SANITIZE_TESTS=0 skips the second part (for quick local runs; CI always runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash scripts/setup.sh
# Without a GPU the CUDA code is only compiled, not run: the oldest and newest supported cards
# (sm_80, sm_90a) stand for the five architectures a release build carries (a third of the time).
cuda_archs=()
if ! command -v nvidia-smi >/dev/null 2>&1 && [ -z "${FOLEY_TEST_ALL_CUDA_ARCHS:-}" ]; then
  cuda_archs=(-DCMAKE_CUDA_ARCHITECTURES=80-real\;90a-real)
fi
BUILD_DIR=${BUILD_DIR:-build} bash scripts/build.sh "${cuda_archs[@]}" "$@"
status=0
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "${JOBS:-$(nproc)}" --timeout 900) ||
  status=$?

if [ "${FOLEY_SANITIZE_TESTS:-1}" != 0 ] || [ "${CI:-}" = true ]; then
  SAN_DIR=${SAN_BUILD_DIR:-build-asan}
  echo "== sanitizer build ($SAN_DIR): ASan + UBSan, CPU only"
  # -O0 (2.7x quicker to compile instrumented than -O1), with -O1 for the library's element
  # loops (src/CMakeLists.txt adds it under FOLEY_SANITIZE).
  cmake -S . -B "$SAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O0 -DFOLEY_SANITIZE=ON \
    -DFOLEY_CUDA=OFF -DFOLEY_BENCH=OFF \
    -DFOLEY_TEST_SUBSET='/(server|pipeline|overlap|safetensors|torch_checkpoint|inspect|media_decode|media_sampling|bpe_tokenizer|job_journal|registry|weight_segments|quant)_test\.cpp$' \
    >/dev/null
  cmake --build "$SAN_DIR" -j "${JOBS:-$(nproc)}" --target foley_tests
  # Leaks are reported but the exit code is not changed by them (libgomp and oneDNN keep
  # process-lifetime allocations); errors and undefined behaviour abort the test.
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  (cd "$SAN_DIR" && ctest --output-on-failure -j "${JOBS:-$(nproc)}" --timeout 900 \
    -R '[.]') ||  # the gtest cases (Suite.Name) of that subset, not the script entries
    status=$?
fi
cd "$ROOT"
exit $status
