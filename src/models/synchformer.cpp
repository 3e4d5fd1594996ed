#include "models/synchformer.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/check.h"
#include "image/resize.h"
#include "models/device_weights.h"

namespace foley {
namespace {

int json_int(const nlohmann::json& j, const char* field) {
  if (!j.contains(field) || !j.at(field).is_number_integer() || j.at(field).get<int64_t>() < 1 ||
      j.at(field).get<int64_t>() > (int64_t{1} << 20))
    throw Error(ErrorKind::kInvalidInput, std::string("Synchformer config: \"") + field +
                                              "\" missing or not a positive integer");
  return j.at(field).get<int>();
}

std::array<int64_t, kMaxRank> strides_of(std::initializer_list<int64_t> s) {
  std::array<int64_t, kMaxRank> a{};
  std::copy(s.begin(), s.end(), a.begin());
  return a;
}

}  // namespace

SynchformerConfig SynchformerConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw Error(ErrorKind::kInvalidInput, "Synchformer config is not an object");
  SynchformerConfig c;
  c.dim = json_int(j, "dim");
  c.depth = json_int(j, "depth");
  c.num_heads = json_int(j, "num_heads");
  c.mlp_hidden = json_int(j, "mlp_hidden");
  c.image_size = json_int(j, "image_size");
  c.patch_size = json_int(j, "patch_size");
  c.tubelet = json_int(j, "tubelet");
  c.num_frames = json_int(j, "num_frames");
  c.agg_ff = json_int(j, "agg_ff");
  c.segment = json_int(j, "segment");
  c.stride = json_int(j, "stride");
  if (j.contains("layer_norm_eps")) c.layer_norm_eps = j.at("layer_norm_eps").get<float>();
  if (c.dim % c.num_heads != 0)
    throw Error(ErrorKind::kInvalidInput, "Synchformer config: dim not a multiple of num_heads");
  if (c.image_size % c.patch_size != 0 || c.segment != c.tubelet * c.num_frames)
    throw Error(ErrorKind::kInvalidInput,
                "Synchformer config: image_size/patch_size or segment/tubelet inconsistent");
  return c;
}

nlohmann::json SynchformerConfig::to_json() const {
  return {{"dim", dim},
          {"depth", depth},
          {"num_heads", num_heads},
          {"mlp_hidden", mlp_hidden},
          {"image_size", image_size},
          {"patch_size", patch_size},
          {"tubelet", tubelet},
          {"num_frames", num_frames},
          {"agg_ff", agg_ff},
          {"segment", segment},
          {"stride", stride},
          {"layer_norm_eps", layer_norm_eps}};
}

// ---- construction -----------------------------------------------------------------------------

namespace {

// Device bytes of the two embeddings folded at load time (CLS + pos, pos + temp).
size_t folded_bytes(const SynchformerConfig& c) {
  return sizeof(float) * static_cast<size_t>(c.dim) *
             (static_cast<size_t>(c.num_frames) * c.spatial_tokens() + 1) +
         2 * Arena::kAlignment;
}

}  // namespace

Tensor Synchformer::to_device(const Tensor& host) {
  return place_weight(backend_, host, device_weights_, [&] { return folded_bytes(config_); });
}

Tensor Synchformer::load(const WeightStore& weights, const std::string& name, const Shape& shape) {
  // A view of the bundle when it already is where the backend computes, else a device copy into
  // an arena with room for the bundle's tensors and the folded embeddings.
  return place_weight(
      backend_, weights.get("synchformer." + name, shape, {DType::kF32}), device_weights_,
      [&] { return weight_arena_bytes(weights, {"synchformer."}, folded_bytes(config_)); });
}

Synchformer::Linear Synchformer::load_linear(const WeightStore& weights, const std::string& prefix,
                                             int n, int k) {
  return {load(weights, prefix + ".weight", {n, k}), load(weights, prefix + ".bias", {n})};
}

Synchformer::Norm Synchformer::load_norm(const WeightStore& weights, const std::string& prefix) {
  return {load(weights, prefix + ".weight", {config_.dim}),
          load(weights, prefix + ".bias", {config_.dim})};
}

