// MMDiT: weights, per-request context and the top-level forward (model-spec §2.2, §2.3).
#include "models/mmdit.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "core/check.h"
#include "models/device_weights.h"
#include "models/mmdit_internal.h"
#include "models/rope.h"

namespace foley {

namespace {

constexpr int64_t kSyncSegment = 8;    // Synchformer tokens per 16-frame window

int64_t need_int(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j.at(key).is_number_integer())
    throw make_error(ErrorKind::kInvalidInput, "dit config: missing integer field \"%s\"", key);
  const int64_t v = j.at(key).get<int64_t>();
  if (v <= 0) throw make_error(ErrorKind::kInvalidInput, "dit config: \"%s\" must be > 0", key);
  return v;
}

// The activation dtype for these weights on this backend (see mmdit.h).
DType activation_dtype_for(const Backend& backend, DType weights) {
  const char* force = std::getenv("FOLEY_DIT_F32_ACTIVATIONS");
  if (force != nullptr && std::strcmp(force, "1") == 0) return DType::kF32;
  const bool half = weights == DType::kBF16 || weights == DType::kF16;
  return half && backend.supports_16bit_activations() ? weights : DType::kF32;
}

// Weights from a bundle, on the backend's device: views of the bundle where it already is there,
// else copies in one device arena sized for every "dit." tensor. The arena is owned jointly by
// the tensors handed out (their `owner`), so it lives as long as the model keeps any of them.
DitWeightGetter store_getter(const WeightStore& store, Backend& backend) {
  auto arena = std::make_shared<std::unique_ptr<Arena>>();
  return [&store, &backend, arena](const std::string& name, const Shape& shape, DitWeight kind) {
    const std::string key = "dit." + name;
    const Tensor t = kind == DitWeight::kMatrix ? store.get(key, shape)
                     : kind == DitWeight::kVector
                         ? store.get(key, shape, {DType::kF32})
                         : store.get(key, shape, {DType::kF8E4M3, DType::kI8});
    const Tensor placed =
        place_weight(backend, t, *arena, [&] { return weight_arena_bytes(store, {"dit."}); });
    if (placed.raw() == t.raw()) return placed;
    return Tensor(placed.raw(), placed.dtype(), placed.shape(), placed.device(), arena);
  };
}

}  // namespace

int64_t MmditConfig::conv_mlp_width(int64_t hidden_arg) {
  const int64_t h = 2 * hidden_arg / 3;  // int(2·hidden/3) of a positive value
  return (h + 255) / 256 * 256;
}

MmditConfig MmditConfig::from_json(const nlohmann::json& j) {
  MmditConfig c;
  c.hidden = need_int(j, "hidden_size");
  c.heads = need_int(j, "num_heads");
  c.head_dim = need_int(j, "head_dim");
  c.depth_triple = need_int(j, "depth_triple_blocks");
  c.depth_single = j.value("depth_single_blocks", int64_t{-1});
  if (c.depth_single < 0)
    throw Error(ErrorKind::kInvalidInput, "dit config: missing \"depth_single_blocks\"");
  c.latent_dim = need_int(j, "latent_dim");
  c.clip_dim = need_int(j, "clip_dim");
  c.sync_dim = need_int(j, "sync_dim");
  c.text_dim = need_int(j, "text_dim");
  c.mlp_hidden = need_int(j, "mlp_hidden");
  c.conv_mlp_hidden = need_int(j, "conv_mlp_hidden");
  c.sync_mlp_hidden = need_int(j, "sync_mlp_hidden");
  if (j.contains("weight_quant")) {
    const nlohmann::json& q = j.at("weight_quant");
    c.quant = q.is_string() ? quant_format_from_name(q.get<std::string>()) : std::nullopt;
    if (!c.quant)
      throw make_error(ErrorKind::kUnsupported,
                       "dit config: unknown weight_quant %s (this foley reads \"fp8_e4m3\" and "
                       "\"int8\"; re-convert the checkpoint with this version)",
                       q.dump().c_str());
  }
  if (c.heads * c.head_dim != c.hidden || c.head_dim % 2 != 0)
    throw make_error(ErrorKind::kInvalidInput, "dit config: %lld heads × %lld != hidden %lld",
                     (long long)c.heads, (long long)c.head_dim, (long long)c.hidden);
  return c;
}

