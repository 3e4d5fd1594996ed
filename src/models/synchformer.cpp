#include "models/synchformer.h"

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
                "Synchformer config: image_size/patch_size or segment/tubelet "
                "inconsistent");
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

Tensor Synchformer::load_matmul(const WeightStore& weights, const std::string& name,
                                const Shape& shape) {
  // F16 from `foley convert --synchformer-dtype f16` (the reference's autocast precision).
  return place_weight(
      backend_, weights.get("synchformer." + name, shape, {DType::kF32, DType::kF16}),
      device_weights_,
      [&] { return weight_arena_bytes(weights, {"synchformer."}, folded_bytes(config_)); });
}

Synchformer::Linear Synchformer::load_linear(const WeightStore& weights, const std::string& prefix,
                                             int n, int k) {
  return {load_matmul(weights, prefix + ".weight", {n, k}), load(weights, prefix + ".bias", {n})};
}

Synchformer::Norm Synchformer::load_norm(const WeightStore& weights, const std::string& prefix) {
  return {load(weights, prefix + ".weight", {config_.dim}),
          load(weights, prefix + ".bias", {config_.dim})};
}

Synchformer::Synchformer(const WeightStore& weights, Backend& backend)
    : config_(SynchformerConfig::from_json(weights.config("synchformer"))), backend_(backend) {
  const SynchformerConfig& c = config_;
  const int d = c.dim, p = c.patch_size, n = c.spatial_tokens(), f = c.num_frames;
  patch_w_ = load_matmul(weights, "patch_embed_3d.proj.weight", {d, 3, c.tubelet, p, p});
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
  agg_in_ = {load_matmul(weights, "spatial_attn_agg.self_attn.in_proj_weight", {3 * d, d}),
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

namespace {

// [B, len, D] token rows (last dim contiguous, any batch and row strides) as attention's [B, len,
// H, hd] heads: a view, so q/k/v/out are read and written where they lie.
Tensor heads(const Tensor& t, int64_t H, int64_t hd) {
  return t.as_strided({t.dim(0), t.dim(1), H, hd}, strides_of({t.stride(0), t.stride(1), hd, 1}));
}

}  // namespace

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
  // q | k | v of every token from one GEMM: token rows of R = 3·D.
  const int64_t R = 3 * D;
  const Tensor qkv_t = arena.alloc({B, L, R}, DType::kF32);
  be.linear(normed, qkv.w, &qkv.b, qkv_t);
  auto part = [&](int i) { return qkv_t.slice(2, i * D, D); };
  const Tensor out = normed;  // the normed input is dead now; the attention output reuses it

  // CLS query over every token, read and written in place.
  be.attention(heads(part(0).slice(1, 0, 1), H, hd), heads(part(1), H, hd), heads(part(2), H, hd),
               scale, heads(out.slice(1, 0, 1), H, hd));

  // Patch queries in groups: time = per spatial position the F frames (token 1 + f·N + n); space =
  // per frame its N positions. q, k and v of every group are gathered at once into [3, B, G, 1 + S,
  // D], slot 0 of k and v holding the CLS token every group also attends to: two copies for the
  // whole batch instead of one per tensor and slot.
  const int64_t G = time ? N : F, S = time ? F : N;
  const int64_t g_tok = time ? 1 : N,
                s_tok = time ? N : 1;  // token steps between groups/slots
  const Tensor grouped = arena.alloc({3, B, G, 1 + S, D}, DType::kF32);
  be.copy(grouped.slice(3, 1, S),
          qkv_t.slice(1, 1, L - 1)
              .as_strided({3, B, G, S, D}, strides_of({D, L * R, g_tok * R, s_tok * R, 1})));
  be.copy(grouped.slice(0, 1, 2).slice(3, 0, 1),
          part(1).slice(1, 0, 1).as_strided({2, B, G, 1, D}, strides_of({D, L * R, 0, 0, 1})));
  const Tensor gq = grouped.select(0, 0).slice(2, 1, S).as_strided(
      {B * G, S, H, hd}, strides_of({(1 + S) * D, D, hd, 1}));
  const Tensor go = arena.alloc({B, G, S, D}, DType::kF32);
  be.attention(gq, grouped.select(0, 1).reshape({B * G, 1 + S, H, hd}),
               grouped.select(0, 2).reshape({B * G, 1 + S, H, hd}), scale,
               go.reshape({B * G, S, H, hd}));
  be.copy(
      out.slice(1, 1, L - 1).as_strided({B, G, S, D}, strides_of({L * D, g_tok * D, s_tok * D, 1})),
      go);
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

  // Patches embedded straight into the token slots of the residual stream.
  const Tensor x = arena.alloc({B, L, D}, DType::kF32);
  const Tensor patches = x.slice(1, 1, F * N);
  be.patch_embed(pixels, patch_w_, &patch_b_, patches);
  be.add(patches, patch_pos_.expand({B, F * N, D}), patches);
  be.copy(x.slice(1, 0, 1), cls_pos_.reshape({1, 1, D}).expand({B, 1, D}));

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
  // The final norm reads the residual stream's patch tokens and writes each frame's token slots.
  be.layer_norm(
      x.slice(1, 1, F * N).as_strided({B, F, N, D}, strides_of({L * D, N * D, D, 1})), &norm_.w,
      &norm_.b, c.layer_norm_eps,
      y.slice(1, 1, N).as_strided({B, F, N, D}, strides_of({F * (1 + N) * D, (1 + N) * D, D, 1})));
  const Tensor agg_cls = agg_cls_.reshape({1, 1, D}).expand({BF, 1, D});
  be.copy(y.slice(1, 0, 1), agg_cls);
  const Tensor yn = arena.alloc({BF, 1 + N, D}, DType::kF32);
  be.layer_norm(y, &agg_norm1_.w, &agg_norm1_.b, c.layer_norm_eps, yn);
  // q of the CLS rows only; k | v of every row from one GEMM (token rows of 2·D).
  const Tensor q = arena.alloc({BF, 1, D}, DType::kF32);
  const Tensor kv = arena.alloc({BF, 1 + N, 2 * D}, DType::kF32);
  const Tensor bq = agg_in_.b.slice(0, 0, D), bkv = agg_in_.b.slice(0, D, 2 * D);
  be.linear(yn.slice(1, 0, 1), agg_in_.w.slice(0, 0, D), &bq, q);
  be.linear(yn, agg_in_.w.slice(0, D, 2 * D), &bkv, kv);
  const Tensor att = arena.alloc({BF, 1, D}, DType::kF32);
  be.attention(q.reshape({BF, 1, H, hd}), heads(kv.slice(2, 0, D), H, hd),
               heads(kv.slice(2, D, D), H, hd), 1.0f / std::sqrt(static_cast<float>(hd)),
               att.reshape({BF, 1, H, hd}));
  // The CLS output accumulates in `features` itself when it is contiguous ([B, F, D] = [BF, 1, D]).
  const bool direct = features.is_contiguous();
  const Tensor h = direct ? features.reshape({BF, 1, D}) : arena.alloc({BF, 1, D}, DType::kF32);
  be.copy(h, agg_cls);
  be.linear(att, agg_out_.w, &agg_out_.b, h, /*beta=*/1.0f);
  const Tensor hn = arena.alloc({BF, 1, D}, DType::kF32);
  be.layer_norm(h, &agg_norm2_.w, &agg_norm2_.b, c.layer_norm_eps, hn);
  const Tensor ff = arena.alloc({BF, 1, c.agg_ff}, DType::kF32);
  be.linear(hn, agg_fc1_.w, &agg_fc1_.b, ff);
  be.activation(Activation::kGeluErf, ff, ff);
  be.linear(ff, agg_fc2_.w, &agg_fc2_.b, h, /*beta=*/1.0f);
  if (!direct) be.copy(features, h.reshape({B, F, D}));
}

size_t Synchformer::workspace_bytes(int batch) const {
  const SynchformerConfig& c = config_;
  const size_t b = static_cast<size_t>(batch), l = static_cast<size_t>(c.tokens());
  const size_t d = static_cast<size_t>(c.dim),
               m = static_cast<size_t>(std::max(c.mlp_hidden, c.agg_ff));
  const size_t px = 3 * static_cast<size_t>(c.segment) * c.image_size * c.image_size;
  const size_t f = sizeof(float), slack = 64 * Arena::kAlignment;
  // x + the largest phase: divided attention (normed, q|k|v, the grouped q/k/v with CLS slots and
  // the grouped output), the MLP (normed + hidden) or the aggregation (y, yn, k|v with one CLS per
  // frame).
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
  parallel_for(used, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      synchformer_preprocess(frames.select(0, t), static_cast<int>(Sz),
                             pre.data<float>() + t * frame_px);
  });
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
