# bench/dit_profile on the CPU as a smoke test: a small synthetic MMDiT at a 1 s clip must run to
# the end and print per-kind rows for linear and attention (see dit_profile_smoke.sh). The
# program is a benchmark, so the entry exists only when the benchmarks are built.
if(FOLEY_BENCH)
  add_test(NAME dit_profile_smoke
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cmake/dit_profile_smoke.sh $<TARGET_FILE:dit_profile>)
  set_tests_properties(dit_profile_smoke PROPERTIES TIMEOUT 120 ENVIRONMENT "FOLEY_THREADS=2")
endif()