Synchformer::Synchformer(const WeightStore& weights, Backend& backend)
    : config_(SynchformerConfig::from_json(weights.config("synchformer"))), backend_(backend) {
  const SynchformerConfig& c = config_;
  const int d = c.dim, p = c.patch_size, n = c.spatial_tokens(), f = c.num_frames;
  patch_w_ = load(weights, "patch_embed_3d.proj.weight", {d, 3, c.tubelet, p, p});
  patch_b_ = load(weights, "patch_embed_3d.proj.bias", {d});
  // The embeddings are folded on the host once: CLS + pos[0], and pos[1 + s] + temp[t] for the
  // token (t, s), the same sums the reference adds per forward.
  const Tensor cls = host_weight(weights, "synchformer.cls_token", {1, 1, d}, {DType::kF32});
  const Tensor pos = host_weight(weights, "synchformer.pos_embed", {1, 1 + n, d}, {DType::kF32});
  const Tensor temp = host_weight(weights, "synchformer.temp_embed", {1, f, d}, {DType::kF32});
  Tensor cls_pos = Tensor::empty({1, d}, DType::kF32);
  Tensor patch_pos = Tensor::empty({int64_t{f} * n, d}, DType::kF32);
  for (int i = 0; i < d; ++i)
    cls_pos.data<float>()[i] = cls.data<float>()[i] + pos.data<float>()[i];
  for (int t = 0; t < f; ++t)
    for (int s = 0; s < n; ++s)
      for (int i = 0; i < d; ++i)
        patch_pos.data<float>()[(int64_t{t} * n + s) * d + i] =
            pos.data<float>()[int64_t{1 + s} * d + i] + temp.data<float>()[int64_t{t} * d + i];
  // On the CPU these stay the host tensors made here, owned by the model.
  cls_pos_ = to_device(cls_pos);
  patch_pos_ = to_device(patch_pos);
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    Block blk;
    blk.norm1 = load_norm(weights, b + "norm1");
    blk.norm2 = load_norm(weights, b + "norm2");
    blk.norm3 = load_norm(weights, b + "norm3");
    blk.attn_qkv = load_linear(weights, b + "attn.qkv", 3 * d, d);
    blk.attn_proj = load_linear(weights, b + "attn.proj", d, d);
    blk.time_qkv = load_linear(weights, b + "timeattn.qkv", 3 * d, d);
    blk.time_proj = load_linear(weights, b + "timeattn.proj", d, d);
    blk.fc1 = load_linear(weights, b + "mlp.fc1", c.mlp_hidden, d);
    blk.fc2 = load_linear(weights, b + "mlp.fc2", d, c.mlp_hidden);
    blocks_.push_back(std::move(blk));
  }
  norm_ = load_norm(weights, "norm");
  agg_cls_ = load(weights, "spatial_attn_agg.cls_token", {1, 1, d}).reshape({1, d});
  agg_in_ = {load(weights, "spatial_attn_agg.self_attn.in_proj_weight", {3 * d, d}),
             load(weights, "spatial_attn_agg.self_attn.in_proj_bias", {3 * d})};
  agg_out_ = load_linear(weights, "spatial_attn_agg.self_attn.out_proj", d, d);
  agg_fc1_ = load_linear(weights, "spatial_attn_agg.linear1", c.agg_ff, d);
  agg_fc2_ = load_linear(weights, "spatial_attn_agg.linear2", d, c.agg_ff);
  agg_norm1_ = load_norm(weights, "spatial_attn_agg.norm1");
  agg_norm2_ = load_norm(weights, "spatial_attn_agg.norm2");
  weights.expect_all_used("synchformer.");
}

Synchformer::~Synchformer() = default;

// ---- forward ----------------------------------------------------------------------------------

