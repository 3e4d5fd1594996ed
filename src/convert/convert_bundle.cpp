// Official checkpoints -> one foley bundle: runs each network's converter and writes the file.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "convert/convert.h"
#include "core/check.h"
#include "foley/foley.h"
#include "models/weight_store.h"

namespace foley {
namespace {

std::string base_name(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

// A source that converts one torch.save checkpoint with `fn`.
BundleSource torch_source(
    const std::string& network, const std::string& path, std::vector<std::string> files,
    std::function<nlohmann::json(const TorchCheckpoint&, SafetensorsWriter&)> fn) {
  BundleSource s;
  s.network = network;
  s.files = std::move(files);
  s.convert = [path, fn](SafetensorsWriter& out,
                         std::vector<std::shared_ptr<const void>>& keep_alive) {
    // The checkpoint object itself (not only its mapping) is kept: a converter's fills may read
    // through it.
    auto ckpt = std::make_shared<const TorchCheckpoint>(TorchCheckpoint::open(path));
    keep_alive.push_back(ckpt);
    return fn(*ckpt, out);
  };
  return s;
}

// True when `path` starts like a safetensors file (an 8-byte header length, then '{'), false for
// anything else (a torch.save zip starts with "PK"; unreadable files go to the torch reader, whose
// error names the file).
bool looks_like_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[9] = {};
  return in.read(head, sizeof head) && head[8] == '{' && !(head[0] == 'P' && head[1] == 'K');
}

}  // namespace

std::vector<BundleSource> official_sources(const OfficialFiles& files,
                                           const ConvertOptions& options) {
  std::vector<BundleSource> sources;
  if (!files.dit_checkpoint.empty()) {
    std::vector<std::string> names = {base_name(files.dit_checkpoint)};
    if (!files.dit_config.empty()) names.push_back(base_name(files.dit_config));
    const std::string config = files.dit_config;
    if (looks_like_safetensors(files.dit_checkpoint)) {
      // A community conversion (e.g. hunyuanvideo_foley_fp8_e4m3fn.safetensors): same keys.
      BundleSource s;
      s.network = "dit";
      s.files = names;
      const std::string path = files.dit_checkpoint;
      s.convert = [path, config, options](SafetensorsWriter& out,
                                          std::vector<std::shared_ptr<const void>>& keep_alive) {
        auto file = std::make_shared<const SafetensorsFile>(SafetensorsFile::open(path));
        keep_alive.push_back(file);
        return convert_dit(*file, config, options, out);
      };
      sources.push_back(std::move(s));
    } else {
      sources.push_back(
          torch_source("dit", files.dit_checkpoint, names,
                       [config, options](const TorchCheckpoint& ckpt, SafetensorsWriter& out) {
                         return convert_dit(ckpt, config, options, out);
                       }));
    }
  }
  if (!files.dac_checkpoint.empty()) {
    sources.push_back(torch_source("dac", files.dac_checkpoint, {base_name(files.dac_checkpoint)},
                                   [options](const TorchCheckpoint& ckpt, SafetensorsWriter& out) {
                                     return convert_dac(ckpt, options, out);
                                   }));
  }
  if (!files.clap_dir.empty()) {
    const std::string dir = files.clap_dir;
    // model.safetensors when the folder has it, else pytorch_model.bin (clap_weights_file); with
    // neither, the .bin path is named in the "cannot open" error.
    std::string weights = clap_weights_file(dir);
    if (weights.empty()) weights = (std::filesystem::path(dir) / "pytorch_model.bin").string();
    const std::vector<std::string> names = {"clap/" + base_name(weights), "clap/config.json",
                                            "clap/vocab.json", "clap/merges.txt"};
    if (base_name(weights) == "model.safetensors") {
      BundleSource s;
      s.network = "clap";
      s.files = names;
      s.convert = [dir, weights](SafetensorsWriter& out,
                                 std::vector<std::shared_ptr<const void>>& keep_alive) {
        auto file = std::make_shared<const SafetensorsFile>(SafetensorsFile::open(weights));
        keep_alive.push_back(file);
        return convert_clap(*file, dir, out);
      };
      sources.push_back(std::move(s));
    } else {
      sources.push_back(torch_source("clap", weights, names,
                                     [dir](const TorchCheckpoint& ckpt, SafetensorsWriter& out) {
                                       return convert_clap(ckpt, dir, out);
                                     }));
    }
  }
  if (!files.siglip2_dir.empty()) {
    BundleSource s;
    s.network = "siglip2";
    s.files = {"siglip2/model.safetensors", "siglip2/config.json"};
    const std::string dir = files.siglip2_dir;
    s.convert = [dir](SafetensorsWriter& out,
                      std::vector<std::shared_ptr<const void>>& keep_alive) {
      const std::string json_path = (std::filesystem::path(dir) / "config.json").string();
      std::ifstream in(json_path);
      if (!in) throw Error(ErrorKind::kNotFound, "SigLIP2 config not found: " + json_path);
      nlohmann::json config;
      try {
        config = nlohmann::json::parse(in);
      } catch (const nlohmann::json::exception& e) {
        throw Error(ErrorKind::kInvalidInput, json_path + ": " + e.what());
      }
      auto weights = std::make_shared<const SafetensorsFile>(
          SafetensorsFile::open((std::filesystem::path(dir) / "model.safetensors").string()));
      keep_alive.push_back(weights);
      return convert_siglip2(*weights, config, out);
    };
    sources.push_back(std::move(s));
  }
  if (!files.synchformer_checkpoint.empty()) {
    sources.push_back(torch_source("synchformer", files.synchformer_checkpoint,
                                   {base_name(files.synchformer_checkpoint)},
                                   [options](const TorchCheckpoint& ckpt, SafetensorsWriter& out) {
                                     return convert_synchformer(ckpt, options, out);
                                   }));
  }
  return sources;
}

BundleResult write_bundle(const std::vector<BundleSource>& sources, const ConvertOptions& options,
                          const std::string& output_path, bool skip_failed) {
  if (sources.empty())
    throw Error(ErrorKind::kInvalidInput, "nothing to convert: no source checkpoint given");
  std::set<std::string> seen;
  for (const auto& s : sources)
    FOLEY_CHECK(seen.insert(s.network).second, "network %s given twice", s.network.c_str());

  SafetensorsWriter writer;
  std::vector<std::shared_ptr<const void>> keep_alive;
  nlohmann::json config = nlohmann::json::object();
  nlohmann::json source_files = nlohmann::json::object();
  BundleResult result;
  for (const auto& s : sources) {
    try {
      if (skip_failed) {
        // A converter queues tensors as it goes, so a failure half-way would leave a partial
        // network in the writer: dry-run it on a scratch writer first (fills are deferred, so
        // this only costs the key and shape checks).
        SafetensorsWriter scratch;
        std::vector<std::shared_ptr<const void>> scratch_keep;
        s.convert(scratch, scratch_keep);
      }
      config[s.network] = s.convert(writer, keep_alive);
    } catch (const Error& e) {
      const std::string msg = "converting " + s.network + " (" +
                              (s.files.empty() ? std::string("?") : s.files[0]) + "): " + e.what();
      if (!skip_failed) throw Error(e.kind(), msg);
      result.failed[s.network] = msg;
      continue;
    }
    source_files[s.network] = s.files;
    result.networks.push_back(s.network);
  }
  if (result.networks.empty()) {
    std::string msg = "no network could be converted";
    for (const auto& [net, err] : result.failed) msg += "; " + err;
    throw Error(ErrorKind::kInvalidInput, msg);
  }

  writer.set_metadata("format", "foley");
  writer.set_metadata("format_version", std::to_string(kBundleFormatVersion));
  writer.set_metadata("config", config.dump());
  writer.set_metadata("converter", std::string("foley ") + version());
  writer.set_metadata("sources", source_files.dump());
  if (config.contains("dit")) {
    writer.set_metadata("dit_dtype", options.dit_quant ? quant_format_name(*options.dit_quant)
                                                       : dtype_name(options.dit_dtype));
    writer.set_metadata("variant", dit_variant(config["dit"]));
  }
  writer.record_group_hashes("content_hashes");
  writer.write(output_path);
  return result;
}

void convert_bundle(const OfficialFiles& files, const ConvertOptions& options,
                    const std::string& output_path) {
  write_bundle(official_sources(files, options), options, output_path);
}

void throw_if_key_problems(const std::vector<std::string>& problems, const std::string& heading) {
  if (problems.empty()) return;
  std::string msg = heading + ": ";
  const size_t shown = std::min<size_t>(problems.size(), 8);
  for (size_t i = 0; i < shown; ++i) msg += (i ? "; " : "") + problems[i];
  if (problems.size() > shown) msg += "; and " + std::to_string(problems.size() - shown) + " more";
  throw Error(ErrorKind::kInvalidInput, msg);
}

}  // namespace foley
