// Converting the official HunyuanVideo-Foley checkpoints into one foley weight bundle (what
// `foley convert` does). The bundle is what every foley model loads; conversion happens once.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace foley {

struct ConvertRequest {
  // An official model directory (as on the HF hub): hunyuanvideo_foley.pth (XXL) and/or
  // hunyuanvideo_foley_xl.pth (XL), their configs (config.yaml or hunyuanvideo-foley-xxl.yaml;
  // hunyuanvideo-foley-xl.yaml), vae_128d_48k.pth, synchformer_state_dict.pth, siglip2/, clap/.
  // Networks whose files are absent from the directory are left out of the bundle (and listed as
  // such). A community conversion of the DiT, any hunyuanvideo_foley*.safetensors with the
  // official tensor names (F8_E4M3/F8_E5M2, BF16, F16 or F32 tensors, e.g.
  // hunyuanvideo_foley_fp8_e4m3fn.safetensors), counts as a DiT checkpoint too, the XL's when its
  // name goes on with "_xl" then '_', '-', '.' or nothing; two DiT files of the size taken are
  // refused by name (dit_checkpoint picks one).
  std::string model_dir;
  // Which DiT checkpoint and config of model_dir to take: "xxl", "xl", or "" (default) = the one
  // the directory holds; a directory with both needs the choice (refused otherwise). With an
  // explicit dit_checkpoint, "" takes the config that goes with its file name. The variant is
  // always recognised from the tensors' own shapes, whatever the file is called.
  std::string model_size;

  // Explicit paths override what model_dir provides (and need no model_dir). dit_checkpoint may be
  // a .pth or a .safetensors DiT (told apart by content); with model_dir, its config still comes
  // from there.
  std::string dit_checkpoint;
  std::string dit_config;
  std::string dac_checkpoint;

  bool include_dit = true;  // false: leave the DiT out even if present
  bool include_dac = true;

  std::string dtype =
      "bf16";  // DiT matmul weights: "bf16", "f32", "fp8" or "int8" (quantised blocks)
  // Synchformer attention heads: no tensor carries the count. 0 = guess from the width (heads of
  // 64 at dim >= 768, as the official ViT-B; heads of 32 below); the summary notes which was used.
  int synchformer_heads = 0;
  // Storage of the Synchformer's matmul weights: "f32" (default) or "f16" (the reference runs
  // Synchformer under fp16 autocast); "bf16" is refused.
  std::string synchformer_dtype = "f32";
  std::string output;  // the bundle path (.safetensors), written atomically
};

struct ConvertSummary {
  std::vector<std::string> networks;                        // converted, in file order
  std::map<std::string, std::vector<std::string>> sources;  // network -> files it came from
  std::vector<std::string> notes;  // e.g. "no hunyuanvideo_foley.pth in DIR: DiT left out"
  unsigned long long bytes = 0;    // size of the written bundle
  // The DiT's variant as recorded in the bundle: "xxl", "xl" or "custom" ("" without a DiT).
  std::string variant;
  // network -> content hash of its converted tensors ("xxh64:<16 hex>"; see BundleInfo).
  std::map<std::string, std::string> content_hashes;
};

// Throws foley::Error (kInvalidInput / kNotFound) naming the file or tensor at fault.
ConvertSummary convert_model(const ConvertRequest& request);

}  // namespace foley
