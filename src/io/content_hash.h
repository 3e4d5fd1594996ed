// Content hashes of converted tensors: XXH64 (the xxHash 64-bit algorithm, seed 0, as specified
// in xxHash's doc/xxhash_spec.md), implemented here, streaming.
//
// A bundle network's content hash covers, for each of its tensors in file order: the name
// (prefix included), the dtype's safetensors spelling, the shape and the bytes, each field
// length-prefixed (little-endian u64), so that equal hashes mean equal tensor sets, not merely
// equal concatenated bytes:
//   u64 len(name) · name · u64 len(dtype) · dtype · u64 rank · u64 dims… · u64 nbytes · data
// The recorded form is "xxh64:" + 16 lower-case hex digits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace foley {

class SafetensorsFile;

class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t n);
  void update_u64(uint64_t v);  // 8 bytes, little-endian
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  uint64_t total_ = 0;
  uint8_t buffer_[32];
  size_t buffered_ = 0;
  uint64_t seed_;
};

// One-shot XXH64.
uint64_t xxh64(const void* data, size_t n, uint64_t seed = 0);

// Feeds one tensor's header fields (name, dtype, shape, byte count) to `h`, as described above;
// the caller then feeds its `nbytes` data bytes.
void hash_tensor_header(Xxh64& h, const std::string& name, DType dtype, const Shape& shape,
                        uint64_t nbytes);

// "xxh64:" + 16 hex digits.
std::string content_hash_string(uint64_t digest);

// The tensor group of a name: what precedes its first '.' (a bundle's network), or the whole name.
std::string hash_group_of(const std::string& tensor_name);

// Recomputes the content hash of the tensors of group `network` in a mapped safetensors file
// (reads all their bytes): what the writer recorded when the file was written intact.
std::string network_content_hash(const SafetensorsFile& file, const std::string& network);

}  // namespace foley
