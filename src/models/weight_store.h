// Read access to a foley weight bundle for model construction.
//
// The bundle is one aligned safetensors file written by `foley convert`: tensor names carry a
// network prefix ("dit.", "dac.", "siglip2.", "synchformer.", "clap."), layouts are already what
// the kernels want, and `__metadata__` holds "format" = "foley", "format_version" and "config"
// (a JSON object with one entry per network). Loading is a plain map: the store hands out
// zero-copy views and is strict — a tensor must exist with exactly the shape and dtype the model
// asks for, and after construction every tensor under the network's prefix must have been taken,
// so a file the code does not understand is refused instead of half-used.
//
// On a GPU the store holds a device copy of the data blob (one allocation, filled by the parallel
// loader in backend/device_upload.h) and get() hands out views of it with the same names, shapes
// and dtypes: models take their weights the same way on every backend.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "backend/device_upload.h"
#include "core/tensor.h"
#include "io/safetensors.h"

namespace foley {

// 2: the DiT single blocks' k=3 convolutions are [C_out, 3·C_in] (taps side by side) in every
// dtype; 1 stored 16/32-bit ones as [3, C_out, C_in]. A bundle of another version is refused
// with "re-run foley convert".
constexpr int kBundleFormatVersion = 2;

// A device copy of some of a bundle's tensors: bytes [begin, end) of the bundle's data blob are
// at `blob.data` (which owns or shares the allocation). One per network lets two bundles share
// the copy of a network they hold byte for byte (pipeline/model.cpp).
struct DeviceSegment {
  uint64_t begin = 0, end = 0;
  DeviceBlob blob;
};

class WeightStore {
 public:
  // Throws Error(kInvalidInput) if the file is not a foley bundle of a supported version.
  static std::shared_ptr<WeightStore> open(const std::string& path);
  // open() and then the whole data blob copied to CUDA device `device_index` (context creation
  // overlapped with the reads); get() returns device views. Throws kUnsupported without CUDA.
  static std::shared_ptr<WeightStore> open_on_cuda(const std::string& path, int device_index = 0,
                                                   const RingOptions& options = {},
                                                   UploadStats* stats = nullptr);

  // A second store over the same bundle (shared mapping and config, its own record of used
  // tensors) whose get() returns views of this bundle's blob copied to a CUDA device.
  std::shared_ptr<WeightStore> upload_to_cuda(int device_index = 0, const RingOptions& options = {},
                                              UploadStats* stats = nullptr) const;
  // The same with a device copy made elsewhere; it must hold exactly blob_bytes() bytes.
  std::shared_ptr<WeightStore> with_device_copy(DeviceBlob blob) const;
  // The same with the device copy in segments (all on one device); every tensor must lie
  // within one of them.
  std::shared_ptr<WeightStore> with_device_segments(std::vector<DeviceSegment> segments) const;
  // The networks (name prefixes before the first '.') the bundle holds tensors of.
  std::vector<std::string> tensor_networks() const;
  // [first byte, end) in the blob of the tensors under "network.".
  std::pair<uint64_t, uint64_t> network_range(const std::string& network) const;
  // Each tensor of the network with its name (prefix dropped), dtype, shape and offset from the
  // network's first byte: equal for two bundles that lay the network out the same way.
  std::string network_layout(const std::string& network) const;

  // Where get() hands out views: kCPU (the mapping) or the device copy's device.
  DeviceKind device() const {
    if (!segments_.empty()) return segments_.front().blob.device;
    return device_.defined() ? device_.device : DeviceKind::kCPU;
  }
  const DeviceBlob& device_copy() const { return device_; }
  // Size of the data blob: every tensor's bytes plus alignment gaps.
  uint64_t blob_bytes() const;
  const std::string& path() const { return path_; }

  // The config object of one network, e.g. config("dit"); throws if absent.
  const nlohmann::json& config(const std::string& network) const;
  bool has_network(const std::string& network) const;

  // The tensor `name` (full name, prefix included) with exactly this shape; dtype must be one
  // of `allowed` (empty: any float compute dtype).
  Tensor get(const std::string& name, const Shape& shape,
             std::initializer_list<DType> allowed = {}) const;
  // The same checks, but always the host (mapped) view, also on a device store: for tables a
  // model reads on the host (embedding lookups, tokenizer files).
  Tensor get_host(const std::string& name, const Shape& shape,
                  std::initializer_list<DType> allowed = {}) const;
  // Throws naming the first tensor under `prefix` that get() never handed out.
  void expect_all_used(const std::string& prefix) const;

  const SafetensorsFile& file() const { return file_; }

 private:
  WeightStore(SafetensorsFile file, std::string path)
      : file_(std::move(file)), path_(std::move(path)) {}
  SafetensorsFile file_;
  std::string path_;
  DeviceBlob device_;
  std::vector<DeviceSegment> segments_;  // instead of device_, when the copy is per network
  nlohmann::json config_;
  mutable std::set<std::string> used_;
};

}  // namespace foley