nlohmann::json MmditConfig::to_json() const {
  nlohmann::json j = {{"hidden_size", hidden},
                      {"num_heads", heads},
                      {"head_dim", head_dim},
                      {"depth_triple_blocks", depth_triple},
                      {"depth_single_blocks", depth_single},
                      {"latent_dim", latent_dim},
                      {"clip_dim", clip_dim},
                      {"sync_dim", sync_dim},
                      {"text_dim", text_dim},
                      {"mlp_hidden", mlp_hidden},
                      {"conv_mlp_hidden", conv_mlp_hidden},
                      {"sync_mlp_hidden", sync_mlp_hidden}};
  if (quant) j["weight_quant"] = quant_format_name(*quant);
  return j;
}

// ---- construction -------------------------------------------------------------------------------

Mmdit::Mmdit(const WeightStore& store, Backend& backend)
    : Mmdit(MmditConfig::from_json(store.config("dit")), store_getter(store, backend), backend) {
  store.expect_all_used("dit.");
}

Mmdit::Mmdit(const MmditConfig& config, const DitWeightGetter& get, Backend& backend)
    : config_(config), backend_(backend), w_(std::make_unique<Weights>()) {
  const MmditConfig& c = config_;
  const int64_t H = c.hidden, D = c.head_dim;
  // Refused at load, not at the first request: a GPU without the instructions (FP8 before sm_89).
  if (c.quant && !backend_.supports_quantized(*c.quant))
    throw make_error(ErrorKind::kUnsupported,
                     "this bundle's DiT is quantised to %s, which %s cannot run (FP8 needs an "
                     "Ada or Hopper GPU, sm_89+); convert the checkpoint with --dtype int8 or bf16",
                     quant_format_name(*c.quant), backend_.name().c_str());
  // One dtype shared by every matrix, or none (mixed): 16-bit activations need a uniform one.
  std::optional<DType> matrix_dtype;
  bool mixed = false;
  auto mat = [&](const std::string& name, const Shape& shape) {
    Tensor t = get(name, shape, DitWeight::kMatrix);
    FOLEY_CHECK(t.device() == backend_.device(), "dit weight %s is not on the %s device",
                name.c_str(), backend_.name().c_str());
    if (!matrix_dtype) matrix_dtype = t.dtype();
    mixed = mixed || *matrix_dtype != t.dtype();
    return t;
  };
  auto vec = [&](const std::string& name, int64_t n) {
    Tensor t = get(name, {n}, DitWeight::kVector);
    FOLEY_CHECK(t.dtype() == DType::kF32, "dit vector %s must be F32", name.c_str());
    FOLEY_CHECK(t.device() == backend_.device(), "dit vector %s is not on the %s device",
                name.c_str(), backend_.name().c_str());
    return t;
  };
  auto lin = [&](const std::string& name, int64_t n, int64_t k, bool bias = true) {
    DitLinear l{mat(name + ".weight", {n, k}), Tensor(), Tensor()};
    if (bias) l.b = vec(name + ".bias", n);
    return l;
  };
  // A block matrix: 8-bit codes [n, k] + scales in a quantised bundle, else as lin. A k=3
  // convolution is [n, 3·C_in] in both, its taps side by side (tap-major columns).
  auto block = [&](const std::string& name, int64_t n, int64_t k, bool bias = true) {
    if (!c.quant) return lin(name, n, k, bias);
    DitLinear l;
    l.w = get(name + ".weight", {n, k}, DitWeight::kQuantized);
    FOLEY_CHECK(l.w.dtype() == quant_storage_dtype(*c.quant) && l.w.device() == backend_.device(),
                "dit weight %s: %s on %s, expected %s codes on the %s device", name.c_str(),
                dtype_name(l.w.dtype()), l.w.device() == DeviceKind::kCPU ? "the CPU" : "a GPU",
                dtype_name(quant_storage_dtype(*c.quant)), backend_.name().c_str());
    l.scale = vec(name + ".weight_scale", n);
    if (bias) l.b = vec(name + ".bias", n);
    return l;
  };

  Weights& w = *w_;
  w.audio_embedder = lin("audio_embedder.proj", H, c.latent_dim);
  w.visual_w1 = lin("visual_proj.w1", H, c.clip_dim, false);
  w.visual_w2 = lin("visual_proj.w2", H, H, false);
  w.visual_w3 = lin("visual_proj.w3", H, c.clip_dim, false);
  w.cond_1 = lin("cond_in.linear_1", H, c.text_dim);
  w.cond_2 = lin("cond_in.linear_2", H, H);
  w.time_1 = lin("time_in.mlp.0", H, kTimeFreqDim);
  w.time_2 = lin("time_in.mlp.2", H, H);
  w.sync_0 = lin("sync_in.0", H, c.sync_dim);
  w.sync_w1 = lin("sync_in.2.w1", c.sync_mlp_hidden, H, false);
  w.sync_w2 = lin("sync_in.2.w2", H, c.sync_mlp_hidden, false);
  w.sync_w3 = lin("sync_in.2.w3", c.sync_mlp_hidden, H, false);
  w.sync_pos_emb = get("sync_pos_emb", {kSyncSegment, c.sync_dim}, DitWeight::kVector);
  FOLEY_CHECK(w.sync_pos_emb.device() == backend_.device(),
              "dit sync_pos_emb is not on the %s device", backend_.name().c_str());
  w.empty_clip = vec("empty_clip_feat", c.clip_dim);
  w.empty_sync = vec("empty_sync_feat", c.sync_dim);

  for (int64_t i = 0; i < c.depth_triple; ++i) {
    const std::string p = "triple_blocks." + std::to_string(i) + ".";
    DitTripleBlock b;
    auto stream = [&](const std::string& s, const std::string& qkv, const std::string& qn,
                      const std::string& kn, const std::string& self_proj) {
      DitStream st;
      st.mod = block(p + s + "_mod.linear", 9 * H, H);
      st.qkv = block(p + qkv, 3 * H, H);
      st.q_norm = vec(p + qn + ".weight", D);
      st.k_norm = vec(p + kn + ".weight", D);
      st.self_proj = block(p + self_proj, H, H);
      st.cross_q = block(p + s + "_cross_q", H, H);
      st.cross_q_norm = vec(p + s + "_cross_q_norm.weight", D);
      st.cross_proj = block(p + s + "_cross_proj", H, H);
      st.fc1 = block(p + s + "_mlp.fc1", c.mlp_hidden, H);
      st.fc2 = block(p + s + "_mlp.fc2", H, c.mlp_hidden);
      return st;
    };
    b.audio = stream("audio", "audio_self_attn_qkv", "audio_self_q_norm", "audio_self_k_norm",
                     "audio_self_proj");
    b.visual = stream("v_cond", "v_cond_attn_qkv", "v_cond_attn_q_norm", "v_cond_attn_k_norm",
                      "v_cond_self_proj");
    b.text_kv = block(p + "text_cross_kv", 2 * H, H);
    b.text_k_norm = vec(p + "text_cross_k_norm.weight", D);
    w.triple.push_back(std::move(b));
  }
  for (int64_t i = 0; i < c.depth_single; ++i) {
    const std::string p = "single_blocks." + std::to_string(i) + ".";
    const int64_t F = c.conv_mlp_hidden;
    DitSingleBlock b;
    b.mod = block(p + "modulation.linear", 6 * H, H);
    b.qkv = block(p + "linear_qkv", 3 * H, H);
    b.q_norm = vec(p + "q_norm.weight", D);
    b.k_norm = vec(p + "k_norm.weight", D);
    b.conv1 = block(p + "linear1", H, 3 * H);
    b.w1 = block(p + "linear2.w1", F, 3 * H, false);
    b.w2 = block(p + "linear2.w2", H, 3 * F, false);
    b.w3 = block(p + "linear2.w3", F, 3 * H, false);
    w.single.push_back(std::move(b));
  }
  // final_layer.adaLN_modulation is not loaded: the official FinalLayer1D's modulation is a
  // no-op (see convert_dit.cpp), so the converter leaves it out of the bundle.
  w.final_linear = lin("final_layer.linear", c.latent_dim, H);
  act_ = mixed ? DType::kF32 : activation_dtype_for(backend_, *matrix_dtype);
}

