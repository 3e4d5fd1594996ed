// The public conversion API: resolves an official model directory into file paths and hands them
// to the bundle converter.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "convert/convert.h"
#include "foley/convert.h"
#include "foley/error.h"

namespace foley {
namespace {

namespace fs = std::filesystem;

std::string existing(const std::string& path, const char* what) {
  if (!fs::is_regular_file(path))
    throw Error(ErrorKind::kNotFound, std::string(what) + " not found: " + path);
  return path;
}

constexpr const char* kXxlCheckpoint = "hunyuanvideo_foley.pth";
constexpr const char* kXlCheckpoint = "hunyuanvideo_foley_xl.pth";
constexpr const char* kXlConfig = "hunyuanvideo-foley-xl.yaml";

// DiT file names. The official ones are the two .pth files; community conversions (phazei's
// hunyuanvideo_foley.safetensors, hunyuanvideo_foley_fp8_e4m3fn.safetensors,
// hunyuanvideo_foley_xl_fp8_e4m3fn.safetensors, ...) are taken as any
// hunyuanvideo_foley*.safetensors, the XL's being those whose name goes on with "_xl" followed by
// '_', '-', '.' or nothing (the rule the .pth names follow too).
constexpr const char* kDitPrefix = "hunyuanvideo_foley";
constexpr const char* kSafetensors = ".safetensors";

bool is_xl_dit_name(const std::string& name) {
  const std::string xl = std::string(kDitPrefix) + "_xl";
  if (name.rfind(xl, 0) != 0) return false;
  return name.size() == xl.size() || std::string("_-.").find(name[xl.size()]) != std::string::npos;
}

bool is_foley_bundle(const fs::path& p) {
  try {
    const SafetensorsFile file = SafetensorsFile::open(p.string());
    const auto& meta = file.metadata();
    const auto it = meta.find("format");
    return it != meta.end() && it->second == "foley";
  } catch (const Error&) {
    return false;  // not readable as safetensors: left to the converter, which says why
  }
}

// The DiT files of a model directory by size, file names sorted: the official .pth and every
// hunyuanvideo_foley*.safetensors that is not a foley bundle (a bundle written into the folder).
struct DitFiles {
  std::vector<std::string> xxl, xl;
};
DitFiles find_dits(const std::string& dir) {
  DitFiles found;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file()) continue;
    const bool pth = name == kXxlCheckpoint || name == kXlCheckpoint;
    const bool st =
        name.rfind(kDitPrefix, 0) == 0 && name.size() > std::strlen(kSafetensors) &&
        name.compare(name.size() - std::strlen(kSafetensors), std::string::npos, kSafetensors) == 0;
    if (pth || (st && !is_foley_bundle(entry.path()))) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) (is_xl_dit_name(n) ? found.xl : found.xxl).push_back(n);
  return found;
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) s += (i == 0 ? "" : ", ") + names[i];
  return s;
}

// The first of `names` that exists in `dir`, or "".
std::string find_in(const std::string& dir, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    const fs::path p = fs::path(dir) / n;
    if (fs::is_regular_file(p)) return p.string();
  }
  return "";
}

}  // namespace

