# One ctest entry per golden case of the official implementation (../shared/golden/<case>, when
# this checkout has them): `foley golden CASE` runs every implemented stage and exits non-zero
# when one is beyond its tolerance. Cases are found at configure time.
#
# Known deviation, kept visible: tiny-a's DAC decoder has random weights that drive activations
# to ~1300 before the last Snake, where float32 rounding alone moves the output by ~2e-4
# relative. Measured against that case: an exact float64 decode of the same weights is 2.0e-4
# from the golden audio, PyTorch's own float32 CPU decode 2.1e-4 (2.5e-4 with torch's float32
# weight-norm), foley 2.5e-4 — so the case's "rel 1e-4" cannot be met by any float32
# implementation. The override says 1e-3; every other stage keeps the case's tolerance, and
# tiny official-format models with moderate gains are checked at 1e-4 in dac_decoder_test.
set(_foley_golden_overrides_tiny-a --tolerance "dac_out_audio=rel 1e-3")

file(GLOB _foley_golden_cases LIST_DIRECTORIES true ${PROJECT_SOURCE_DIR}/../shared/golden/*)
foreach(_case ${_foley_golden_cases})
  if(EXISTS ${_case}/case.json)
    get_filename_component(_name ${_case} NAME)
    add_test(NAME golden_${_name} COMMAND foley_cli golden ${_case} ${_foley_golden_overrides_${_name}})
    set_tests_properties(golden_${_name} PROPERTIES ENVIRONMENT "FOLEY_THREADS=2" TIMEOUT 900)
  endif()
endforeach()
