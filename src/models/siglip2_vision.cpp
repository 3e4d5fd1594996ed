#include "models/siglip2_vision.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/check.h"
#include "core/thread_pool.h"
#include "image/resize.h"
#include "models/device_weights.h"

namespace foley {
namespace {

int json_int(const nlohmann::json& j, const char* field) {
  if (!j.contains(field) || !j.at(field).is_number_integer() || j.at(field).get<int64_t>() < 1 ||
      j.at(field).get<int64_t>() > (int64_t{1} << 20))
    throw Error(ErrorKind::kInvalidInput,
                std::string("SigLIP2 config: \"") + field + "\" missing or not a positive integer");
  return j.at(field).get<int>();
}

}  // namespace

Siglip2VisionConfig Siglip2VisionConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw Error(ErrorKind::kInvalidInput, "SigLIP2 config is not an object");
  Siglip2VisionConfig c;
  c.hidden_size = json_int(j, "hidden_size");
  c.intermediate_size = json_int(j, "intermediate_size");
  c.num_hidden_layers = json_int(j, "num_hidden_layers");
  c.num_attention_heads = json_int(j, "num_attention_heads");
  c.image_size = json_int(j, "image_size");
  c.patch_size = json_int(j, "patch_size");
  // HF defaults for fields its config may omit.
  c.num_channels = j.contains("num_channels") ? json_int(j, "num_channels") : 3;
  if (j.contains("layer_norm_eps")) {
    if (!j.at("layer_norm_eps").is_number() || !(j.at("layer_norm_eps").get<double>() > 0))
      throw Error(ErrorKind::kInvalidInput, "SigLIP2 config: \"layer_norm_eps\" must be > 0");
    c.layer_norm_eps = j.at("layer_norm_eps").get<float>();
  }
  const std::string act = j.value("hidden_act", std::string("gelu_pytorch_tanh"));
  if (act != "gelu_pytorch_tanh")
    throw Error(ErrorKind::kUnsupported,
                "SigLIP2 config: hidden_act \"" + act + "\" (only gelu_pytorch_tanh is supported)");
  if (j.contains("vision_use_head") && j.at("vision_use_head") != true)
    throw Error(ErrorKind::kUnsupported,
                "SigLIP2 config: vision_use_head is false; the pipeline needs the pooling head");
  if (c.hidden_size % c.num_attention_heads != 0)
    throw Error(ErrorKind::kInvalidInput, "SigLIP2 config: hidden_size " +
                                              std::to_string(c.hidden_size) +
                                              " is not a multiple of num_attention_heads");
  if (c.image_size % c.patch_size != 0)
    throw Error(ErrorKind::kInvalidInput,
                "SigLIP2 config: image_size is not a multiple of patch_size");
  return c;
}

nlohmann::json Siglip2VisionConfig::to_json() const {
  return {{"hidden_size", hidden_size},
          {"intermediate_size", intermediate_size},
          {"num_hidden_layers", num_hidden_layers},
          {"num_attention_heads", num_attention_heads},
          {"num_channels", num_channels},
          {"image_size", image_size},
          {"patch_size", patch_size},
          {"layer_norm_eps", layer_norm_eps},
          {"hidden_act", "gelu_pytorch_tanh"}};
}

// ---- construction -----------------------------------------------------------------------------

Tensor Siglip2Vision::load(const WeightStore& weights, const std::string& name,
                           const Shape& shape) {
  // A view of the bundle when it already is where the backend computes, else a device copy.
  return place_weight(backend_, weights.get("siglip2." + name, shape, {DType::kF32}),
                      device_weights_, [&] { return weight_arena_bytes(weights, {"siglip2."}); });
}

Siglip2Vision::Linear Siglip2Vision::load_linear(const WeightStore& weights,
                                                 const std::string& prefix, int n, int k) {
  return {load(weights, prefix + ".weight", {n, k}), load(weights, prefix + ".bias", {n})};
}

Siglip2Vision::Norm Siglip2Vision::load_norm(const WeightStore& weights,
                                             const std::string& prefix) {
  const int h = config_.hidden_size;
  return {load(weights, prefix + ".weight", {h}), load(weights, prefix + ".bias", {h})};
}

