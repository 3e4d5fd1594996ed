// Errors crossing the public API. The library throws foley::Error; callers (CLI, server) map the
// kind to an exit code or HTTP status, so one bad input never takes the process down.
#pragma once

#include <stdexcept>
#include <string>

namespace foley {

enum class ErrorKind {
  kInvalidInput,  // the caller's data or parameters are wrong (HTTP 4xx)
  kUnsupported,   // well-formed but outside what foley handles (HTTP 4xx)
  kNotFound,      // a named file, model or job does not exist (HTTP 404)
  kCancelled,     // the job was cancelled between steps
  kInternal,      // a bug or an environment failure (HTTP 500)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace foley
