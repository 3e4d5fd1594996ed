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

#include <string>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "io/safetensors.h"
#include "io/torch_checkpoint.h"

namespace foley {

struct ConvertOptions {
  // Storage dtype of the big matmul weights (DiT). F32 reproduces the reference bit-for-bit in
  // expectation; BF16 halves memory and is what the official code runs in.
  DType dit_dtype = DType::kBF16;
};

// Official paths of one model directory (as distributed on the HF hub).
struct OfficialFiles {
  std::string dit_checkpoint;  // hunyuanvideo_foley.pth or hunyuanvideo_foley_xl.pth
  std::string dit_config;      // config.yaml (optional: "" means derive and cross-check nothing)
  std::string dac_checkpoint;  // vae_128d_48k.pth
};

// "dit." tensors; config from config.yaml's model_config.model_kwargs, cross-checked with shapes.
nlohmann::json convert_dit(const TorchCheckpoint& ckpt, const std::string& config_yaml_path,
                           const ConvertOptions& options, SafetensorsWriter& out);
// "dac." tensors (decoder + post_quant_conv only); config from the checkpoint's metadata.kwargs.
nlohmann::json convert_dac(const TorchCheckpoint& ckpt, const ConvertOptions& options,
                           SafetensorsWriter& out);

// Writes the whole bundle (format, format_version, config metadata + all tensors) atomically.
void convert_bundle(const OfficialFiles& files, const ConvertOptions& options,
                    const std::string& output_path);

}  // namespace foley
