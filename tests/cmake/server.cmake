# tests/server_test.cpp talks to `foley serve` over HTTP with httplib::Client; builds without
# FOLEY_HTTP compile it to nothing.
if(FOLEY_HTTP)
  target_link_libraries(foley_tests PRIVATE PkgConfig::HTTPLIB)
  target_compile_definitions(foley_tests PRIVATE FOLEY_HAVE_HTTP=1)
endif()
