// PyTorch checkpoints written by torch.save (the zip format: .pth, .bin), read without Python.
//
// The pickle is run by a restricted unpickler that knows only what state dicts use:
// collections.OrderedDict, torch._utils._rebuild_tensor_v2 (and _rebuild_parameter), the typed
// storages (torch.FloatStorage, torch.BFloat16Storage, ...), plain dicts, lists, tuples, strings,
// numbers, booleans and None. Any other global, opcode or construct is refused with an error:
// nothing in the file is ever executed. Tensor data stays in the mapped zip (entries are stored
// uncompressed by torch.save) and is exposed zero-copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace foley {

struct TorchTensorEntry {
  std::string name;  // state-dict key
  DType dtype;
  Shape shape;
  std::vector<int64_t> strides;  // in elements, as saved
  std::string storage_key;       // the zip member data/<key>
  int64_t storage_offset = 0;    // in elements
  uint64_t nbytes = 0;           // of the tensor's logical extent
};

class TorchCheckpoint {
 public:
  // Accepts a flat state dict or the {"state_dict": ..., "metadata": ...} layout (DAC's). Throws
  // Error(kInvalidInput) with a one-line reason for damaged or foreign files.
  static TorchCheckpoint open(const std::string& path);
  static TorchCheckpoint parse(const uint8_t* data, size_t size, std::shared_ptr<const void> keep,
                               const std::string& label);
  struct Options {
    // data.pkl's CRC-32 is checked by default: a flipped byte could otherwise still form a valid
    // pickle. The fuzzer turns it off so that mutations reach the unpickler.
    bool verify_pickle_crc = true;
  };
  static TorchCheckpoint parse(const uint8_t* data, size_t size, std::shared_ptr<const void> keep,
                               const std::string& label, const Options& options);

  const std::vector<TorchTensorEntry>& entries() const { return entries_; }  // in pickle order
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const TorchTensorEntry& entry(const std::string& name) const;
  // Zero-copy strided view into the mapped storage.
  Tensor tensor(const std::string& name) const;
  // Everything in the pickle that is not a tensor of the state dict, as JSON (e.g. DAC's
  // {"metadata": {"kwargs": {...}}}); tensors elsewhere are rendered as "<tensor>".
  const nlohmann::json& extra() const { return extra_; }

 private:
  std::shared_ptr<const void> keep_;
  std::string label_;
  std::map<std::string, std::pair<const uint8_t*, size_t>> storages_;  // key -> bytes
  std::vector<TorchTensorEntry> entries_;
  std::map<std::string, size_t> index_;
  nlohmann::json extra_;
};

}  // namespace foley
