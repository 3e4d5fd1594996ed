#include "http_errors.h"

#include <cstdio>
#include <regex>

namespace foley_server {

nlohmann::json error_json(const std::string& code, const std::string& message) {
  return {{"error", {{"code", code}, {"message", message}}}};
}

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& code,
                const std::string& message) {
  send_json(res, status, error_json(code, message));
}

std::string scrub_paths(const std::string& message) {
  // An absolute path starts at the beginning, after whitespace, a quote or a bracket, and runs
  // to the next whitespace or quote. Ratios like "3/4" are not preceded by such a character.
  static const std::regex kPath(R"((^|[\s'"`(\[=:])/[^\s'"`)\]]*)");
  return std::regex_replace(message, kPath, "$1<file>");
}

MappedError map_error(const foley::Error& e) {
  switch (e.kind()) {
    case foley::ErrorKind::kInvalidInput:
      return {422, "invalid_input", scrub_paths(e.what())};
    case foley::ErrorKind::kUnsupported:
      return {422, "invalid_input", scrub_paths(e.what())};
    case foley::ErrorKind::kNotFound:
      return {404, "not_found", scrub_paths(e.what())};
    case foley::ErrorKind::kCancelled:
      return {409, "cancelled", "the job was cancelled"};
    case foley::ErrorKind::kInternal:
      break;
  }
  std::fprintf(stderr, "foley serve: internal error: %s\n", e.what());
  return {500, "internal", "internal error (see the server log)"};
}

}  // namespace foley_server
