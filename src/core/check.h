// Internal invariant checks. A failed check throws foley::Error(kInternal) with file and line:
// a bug fails the job that hit it, never the process.
#pragma once

#include <cstdio>
#include <string>

#include "foley/error.h"

namespace foley {

[[noreturn]] void throw_check_failure(const char* file, int line, const std::string& message);

template <typename... Args>
std::string format_message(const char* fmt, Args... args) {
  if constexpr (sizeof...(Args) == 0) {
    return fmt;
  } else {
    char buf[512];
    std::snprintf(buf, sizeof buf, fmt, args...);
    return buf;
  }
}

// Builds an Error of the given kind from a printf-style message.
template <typename... Args>
Error make_error(ErrorKind kind, const char* fmt, Args... args) {
  return Error(kind, format_message(fmt, args...));
}

}  // namespace foley

#define FOLEY_CHECK(cond, ...)                                                          \
  do {                                                                                  \
    if (!(cond)) ::foley::throw_check_failure(__FILE__, __LINE__, ::foley::format_message(__VA_ARGS__)); \
  } while (0)
