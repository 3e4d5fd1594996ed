// Little helpers for parsing untrusted binary formats: unaligned little-endian loads and
// overflow-checked arithmetic. Every size read from a file goes through these before it is used
// to index memory, so a hostile file cannot wrap an offset around.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace foley::io {

inline uint16_t load_le16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline uint32_t load_le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t load_le64(const uint8_t* p) {
  return static_cast<uint64_t>(load_le32(p)) | (static_cast<uint64_t>(load_le32(p + 4)) << 32);
}
inline void store_le64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// a + b and a * b, false on overflow (the result is then unspecified).
inline bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_add_overflow(a, b, out);
}
inline bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

// True if [offset, offset + length) lies inside a buffer of `size` bytes, without overflow.
inline bool range_ok(uint64_t offset, uint64_t length, uint64_t size) {
  return offset <= size && length <= size - offset;
}

// A name from a file made safe for a one-line error message: control and non-ASCII bytes become
// '?', and long names are cut, so a hostile name cannot forge extra lines in a log.
inline std::string printable(std::string_view s, size_t max_length = 120) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_length; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (s.size() > max_length) out += "...";
  return out;
}

}  // namespace foley::io