Mmdit::~Mmdit() = default;

const Tensor& Mmdit::empty_clip_feat() const {
  return w_->empty_clip;
}
const Tensor& Mmdit::empty_sync_feat() const {
  return w_->empty_sync;
}

// ---- per-request context ------------------------------------------------------------------------

namespace {

struct ContextDims {
  int64_t B, Tv, S8, L, Ta;
};

ContextDims check_context_inputs(const MmditConfig& c, const Tensor& clip, const Tensor& sync,
                                 const Tensor& text, int64_t audio_len) {
  const ContextDims d{clip.dim(0), clip.dim(1), sync.dim(1), text.dim(1), audio_len};
  expect_shape(clip, {d.B, d.Tv, c.clip_dim}, "dit clip features");
  expect_shape(sync, {d.B, d.S8, c.sync_dim}, "dit sync features");
  expect_shape(text, {d.B, d.L, c.text_dim}, "dit text features");
  if (d.B < 1 || d.Tv < 1 || d.L < 1 || d.Ta < 1 || d.S8 < kSyncSegment || d.S8 % kSyncSegment != 0)
    throw make_error(ErrorKind::kInvalidInput,
                     "dit: need Ta, Tv, L >= 1 and whole 8-token sync segments (Ta=%lld Tv=%lld "
                     "L=%lld sync=%lld)",
                     (long long)d.Ta, (long long)d.Tv, (long long)d.L, (long long)d.S8);
  FOLEY_CHECK(clip.is_contiguous() && sync.is_contiguous() && text.is_contiguous(),
              "dit prepare: inputs must be contiguous");
  return d;
}

}  // namespace

