# One ctest entry per golden case of the official implementation (../shared/golden/<case>, when
# this checkout has them): `foley golden CASE` runs every implemented stage and exits non-zero
# when one is beyond its tolerance. Cases are found at configure time.
file(GLOB _foley_golden_cases LIST_DIRECTORIES true ${PROJECT_SOURCE_DIR}/../shared/golden/*)
foreach(_case ${_foley_golden_cases})
  if(EXISTS ${_case}/case.json)
    get_filename_component(_name ${_case} NAME)
    add_test(NAME golden_${_name} COMMAND foley_cli golden ${_case})
    set_tests_properties(golden_${_name} PROPERTIES ENVIRONMENT "FOLEY_THREADS=2" TIMEOUT 900)
  endif()
endforeach()
