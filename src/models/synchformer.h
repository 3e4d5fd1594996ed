// The Synchformer visual branch (MotionFormer, "divided_224_16x4") as the official pipeline uses
// it for sync features, model-spec §1.3: per 16-frame segment of 224×224 frames,
//
//   Conv3d patches (k = s = (2,16,16)) -> [CLS; F·N tokens] + "separate" position embedding
//   (spatial table tiled over frames + temporal table repeated over the N spatial tokens)
//   -> depth × DividedSpaceTimeBlock: x += timeattn(LN3 x); x += attn(LN1 x); x += mlp(LN2 x)
//   -> drop CLS -> LN -> per frame a pre-LN TransformerEncoderLayer over [agg CLS; N tokens],
//      keeping the CLS output = one token per frame (F = 8 per segment).
//
// In the divided attention the CLS query attends to every token; patch queries attend to their
// time group (same spatial position, all frames) or space group (same frame), plus CLS.
// Segments are 16 frames with stride 8, S = (T − 16)/8 + 1, giving [1, S·F, dim].
//
// Weights come from a bundle's "synchformer." tensors (names as in the official module
// "vfeat_extractor." minus that prefix). The reference runs this under fp16 autocast on CUDA:
// a bundle converted with --synchformer-dtype f16 holds the matmul weights in F16, and the
// linears and the patch embedding then multiply in F16 with F32 accumulation as autocast's do
// (the CUDA backend rounds the F32 activations to F16 for the GEMM; the CPU widens the weights
// instead). Activations, norms, attention and residuals stay F32. An F32 bundle gives F32 math
// throughout, which the golden cases use.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "models/weight_store.h"

namespace foley {

struct SynchformerConfig {
  int dim = 768;
  int depth = 12;
  int num_heads = 12;
  int mlp_hidden = 3072;
  int image_size = 224;
  int patch_size = 16;
  int tubelet = 2;     // frames per 3-D patch
  int num_frames = 8;  // temporal tokens per segment (temp_embed rows)
  int agg_ff = 3072;   // spatial_attn_agg feed-forward width
  float layer_norm_eps = 1e-6f;
  int segment = 16;  // input frames per segment
  int stride = 8;    // frames between segment starts

  int grid() const { return image_size / patch_size; }
  int spatial_tokens() const { return grid() * grid(); }
  int tokens() const { return 1 + num_frames * spatial_tokens(); }
  int head_dim() const { return dim / num_heads; }
  // Throws Error(kInvalidInput) naming the field for a missing or inconsistent value.
  static SynchformerConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
};

class Synchformer {
 public:
  static constexpr int kDefaultChunk = 2;  // segments per forward in encode_frames

  // Takes every "synchformer." tensor of the bundle (strict).
  Synchformer(const WeightStore& weights, Backend& backend);
  ~Synchformer();
  Synchformer(const Synchformer&) = delete;
  Synchformer& operator=(const Synchformer&) = delete;

  const SynchformerConfig& config() const { return config_; }

  // pixels [B, 3, segment, S, S] F32 (channel, time, height, width) -> features [B, F, dim].
  void forward(const Tensor& pixels, const Tensor& features, Arena& arena) const;

  // frames host U8 [T, H, W, 3] (RGB, 25 fps) -> host F32 [1, S·F, dim]; T >= segment.
  Tensor encode_frames(const Tensor& frames, Arena& arena, int chunk = kDefaultChunk) const;

  size_t workspace_bytes(int batch) const;

 private:
  struct Linear {
    Tensor w, b;
  };
  struct Norm {
    Tensor w, b;
  };
  struct Block {
    Norm norm1, norm2, norm3;
    Linear attn_qkv, attn_proj, time_qkv, time_proj;
    Linear fc1, fc2;
  };

  Tensor load(const WeightStore& weights, const std::string& name, const Shape& shape);  // F32
  // A weight the backends multiply with: F32, or F16 from an f16 bundle.
  Tensor load_matmul(const WeightStore& weights, const std::string& name, const Shape& shape);
  Tensor to_device(const Tensor& host);
  Linear load_linear(const WeightStore& weights, const std::string& prefix, int n, int k);
  Norm load_norm(const WeightStore& weights, const std::string& prefix);
  // x += proj(divided attention of LN(x)); `time` picks the grouping.
  void divided_attention(const Norm& n, const Linear& qkv, const Linear& proj, bool time,
                         const Tensor& x, Arena& arena) const;

  SynchformerConfig config_;
  Backend& backend_;
  std::unique_ptr<Arena> device_weights_;
  Tensor patch_w_, patch_b_;  // [dim, 3, tubelet, p, p]
  Tensor cls_pos_;            // [1, dim]: cls_token + pos_embed[0]
  Tensor patch_pos_;          // [F·N, dim]: tiled spatial + repeated temporal embedding
  std::vector<Block> blocks_;
  Norm norm_;
  Tensor agg_cls_;  // [1, dim]
  Linear agg_in_;   // fused q|k|v [3·dim, dim]
  Linear agg_out_, agg_fc1_, agg_fc2_;
  Norm agg_norm1_, agg_norm2_;
};

}  // namespace foley
