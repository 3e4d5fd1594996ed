// Converting official HunyuanVideo-Foley checkpoints into one foley weight bundle.
//
// Every network has one converter function. It reads the official tensors (zero-copy), checks
// that the key set is exactly what the official module tree has (missing, extra or mis-shaped
// keys are reported by name; keys the official loader ignores, e.g. the DAC encoder, are skipped
// explicitly), performs all layout work (de-interleaving fused projections, folding weight norm,
// permuting conv weights to [K, C_out, C_in], dtype choice) and queues the results on the
// writer under its network prefix. It returns the network's config object, which the bundle
// stores in its metadata so that loading never infers anything from shapes.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/quant.h"
#include "io/safetensors.h"
#include "io/torch_checkpoint.h"

namespace foley {

struct ConvertOptions {
  // Storage dtype of the big matmul weights (DiT). F32 reproduces the reference bit-for-bit in
  // expectation; BF16 halves memory and is what the official code runs in.
  DType dit_dtype = DType::kBF16;
  // Set: the DiT blocks' matrices are stored as 8-bit codes with per-output-channel scales
  // (convert_dit.cpp says which and how); the DiT's other matrices stay in dit_dtype.
  std::optional<QuantFormat> dit_quant;
  int synchformer_heads = 0;  // 0: guess from the width (see convert_synchformer)
  // Storage of the Synchformer's matmul weights (linears, 3-D patch embedding): F32, or F16 as
  // the reference's fp16 autocast rounds them. BF16 is refused: the reference never runs it so.
  DType synchformer_dtype = DType::kF32;
};

// Official paths of one model directory (as distributed on the HF hub).
struct OfficialFiles {
  // hunyuanvideo_foley.pth or hunyuanvideo_foley_xl.pth, or a .safetensors DiT of the same keys
  // (told apart by content: a torch.save zip or a safetensors header)
  std::string dit_checkpoint;
  std::string dit_config;      // config.yaml (optional: "" means derive and cross-check nothing)
  std::string dac_checkpoint;  // vae_128d_48k.pth
  std::string clap_dir;        // HF CLAP folder: model.safetensors or pytorch_model.bin (see
                               // clap_weights_file), config.json, vocab.json, merges.txt
  std::string siglip2_dir;     // the HF SigLIP2 folder (model.safetensors, config.json)
  std::string synchformer_checkpoint;  // synchformer_state_dict.pth
};

// Throws Error(kInvalidInput) "<heading>: p1; p2; ... and N more" (first 8 shown) when a
// converter found problems with a checkpoint's key set; returns if there are none.
void throw_if_key_problems(const std::vector<std::string>& problems, const std::string& heading);

// Source dtypes a converter reads as float: F32, BF16, F16 and the two FP8 formats (each decoded
// exactly: every fp8 value is a bf16 and an f32 value). Only the DiT takes FP8 (community casts of
// its checkpoint); the other networks accept is_float_compute() and refuse the rest by name.
inline bool is_float_source(DType t) {
  return is_float_compute(t) || t == DType::kF8E4M3 || t == DType::kF8E5M2;
}

// "dit." tensors; config from config.yaml's model_config.model_kwargs, cross-checked with shapes.
// The source is the official .pth or a .safetensors of the same tensor names (community
// conversions: BF16/F16/F32, or F8_E4M3/F8_E5M2 plain casts, a mix of dtypes allowed); either way
// the tensors are stored as options.dit_dtype (matrices) / F32 (the rest).
nlohmann::json convert_dit(const TorchCheckpoint& ckpt, const std::string& config_yaml_path,
                           const ConvertOptions& options, SafetensorsWriter& out);
nlohmann::json convert_dit(const SafetensorsFile& file, const std::string& config_yaml_path,
                           const ConvertOptions& options, SafetensorsWriter& out);
// The official DiT that a converted "dit" config is: "xxl" (hunyuanvideo_foley.pth, hidden 1536,
// 12 heads, 18 dual- + 36 single-stream blocks) or "xl" (hunyuanvideo_foley_xl.pth, 1408, 11
// heads, 12 + 24) when every size equals that config's (head dim 128, MLP ratio 4, 768-wide
// features, 128 latent channels), else "custom". write_bundle records it as metadata "variant".
std::string dit_variant(const nlohmann::json& dit_config);
// "dac." tensors (decoder + post_quant_conv only); config from the checkpoint's metadata.kwargs.
nlohmann::json convert_dac(const TorchCheckpoint& ckpt, const ConvertOptions& options,
                           SafetensorsWriter& out);

// "siglip2." tensors (vision tower only, F32) from the HF SigLIP2 folder's model.safetensors;
// config from config.json's vision_config (`hf_config` is the whole parsed config.json).
nlohmann::json convert_siglip2(const SafetensorsFile& weights, const nlohmann::json& hf_config,
                               SafetensorsWriter& out);

// "synchformer." tensors (visual MotionFormer only; matmul weights in options.synchformer_dtype,
// the rest F32); config derived from the shapes plus "weight_dtype", the head count from
// options.synchformer_heads or guessed (config "num_heads_source" says which).
nlohmann::json convert_synchformer(const TorchCheckpoint& ckpt, const ConvertOptions& options,
                                   SafetensorsWriter& out);

// "clap." tensors (RoBERTa text tower, F32, q/k/v fused) plus the tokenizer's vocab.json and
// merges.txt as U8 tensors; config from `clap_dir`/config.json. The weights come from the
// folder's pytorch_model.bin (torch.save) or model.safetensors; both give the same tensors.
nlohmann::json convert_clap(const TorchCheckpoint& ckpt, const std::string& clap_dir,
                            SafetensorsWriter& out);
nlohmann::json convert_clap(const SafetensorsFile& weights, const std::string& clap_dir,
                            SafetensorsWriter& out);
// The CLAP weights of a folder: model.safetensors when present (the hub ships both formats with
// the same weights; safetensors needs no unpickling), else pytorch_model.bin, else "".
std::string clap_weights_file(const std::string& clap_dir);

// Writes the whole bundle (format, format_version, config metadata + all tensors) atomically.
// Networks whose source path is empty are left out (at least one must be given).
void convert_bundle(const OfficialFiles& files, const ConvertOptions& options,
                    const std::string& output_path);

// ---- the bundle as a list of networks ----------------------------------------------------------
// A bundle is written from a list of sources, one per network, so further networks (the SigLIP2
// and CLAP folders, synchformer_state_dict.pth) join by adding a source, not by changing the
// writer.
struct BundleSource {
  std::string network;             // the tensor prefix and config key: "dit", "dac", ...
  std::vector<std::string> files;  // what it is converted from (recorded in the metadata)
  // Opens the files, queues the network's tensors on `out` and returns its config object.
  // Whatever the queued fills read must stay alive: push it onto `keep_alive`.
  std::function<nlohmann::json(SafetensorsWriter& out,
                               std::vector<std::shared_ptr<const void>>& keep_alive)>
      convert;
};

// The sources for the official files that are set (non-empty paths) in `files`.
std::vector<BundleSource> official_sources(const OfficialFiles& files,
                                           const ConvertOptions& options);

struct BundleResult {
  std::vector<std::string> networks;          // written, in order
  std::map<std::string, std::string> failed;  // network -> error (only with skip_failed)
};

// Metadata written besides format/format_version/config/sources/converter: "variant" (with a
// DiT: dit_variant) and "content_hashes", {network: "xxh64:<16 hex>"} over each network's
// converted tensors (io/content_hash.h), equal for byte-identical networks of any two bundles.
//
// Writes the bundle atomically (to a temporary name, then renamed). Without skip_failed the first
// failing source throws and nothing is written; with it, a failing source is left out and its
// error reported (the golden runner uses this so one network's bug does not hide the others).
// Throws if no network could be converted.
BundleResult write_bundle(const std::vector<BundleSource>& sources, const ConvertOptions& options,
                          const std::string& output_path, bool skip_failed = false);

}  // namespace foley
