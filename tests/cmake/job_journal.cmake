# tests/job_journal_test.cpp exercises the server's SQLite job journal directly (not through
# `foley serve`), so its one source file is compiled into foley_tests too. Builds without
# FOLEY_HTTP have no server and compile the test to nothing (FOLEY_HAVE_HTTP, server.cmake).
if(FOLEY_HTTP)
  target_sources(foley_tests PRIVATE ${PROJECT_SOURCE_DIR}/tools/foley/server/job_journal.cpp)
  target_include_directories(foley_tests PRIVATE ${PROJECT_SOURCE_DIR}/tools/foley/server)
  target_link_libraries(foley_tests PRIVATE PkgConfig::SQLITE3 nlohmann_json::nlohmann_json)
endif()
