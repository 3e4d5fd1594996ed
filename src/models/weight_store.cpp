#include "models/weight_store.h"

#include <algorithm>

#include "core/check.h"

namespace foley {

std::shared_ptr<WeightStore> WeightStore::open(const std::string& path) {
  SafetensorsFile file = SafetensorsFile::open(path);
  const auto& meta = file.metadata();
  auto field = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    if (it == meta.end())
      throw Error(ErrorKind::kInvalidInput,
                  path + ": not a foley weight bundle (no \"" + key +
                      "\" in its metadata); convert official checkpoints with `foley convert`");
    return it->second;
  };
  if (field("format") != "foley")
    throw Error(ErrorKind::kInvalidInput, path + ": not a foley weight bundle");
  const std::string& version = field("format_version");
  if (version != std::to_string(kBundleFormatVersion))
    throw Error(ErrorKind::kUnsupported,
                path + ": bundle format version " + version + ", this foley reads version " +
                    std::to_string(kBundleFormatVersion) + "; re-run `foley convert`");
  // Read before the file is moved into the store: `meta` refers to the file's own map.
  const std::string config = field("config");
  std::shared_ptr<WeightStore> store(new WeightStore(std::move(file), path));
  try {
    store->config_ = nlohmann::json::parse(config);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::kInvalidInput, path + ": bundle config is not valid JSON");
  }
  if (!store->config_.is_object())
    throw Error(ErrorKind::kInvalidInput, path + ": bundle config is not a JSON object");
  return store;
}

std::shared_ptr<WeightStore> WeightStore::open_on_cuda(const std::string& path, int device_index,
                                                       const RingOptions& options,
                                                       UploadStats* stats) {
  return open(path)->upload_to_cuda(device_index, options, stats);
}

uint64_t WeightStore::blob_bytes() const {
  uint64_t end = 0;
  for (const auto& e : file_.entries()) end = std::max(end, e.end);
  return end;
}

std::shared_ptr<WeightStore> WeightStore::upload_to_cuda(int device_index,
                                                         const RingOptions& options,
                                                         UploadStats* stats) const {
  return with_device_copy(upload_file_range_to_cuda(path_, file_.data_offset(), blob_bytes(),
                                                    device_index, options, stats));
}

std::shared_ptr<WeightStore> WeightStore::with_device_copy(DeviceBlob blob) const {
  FOLEY_CHECK(blob.defined() || blob_bytes() == 0, "device copy of %s is empty", path_.c_str());
  FOLEY_CHECK(blob.bytes == blob_bytes(), "device copy of %s has %zu bytes, the blob %llu",
              path_.c_str(), blob.bytes, static_cast<unsigned long long>(blob_bytes()));
  std::shared_ptr<WeightStore> store(new WeightStore(file_, path_));
  store->config_ = config_;
  store->device_ = std::move(blob);
  return store;
}

std::shared_ptr<WeightStore> WeightStore::with_device_segments(
    std::vector<DeviceSegment> segments) const {
  FOLEY_CHECK(!segments.empty(), "device copy of %s has no segments", path_.c_str());
  for (const auto& e : file_.entries()) {
    bool covered = false;
    for (const DeviceSegment& s : segments)
      covered = covered || (s.blob.defined() && s.begin <= e.begin && e.end <= s.end);
    FOLEY_CHECK(covered || e.begin == e.end, "device copy of %s does not hold tensor %s",
                path_.c_str(), e.name.c_str());
  }
  std::shared_ptr<WeightStore> store(new WeightStore(file_, path_));
  store->config_ = config_;
  store->segments_ = std::move(segments);
  return store;
}

std::vector<std::string> WeightStore::tensor_networks() const {
  std::set<std::string> names;
  for (const auto& e : file_.entries()) names.insert(e.name.substr(0, e.name.find('.')));
  return {names.begin(), names.end()};
}

std::pair<uint64_t, uint64_t> WeightStore::network_range(const std::string& network) const {
  const std::string prefix = network + ".";
  uint64_t lo = UINT64_MAX, hi = 0;
  for (const auto& e : file_.entries())
    if (e.name.compare(0, prefix.size(), prefix) == 0) {
      lo = std::min(lo, e.begin);
      hi = std::max(hi, e.end);
    }
  FOLEY_CHECK(hi > 0, "bundle %s has no tensors under %s", path_.c_str(), prefix.c_str());
  return {lo, hi};
}

std::string WeightStore::network_layout(const std::string& network) const {
  const uint64_t lo = network_range(network).first;
  const std::string prefix = network + ".";
  std::string out;
  for (const auto& e : file_.entries())
    if (e.name.compare(0, prefix.size(), prefix) == 0)
      out += e.name.substr(prefix.size()) + ":" + dtype_name(e.dtype) + ":" + e.shape.str() + "@" +
             std::to_string(e.begin - lo) + ";";
  return out;
}

bool WeightStore::has_network(const std::string& network) const {
  return config_.contains(network);
}

const nlohmann::json& WeightStore::config(const std::string& network) const {
  if (!config_.contains(network))
    throw Error(ErrorKind::kInvalidInput, "weight bundle has no \"" + network +
                                              "\" network; convert it with `foley convert`");
  return config_.at(network);
}

Tensor WeightStore::get(const std::string& name, const Shape& shape,
                        std::initializer_list<DType> allowed) const {
  const Tensor host = get_host(name, shape, allowed);
  const SafetensorsEntry& e = file_.entry(name);
  for (const DeviceSegment& s : segments_)
    if (s.begin <= e.begin && e.end <= s.end)
      return Tensor(s.blob.data + (e.begin - s.begin), e.dtype, e.shape, s.blob.device,
                    s.blob.memory);
  if (!device_.defined()) return host;
  return Tensor(device_.data + e.begin, e.dtype, e.shape, device_.device, device_.memory);
}

Tensor WeightStore::get_host(const std::string& name, const Shape& shape,
                             std::initializer_list<DType> allowed) const {
  if (!file_.has(name))
    throw Error(ErrorKind::kInvalidInput, "weight bundle is missing tensor " + name);
  const SafetensorsEntry& e = file_.entry(name);
  if (e.shape != shape)
    throw Error(ErrorKind::kInvalidInput, "weight bundle tensor " + name + " has shape " +
                                              e.shape.str() + ", expected " + shape.str());
  bool ok = false;
  if (allowed.size() == 0) {
    ok = is_float_compute(e.dtype);
  } else {
    for (DType d : allowed) ok = ok || d == e.dtype;
  }
  if (!ok)
    throw Error(ErrorKind::kInvalidInput,
                "weight bundle tensor " + name + " has unexpected dtype " + dtype_name(e.dtype));
  used_.insert(name);
  return file_.tensor(name);
}

void WeightStore::expect_all_used(const std::string& prefix) const {
  for (const auto& e : file_.entries()) {
    if (e.name.compare(0, prefix.size(), prefix) == 0 && !used_.count(e.name))
      throw Error(ErrorKind::kInvalidInput,
                  "weight bundle tensor " + e.name + " is not used by this version of foley");
  }
}

}  // namespace foley
