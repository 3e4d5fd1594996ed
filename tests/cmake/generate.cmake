# `foley generate` from the command line on the complete tiny model (scripts/make_tiny_models.py):
# single clip (WAV + MP4 with ffprobe), batch JSONL with a bad line, CSV batch, bad flags. See
# generate_cli.sh; without python3-torch it exits 77 and ctest reports SKIP (in CI, CI=true, it
# fails instead: tests/cmake/skip_missing.sh).
add_test(NAME generate_cli
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cmake/generate_cli.sh $<TARGET_FILE:foley_cli>
          ${FOLEY_PYTHON} ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/generate_cli)
set_tests_properties(generate_cli PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600
  ENVIRONMENT "FOLEY_THREADS=2")