ConvertSummary convert_model(const ConvertRequest& request) {
  if (request.output.empty()) throw Error(ErrorKind::kInvalidInput, "no output path given");
  if (!request.model_size.empty() && request.model_size != "xxl" && request.model_size != "xl")
    throw Error(ErrorKind::kInvalidInput,
                "model size must be \"xxl\" or \"xl\" (or none: the "
                "DiT the directory holds), got \"" +
                    request.model_size + "\"");
  ConvertOptions options;
  if (request.dtype == "bf16") {
    options.dit_dtype = DType::kBF16;
  } else if (request.dtype == "f32") {
    options.dit_dtype = DType::kF32;
  } else if (request.dtype == "fp8" || request.dtype == "int8") {
    options.dit_dtype = DType::kBF16;  // the matrices outside the blocks
    options.dit_quant = request.dtype == "fp8" ? QuantFormat::kE4M3 : QuantFormat::kI8;
  } else {
    throw Error(
        ErrorKind::kInvalidInput,
        "dtype must be \"bf16\", \"f32\", \"fp8\" or \"int8\", got \"" + request.dtype + "\"");
  }
  if (request.synchformer_heads < 0)
    throw Error(ErrorKind::kInvalidInput,
                "synchformer heads must be >= 0 (0: guess from the width), got " +
                    std::to_string(request.synchformer_heads));
  options.synchformer_heads = request.synchformer_heads;
  if (request.synchformer_dtype == "f32") {
    options.synchformer_dtype = DType::kF32;
  } else if (request.synchformer_dtype == "f16") {
    options.synchformer_dtype = DType::kF16;
  } else if (request.synchformer_dtype == "bf16") {
    throw Error(ErrorKind::kInvalidInput,
                "synchformer dtype bf16 is refused: the reference runs Synchformer under fp16 "
                "autocast; use f16 (its precision) or f32");
  } else {
    throw Error(ErrorKind::kInvalidInput, "synchformer dtype must be \"f32\" or \"f16\", got \"" +
                                              request.synchformer_dtype + "\"");
  }
  if (!request.model_dir.empty() && !fs::is_directory(request.model_dir))
    throw Error(ErrorKind::kNotFound, "model directory not found: " + request.model_dir);

  ConvertSummary summary;
  OfficialFiles files;
  const std::string& dir = request.model_dir;
  if (request.include_dit) {
    bool xl = request.model_size == "xl";
    if (!request.dit_checkpoint.empty()) {
      files.dit_checkpoint = existing(request.dit_checkpoint, "DiT checkpoint");
      // Only picks the config next to it; the variant itself comes from the tensors.
      if (request.model_size.empty())
        xl = is_xl_dit_name(fs::path(files.dit_checkpoint).filename().string());
    } else if (!dir.empty()) {
      const DitFiles found = find_dits(dir);
      if (request.model_size.empty()) {
        if (!found.xxl.empty() && !found.xl.empty())
          throw Error(ErrorKind::kInvalidInput,
                      dir + " holds both DiT checkpoints, " + join(found.xxl) + " (XXL) and " +
                          join(found.xl) +
                          " (XL): choose one with the model size (--model-size xxl or "
                          "--model-size xl); convert twice for a bundle of each");
        xl = !found.xl.empty();
        if (found.xxl.empty() && found.xl.empty())
          summary.notes.push_back(std::string("no ") + kXxlCheckpoint + " or " + kXlCheckpoint +
                                  " (or " + kDitPrefix + "*" + kSafetensors + ") in " + dir +
                                  ": DiT left out");
      } else if ((xl ? found.xl : found.xxl).empty()) {
        const std::vector<std::string>& other = xl ? found.xxl : found.xl;
        throw Error(
            ErrorKind::kNotFound,
            "model size " + request.model_size + ": no " + (xl ? kXlCheckpoint : kXxlCheckpoint) +
                " (or " + kDitPrefix + (xl ? "_xl" : "") + "*" + kSafetensors + ") in " + dir +
                (other.empty()
                     ? std::string()
                     : " (it holds " + join(other) + ", the " + (xl ? "XXL" : "XL") + " DiT)"));
      }
      // Two files of one size (the .pth and a conversion of it, or two conversions): which one is
      // meant is the user's to say.
      const std::vector<std::string>& mine = xl ? found.xl : found.xxl;
      if (mine.size() > 1)
        throw Error(ErrorKind::kInvalidInput,
                    dir + " holds " + std::to_string(mine.size()) + " " + (xl ? "XL" : "XXL") +
                        " DiT checkpoints (" + join(mine) +
                        "): name the one to convert with --dit PATH (its config is still taken "
                        "from the model directory)");
      if (!mine.empty()) files.dit_checkpoint = (fs::path(dir) / mine.front()).string();
    }
    if (!request.dit_config.empty()) {
      files.dit_config = existing(request.dit_config, "DiT config");
    } else if (!files.dit_checkpoint.empty() && !dir.empty()) {
      // The HF directory's config.yaml is the XXL one; the XL config ships in the code
      // repository (configs/hunyuanvideo-foley-xl.yaml), so it must be next to it or given.
      files.dit_config = xl ? find_in(dir, {kXlConfig})
                            : find_in(dir, {"config.yaml", "hunyuanvideo-foley-xxl.yaml"});
      if (files.dit_config.empty())
        throw Error(ErrorKind::kNotFound, std::string("no DiT config in ") + dir + " (expected " +
                                              (xl ? kXlConfig : "config.yaml") + " for " +
                                              fs::path(files.dit_checkpoint).filename().string() +
                                              "); pass it explicitly");
    }
  }
  if (request.include_dac) {
    if (!request.dac_checkpoint.empty()) {
      files.dac_checkpoint = existing(request.dac_checkpoint, "DAC-VAE checkpoint");
    } else if (!dir.empty()) {
      files.dac_checkpoint = find_in(dir, {"vae_128d_48k.pth"});
      if (files.dac_checkpoint.empty())
        summary.notes.push_back("no vae_128d_48k.pth in " + dir + ": DAC-VAE left out");
    }
  }
  // SigLIP2 is a separate HF download (google/siglip2-base-patch16-512); a model directory may
  // hold it as a siglip2/ subfolder.
  if (!dir.empty()) {
    const fs::path siglip2 = fs::path(dir) / "siglip2";
    if (fs::is_regular_file(siglip2 / "model.safetensors") &&
        fs::is_regular_file(siglip2 / "config.json")) {
      files.siglip2_dir = siglip2.string();
    } else {
      summary.notes.push_back("no siglip2/ (model.safetensors, config.json) in " + dir +
                              ": SigLIP2 left out");
    }
  }
  // Synchformer's checkpoint ships in the HunyuanVideo-Foley directory itself.
  if (!dir.empty()) {
    files.synchformer_checkpoint = find_in(dir, {"synchformer_state_dict.pth"});
    if (files.synchformer_checkpoint.empty())
      summary.notes.push_back("no synchformer_state_dict.pth in " + dir + ": Synchformer left out");
  }
  // CLAP (laion/larger_clap_general) is also a separate download: a clap/ subfolder with its
  // weights as model.safetensors (used when present) or pytorch_model.bin.
  if (!dir.empty()) {
    const fs::path clap = fs::path(dir) / "clap";
    if (!clap_weights_file(clap.string()).empty()) {
      files.clap_dir = clap.string();
    } else {
      summary.notes.push_back("no clap/model.safetensors or clap/pytorch_model.bin in " + dir +
                              ": CLAP left out");
    }
  }
  if (files.dit_checkpoint.empty() && files.dac_checkpoint.empty() && files.siglip2_dir.empty() &&
      files.clap_dir.empty() && files.synchformer_checkpoint.empty())
    throw Error(ErrorKind::kInvalidInput,
                "nothing to convert: give --model-dir or checkpoint paths" +
                    (summary.notes.empty() ? std::string() : " (" + summary.notes[0] + ")"));

  const std::vector<BundleSource> sources = official_sources(files, options);
  const BundleResult result = write_bundle(sources, options, request.output);
  summary.networks = result.networks;
  for (const auto& s : sources) summary.sources[s.network] = s.files;
  summary.bytes = fs::file_size(request.output);
  const SafetensorsFile written = SafetensorsFile::open(request.output);
  const auto& meta = written.metadata();
  if (auto it = meta.find("variant"); it != meta.end()) summary.variant = it->second;
  if (auto it = meta.find("content_hashes"); it != meta.end()) {
    const nlohmann::json hashes = nlohmann::json::parse(it->second);
    for (const auto& [net, hash] : hashes.items()) summary.content_hashes[net] = hash;
  }
  if (std::find(result.networks.begin(), result.networks.end(), "synchformer") !=
      result.networks.end()) {
    // The head count is the one Synchformer setting no tensor carries: say where it came from.
    const nlohmann::json c = nlohmann::json::parse(meta.at("config"))["synchformer"];
    summary.notes.push_back("Synchformer: " + std::to_string(c.value("num_heads", 0)) +
                            " attention heads (" + c.value("num_heads_source", "") + ")");
  }
  return summary;
}

}  // namespace foley