void Synchformer::divided_attention(const Norm& n, const Linear& qkv, const Linear& proj, bool time,
                                    const Tensor& x, Arena& arena) const {
  const SynchformerConfig& c = config_;
  Backend& be = backend_;
  Arena::Scope scope(arena);
  const int64_t B = x.dim(0), L = x.dim(1), D = c.dim, F = c.num_frames, N = c.spatial_tokens();
  const int64_t H = c.num_heads, hd = c.head_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const Tensor normed = arena.alloc({B, L, D}, DType::kF32);
  be.layer_norm(x, &n.w, &n.b, c.layer_norm_eps, normed);
  Tensor qkv_t[3];
  for (int i = 0; i < 3; ++i) {
    qkv_t[i] = arena.alloc({B, L, D}, DType::kF32);
    const Tensor w = qkv.w.slice(0, i * D, D), b = qkv.b.slice(0, i * D, D);
    be.linear(normed, w, &b, qkv_t[i]);
  }
  const Tensor& q = qkv_t[0];
  const Tensor out = normed;  // the normed input is dead now; the attention output reuses it

  // CLS query over every token.
  {
    Arena::Scope s(arena);
    const Tensor cq = arena.alloc({B, 1, D}, DType::kF32);
    be.copy(cq, q.slice(1, 0, 1));
    const Tensor co = arena.alloc({B, 1, D}, DType::kF32);
    be.attention(cq.reshape({B, 1, H, hd}), qkv_t[1].reshape({B, L, H, hd}),
                 qkv_t[2].reshape({B, L, H, hd}), scale, co.reshape({B, 1, H, hd}));
    be.copy(out.slice(1, 0, 1), co);
  }

  // Patch queries in groups: time = per spatial position n the F frames (token 1 + f·N + n);
  // space = per frame f its N positions. Views of the patch tokens as [B, groups, len, D].
  const int64_t G = time ? N : F, S = time ? F : N;
  const int64_t g_stride = (time ? 1 : N) * D, s_stride = (time ? N : 1) * D;
  auto patches = [&](const Tensor& t) {
    return t.slice(1, 1, L - 1)
        .as_strided({B, G, S, D}, strides_of({L * D, g_stride, s_stride, 1}));
  };
  auto cls_rep = [&](const Tensor& t) {
    return t.slice(1, 0, 1).as_strided({B, G, 1, D}, strides_of({L * D, 0, 0, 1}));
  };
  const Tensor gq = arena.alloc({B, G, S, D}, DType::kF32);
  const Tensor gk = arena.alloc({B, G, 1 + S, D}, DType::kF32);
  const Tensor gv = arena.alloc({B, G, 1 + S, D}, DType::kF32);
  const Tensor go = arena.alloc({B, G, S, D}, DType::kF32);
  be.copy(gq, patches(q));
  for (int i = 1; i < 3; ++i) {
    const Tensor& g = i == 1 ? gk : gv;
    be.copy(g.slice(2, 0, 1), cls_rep(qkv_t[i]));
    be.copy(g.slice(2, 1, S), patches(qkv_t[i]));
  }
  be.attention(gq.reshape({B * G, S, H, hd}), gk.reshape({B * G, 1 + S, H, hd}),
               gv.reshape({B * G, 1 + S, H, hd}), scale, go.reshape({B * G, S, H, hd}));
  be.copy(patches(out), go);
  be.linear(out, proj.w, &proj.b, x, /*beta=*/1.0f);  // the residual add, fused
}

