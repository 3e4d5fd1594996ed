# deploy/k8s must only use options the built `foley` has (tests/deploy_manifests_check.py).
if(FOLEY_HTTP)
  add_test(NAME deploy_manifests
    COMMAND ${FOLEY_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/deploy_manifests_check.py
            $<TARGET_FILE:foley_cli> ${PROJECT_SOURCE_DIR}/deploy/k8s)
endif()
