// Read access to a foley weight bundle for model construction.
//
// The bundle is one aligned safetensors file written by `foley convert`: tensor names carry a
// network prefix ("dit.", "dac.", "siglip2.", "synchformer.", "clap."), layouts are already what
// the kernels want, and `__metadata__` holds "format" = "foley", "format_version" and "config"
// (a JSON object with one entry per network). Loading is a plain map: the store hands out
// zero-copy views and is strict — a tensor must exist with exactly the shape and dtype the model
// asks for, and after construction every tensor under the network's prefix must have been taken,
// so a file the code does not understand is refused instead of half-used.
#pragma once

#include <memory>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "core/tensor.h"
#include "io/safetensors.h"

namespace foley {

constexpr int kBundleFormatVersion = 1;

class WeightStore {
 public:
  // Throws Error(kInvalidInput) if the file is not a foley bundle of a supported version.
  static std::shared_ptr<WeightStore> open(const std::string& path);

  // The config object of one network, e.g. config("dit"); throws if absent.
  const nlohmann::json& config(const std::string& network) const;
  bool has_network(const std::string& network) const;

  // The tensor `name` (full name, prefix included) with exactly this shape; dtype must be one
  // of `allowed` (empty: any float compute dtype).
  Tensor get(const std::string& name, const Shape& shape,
             std::initializer_list<DType> allowed = {}) const;
  // Throws naming the first tensor under `prefix` that get() never handed out.
  void expect_all_used(const std::string& prefix) const;

  const SafetensorsFile& file() const { return file_; }

 private:
  explicit WeightStore(SafetensorsFile file) : file_(std::move(file)) {}
  SafetensorsFile file_;
  nlohmann::json config_;
  mutable std::set<std::string> used_;
};

}  // namespace foley
