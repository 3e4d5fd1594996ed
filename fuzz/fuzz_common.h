// Shared by the fuzz targets: what a parser may do with hostile bytes is throw one thing,
// foley::Error(kInvalidInput) with a one-line message. Anything else is a finding.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "foley/error.h"

namespace foley::fuzz {

inline void expect_clean_failure(const std::function<void()>& parse) {
  try {
    parse();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kInvalidInput || std::strchr(e.what(), '\n') != nullptr) abort();
  }
}

// Reads one byte at each end of [p, p + n): ASan reports it if a view escapes the input.
inline uint32_t touch(const void* p, size_t n) {
  if (n == 0) return 0;
  const auto* b = static_cast<const volatile uint8_t*>(p);
  return b[0] + b[n - 1];
}

}  // namespace foley::fuzz