void Synchformer::forward(const Tensor& pixels, const Tensor& features, Arena& arena) const {
  const SynchformerConfig& c = config_;
  const int64_t B = pixels.dim(0), D = c.dim, F = c.num_frames, N = c.spatial_tokens();
  const int64_t L = c.tokens();
  expect_shape(pixels, {B, 3, c.segment, c.image_size, c.image_size}, "Synchformer pixels");
  expect_shape(features, {B, F, D}, "Synchformer features");
  if (B == 0) return;
  Backend& be = backend_;
  Arena::Scope scope(arena);

  const Tensor x = arena.alloc({B, L, D}, DType::kF32);
  {
    Arena::Scope s(arena);
    const Tensor patches = arena.alloc({B, F * N, D}, DType::kF32);
    be.patch_embed(pixels, patch_w_, &patch_b_, patches);
    be.add(patches, patch_pos_.expand({B, F * N, D}), patches);
    be.copy(x.slice(1, 1, F * N), patches);
    be.copy(x.slice(1, 0, 1), cls_pos_.reshape({1, 1, D}).expand({B, 1, D}));
  }

  for (const Block& blk : blocks_) {
    divided_attention(blk.norm3, blk.time_qkv, blk.time_proj, /*time=*/true, x, arena);
    divided_attention(blk.norm1, blk.attn_qkv, blk.attn_proj, /*time=*/false, x, arena);
    Arena::Scope s(arena);
    const Tensor normed = arena.alloc({B, L, D}, DType::kF32);
    be.layer_norm(x, &blk.norm2.w, &blk.norm2.b, c.layer_norm_eps, normed);
    const Tensor hidden = arena.alloc({B, L, c.mlp_hidden}, DType::kF32);
    be.linear(normed, blk.fc1.w, &blk.fc1.b, hidden);
    be.activation(Activation::kGeluErf, hidden, hidden);
    be.linear(hidden, blk.fc2.w, &blk.fc2.b, x, /*beta=*/1.0f);
  }

  // Aggregation per frame over [agg CLS; N normed tokens]. Only the CLS output is kept, so only
  // its query, residual and feed-forward are computed (the keys/values need every token).
  const int64_t BF = B * F, H = c.num_heads, hd = c.head_dim();
  const Tensor y = arena.alloc({BF, 1 + N, D}, DType::kF32);
  {
    Arena::Scope s(arena);
    const Tensor tokens = arena.alloc({B, F * N, D}, DType::kF32);
    be.copy(tokens, x.slice(1, 1, F * N));
    be.layer_norm(tokens, &norm_.w, &norm_.b, c.layer_norm_eps, tokens);
    be.copy(y.slice(1, 1, N), tokens.reshape({BF, N, D}));
  }
  be.copy(y.slice(1, 0, 1), agg_cls_.reshape({1, 1, D}).expand({BF, 1, D}));
  const Tensor yn = arena.alloc({BF, 1 + N, D}, DType::kF32);
  be.layer_norm(y, &agg_norm1_.w, &agg_norm1_.b, c.layer_norm_eps, yn);
  const Tensor cls_n = arena.alloc({BF, 1, D}, DType::kF32);
  be.copy(cls_n, yn.slice(1, 0, 1));
  const Tensor q = arena.alloc({BF, 1, D}, DType::kF32);
  const Tensor k = arena.alloc({BF, 1 + N, D}, DType::kF32);
  const Tensor v = arena.alloc({BF, 1 + N, D}, DType::kF32);
  auto rows = [&](const Tensor& t, int block) { return t.slice(0, block * D, D); };
  const Tensor bq = rows(agg_in_.b, 0), bk = rows(agg_in_.b, 1), bv = rows(agg_in_.b, 2);
  be.linear(cls_n, rows(agg_in_.w, 0), &bq, q);
  be.linear(yn, rows(agg_in_.w, 1), &bk, k);
  be.linear(yn, rows(agg_in_.w, 2), &bv, v);
  const Tensor att = arena.alloc({BF, 1, D}, DType::kF32);
  be.attention(q.reshape({BF, 1, H, hd}), k.reshape({BF, 1 + N, H, hd}),
               v.reshape({BF, 1 + N, H, hd}), 1.0f / std::sqrt(static_cast<float>(hd)),
               att.reshape({BF, 1, H, hd}));
  const Tensor h = arena.alloc({BF, 1, D}, DType::kF32);
  be.copy(h, y.slice(1, 0, 1));
  be.linear(att, agg_out_.w, &agg_out_.b, h, /*beta=*/1.0f);
  const Tensor hn = arena.alloc({BF, 1, D}, DType::kF32);
  be.layer_norm(h, &agg_norm2_.w, &agg_norm2_.b, c.layer_norm_eps, hn);
  const Tensor ff = arena.alloc({BF, 1, c.agg_ff}, DType::kF32);
  be.linear(hn, agg_fc1_.w, &agg_fc1_.b, ff);
  be.activation(Activation::kGeluErf, ff, ff);
  be.linear(ff, agg_fc2_.w, &agg_fc2_.b, h, /*beta=*/1.0f);
  be.copy(features, h.reshape({B, F, D}));
}

