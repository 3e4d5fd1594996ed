// Model::load (open the bundle, require all five networks, summarise it) and the request
// parameter checks.
#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include "core/check.h"
#include "pipeline/pipeline.h"

namespace foley {
namespace pipeline {
namespace {

// The official DiT widths are 1536 (XL) and 2048 (XXL); `scripts/make_tiny_models.py` and the
// golden cases write much narrower ones, whose output is noise.
constexpr int64_t kSmallestOfficialHidden = 1536;

ModelInfo summarise(const std::string& path, const WeightStore& store) {
  ModelInfo info;
  info.bundle_path = path;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  info.bundle_bytes = ec ? 0 : static_cast<int64_t>(size);
  for (const auto& e : store.file().entries()) {
    // The CLAP tokenizer's vocab/merges are stored as U8 tensors: bytes, not parameters.
    if (e.name.rfind("clap.tokenizer.", 0) == 0) continue;
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    info.parameters += n;
  }
  const MmditConfig dit = MmditConfig::from_json(store.config("dit"));
  info.dit_summary = "MMDiT hidden " + std::to_string(dit.hidden) + ", " +
                     std::to_string(dit.depth_triple) + "+" + std::to_string(dit.depth_single) +
                     " blocks";
  const auto& meta = store.file().metadata();
  const auto tiny = meta.find("tiny");
  info.is_tiny = dit.hidden < kSmallestOfficialHidden ||
                 (tiny != meta.end() && (tiny->second == "true" || tiny->second == "1"));
  return info;
}

}  // namespace

namespace {

// Device copies of networks, shared by every Model in the process that holds the same network
// byte for byte (same content hash, same config, same layout: e.g. the encoders and DAC of the
// XL and XXL bundles). Weak: a copy is freed with the last store that uses it.
struct SharedNetworkCopies {
  struct Copy {
    std::weak_ptr<void> memory;
    uint8_t* data = nullptr;  // device address of the network's first byte
    size_t bytes = 0;
  };
  std::mutex mutex;
  std::map<std::string, Copy> copies;
};
SharedNetworkCopies& shared_copies() {
  static SharedNetworkCopies* c = new SharedNetworkCopies();  // outlives every Model
  return *c;
}

// What makes two bundles' copies of `network` interchangeable. Without a recorded content hash
// (bundles from before hashes were written) the copy is shared only within the same file.
std::string network_key(const WeightStore& store, const std::string& network, int device_index) {
  std::string hash = "file:" + store.path();
  const auto& meta = store.file().metadata();
  if (const auto it = meta.find("content_hashes"); it != meta.end()) {
    const nlohmann::json hashes = nlohmann::json::parse(it->second, nullptr, false);
    if (hashes.is_object() && hashes.contains(network) && hashes.at(network).is_string())
      hash = hashes.at(network).get<std::string>();
  }
  const std::string config = store.has_network(network) ? store.config(network).dump() : "";
  return std::to_string(device_index) + "|" + network + "|" + hash + "|" + config + "|" +
         store.network_layout(network);
}

}  // namespace

std::shared_ptr<const WeightStore> ModelImpl::weights_for(const Backend& backend,
                                                          int device_index) const {
  if (backend.device() == DeviceKind::kCPU) return store_;
  std::lock_guard<std::mutex> lock(device_stores_mutex_);
  std::weak_ptr<const WeightStore>& cached = device_stores_[device_index];
  std::shared_ptr<const WeightStore> dev = cached.lock();
  if (dev) return dev;
  // One device copy per network, each shared with any other loaded bundle holding the same
  // network; the rest is read from this file at the loader's speed.
  std::vector<DeviceSegment> segments;
  SharedNetworkCopies& shared = shared_copies();
  std::lock_guard<std::mutex> shared_lock(shared.mutex);
  for (const std::string& network : store_->tensor_networks()) {
    const auto [lo, hi] = store_->network_range(network);
    const std::string key = network_key(*store_, network, device_index);
    DeviceSegment seg;
    seg.begin = lo;
    seg.end = hi;
    SharedNetworkCopies::Copy& copy = shared.copies[key];
    if (std::shared_ptr<void> memory = copy.memory.lock(); memory && copy.bytes == hi - lo) {
      seg.blob.memory = std::move(memory);
      seg.blob.data = copy.data;
      seg.blob.bytes = copy.bytes;
      seg.blob.device_index = device_index;
    } else {
      // File offsets of uploads are 4 KiB aligned (O_DIRECT); the blob starts at such a boundary.
      const uint64_t aligned = lo / 4096 * 4096;
      DeviceBlob blob = upload_file_range_to_cuda(
          store_->path(), store_->file().data_offset() + aligned, hi - aligned, device_index);
      seg.blob = blob;
      seg.blob.data = blob.data + (lo - aligned);
      seg.blob.bytes = hi - lo;
      copy = {blob.memory, seg.blob.data, hi - lo};
    }
    segments.push_back(std::move(seg));
  }
  for (auto it = shared.copies.begin(); it != shared.copies.end();)
    it = it->second.memory.expired() ? shared.copies.erase(it) : std::next(it);
  dev = store_->with_device_segments(std::move(segments));
  cached = dev;
  return dev;
}

bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    int extra;
    uint32_t cp, min;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(extra) >= n) return false;
    for (int k = 1; k <= extra; ++k) {
      const unsigned cc = p[i + static_cast<size_t>(k)];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += static_cast<size_t>(extra) + 1;
  }
  return true;
}