// Mirrors the allocations of prepare(): the persistent tensors, then the largest group of
// temporaries (each group lives in its own scope above them).
size_t Mmdit::context_arena_bytes(int64_t batch, int64_t audio_len, int64_t visual_len,
                                  int64_t text_len, int64_t sync_len) const {
  const MmditConfig& c = config_;
  const int64_t B = batch, Ta = audio_len, Tv = visual_len, L = text_len, S8 = sync_len;
  const int64_t H = c.hidden, half = c.head_dim / 2;
  ArenaBytes persistent;
  persistent.f32(B * kTimeFreqDim)
      .of(B * H, act_)
      .f32(B * H)
      .of(2 * c.depth_triple * B * 9 * H, act_);
  for (int64_t n : {Tv + Ta, Tv + Ta, Ta, L}) persistent.f32(n * half).f32(n * half);
  for (int64_t i = 0; i < c.depth_triple; ++i) persistent.of(B * L * 2 * H, act_);
  persistent.f32(B * Tv * H).f32(B * Ta * H);
  const size_t temporaries = std::max({ArenaBytes().f32(B * L * H).f32(B * L * H).total,
                                       ArenaBytes().f32(B * Tv * H).f32(B * Tv * H).total,
                                       ArenaBytes()
                                           .f32(B * S8 * c.sync_dim)
                                           .f32(B * S8 * H)
                                           .f32(B * S8 * c.sync_mlp_hidden)
                                           .f32(B * S8 * c.sync_mlp_hidden)
                                           .total});
  return persistent.total + temporaries;
}