Siglip2Vision::Siglip2Vision(const WeightStore& weights, Backend& backend)
    : config_(Siglip2VisionConfig::from_json(weights.config("siglip2"))), backend_(backend) {
  const int h = config_.hidden_size, m = config_.intermediate_size, p = config_.patch_size;
  patch_w_ = load(weights, "embeddings.patch_embedding.weight", {h, config_.num_channels, p, p});
  patch_b_ = load(weights, "embeddings.patch_embedding.bias", {h});
  pos_ = load(weights, "embeddings.position_embedding.weight", {config_.num_patches(), h});
  for (int i = 0; i < config_.num_hidden_layers; ++i) {
    const std::string l = "encoder.layers." + std::to_string(i) + ".";
    Layer layer;
    layer.ln1 = load_norm(weights, l + "layer_norm1");
    layer.ln2 = load_norm(weights, l + "layer_norm2");
    layer.q = load_linear(weights, l + "self_attn.q_proj", h, h);
    layer.k = load_linear(weights, l + "self_attn.k_proj", h, h);
    layer.v = load_linear(weights, l + "self_attn.v_proj", h, h);
    layer.out = load_linear(weights, l + "self_attn.out_proj", h, h);
    layer.fc1 = load_linear(weights, l + "mlp.fc1", m, h);
    layer.fc2 = load_linear(weights, l + "mlp.fc2", h, m);
    layers_.push_back(std::move(layer));
  }
  post_ln_ = load_norm(weights, "post_layernorm");
  probe_ = load(weights, "head.probe", {1, 1, h});
  head_in_ = {load(weights, "head.attention.in_proj_weight", {3 * h, h}),
              load(weights, "head.attention.in_proj_bias", {3 * h})};
  head_out_ = load_linear(weights, "head.attention.out_proj", h, h);
  head_ln_ = load_norm(weights, "head.layernorm");
  head_fc1_ = load_linear(weights, "head.mlp.fc1", m, h);
  head_fc2_ = load_linear(weights, "head.mlp.fc2", h, m);
  weights.expect_all_used("siglip2.");
}

Siglip2Vision::~Siglip2Vision() = default;

// ---- forward ----------------------------------------------------------------------------------

void Siglip2Vision::layer_norm(const Norm& n, const Tensor& x, const Tensor& y) const {
  backend_.layer_norm(x, &n.w, &n.b, config_.layer_norm_eps, y);
}

void Siglip2Vision::mlp_residual(const Norm& n, const Linear& fc1, const Linear& fc2,
                                 const Tensor& x, Arena& arena) const {
  Arena::Scope scope(arena);
  Backend& be = backend_;
  const Tensor normed = arena.alloc(x.shape(), DType::kF32);
  layer_norm(n, x, normed);
  const Tensor hidden = arena.alloc({x.dim(0), x.dim(1), config_.intermediate_size}, DType::kF32);
  be.linear(normed, fc1.w, &fc1.b, hidden);
  be.activation(Activation::kGeluTanh, hidden, hidden);
  be.linear(hidden, fc2.w, &fc2.b, x, /*beta=*/1.0f);  // the residual add, fused
}

void Siglip2Vision::forward(const Tensor& pixels, const Tensor& features, Arena& arena) const {
  const Siglip2VisionConfig& c = config_;
  const int64_t B = pixels.dim(0), N = c.num_patches(), H = c.hidden_size;
  const int64_t heads = c.num_attention_heads, D = c.head_dim();
  expect_shape(pixels, {B, c.num_channels, c.image_size, c.image_size}, "SigLIP2 pixels");
  expect_shape(features, {B, H}, "SigLIP2 features");
  if (B == 0) return;
  Backend& be = backend_;
  Arena::Scope scope(arena);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  const Tensor x = arena.alloc({B, N, H}, DType::kF32);
  be.patch_embed(pixels, patch_w_, &patch_b_, x);
  be.add(x, pos_.expand({B, N, H}), x);

  for (const Layer& layer : layers_) {
    {
      Arena::Scope s(arena);
      const Tensor normed = arena.alloc({B, N, H}, DType::kF32);
      layer_norm(layer.ln1, x, normed);
      const Tensor q = arena.alloc({B, N, H}, DType::kF32);
      const Tensor k = arena.alloc({B, N, H}, DType::kF32);
      const Tensor v = arena.alloc({B, N, H}, DType::kF32);
      be.linear(normed, layer.q.w, &layer.q.b, q);
      be.linear(normed, layer.k.w, &layer.k.b, k);
      be.linear(normed, layer.v.w, &layer.v.b, v);
      // The normed input is dead now: the attention output reuses its memory.
      const Tensor attn = normed.reshape({B, N, heads, D});
      be.attention(q.reshape({B, N, heads, D}), k.reshape({B, N, heads, D}),
                   v.reshape({B, N, heads, D}), scale, attn);
      be.linear(normed, layer.out.w, &layer.out.b, x, /*beta=*/1.0f);
    }
    mlp_residual(layer.ln2, layer.fc1, layer.fc2, x, arena);
  }
  layer_norm(post_ln_, x, x);

  // Attention pooling: one learned query per frame attends over all patch tokens
  // (nn.MultiheadAttention, whose in_proj packs q|k|v row blocks).
  const Tensor probe = arena.alloc({B, 1, H}, DType::kF32);
  be.copy(probe, probe_.expand({B, 1, H}));
  const Tensor q = arena.alloc({B, 1, H}, DType::kF32);
  const Tensor k = arena.alloc({B, N, H}, DType::kF32);
  const Tensor v = arena.alloc({B, N, H}, DType::kF32);
  auto rows = [&](const Tensor& t, int block) { return t.slice(0, block * H, H); };
  const Tensor bq = rows(head_in_.b, 0), bk = rows(head_in_.b, 1), bv = rows(head_in_.b, 2);
  be.linear(probe, rows(head_in_.w, 0), &bq, q);
  be.linear(x, rows(head_in_.w, 1), &bk, k);
  be.linear(x, rows(head_in_.w, 2), &bv, v);
  be.attention(q.reshape({B, 1, heads, D}), k.reshape({B, N, heads, D}),
               v.reshape({B, N, heads, D}), scale, probe.reshape({B, 1, heads, D}));
  const Tensor pooled = arena.alloc({B, 1, H}, DType::kF32);
  be.linear(probe, head_out_.w, &head_out_.b, pooled);
  mlp_residual(head_ln_, head_fc1_, head_fc2_, pooled, arena);
  be.copy(features, pooled.reshape({B, H}));
}

