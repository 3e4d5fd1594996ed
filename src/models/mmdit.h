// The HunyuanVideo-Foley diffusion transformer (model-spec §2): 1-D audio latent tokens, joint
// audio-visual "triple" blocks with text cross-attention, then audio-only "single" blocks.
//
// The model object is immutable after construction (weights only). It runs its ops on the
// Backend it was built with, whose scratch arena serialises use: requests running at the same
// time need one Mmdit per Backend (built from the same WeightStore, whose tensors are zero-copy
// views, so the weights are shared), and each request its own DitContext and step Arena. Everything
// that does not depend on the timestep — the text projection and every triple block's text K/V
// (k-norm and RoPE applied), the visual tokens, the sync features resampled to the audio length,
// the RoPE tables — is computed once per request into a DitContext. A denoising step then calls
// forward(), which allocates only from the caller's Arena inside an Arena::Scope.
//
// Deliberate difference from model-spec §2.3 step 8: the final layer applies no adaLN
// modulation, because the official FinalLayer1D's `modulate` discards per-token (3-D)
// shift/scale; the golden case confirms it (see convert_dit.cpp).
//
// Layouts follow backend.h: activations channel-last on the backend's device; the latent x and
// the velocity are [B, 128, Ta] (channel-first) F32 as in the official model. With 16-bit
// weights on a backend that takes 16-bit activations, everything between layers is kept in the
// weights' dtype as the reference's bf16 autocast does (residual streams stay F32; see
// activation_dtype()); otherwise F32 throughout. FOLEY_DIT_F32_ACTIVATIONS=1 forces F32.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "models/weight_store.h"

namespace foley {

// The architecture sizes. Written by convert_dit into the bundle's "dit" config; every field is
// cross-checked against tensor shapes at load.
struct MmditConfig {
  int64_t hidden = 0;  // H
  int64_t heads = 0;   // H = heads · head_dim
  int64_t head_dim = 0;
  int64_t depth_triple = 0;     // dual-stream audio+visual blocks
  int64_t depth_single = 0;     // audio-only blocks
  int64_t latent_dim = 128;     // DAC-VAE latent channels
  int64_t clip_dim = 768;       // SigLIP2 feature width
  int64_t sync_dim = 768;       // Synchformer feature width
  int64_t text_dim = 768;       // CLAP hidden width
  int64_t mlp_hidden = 0;       // triple-block MLP, H·mlp_ratio
  int64_t conv_mlp_hidden = 0;  // single-block ConvMLP: 256·ceil(int(2·4H/3)/256)
  int64_t sync_mlp_hidden = 0;  // sync_in ConvMLP, same rule
  // Set when the blocks' matrices are 8-bit codes with per-output-channel scales ("weight_quant"
  // in the bundle config, written by `foley convert --dtype fp8|int8`; see mmdit_internal.h for
  // which layers). Absent: 16/32-bit weights.
  std::optional<QuantFormat> quant;

  static MmditConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
  // The ConvMLP rounding of the official code: int(2·hidden/3) rounded up to a multiple of 256.
  static int64_t conv_mlp_width(int64_t hidden_arg);
};

// Where the weights come from: `name` is the official module path (without the bundle's "dit."
// prefix); kMatrix: matmul/conv weights (any float dtype); kVector: vectors kept in F32 (biases,
// norm weights, learned embeddings, quantisation scales); kQuantized: 8-bit codes (F8_E4M3, I8).
enum class DitWeight { kMatrix, kVector, kQuantized };
using DitWeightGetter =
    std::function<Tensor(const std::string& name, const Shape& shape, DitWeight kind)>;

// Rows [row, row + rows) of a DiT batch whose text conditions are `len` tokens long (a prefix of
// the context's text length). Requests batched together keep their own text lengths: the text
// cross-attention runs once per such group over its own tokens, so each row's result is the one
// it has alone (no padding enters a softmax).
struct DitTextRows {
  int64_t row = 0, rows = 0, len = 0;
  bool operator==(const DitTextRows&) const = default;
};

// Per-request state, built by Mmdit::prepare: in memory it owns, or borrowed from the caller's
// arena (then valid until the caller rewinds that arena past it).
class DitContext {
 public:
  int64_t batch() const { return batch_; }
  int64_t audio_len() const { return ta_; }
  int64_t visual_len() const { return tv_; }
  int64_t text_len() const { return text_len_; }
  // The rows' text lengths, consecutive rows of one length grouped (one group when all rows use
  // the whole text_len()).
  const std::vector<DitTextRows>& text_rows() const { return text_rows_; }
  // Device address of the context's first tensor: with the lengths it fixes every tensor's
  // address (they are laid out in one order), which is what a recorded forward() refers to.
  const void* base() const { return temb_.raw(); }