std::unique_ptr<DitContext> Mmdit::prepare(const Tensor& clip, const Tensor& sync,
                                           const Tensor& text, int64_t audio_len,
                                           const std::vector<int64_t>& text_lens) const {
  const ContextDims d = check_context_inputs(config_, clip, sync, text, audio_len);
  // Sized exactly, so the context is one block.
  auto arena = std::make_unique<Arena>(backend_.block_allocator(),
                                       context_arena_bytes(d.B, d.Ta, d.Tv, d.L, d.S8));
  std::unique_ptr<DitContext> ctx = prepare(clip, sync, text, audio_len, *arena, text_lens);
  ctx->arena_ = std::move(arena);
  return ctx;
}

std::unique_ptr<DitContext> Mmdit::prepare(const Tensor& clip, const Tensor& sync,
                                           const Tensor& text, int64_t audio_len, Arena& arena,
                                           const std::vector<int64_t>& text_lens) const {
  const MmditConfig& c = config_;
  const Weights& w = *w_;
  Backend& be = backend_;
  const ContextDims d = check_context_inputs(c, clip, sync, text, audio_len);
  const int64_t B = d.B, Tv = d.Tv, S8 = d.S8, L = d.L, Ta = d.Ta;
  const int64_t H = c.hidden, S = S8 / kSyncSegment;
  if (!text_lens.empty() && static_cast<int64_t>(text_lens.size()) != B)
    throw make_error(ErrorKind::kInvalidInput, "dit: %zu text lengths for a batch of %lld",
                     text_lens.size(), static_cast<long long>(B));

  auto ctx = std::unique_ptr<DitContext>(new DitContext());
  ctx->batch_ = B;
  ctx->ta_ = Ta;
  ctx->tv_ = Tv;
  ctx->text_len_ = L;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = text_lens.empty() ? L : text_lens[static_cast<size_t>(b)];
    if (len < 1 || len > L)
      throw make_error(
          ErrorKind::kInvalidInput, "dit: row %lld's text length %lld is not in 1..%lld",
          static_cast<long long>(b), static_cast<long long>(len), static_cast<long long>(L));
    if (!ctx->text_rows_.empty() && ctx->text_rows_.back().len == len)
      ++ctx->text_rows_.back().rows;
    else
      ctx->text_rows_.push_back({b, 1, len});
  }
  ctx->temb_host_.assign(static_cast<size_t>(B * kTimeFreqDim), 0.0f);

  // Persistent tensors first, in context_arena_bytes' order; temporaries go above them in a
  // scope.
  ctx->temb_ = arena.alloc({B, kTimeFreqDim}, DType::kF32);
  ctx->time_hidden_ = arena.alloc({B, H}, act_);
  ctx->vec_ = arena.alloc({B, H}, DType::kF32);
  ctx->mods_ = arena.alloc({2 * c.depth_triple, B, 9 * H}, act_);
  auto upload_rope = [&](const std::vector<float>& pos) {
    HostRope h = rope_table_host(pos, c.head_dim);
    RopeTable t{arena.alloc(h.cos.shape(), DType::kF32), arena.alloc(h.sin.shape(), DType::kF32)};
    be.copy_from_host(t.cos, h.cos);
    be.copy_from_host(t.sin, h.sin);
    return t;
  };
  ctx->self_rope_ = upload_rope(joint_self_positions(Tv, Ta));
  ctx->cross_rope_ = upload_rope(joint_cross_positions(Tv, Ta));
  ctx->single_rope_ = upload_rope(linear_positions(Ta));
  const RopeTable text_rope = upload_rope(linear_positions(L));
  for (int64_t i = 0; i < c.depth_triple; ++i)
    ctx->text_kv_.push_back(arena.alloc({B, L, 2 * H}, act_));
  ctx->visual_ = arena.alloc({B, Tv, H}, DType::kF32);
  ctx->sync_a_ = arena.alloc({B, Ta, H}, DType::kF32);

  Arena::Scope scope(arena);
  // Text: cond_in, then each triple block's K/V with the k-norm and RoPE (0..L−1) applied.
  {
    Arena::Scope s(arena);
    const Tensor h = arena.alloc({B, L, H}, DType::kF32);
    const Tensor cond = arena.alloc({B, L, H}, DType::kF32);
    be.linear(text, w.cond_1.w, w.cond_1.bias(), h);
    be.activation(Activation::kSilu, h, h);
    be.linear(h, w.cond_2.w, w.cond_2.bias(), cond);
    for (int64_t i = 0; i < c.depth_triple; ++i) {
      const DitTripleBlock& blk = w.triple[static_cast<size_t>(i)];
      const Tensor& kv = ctx->text_kv_[static_cast<size_t>(i)];
      dit_linear(be, cond, blk.text_kv, kv);
      const Tensor k = dit_heads(kv, 0, c.heads, c.head_dim);
      be.rms_norm(k, &blk.text_k_norm, kDitRmsEps, k);
      be.rope(k, text_rope, k);
    }
  }
  // Visual tokens: SwiGLU projection of the SigLIP2 features.
  {
    Arena::Scope s(arena);
    const Tensor h1 = arena.alloc({B, Tv, H}, DType::kF32);
    const Tensor h3 = arena.alloc({B, Tv, H}, DType::kF32);
    be.linear(clip, w.visual_w1.w, nullptr, h1);
    be.linear(clip, w.visual_w3.w, nullptr, h3);
    be.swiglu(h1, h3, h1);
    be.linear(h1, w.visual_w2.w, nullptr, ctx->visual_);
  }
  // Sync: + per-segment position embedding, Linear -> SiLU -> k=1 ConvMLP, nearest-exact to Ta.
  {
    Arena::Scope s(arena);
    const Tensor pos = arena.alloc({B, S, kSyncSegment, c.sync_dim}, DType::kF32);
    be.add(sync.reshape({B, S, kSyncSegment, c.sync_dim}),
           w.sync_pos_emb.expand({B, S, kSyncSegment, c.sync_dim}), pos);
    const Tensor h = arena.alloc({B, S8, H}, DType::kF32);
    be.linear(pos.reshape({B, S8, c.sync_dim}), w.sync_0.w, w.sync_0.bias(), h);
    be.activation(Activation::kSilu, h, h);
    const Tensor g1 = arena.alloc({B, S8, c.sync_mlp_hidden}, DType::kF32);
    const Tensor g3 = arena.alloc({B, S8, c.sync_mlp_hidden}, DType::kF32);
    be.linear(h, w.sync_w1.w, nullptr, g1);
    be.linear(h, w.sync_w3.w, nullptr, g3);
    be.swiglu(g1, g3, g1);
    be.linear(g1, w.sync_w2.w, nullptr, h);
    be.resample_nearest_exact(h, ctx->sync_a_);
  }
  return ctx;
}

