// Error bodies of the HTTP API: {"error":{"code","message"}}. Library errors map to statuses by
// kind; their messages are scrubbed of filesystem paths, and internal errors get a generic text
// (the real one goes to the server log), so no body ever leaks paths or implementation details.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "foley/error.h"

namespace foley_server {

// An answer decided deep inside a handler (e.g. the disk filled while an upload was stored);
// the exception handler sends it as an error body.
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, std::string code, const std::string& message, int retry_after = 0)
      : std::runtime_error(message), status(status), code(std::move(code)),
        retry_after(retry_after) {}
  int status;
  std::string code;
  int retry_after;
};

// The answer for a failed write into the data directory, from its errno: 507 when the disk (or
// quota) is full, 503 when the directory is read-only or not writable; nullopt for other errors.
std::optional<HttpError> storage_error(int err, const std::string& what);
// The same judged from the directory itself (after a library write failed without an errno).
std::optional<HttpError> storage_state_error(const std::string& dir, const std::string& what);

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