 private:
  friend class Mmdit;
  std::unique_ptr<Arena> arena_;  // null when the memory is the caller's
  int64_t batch_ = 0, ta_ = 0, tv_ = 0, text_len_ = 0;
  std::vector<DitTextRows> text_rows_;
  // What set_timesteps writes and forward() reads: the time embedding vec and every triple
  // block's two modulations (the sinusoid and the embedder's hidden layer are its scratch).
  Tensor temb_;         // timestep sinusoid [B, 256]
  Tensor time_hidden_;  // [B, H], act
  Tensor vec_;          // time embedding [B, H] F32
  Tensor mods_;         // [2·depth_triple, B, 9H] act: block i's audio stream 2i, visual 2i+1
  std::vector<Tensor> text_kv_;           // per triple block [B, L, 2H]: k (normed, rotated) | v
  Tensor visual_;                         // visual_proj(clip) [B, Tv, H]
  Tensor sync_a_;                         // sync_in(sync + pos) resampled to Ta [B, Ta, H]
  RopeTable self_rope_;                   // joint [visual; audio] self-attention positions
  RopeTable cross_rope_;                  // joint [visual; audio] cross-attention query positions
  RopeTable single_rope_;                 // audio 0..Ta−1
  mutable std::vector<float> temb_host_;  // staging for the timestep sinusoid, [B, 256]
};

// The part of a DiT step that depends on the timestep alone, kept per timestep value: the time
// embedding and every triple block's two modulations (sync_modulation is off, so these are the
// same for every row at one timestep). A sampler knows its whole schedule before the first step,
// and computing the schedule's rows together reads the modulation weights (~1.5 GB in XXL bf16)
// once, where a step computing its own rows reads them every step (0.6 ms of a 24.8-ms H100
// step, BENCHMARKS.md run O). Rows stay until their slot is needed, so later requests with the same
// step count find them all. Built by Mmdit::make_timestep_table; one sampler at a time.
class TimestepTable {
 public:
  int64_t capacity() const { return capacity_; }
  // Rows computed since the table was made (a miss costs one; tests and benchmarks read it).
  size_t rows_computed() const { return computed_; }

 private:
  friend class Mmdit;
  std::unique_ptr<Arena> arena_;  // null when the memory is the caller's
  int64_t capacity_ = 0;
  Tensor temb_, hidden_;        // scratch: [capacity, 256] F32, [capacity, H] act
  Tensor vec_;                  // [capacity, H] F32
  Tensor mods_;                 // [2·depth_triple, capacity, 9H] act
  std::vector<uint32_t> keys_;  // the timestep's F32 bits per slot
  std::vector<bool> held_;
  std::vector<uint64_t> last_use_;
  uint64_t clock_ = 0;
  size_t computed_ = 0;
  std::vector<float> temb_host_;  // staging for the sinusoids, [capacity, 256]
};

class Mmdit {
 public:
  // Reads config("dit") and the "dit." tensors; every "dit." tensor must be used.
  Mmdit(const WeightStore& store, Backend& backend);
  Mmdit(const MmditConfig& config, const DitWeightGetter& get, Backend& backend);
  ~Mmdit();
  Mmdit(const Mmdit&) = delete;
  Mmdit& operator=(const Mmdit&) = delete;

  const MmditConfig& config() const { return config_; }
  Backend& backend() const { return backend_; }
  // Dtype of the activations between layers (F32, or the weights' BF16/F16).
  DType activation_dtype() const { return act_; }

  // Learned unconditional features (F32 [clip_dim], [sync_dim]) for the CFG branch.
  const Tensor& empty_clip_feat() const;
  const Tensor& empty_sync_feat() const;

