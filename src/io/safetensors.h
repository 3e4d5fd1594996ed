// safetensors: reading (zero-copy over mmap, strictly validated) and writing (aligned).
//
// Foley's own weight file is a safetensors file whose data blob starts on a 4 KiB boundary and
// whose tensors each start on a 256-byte boundary, with the format name, format version and
// model config in __metadata__ (all values are strings, as the format requires). Any reader that
// follows the data_offsets can open it (the Python check in tests/python does); note that the
// reference Rust/Python `safetensors` package rejects the alignment gaps between tensors
// ("InvalidOffset"), so it cannot load foley's files. foley's loader additionally checks the
// format version.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace foley {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin;  // byte offsets into the data blob, as in the header
  uint64_t end;
};

class SafetensorsFile {
 public:
  // Validates: header length within the file (and at most 100 MB), JSON syntax, no repeated
  // keys, known dtypes, shape·size == extent, offsets in bounds, no overlaps, __metadata__ a
  // string map, and the file ending exactly where the last tensor does. Gaps between tensors are
  // accepted because foley's own files align every tensor. Throws Error(kInvalidInput,
  // "<path>: <one-line reason>").
  static SafetensorsFile open(const std::string& path);
  // Same checks on an in-memory image (used by the fuzzer); `keep` owns the bytes.
  static SafetensorsFile parse(const uint8_t* data, size_t size, std::shared_ptr<const void> keep,
                               const std::string& label);

  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  // A zero-copy view of the tensor's bytes; the mapping stays alive while the tensor does.
  Tensor tensor(const std::string& name) const;
  size_t data_offset() const { return data_offset_; }  // where the blob starts in the file

 private:
  std::shared_ptr<const void> keep_;
  std::string label_;
  const uint8_t* blob_ = nullptr;
  size_t data_offset_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  static constexpr size_t kBlobAlignment = 4096;
  static constexpr size_t kTensorAlignment = 256;

  void set_metadata(const std::string& key, const std::string& value);
  // `fill` writes exactly shape.numel()·dtype_size(dtype) bytes to dst when the file is written,
  // so a converter can stream a 10 GB model without holding it in memory.
  void add(const std::string& name, DType dtype, const Shape& shape,
           std::function<void(void* dst)> fill);
  // Convenience: copies a contiguous host tensor.
  void add(const std::string& name, const Tensor& host_tensor);
  // Also records, under metadata key `key`, a JSON object {group: "xxh64:<16 hex>"}: one content
  // hash (io/content_hash.h) per group of tensors, a group being the names up to their first '.'
  // (a bundle's network). The bytes are hashed as write() streams them out, so it costs no second
  // pass; the header is written last, once the hashes are known.
  void record_group_hashes(const std::string& key) { hash_key_ = key; }
  // Writes to path + ".tmp", fsyncs and renames: readers never see a partial file.
  void write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    DType dtype;
    Shape shape;
    std::function<void(void*)> fill;
  };
  std::vector<Pending> tensors_;
  std::set<std::string> names_;
  std::map<std::string, std::string> metadata_;
  std::string hash_key_;  // "": no content hashes
};

}  // namespace foley
