#!/bin/sh
# ctest's tokenizer_oracle entry (tests/cmake/tokenizer_oracle.cmake):
#   run.sh SOURCE_DIR WORK_DIR FOLEY_TESTS_BINARY
# Installs the pinned oracles (npm ci) into WORK_DIR once, runs oracle.mjs over corpus.json, then
# the TokenizerOracle gtest on their output. Exits 77 (ctest SKIP) when node or npm is missing.
set -eu
src=$1 work=$2 tests=$3
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node/npm not found: skipping the tokenizer oracle test"
  exit 77
fi
mkdir -p "$work"
cp "$src/package.json" "$src/package-lock.json" "$src/oracle.mjs" "$work/"
if [ ! -d "$work/node_modules/gpt-3-encoder" ] || [ ! -d "$work/node_modules/@huggingface/tokenizers" ] ||
   ! cmp -s "$src/package-lock.json" "$work/node_modules/.package-lock.json.foley"; then
  (cd "$work" && npm ci --no-audit --no-fund)
  cp "$src/package-lock.json" "$work/node_modules/.package-lock.json.foley"
fi
node "$work/oracle.mjs" "$src/corpus.json" "$work/oracle.json"
FOLEY_TOKENIZER_ORACLE="$work/oracle.json" FOLEY_TOKENIZER_CORPUS="$src/corpus.json" \
  exec "$tests" --gtest_filter=TokenizerOracle.*
