// Bundle summaries for `foley inspect` and `foley models`: variant, networks, parameters and
// content hashes, read from the header of a bundle written by `foley convert`.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "foley/error.h"
#include "foley/weights.h"
#include "io/content_hash.h"
#include "io/safetensors.h"
#include "models/weight_store.h"

namespace foley {
namespace {

namespace fs = std::filesystem;

bool is_parameter_dtype(DType d) {
  return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16;
}

int64_t int_field(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

BundleInfo info_of(const SafetensorsFile& file, const std::string& path) {
  const auto& meta = file.metadata();
  auto field = [&](const char* key) -> const std::string& {
    const auto it = meta.find(key);
    if (it == meta.end())
      throw Error(ErrorKind::kInvalidInput,
                  path + ": not a foley bundle (no \"" + key + "\" in its metadata)");
    return it->second;
  };
  auto optional = [&](const char* key) {
    const auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  if (field("format") != "foley")
    throw Error(ErrorKind::kInvalidInput,
                path + ": not a foley bundle (format \"" + meta.at("format") + "\")");
  BundleInfo info;
  info.format_version = field("format_version");
  info.supported_version = info.format_version == std::to_string(kBundleFormatVersion);
  info.converter = optional("converter");
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(field("config"));
  } catch (const nlohmann::json::exception&) {
    throw Error(ErrorKind::kInvalidInput, path + ": bundle config is not valid JSON");
  }
  if (!config.is_object())
    throw Error(ErrorKind::kInvalidInput, path + ": bundle config is not a JSON object");

  // Networks in file order (the config object is sorted by name), then any without tensors.
  std::set<std::string> seen;
  for (const auto& e : file.entries()) {
    const std::string net = hash_group_of(e.name);
    if (config.contains(net) && seen.insert(net).second) info.networks.push_back(net);
    if (is_parameter_dtype(e.dtype)) {
      uint64_t n = 1;
      for (int64_t d : e.shape) n *= static_cast<uint64_t>(d);
      info.parameters[net] += n;
      info.total_parameters += n;
    }
  }
  for (const auto& [net, c] : config.items())
    if (seen.insert(net).second) info.networks.push_back(net);

  info.has_dit = config.contains("dit");
  if (info.has_dit) {
    const nlohmann::json& d = config["dit"];
    info.dit.hidden = int_field(d, "hidden_size");
    info.dit.heads = int_field(d, "num_heads");
    info.dit.depth_double = int_field(d, "depth_triple_blocks");
    info.dit.depth_single = int_field(d, "depth_single_blocks");
    info.dit.dtype = optional("dit_dtype");
    info.variant = optional("variant");
    if (info.variant.empty()) info.variant = "unknown";
  }
  const std::string hashes = optional("content_hashes");
  if (!hashes.empty()) {
    nlohmann::json h;
    try {
      h = nlohmann::json::parse(hashes);
    } catch (const nlohmann::json::exception&) {
      throw Error(ErrorKind::kInvalidInput, path + ": content_hashes is not valid JSON");
    }
    if (!h.is_object())
      throw Error(ErrorKind::kInvalidInput, path + ": content_hashes is not a JSON object");
    for (const auto& [net, v] : h.items())
      if (v.is_string()) info.content_hashes[net] = v.get<std::string>();
  }
  return info;
}

}  // namespace

BundleInfo inspect_bundle(const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  BundleInfo info = info_of(file, path);
  std::error_code ec;
  info.file_bytes = fs::file_size(path, ec);
  return info;
}

std::vector<std::string> verify_bundle_hashes(const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const BundleInfo info = info_of(file, path);
  std::vector<std::string> differing;
  for (const auto& [net, recorded] : info.content_hashes)
    if (network_content_hash(file, net) != recorded) differing.push_back(net);
  return differing;
}

std::vector<BundleEntry> list_bundles(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(ErrorKind::kNotFound, "not a directory: " + dir);
  std::vector<BundleEntry> out;
  fs::directory_iterator it(dir, ec);
  if (ec) throw Error(ErrorKind::kInvalidInput, dir + ": cannot list: " + ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) throw Error(ErrorKind::kInvalidInput, dir + ": cannot list: " + ec.message());
    const fs::path p = it->path();
    if (p.extension() != ".safetensors") continue;
    std::error_code fec;
    if (!fs::is_regular_file(p, fec)) continue;  // folders, sockets; links to files are followed
    BundleEntry e;
    e.name = p.filename().string();
    e.path = p.string();
    e.file_bytes = fs::file_size(p, fec);
    try {
      e.info = inspect_bundle(e.path);
    } catch (const Error& err) {
      e.error = err.what();
      // The reason without the path it starts with: the entry carries the path.
      if (e.error.rfind(e.path + ": ", 0) == 0) e.error = e.error.substr(e.path.size() + 2);
    } catch (const std::exception& err) {
      e.error = err.what();
    }
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(),
            [](const BundleEntry& a, const BundleEntry& b) { return a.name < b.name; });
  return out;
}

}  // namespace foley
