#!/bin/sh
# ctest's tokenizer_oracle entry (tests/cmake/tokenizer_oracle.cmake):
#   run.sh SOURCE_DIR WORK_DIR FOLEY_TESTS_BINARY
# Installs the pinned oracles (npm ci) into WORK_DIR once, runs oracle.mjs over corpus.json, then
# the TokenizerOracle gtest on their output. Exits 77 (ctest SKIP) when node or npm is missing, 1
# in CI (CI=true: tests/cmake/skip_missing.sh). scripts/setup.sh installs the oracles into
# SOURCE_DIR/node_modules (npm ci); that copy is used when it matches package-lock.json.
set -eu
src=$1 work=$2 tests=$3
. "$src/../cmake/skip_missing.sh"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  skip_missing "node/npm not found: the tokenizer oracle test cannot run"
fi
mkdir -p "$work"
cp "$src/package.json" "$src/package-lock.json" "$src/oracle.mjs" "$work/"
installed() {
  [ -d "$1/node_modules/gpt-3-encoder" ] && [ -d "$1/node_modules/@huggingface/tokenizers" ] &&
    cmp -s "$src/package-lock.json" "$1/node_modules/.package-lock.json.foley"
}
if installed "$src"; then
  rm -rf "$work/node_modules"
  ln -s "$src/node_modules" "$work/node_modules"
elif [ -L "$work/node_modules" ] || ! installed "$work"; then
  rm -rf "$work/node_modules"
  (cd "$work" && npm ci --no-audit --no-fund)
  cp "$src/package-lock.json" "$work/node_modules/.package-lock.json.foley"
fi
node "$work/oracle.mjs" "$src/corpus.json" "$work/oracle.json"
FOLEY_TOKENIZER_ORACLE="$work/oracle.json" FOLEY_TOKENIZER_CORPUS="$src/corpus.json" \
  exec "$tests" --gtest_filter=TokenizerOracle.*
