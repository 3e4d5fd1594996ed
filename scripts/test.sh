#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with ctest, then runs
# the server, pipeline and parser tests again in an AddressSanitizer + UBSan build (use-after-free,
# overflows and undefined behaviour fail the suite instead of passing by luck).
# FOLEY_SANITIZE_TESTS=0 skips the second part (for quick local runs; CI always runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build} bash scripts/build.sh "$@"
status=0
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "${JOBS:-$(nproc)}" --timeout 900) ||
  status=$?

if [ "${FOLEY_SANITIZE_TESTS:-1}" != 0 ] || [ "${CI:-}" = true ]; then
  SAN_DIR=${SAN_BUILD_DIR:-build-asan}
  echo "== sanitizer build ($SAN_DIR): ASan + UBSan, CPU only"
  # -O1: a third faster to compile than -O3 and plenty for the tiny model these tests run.
  cmake -S . -B "$SAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O1 -DFOLEY_SANITIZE=ON \
    -DFOLEY_CUDA=OFF -DFOLEY_BENCH=OFF \
    -DFOLEY_TEST_SUBSET='/(server|pipeline|safetensors|torch_checkpoint|inspect|media_decode|media_sampling|bpe_tokenizer|job_journal|registry|weight_segments)_test\.cpp$' \
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
