// The SigLIP2 vision tower (google/siglip2-base-patch16-512, HF `SiglipVisionModel`) as the
// official pipeline uses it: one clip feature per frame = the attention-pooling head's output
// (pooler_output, not L2-normalised), model-spec §1.2.
//
//   pixels [B,3,S,S] in [-1,1] -> patch conv (k = s = patch, bias) -> + learned position embedding
//   -> L × pre-LN layer: x += out_proj(MHA(q,k,v of LN1(x))); x += fc2(gelu_tanh(fc1(LN2(x))))
//   -> post_layernorm
//   -> MAP head: h = out_proj(MHA(probe, x, x)); h += fc2(gelu_tanh(fc1(LN(h)))); feature = h[:,0]
//
// Weights come from a bundle's "siglip2." tensors (F32, names as in HF minus "vision_model.").
// The model is immutable after construction and can be shared by jobs; activations live in a
// caller-owned Arena. Frames are independent, so long clips are encoded in chunks of frames,
// which bounds memory (one chunk of 8 frames of the base model needs about 0.3 GB).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "models/weight_store.h"

namespace foley {

struct Siglip2VisionConfig {
  int hidden_size = 768;
  int intermediate_size = 3072;
  int num_hidden_layers = 12;
  int num_attention_heads = 12;
  int num_channels = 3;
  int image_size = 512;
  int patch_size = 16;
  float layer_norm_eps = 1e-6f;

  int num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  int head_dim() const { return hidden_size / num_attention_heads; }
  // From the bundle's config object or from HF config.json's "vision_config" (same field names).
  // Throws Error(kInvalidInput) naming the field for a missing or impossible value, and
  // kUnsupported for an activation other than gelu_pytorch_tanh or a model without the head.
  static Siglip2VisionConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
};

class Siglip2Vision {
 public:
  static constexpr int kDefaultChunk = 8;  // frames per forward in encode_frames

  // Takes every "siglip2." tensor of the bundle (strict). On a device backend the weights are
  // copied to device memory once.
  Siglip2Vision(const WeightStore& weights, Backend& backend);
  ~Siglip2Vision();
  Siglip2Vision(const Siglip2Vision&) = delete;
  Siglip2Vision& operator=(const Siglip2Vision&) = delete;

  const Siglip2VisionConfig& config() const { return config_; }

  // pixels [B, C, S, S] F32 and features [B, hidden] F32, both on the backend's device.
  void forward(const Tensor& pixels, const Tensor& features, Arena& arena) const;

  // The whole semantic branch for a clip: frames host U8 [T, H, W, 3] (RGB) -> host F32
  // [1, T, hidden]. Preprocessing (PIL bilinear stretch, [-1,1]) runs on the host; the tower runs
  // `chunk` frames per forward.
  Tensor encode_frames(const Tensor& frames, Arena& arena, int chunk = kDefaultChunk) const;

  // Activation bytes a forward of `batch` frames takes from the arena (for sizing workspaces).
  size_t workspace_bytes(int batch) const;

 private:
  struct Linear {
    Tensor w;  // [N, K]
    Tensor b;  // [N]
  };
  struct Norm {
    Tensor w;
    Tensor b;
  };
  struct Layer {
    Norm ln1, ln2;
    Linear q, k, v, out;
    Linear fc1, fc2;
  };

  Tensor load(const WeightStore& weights, const std::string& name, const Shape& shape);
  Linear load_linear(const WeightStore& weights, const std::string& prefix, int n, int k);
  Norm load_norm(const WeightStore& weights, const std::string& prefix);
  void layer_norm(const Norm& n, const Tensor& x, const Tensor& y) const;
  // x += fc2(gelu_tanh(fc1(LN(x)))) with LN `n`; x [B, L, hidden] contiguous.
  void mlp_residual(const Norm& n, const Linear& fc1, const Linear& fc2, const Tensor& x,
                    Arena& arena) const;

  Siglip2VisionConfig config_;
  Backend& backend_;
  std::unique_ptr<Arena> device_weights_;  // only on device backends
  Tensor patch_w_;                         // [hidden, C, patch, patch]
  Tensor patch_b_;
  Tensor pos_;  // [num_patches, hidden]
  std::vector<Layer> layers_;
  Norm post_ln_;
  Tensor probe_;    // [1, 1, hidden]
  Linear head_in_;  // fused q|k|v: [3·hidden, hidden]
  Linear head_out_;
  Norm head_ln_;
  Linear head_fc1_, head_fc2_;
};

}  // namespace foley