size_t Synchformer::workspace_bytes(int batch) const {
  const SynchformerConfig& c = config_;
  const size_t b = static_cast<size_t>(batch), l = static_cast<size_t>(c.tokens());
  const size_t d = static_cast<size_t>(c.dim),
               m = static_cast<size_t>(std::max(c.mlp_hidden, c.agg_ff));
  const size_t px = 3 * static_cast<size_t>(c.segment) * c.image_size * c.image_size;
  const size_t f = sizeof(float), slack = 64 * Arena::kAlignment;
  // x + the largest phase: divided attention (normed, q, k, v and four group tensors with CLS
  // slots), the MLP (normed + hidden) or the aggregation (y, yn, k, v with one CLS per frame).
  const size_t attn = 9 * l * d + 2 * static_cast<size_t>(c.spatial_tokens() + c.num_frames) * d;
  const size_t mlp = l * (d + m);
  const size_t agg = 4 * (l + static_cast<size_t>(c.num_frames)) * d + 8 * d + m;
  return b * (px + l * d + std::max({attn, mlp, agg}) + c.num_frames * d) * f + slack;
}

Tensor Synchformer::encode_frames(const Tensor& frames, Arena& arena, int chunk) const {
  if (frames.rank() != 4 || frames.dim(3) != 3 || frames.dtype() != DType::kU8 ||
      frames.device() != DeviceKind::kCPU)
    throw Error(ErrorKind::kInvalidInput,
                "Synchformer: frames must be host U8 [T, H, W, 3], got " + frames.describe());
  FOLEY_CHECK(chunk >= 1, "Synchformer: chunk must be >= 1");
  const SynchformerConfig& c = config_;
  const int64_t T = frames.dim(0), D = c.dim, F = c.num_frames, Sz = c.image_size;
  if (T < c.segment)
    throw Error(ErrorKind::kInvalidInput, "Synchformer: " + std::to_string(T) +
                                              " frames, need at least " +
                                              std::to_string(c.segment));
  const int64_t S = (T - c.segment) / c.stride + 1;
  const int64_t plane = Sz * Sz, frame_px = 3 * plane;
  // Every frame used by some segment is preprocessed once (segments overlap by half).
  const int64_t used = (S - 1) * c.stride + c.segment;
  Tensor pre = Tensor::empty({used, 3, Sz, Sz}, DType::kF32);
  for (int64_t t = 0; t < used; ++t)
    synchformer_preprocess(frames.select(0, t), static_cast<int>(Sz),
                           pre.data<float>() + t * frame_px);
  Tensor out = Tensor::empty({1, S * F, D}, DType::kF32);
  const int64_t max_b = std::min<int64_t>(chunk, S);
  Tensor host_pixels = Tensor::empty({max_b, 3, c.segment, Sz, Sz}, DType::kF32);
  Tensor host_features = Tensor::empty({max_b, F, D}, DType::kF32);
  for (int64_t s0 = 0; s0 < S; s0 += max_b) {
    const int64_t b = std::min(max_b, S - s0);
    // [T, C, H, W] frames -> the model's [C, T, H, W] per segment.
    for (int64_t i = 0; i < b; ++i)
      for (int64_t t = 0; t < c.segment; ++t)
        for (int64_t ch = 0; ch < 3; ++ch)
          std::copy_n(pre.data<float>() + ((s0 + i) * c.stride + t) * frame_px + ch * plane, plane,
                      host_pixels.data<float>() + ((i * 3 + ch) * c.segment + t) * plane);
    Arena::Scope scope(arena);
    const Tensor pixels = arena.alloc({b, 3, c.segment, Sz, Sz}, DType::kF32);
    const Tensor features = arena.alloc({b, F, D}, DType::kF32);
    backend_.copy_from_host(pixels, host_pixels.slice(0, 0, b));
    forward(pixels, features, arena);
    backend_.copy_to_host(host_features.slice(0, 0, b), features);
    backend_.synchronize();
    std::copy_n(host_features.data<float>(), b * F * D, out.data<float>() + s0 * F * D);
  }
  return out;
}

}  // namespace foley
