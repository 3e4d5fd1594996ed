// CLAP's text tower (laion/larger_clap_general): a RoBERTa encoder whose pre-projection
// last_hidden_state is HunyuanVideo-Foley's text conditioning (model-spec §1.4).
//
//   embeddings = LN(word[id] + token_type[0] + position[pid]),  pid = cumsum(id != pad)·(id != pad)
//                + pad, so real tokens count from pad+1 = 2 and pads sit on row pad = 1
//   N × post-LN layer:  x = LN(x + Wo·attn(x)),  x = LN(x + W2·gelu_erf(W1·x))
//
// Attention uses RoBERTa's extended mask: padded keys are masked for every query. Padded query
// rows are still computed (they attend to the real keys only) because the pipeline feeds them to
// the DiT unmasked. The backend's attention has no mask, so each row runs over its unpadded key
// range; this assumes right padding (the mask is a prefix of ones), which the tokenizer produces.
//
// Weights come from a bundle's "clap." tensors (F32, q/k/v fused into one [3H, H] projection by
// the converter; text_projection and the pooler are not in the bundle). The word, position and
// type tables stay on the host on every backend: the embedding sum is a gather done once per
// request, and keeping it off the device avoids a gather op in the backend interface.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "models/weight_store.h"

namespace foley {

struct ClapTextConfig {
  int vocab_size = 50265;
  int hidden_size = 768;
  int num_layers = 12;
  int num_heads = 12;
  int intermediate_size = 3072;
  int max_position_embeddings = 514;
  int type_vocab_size = 1;
  float layer_norm_eps = 1e-12f;
  int pad_token_id = 1;

  int head_dim() const { return hidden_size / num_heads; }
  // The longest sequence the position table supports: ids run up to length + pad.
  int max_length() const { return max_position_embeddings - pad_token_id - 1; }
  // Reads the bundle's config object (the HF config.json names); throws Error(kInvalidInput)
  // naming the field for a missing or impossible value.
  static ClapTextConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
};

class ClapTextModel {
 public:
  // Takes every "clap.embeddings." and "clap.encoder." tensor of the bundle (strictly). On a
  // device backend the encoder weights are copied to device memory once.
  ClapTextModel(const WeightStore& weights, Backend& backend);
  ~ClapTextModel();
  ClapTextModel(const ClapTextModel&) = delete;
  ClapTextModel& operator=(const ClapTextModel&) = delete;

  const ClapTextConfig& config() const { return config_; }

  // ids and mask: host I64 [B, L] (mask 1 for real tokens, a prefix of each row); hidden:
  // [B, L, hidden] F32 on the backend's device, contiguous. Activations come from `arena` inside
  // a scope (released on return). Throws Error(kInvalidInput) for out-of-range ids, L beyond
  // max_length(), or a mask that is not right padding.
  void forward(const Tensor& ids, const Tensor& mask, const Tensor& hidden, Arena& arena) const;

  // Makes `arena` able to hold a forward of [batch, length] (call before freezing it).
  void reserve(Arena& arena, int64_t batch, int64_t length) const;

 private:
  struct Layer {
    Tensor qkv_w, qkv_b;  // [3H, H], [3H]: rows [q | k | v]
    Tensor out_w, out_b;  // [H, H]
    Tensor ln1_w, ln1_b;
    Tensor up_w, up_b;      // [I, H]
    Tensor down_w, down_b;  // [H, I]
    Tensor ln2_w, ln2_b;
  };
  struct Buffers {
    Tensor qkv, ctx, tmp, inter;
  };

  Tensor load(const WeightStore& weights, const std::string& name, const Shape& shape);
  Buffers allocate(Arena& arena, int64_t batch, int64_t length) const;
  // Host F32 [B, L, H]: word + type + position embeddings, before the LayerNorm.
  void embed(const Tensor& ids, const Tensor& out) const;

  ClapTextConfig config_;
  Backend& backend_;
  std::unique_ptr<Arena> device_weights_;  // only on device backends
  Tensor word_, position_, token_type_;    // host tables
  Tensor emb_ln_w_, emb_ln_b_;
  std::vector<Layer> layers_;
};

}  // namespace foley
