#include "http_errors.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
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

std::optional<HttpError> storage_error(int err, const std::string& what) {
  if (err == ENOSPC || err == EDQUOT)
    return HttpError(507, "insufficient_storage",
                     "the server's disk is full; cannot store " + what + " (retry later)", 60);
  if (err == EROFS || err == EACCES || err == EPERM)
    return HttpError(503, "storage_unavailable",
                     "the server cannot store " + what +
                         " (its data directory is read-only or not writable)",
                     60);
  return std::nullopt;
}

std::optional<HttpError> storage_state_error(const std::string& dir, const std::string& what) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return storage_error(errno, what);
  if (st.f_flag & ST_RDONLY) return storage_error(EROFS, what);
  if (::access(dir.c_str(), W_OK) != 0) return storage_error(errno, what);
  // Less than 1 MiB left: the failed write most likely found the disk full.
  if (uint64_t(st.f_bavail) * st.f_frsize < (uint64_t(1) << 20)) return storage_error(ENOSPC, what);
  return std::nullopt;
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
