// Error bodies of the HTTP API: {"error":{"code","message"}}. Library errors map to statuses by
// kind; their messages are scrubbed of filesystem paths, and internal errors get a generic text
// (the real one goes to the server log), so no body ever leaks paths or implementation details.
#pragma once

#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "foley/error.h"

namespace foley_server {

nlohmann::json error_json(const std::string& code, const std::string& message);
void send_error(httplib::Response& res, int status, const std::string& code,
                const std::string& message);

// Replaces anything that looks like an absolute path with "<file>".
std::string scrub_paths(const std::string& message);

struct MappedError {
  int status;
  std::string code;
  std::string message;  // safe to return
};
// Library errors come from the pipeline reading an upload, hence 422 for bad input; field
// validation in the handlers answers 400 itself.
MappedError map_error(const foley::Error& e);

void send_json(httplib::Response& res, int status, const nlohmann::json& body);

}  // namespace foley_server
