// The MMDiT's two block types (model-spec §2.4, §2.5) on the backend op set.
#include <cmath>

#include "models/mmdit_internal.h"

namespace foley {

Tensor dit_heads(const Tensor& t, int64_t off, int64_t heads, int64_t head_dim) {
  const Tensor cols = t.slice(2, off, heads * head_dim);
  return cols.as_strided({t.dim(0), t.dim(1), heads, head_dim},
                         {t.stride(0), t.stride(1), head_dim, 1});
}

namespace {

// y = x·Wᵀ + bias where x or y is a row range of a joint [visual; audio] buffer: contiguous
// within one batch row, not across rows (backends take that as a strided batch or a loop).
void linear_rows(Backend& be, const Tensor& x, const DitLinear& l, const Tensor& y) {
  dit_linear(be, x, l, y);
}

// Chunk k of a per-sample modulation [B, n·H], broadcast over T tokens: [B, T, H], stride 0 on T.
Tensor mod_chunk(const Tensor& mod, int k, int64_t hidden, int64_t tokens) {
  return mod.slice(1, k * hidden, hidden).unsqueeze(1).expand({mod.dim(0), tokens, hidden});
}

// x += gate ⊙ MLP(LN(x)·(1+scale)+shift), the triple blocks' GELU(tanh) MLP.
void gated_mlp(Backend& be, const DitStream& s, const Tensor& x, const Tensor& shift,
               const Tensor& scale, const Tensor& gate, int64_t mlp_hidden, DType act,
               Arena& arena) {
  Arena::Scope scope(arena);
  const Tensor xm = arena.alloc(x.shape(), act);
  be.layer_norm_modulate(x, kDitLayerNormEps, shift, scale, xm);
  const Tensor h = arena.alloc({x.dim(0), x.dim(1), mlp_hidden}, act);
  dit_linear(be, xm, s.fc1, h);
  be.activation(Activation::kGeluTanh, h, h);
  dit_linear(be, h, s.fc2, xm);
  be.gated_residual(x, gate, xm);
}

}  // namespace

void dit_linear(Backend& be, const Tensor& x, const DitLinear& l, const Tensor& y) {
  if (l.quantized()) {
    be.linear_quantized(x, l.w, l.scale, l.bias(), y);
  } else {
    be.linear(x, l.w, l.bias(), y);
  }
}

void dit_conv3(Backend& be, const Tensor& x, const DitLinear& l, const Tensor& y, Arena& arena) {
  if (l.quantized()) {
    be.conv3_quantized(x, l.w, l.scale, l.bias(), y);
    return;
  }
  // One GEMM with K = 3C (and the output written once, in y's dtype) instead of three
  // accumulating into an F32 y: the single blocks' convolutions are ~70 % of a step's FLOPs.
  Arena::Scope scope(arena);
  const Tensor cols = arena.alloc({x.dim(0), x.dim(1), 3 * x.dim(2)}, x.dtype());
  be.unfold3(x, cols);
  be.linear(cols, l.w, l.bias(), y);
}

float dit_attention_scale(int64_t head_dim) {
  // SDPA's default scale, computed in double as torch does and rounded once.
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

void dit_triple_block(Backend& be, const MmditConfig& cfg, const DitTripleBlock& blk,
                      const Tensor& mod_a, const Tensor& mod_v, const Tensor& text_kv,
                      const std::vector<DitTextRows>& text_rows, const RopeTable& self_rope,
                      const RopeTable& cross_rope, DitStepState& s, Arena& arena) {
  Arena::Scope scope(arena);
  const int64_t B = s.audio.dim(0), Ta = s.audio.dim(1), Tv = s.visual.dim(1);
  const int64_t H = cfg.hidden, nh = cfg.heads, D = cfg.head_dim, L = Tv + Ta;
  const float scale = dit_attention_scale(D);
  const DType act = s.act;

  auto ma = [&](int k) { return mod_chunk(mod_a, k, H, Ta); };
  auto mv = [&](int k) { return mod_chunk(mod_v, k, H, Tv); };

  const Tensor xm_a = arena.alloc({B, Ta, H}, act);
  const Tensor xm_v = arena.alloc({B, Tv, H}, act);
  const Tensor out = arena.alloc({B, L, nh, D}, act);
  const Tensor out3 = out.reshape({B, L, H});

  // 1. Joint self-attention over [visual; audio]. Both streams project straight into one
  //    [B, L, 3H] buffer so that q, k, v of the joint sequence are plain strided views.
  {
    Arena::Scope inner(arena);
    const Tensor qkv = arena.alloc({B, L, 3 * H}, act);
    be.layer_norm_modulate(s.visual, kDitLayerNormEps, mv(0), mv(1), xm_v);
    be.layer_norm_modulate(s.audio, kDitLayerNormEps, ma(0), ma(1), xm_a);
    linear_rows(be, xm_v, blk.visual.qkv, qkv.slice(1, 0, Tv));
    linear_rows(be, xm_a, blk.audio.qkv, qkv.slice(1, Tv, Ta));
    const Tensor vis = qkv.slice(1, 0, Tv), aud = qkv.slice(1, Tv, Ta);
    for (const auto& [rows, stream] : {std::pair{vis, &blk.visual}, std::pair{aud, &blk.audio}}) {
      const Tensor q = dit_heads(rows, 0, nh, D), k = dit_heads(rows, H, nh, D);
      be.rms_norm(q, &stream->q_norm, kDitRmsEps, q);
      be.rms_norm(k, &stream->k_norm, kDitRmsEps, k);
    }
    be.attention(dit_heads(qkv, 0, nh, D), dit_heads(qkv, H, nh, D), dit_heads(qkv, 2 * H, nh, D),
                 scale, out, &self_rope, &self_rope);
  }
  linear_rows(be, out3.slice(1, 0, Tv), blk.visual.self_proj, xm_v);
  linear_rows(be, out3.slice(1, Tv, Ta), blk.audio.self_proj, xm_a);
  be.gated_residual(s.visual, mv(2), xm_v);
  be.gated_residual(s.audio, ma(2), xm_a);

  // 2. Cross-attention of [visual; audio] queries to the cached text K/V.
  {
    Arena::Scope inner(arena);
    const Tensor q = arena.alloc({B, L, H}, act);
    const Tensor xm2_v = arena.alloc({B, Tv, H}, act);
    const Tensor xm2_a = arena.alloc({B, Ta, H}, act);
    be.layer_norm_modulate(s.visual, kDitLayerNormEps, mv(3), mv(4), xm2_v);
    be.layer_norm_modulate(s.audio, kDitLayerNormEps, ma(3), ma(4), xm2_a);
    linear_rows(be, xm2_v, blk.visual.cross_q, q.slice(1, 0, Tv));
    linear_rows(be, xm2_a, blk.audio.cross_q, q.slice(1, Tv, Ta));
    const Tensor qv = dit_heads(q.slice(1, 0, Tv), 0, nh, D);
    const Tensor qa = dit_heads(q.slice(1, Tv, Ta), 0, nh, D);
    be.rms_norm(qv, &blk.visual.cross_q_norm, kDitRmsEps, qv);
    be.rms_norm(qa, &blk.audio.cross_q_norm, kDitRmsEps, qa);
    // Per group of rows with one text length (one group unless requests of different prompt
    // lengths are batched): each attends to its own tokens only.
    for (const DitTextRows& g : text_rows) {
      const bool all = text_rows.size() == 1;
      const Tensor rq = all ? q : q.slice(0, g.row, g.rows);
      const Tensor kv = all && g.len == text_kv.dim(1)
                            ? text_kv
                            : text_kv.slice(0, g.row, g.rows).slice(1, 0, g.len);
      be.attention(dit_heads(rq, 0, nh, D), dit_heads(kv, 0, nh, D), dit_heads(kv, H, nh, D), scale,
                   all ? out : out.slice(0, g.row, g.rows), &cross_rope, nullptr);
    }
  }
  linear_rows(be, out3.slice(1, 0, Tv), blk.visual.cross_proj, xm_v);
  linear_rows(be, out3.slice(1, Tv, Ta), blk.audio.cross_proj, xm_a);
  be.gated_residual(s.visual, mv(5), xm_v);
  be.gated_residual(s.audio, ma(5), xm_a);

  // 3. MLPs.
  gated_mlp(be, blk.audio, s.audio, ma(6), ma(7), ma(8), cfg.mlp_hidden, act, arena);
  gated_mlp(be, blk.visual, s.visual, mv(6), mv(7), mv(8), cfg.mlp_hidden, act, arena);
}

void dit_single_block(Backend& be, const MmditConfig& cfg, const DitSingleBlock& blk,
                      const RopeTable& rope, DitStepState& s, Arena& arena) {
  Arena::Scope scope(arena);
  const int64_t B = s.audio.dim(0), Ta = s.audio.dim(1);
  const int64_t H = cfg.hidden, nh = cfg.heads, D = cfg.head_dim, F = cfg.conv_mlp_hidden;
  const DType act = s.act;

  // Per-token modulation from SiLU(sync_a + vec): (shift, scale, gate) × (attention, MLP).
  const Tensor mod = arena.alloc({B, Ta, 6 * H}, act);
  dit_linear(be, s.silu_vec_tok, blk.mod, mod);
  auto m = [&](int k) { return mod.slice(2, k * H, H); };

  const Tensor xn = arena.alloc({B, Ta, H}, act);
  // The convolutions' outputs in the activation dtype, as the reference's bf16 autocast rounds
  // them; the residual stream (s.audio) stays F32.
  const Tensor y = arena.alloc({B, Ta, H}, act);
  {
    Arena::Scope inner(arena);
    be.layer_norm_modulate(s.audio, kDitSingleLayerNormEps, m(0), m(1), xn);
    const Tensor qkv = arena.alloc({B, Ta, 3 * H}, act);
    dit_linear(be, xn, blk.qkv, qkv);
    const Tensor q = dit_heads(qkv, 0, nh, D), k = dit_heads(qkv, H, nh, D);
    be.rms_norm(q, &blk.q_norm, kDitSingleRmsEps, q);
    be.rms_norm(k, &blk.k_norm, kDitSingleRmsEps, k);
    const Tensor out = arena.alloc({B, Ta, nh, D}, act);
    be.attention(q, k, dit_heads(qkv, 2 * H, nh, D), dit_attention_scale(D), out, &rope, &rope);
    // linear1 is a k=3 Conv1d over time, zero-padded at the sequence ends.
    dit_conv3(be, out.reshape({B, Ta, H}), blk.conv1, y, arena);
  }
  be.gated_residual(s.audio, m(2), y);

  be.layer_norm_modulate(s.audio, kDitSingleLayerNormEps, m(3), m(4), xn);
  const Tensor h1 = arena.alloc({B, Ta, F}, act);
  const Tensor h3 = arena.alloc({B, Ta, F}, act);
  if (blk.w1.quantized()) {
    dit_conv3(be, xn, blk.w1, h1, arena);
    dit_conv3(be, xn, blk.w3, h3, arena);
  } else {  // w1 and w3 share one unfolded copy of xn
    Arena::Scope shared(arena);
    const Tensor cols = arena.alloc({B, Ta, 3 * H}, act);
    be.unfold3(xn, cols);
    be.linear(cols, blk.w1.w, blk.w1.bias(), h1);
    be.linear(cols, blk.w3.w, blk.w3.bias(), h3);
  }
  be.swiglu(h1, h3, h1);
  dit_conv3(be, h1, blk.w2, y, arena);
  be.gated_residual(s.audio, m(5), y);
}

}  // namespace foley
