# tests/server_test.cpp also checks the server's job records directly (tools/foley/server/job.h:
# what the journal and the Redis queue store of a request, progress fractions), so job.cpp is
# compiled into foley_tests. Builds without FOLEY_HTTP compile the test to nothing.
if(FOLEY_HTTP)
  target_sources(foley_tests PRIVATE ${PROJECT_SOURCE_DIR}/tools/foley/server/job.cpp)
  target_include_directories(foley_tests PRIVATE ${PROJECT_SOURCE_DIR}/tools/foley/server)
  target_link_libraries(foley_tests PRIVATE nlohmann_json::nlohmann_json)
endif()