void validate_params(const GenerationParams& p, double generator_max_seconds) {
  auto bad = [](const std::string& message) { throw Error(ErrorKind::kInvalidInput, message); };
  if (p.steps < 1 || p.steps > 200) bad("steps must be in 1..200, got " + std::to_string(p.steps));
  if (!std::isfinite(p.guidance) || p.guidance < 0.0f || p.guidance > 30.0f)
    bad("guidance must be a finite number in 0..30 (<= 1 disables CFG), got " +
        std::to_string(p.guidance));
  constexpr size_t kMaxPromptBytes = 4096;
  for (const auto& [field, text] : {std::pair<const char*, const std::string*>{"prompt", &p.prompt},
                                    {"negative_prompt", &p.negative_prompt}}) {
    if (text->size() > kMaxPromptBytes)
      bad(std::string(field) + " is longer than 4096 bytes (" + std::to_string(text->size()) + ")");
    if (!valid_utf8(*text)) bad(std::string(field) + " is not valid UTF-8");
  }
  if (p.max_clip_seconds != 0 && (!std::isfinite(p.max_clip_seconds) || p.max_clip_seconds < 0 ||
                                  p.max_clip_seconds > generator_max_seconds))
    bad("max_clip_seconds must be 0 (the whole clip) or in (0, " +
        std::to_string(generator_max_seconds) + "], got " + std::to_string(p.max_clip_seconds));
}

}  // namespace pipeline

std::shared_ptr<const Model> Model::load(const ModelOptions& options) {
  if (options.bundle_path.empty())
    throw Error(ErrorKind::kInvalidInput, "model: no bundle path given");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(options.bundle_path, ec))
    throw Error(ErrorKind::kNotFound, "model bundle not found: " + options.bundle_path);
  std::shared_ptr<WeightStore> store = WeightStore::open(options.bundle_path);
  for (const char* network : pipeline::kNetworks)
    if (!store->has_network(network))
      throw Error(ErrorKind::kInvalidInput,
                  options.bundle_path + ": the bundle has no \"" + network +
                      "\" network; generation needs all five (dit, dac, clap, siglip2, "
                      "synchformer): convert with --model-dir pointing at the full model folder");
  ModelInfo info = pipeline::summarise(options.bundle_path, *store);
  return std::make_shared<pipeline::ModelImpl>(std::move(store), std::move(info));
}

}  // namespace foley