// ---- one denoising step -------------------------------------------------------------------------

// Mirrors the allocations of forward(), dit_triple_block() and dit_single_block().
size_t Mmdit::step_arena_bytes(int64_t batch, int64_t audio_len, int64_t visual_len) const {
  const MmditConfig& c = config_;
  const int64_t B = batch, Ta = audio_len, Tv = visual_len, H = c.hidden, L = Tv + Ta;
  const DType a = act_;
  using A = ArenaBytes;
  const size_t base = A().f32(B * Ta * H).total;
  const size_t embed = A().f32(B * Ta * c.latent_dim).total;
  const size_t visual = A().f32(B * Tv * H).total;
  auto mlp = [&](int64_t T) { return A().of(B * T * H, a).of(B * T * c.mlp_hidden, a).total; };
  const size_t triple =
      A().of(B * Ta * H, a).of(B * Tv * H, a).of(B * L * H, a).total +
      std::max({A().of(B * L * 3 * H, a).total,
                A().of(B * L * H, a).of(B * Tv * H, a).of(B * Ta * H, a).total, mlp(Ta), mlp(Tv)});
  const int64_t F = c.conv_mlp_hidden;
  // dit_single_block: mod, xn, y; then the attention (qkv, out, conv1's unfolded rows) or the
  // ConvMLP (h1, h3, then the unfolded rows of xn or of the gate h1).
  const size_t conv_mlp = A().of(B * Ta * F, a).of(B * Ta * F, a).total +
                          std::max(A().of(B * Ta * 3 * H, a).total, A().of(B * Ta * 3 * F, a).total);
  const size_t single =
      A().of(B * Ta * 6 * H, a).of(B * Ta * H, a).of(B * Ta * H, a).total +
      std::max(A().of(B * Ta * 3 * H, a).of(B * Ta * H, a).of(B * Ta * 3 * H, a).total, conv_mlp);
  const size_t tok = A().of(B * Ta * H, a).total;
  const size_t final_layer = A().of(B * Ta * H, a).f32(B * Ta * c.latent_dim).total;
  return base + std::max(embed, visual + std::max(triple, tok + std::max(single, final_layer)));
}

