// Internals shared by mmdit.cpp (embedders, context, top-level forward) and mmdit_blocks.cpp
// (the triple and single blocks). Not part of the model's interface.
#pragma once

#include <vector>

#include "models/mmdit.h"

namespace foley {

// A weight layer. Quantised bundles (MmditConfig::quant) store every matrix of the triple and
// single blocks (modulations, q/k/v, projections, MLPs, text K/V, the k=3 convolutions) as 8-bit
// codes with one F32 scale per output channel; the embedders, the final layer and everything
// outside the blocks (~4 % of the weights) stay 16-bit.
struct DitLinear {
  Tensor w;      // [N, K]; a k=3 convolution: [N, 3K], taps side by side (tap-major)
  Tensor b;      // [N] F32, or undefined when the layer has no bias
  Tensor scale;  // [N] F32 per-output-channel scale of quantised codes, else undefined
  const Tensor* bias() const { return b.defined() && b.numel() > 0 ? &b : nullptr; }
  bool quantized() const { return scale.defined(); }
};

// y = x·Wᵀ + bias through the layer's kind of weights.
void dit_linear(Backend& be, const Tensor& x, const DitLinear& l, const Tensor& y);
// The single blocks' k=3, zero-padded Conv1d over time (x [B, T, K] -> y [B, T, N]) as one GEMM
// over the three shifted rows side by side: with 16/32-bit weights those rows are materialised
// in `arena` (Backend::unfold3, [B, T, 3K]) and multiplied by the [N, 3K] weight in one linear;
// quantised, Backend::conv3_quantized reads them in place while quantising.
void dit_conv3(Backend& be, const Tensor& x, const DitLinear& l, const Tensor& y, Arena& arena);

// One stream (audio or visual) of a triple block.
struct DitStream {
  DitLinear mod;          // SiLU(vec) -> 9H: (shift, scale, gate) × (self, cross, mlp)
  DitLinear qkv;          // [3H, H], (K H D) block layout
  Tensor q_norm, k_norm;  // self-attention RMSNorm weights [D]
  DitLinear self_proj;
  DitLinear cross_q;
  Tensor cross_q_norm;
  DitLinear cross_proj;
  DitLinear fc1, fc2;
};

struct DitTripleBlock {
  DitStream audio, visual;
  DitLinear text_kv;  // [2H, H], (K H D): k | v
  Tensor text_k_norm;
};

struct DitSingleBlock {
  DitLinear mod;          // SiLU(vec_tok) -> 6H, per token
  DitLinear qkv;          // [3H, H], de-interleaved by the converter to [q | k | v]
  Tensor q_norm, k_norm;  // [D], eps = F32 epsilon
  DitLinear conv1;        // output projection, Conv1d k=3 H -> H, with bias
  DitLinear w1, w2, w3;   // ConvMLP k=3: H -> F, F -> H, H -> F, no bias
};

struct Mmdit::Weights {
  DitLinear audio_embedder;                   // [H, 128]
  DitLinear visual_w1, visual_w2, visual_w3;  // SwiGLU, no bias
  DitLinear cond_1, cond_2;
  DitLinear time_1, time_2;
  DitLinear sync_0;                     // Linear sync_dim -> H
  DitLinear sync_w1, sync_w2, sync_w3;  // ConvMLP k=1 as plain Linear, no bias
  Tensor sync_pos_emb;                  // [8, sync_dim]
  Tensor empty_clip, empty_sync;        // [clip_dim], [sync_dim]
  std::vector<DitTripleBlock> triple;
  std::vector<DitSingleBlock> single;
  DitLinear final_linear;  // [128, H]
};

constexpr int64_t kTimeFreqDim = 256;  // TimestepEmbedder's sinusoid width

// Bytes an Arena hands out for a sequence of allocations (each rounded to its alignment).
struct ArenaBytes {
  size_t total = 0;
  ArenaBytes& of(int64_t n, DType dt) {
    const size_t bytes = static_cast<size_t>(n) * dtype_size(dt);
    total += (bytes + Arena::kAlignment - 1) / Arena::kAlignment * Arena::kAlignment;
    return *this;
  }
  ArenaBytes& f32(int64_t n) { return of(n, DType::kF32); }
};

// Norm epsilons of the official modules (model-spec §6.7).
constexpr float kDitLayerNormEps = 1e-6f;        // triple blocks, final layer
constexpr float kDitSingleLayerNormEps = 1e-5f;  // nn.LayerNorm default in single blocks
constexpr float kDitRmsEps = 1e-6f;              // triple and cross q/k RMSNorm
// torch.nn.RMSNorm(eps=None) uses finfo(F32).eps; measured on the official path (spec §2.5).
constexpr float kDitSingleRmsEps = 1.1920928955078125e-07f;

// 1/sqrt(head_dim), the attention scale.
float dit_attention_scale(int64_t head_dim);

// [B, T, X] tensor, columns [off, off+H) viewed as [B, T, heads, head_dim].
Tensor dit_heads(const Tensor& t, int64_t off, int64_t heads, int64_t head_dim);

// Per-step activations the blocks work on. The residual streams are F32; everything between
// two layers (modulations, normed inputs, q/k/v, attention outputs, MLP hiddens) has dtype `act`:
// F32, or the weights' 16-bit dtype where the backend takes 16-bit activations (the reference's
// bf16 autocast, model-spec §2.7). Convolution outputs stay F32 (their taps accumulate there).
struct DitStepState {
  DType act = DType::kF32;
  Tensor audio;         // [B, Ta, H] F32, updated in place
  Tensor visual;        // [B, Tv, H] F32, updated in place (triple blocks only)
  Tensor silu_vec_tok;  // SiLU(sync_a + vec) [B, Ta, H], act
};

// `mod_a`, `mod_v`: the block's audio and visual modulations [B, 9H] (DitContext::mods_);
// `text_rows`: which rows attend to how many of text_kv's tokens (DitContext::text_rows).
void dit_triple_block(Backend& be, const MmditConfig& cfg, const DitTripleBlock& blk,
                      const Tensor& mod_a, const Tensor& mod_v, const Tensor& text_kv,
                      const std::vector<DitTextRows>& text_rows, const RopeTable& self_rope,
                      const RopeTable& cross_rope, DitStepState& s, Arena& arena);
void dit_single_block(Backend& be, const MmditConfig& cfg, const DitSingleBlock& blk,
                      const RopeTable& rope, DitStepState& s, Arena& arena);

}  // namespace foley
