# bench/serve_bench.py (the GPU server throughput benchmark) run on the CPU with the tiny model,
# so it keeps working (serve_bench_smoke.sh); skipped without python3-torch, a failure in CI.
if(FOLEY_HTTP)
  add_test(NAME serve_bench_smoke
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cmake/serve_bench_smoke.sh $<TARGET_FILE:foley_cli>
            ${FOLEY_PYTHON} ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/serve_bench_smoke)
  set_tests_properties(serve_bench_smoke PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 180
    ENVIRONMENT "FOLEY_THREADS=2")
endif()
