#include "core/check.h"

namespace foley {

void throw_check_failure(const char* file, int line, const std::string& message) {
  const char* base = file;
  for (const char* p = file; *p; ++p)
    if (*p == '/') base = p + 1;
  throw Error(ErrorKind::kInternal, message + " (" + base + ":" + std::to_string(line) + ")");
}

}  // namespace foley