  // clip [B, Tv, clip_dim], sync [B, S·8, sync_dim], text [B, L, text_dim]: contiguous F32 on the
  // backend's device. `audio_len` is Ta. Throws Error(kInvalidInput) on inconsistent shapes.
  // `text_lens` (empty: every row uses all L tokens) gives each row's own text length in 1..L:
  // row b attends to its first text_lens[b] tokens only, exactly as if it ran alone with that
  // text (what lies beyond is never read into a result), so requests with prompts of different
  // lengths share one batch.
  std::unique_ptr<DitContext> prepare(const Tensor& clip, const Tensor& sync, const Tensor& text,
                                      int64_t audio_len,
                                      const std::vector<int64_t>& text_lens = {}) const;
  // The same with the context's memory taken from `arena` at its current position (a frozen
  // arena needs context_arena_bytes() free there); the context borrows it.
  std::unique_ptr<DitContext> prepare(const Tensor& clip, const Tensor& sync, const Tensor& text,
                                      int64_t audio_len, Arena& arena,
                                      const std::vector<int64_t>& text_lens = {}) const;
  // The arena memory prepare() takes for these lengths (sync_len = S·8), allocation rounding
  // included; it grows with every argument, so the largest lengths size it for all.
  size_t context_arena_bytes(int64_t batch, int64_t audio_len, int64_t visual_len, int64_t text_len,
                             int64_t sync_len) const;

  // Computes the timestep-only part of a step (time embedding, triple-block modulations) for
  // t[0..B) (host values in [0, 1000]) into the context, on the backend's queue; forward()
  // without `t` reads it. Kept out of forward() so that a forward can be recorded
  // (Backend::record) and replayed for every step.
  void set_timesteps(const DitContext& ctx, const float* t) const;
  // The same from `table`: each row's values are copied from the table's row for its timestep,
  // computed first where the table does not hold it yet.
  void set_timesteps(const DitContext& ctx, TimestepTable& table, const float* t) const;

  // A table of `rows` timesteps (at least 1), its memory owned, or taken from `arena` (frozen
  // arenas need timestep_table_bytes(rows) free); set_timesteps with it needs as many rows as
  // the batch has distinct timesteps.
  std::unique_ptr<TimestepTable> make_timestep_table(int64_t rows) const;
  std::unique_ptr<TimestepTable> make_timestep_table(int64_t rows, Arena& arena) const;
  size_t timestep_table_bytes(int64_t rows) const;
  // Computes the table's rows for the distinct values of t[0..n) it does not hold, the first
  // capacity() of them when there are more; in one batch of rows per run of free slots.
  void precompute_timesteps(TimestepTable& table, const float* t, int64_t n) const;

  // v[B, 128, Ta] = DiT(x[B, 128, Ta], t) for the timesteps last given to set_timesteps; x and v
  // are contiguous F32 on the device and must not alias. Allocates only from `arena`, issues only
  // device ops (recordable once the same shapes ran eagerly).
  void forward(const DitContext& ctx, const Tensor& x, const Tensor& v, Arena& arena) const;
  // set_timesteps(ctx, t), then forward(ctx, x, v, arena).
  void forward(const DitContext& ctx, const Tensor& x, const float* t, const Tensor& v,
               Arena& arena) const;

  // The most arena memory one forward() takes for these lengths (allocation rounding included):
  // create the step arena with this as its initial block, or freeze a fresh arena with it as
  // headroom, and no step ever grows it. (Sizing by a growth-mode warm-up is not an option for
  // this model: core Arena appends a block whenever an allocation overflows a block that is not
  // the last, which the alternating per-block scopes of a 36-block forward do every block.)
  size_t step_arena_bytes(int64_t batch, int64_t audio_len, int64_t visual_len) const;

  struct Weights;  // defined in mmdit_internal.h

 private:
  MmditConfig config_;
  Backend& backend_;
  std::unique_ptr<Weights> w_;
  DType act_ = DType::kF32;

  // The time embedder and the triple blocks' modulations for the sinusoids `temb` [n, 256]:
  // `hidden` [n, H] act is scratch, `vec` [n, H] F32 and `mods` [2·depth_triple, n, 9H] act the
  // results (mmdit_timesteps.cpp; the one computation behind both set_timesteps).
  void timestep_rows(const Tensor& temb, const Tensor& hidden, const Tensor& vec,
                     const Tensor& mods) const;
  // The table's slots for t[0..n), computing the rows it lacks (at most capacity() distinct).
  std::vector<int64_t> table_slots(TimestepTable& table, const float* t, int64_t n) const;
};

}  // namespace foley
