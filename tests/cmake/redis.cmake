# tests/redis_client_test.cpp exercises the server's Redis client (tools/foley/server/redis_client.h)
# against a real redis-server (tests/redis_server.h starts one per test), so the client's one
# source file is compiled into foley_tests. Builds without FOLEY_HTTP compile the test to nothing.
if(FOLEY_HTTP)
  target_sources(foley_tests PRIVATE ${PROJECT_SOURCE_DIR}/tools/foley/server/redis_client.cpp)
  target_include_directories(foley_tests PRIVATE ${PROJECT_SOURCE_DIR}/tools/foley/server)
  target_link_libraries(foley_tests PRIVATE PkgConfig::HIREDIS)
endif()