size_t Siglip2Vision::workspace_bytes(int batch) const {
  const size_t b = static_cast<size_t>(batch), n = static_cast<size_t>(config_.num_patches());
  const size_t h = static_cast<size_t>(config_.hidden_size);
  const size_t m = static_cast<size_t>(config_.intermediate_size);
  const size_t s = static_cast<size_t>(config_.image_size);
  const size_t f = sizeof(float), slack = 32 * Arena::kAlignment;
  // pixels + features (encode_frames) + x + the larger of attention (4 tensors) and MLP (2).
  const size_t pixels = b * static_cast<size_t>(config_.num_channels) * s * s * f;
  const size_t layer = std::max(4 * b * n * h, b * n * (h + m)) * f;
  const size_t head = (2 * b * n * h + 3 * b * h + b * (h + m)) * f;
  return pixels + b * h * f + b * n * h * f + std::max(layer, head) + slack;
}

Tensor Siglip2Vision::encode_frames(const Tensor& frames, Arena& arena, int chunk) const {
  if (frames.rank() != 4 || frames.dim(3) != 3 || frames.dtype() != DType::kU8 ||
      frames.device() != DeviceKind::kCPU)
    throw Error(ErrorKind::kInvalidInput,
                "SigLIP2: frames must be host U8 [T, H, W, 3], got " + frames.describe());
  FOLEY_CHECK(chunk >= 1, "SigLIP2: chunk must be >= 1");
  const Siglip2VisionConfig& c = config_;
  FOLEY_CHECK(c.num_channels == 3, "SigLIP2: RGB frames need a 3-channel model");
  const int64_t T = frames.dim(0), H = c.hidden_size, S = c.image_size;
  Tensor out = Tensor::empty({1, T, H}, DType::kF32);
  const int64_t max_b = std::min<int64_t>(chunk, std::max<int64_t>(T, 1));
  Tensor host_pixels = Tensor::empty({max_b, 3, S, S}, DType::kF32);
  Tensor host_features = Tensor::empty({max_b, H}, DType::kF32);
  for (int64_t t0 = 0; t0 < T; t0 += max_b) {
    const int64_t b = std::min(max_b, T - t0);
    // Frames are independent: the host's cores share them (~3 ms each at 512² on one core).
    parallel_for(b, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        siglip2_preprocess(frames.select(0, t0 + i), static_cast<int>(S),
                           host_pixels.data<float>() + i * 3 * S * S);
    });
    Arena::Scope scope(arena);
    const Tensor pixels = arena.alloc({b, 3, S, S}, DType::kF32);
    const Tensor features = arena.alloc({b, H}, DType::kF32);
    backend_.copy_from_host(pixels, host_pixels.slice(0, 0, b));
    forward(pixels, features, arena);
    backend_.copy_to_host(host_features.slice(0, 0, b), features);
    backend_.synchronize();
    std::copy_n(host_features.data<float>(), b * H, out.data<float>() + t0 * H);
  }
  return out;
}

}  // namespace foley