void Mmdit::forward(const DitContext& ctx, const Tensor& x, const float* t, const Tensor& v,
                    Arena& arena) const {
  set_timesteps(ctx, t);
  forward(ctx, x, v, arena);
}

void Mmdit::forward(const DitContext& ctx, const Tensor& x, const Tensor& v, Arena& arena) const {
  const MmditConfig& c = config_;
  const Weights& w = *w_;
  Backend& be = backend_;
  const int64_t B = ctx.batch_, Ta = ctx.ta_, Tv = ctx.tv_, H = c.hidden;
  expect_shape(x, {B, c.latent_dim, Ta}, "dit input latent");
  expect_shape(v, {B, c.latent_dim, Ta}, "dit output velocity");
  Arena::Scope scope(arena);

  const Tensor& vec = ctx.vec_;  // set_timesteps
  DitStepState s;
  s.act = act_;

  // Audio tokens: k=1 conv embedder on the channel-last latent, plus the sync features (added
  // once, before triple block 0).
  s.audio = arena.alloc({B, Ta, H}, DType::kF32);
  {
    Arena::Scope inner(arena);
    const Tensor xt = arena.alloc({B, Ta, c.latent_dim}, DType::kF32);
    be.copy(xt, x.transpose(1, 2));
    be.linear(xt, w.audio_embedder.w, w.audio_embedder.bias(), s.audio);
  }
  be.add(s.audio, ctx.sync_a_, s.audio);
  s.visual = arena.alloc({B, Tv, H}, DType::kF32);
  be.copy(s.visual, ctx.visual_);

  for (size_t i = 0; i < w.triple.size(); ++i) {
    const int64_t audio_mod = 2 * static_cast<int64_t>(i);
    dit_triple_block(be, c, w.triple[i], ctx.mods_.select(0, audio_mod),
                     ctx.mods_.select(0, audio_mod + 1), ctx.text_kv_[i], ctx.text_rows_,
                     ctx.self_rope_, ctx.cross_rope_, s, arena);
  }

  // Single blocks and the final layer condition per token on vec + sync_a; only SiLU of it is
  // ever used.
  s.silu_vec_tok = arena.alloc({B, Ta, H}, act_);
  be.add(ctx.sync_a_, vec.unsqueeze(1).expand({B, Ta, H}), s.silu_vec_tok);
  be.activation(Activation::kSilu, s.silu_vec_tok, s.silu_vec_tok);
  for (const DitSingleBlock& blk : w.single)
    dit_single_block(be, c, blk, ctx.single_rope_, s, arena);

  // Final layer: LN (no affine) -> Linear. The official FinalLayer1D computes a shift/scale but
  // its `modulate` drops per-token (3-D) modulation, so none is applied.
  const Tensor xn = arena.alloc({B, Ta, H}, act_);
  be.layer_norm(s.audio, nullptr, nullptr, kDitLayerNormEps, xn);
  const Tensor out = arena.alloc({B, Ta, c.latent_dim}, DType::kF32);
  be.linear(xn, w.final_linear.w, w.final_linear.bias(), out);
  be.copy(v, out.transpose(1, 2));
}

}  // namespace foley
