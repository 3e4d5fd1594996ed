// Euler flow-matching sampler with classifier-free guidance (model-spec §3).
//
//   sigmas = linspace(1, 0, N+1) (F32, torch's linspace arithmetic), t_i = 1000·σ_i
//   v      = v_u + s·(v_c − v_u)            (F32, on the host)
//   x     += (σ_{i+1} − σ_i)·v              (F32 latent throughout)
//
// The CFG batch is [uncond, cond]: the unconditional row uses the model's learned
// empty_clip_feat / empty_sync_feat broadcast to the conditional lengths and the negative
// prompt's text features. Guidance <= 1 runs the conditional branch alone (batch 1), as the
// official pipeline does when CFG is off.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/tensor.h"
#include "models/mmdit.h"

namespace foley {

struct FlowSampleParams {
  int steps = 50;
  float guidance = 4.5f;
  uint64_t seed = 1;  // for the initial noise when none is injected
};

// Conditioning for one request, host F32 and contiguous (batch dimension dropped):
// clip [Tv, clip_dim], sync [S·8, sync_dim], text and uncond_text [L, text_dim] (the two text
// sequences share L: CLAP pads them to a common length).
struct FlowConditions {
  Tensor clip;
  Tensor sync;
  Tensor text;
  Tensor uncond_text;
};

struct FlowCallbacks {
  // Called after each finished step with (steps done, total steps).
  std::function<void(int, int)> progress;
  // Windowed sampling only: after each window of a step, (step being run 1.., steps, window
  // done 1.., windows).
  std::function<void(int, int, int, int)> window_progress;
  // Checked before every step; when set, sampling stops with Error(kCancelled).
  const std::atomic<bool>* cancel = nullptr;
};

// The initial noise [latent_dim, Ta]: standard normals from Philox4x32-10 (key = seed,
// counter = element index / 4) through Box–Muller, rounded to BF16 like the official noise,
// which torch draws directly in bf16. Deterministic on every platform; it does not reproduce
// torch's generator (nothing practical does), so parity tests inject the reference noise.
Tensor flow_initial_noise(int64_t latent_dim, int64_t audio_len, uint64_t seed);

// The counter-based generator behind flow_initial_noise: Philox4x32-10 (Salmon et al., SC'11),
// one block of four 32-bit words for counter `ctr` under `key`. Exposed for its known-answer test.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key);

// One window of a long latent and the rows of the conditions it sees: latent frames
// [audio_begin, audio_begin + audio_len), clip rows [visual_begin, +visual_len) and sync rows
// [sync_begin, +sync_len) of the whole clip's FlowConditions.
struct FlowWindow {
  int64_t audio_begin = 0, audio_len = 0;
  int64_t visual_begin = 0, visual_len = 0;
  int64_t sync_begin = 0, sync_len = 0;
};

// The blend weights of windows over a latent of `audio_len` frames: per window, one weight per
// latent frame of it. 1 where a window alone covers a frame; across an overlap with a neighbour
// a raised-cosine ramp (0.5 - 0.5·cos(π(i + 0.5)/m) for the later window, the complement for
// the earlier), then divided by their sum, so the covering weights sum to one at every frame.
// Windows must be in order, start at 0, end at audio_len, and overlap only their neighbours
// (kInvalidInput otherwise).
std::vector<std::vector<float>> flow_window_weights(const std::vector<FlowWindow>& windows,
                                                    int64_t audio_len);

// The F32 sigma schedule, bit-identical to torch.linspace(1, 0, steps + 1).
std::vector<float> flow_sigmas(int steps);

// The most DiT rows one evaluation takes (FlowLimits::batch): 32 requests with CFG.
inline constexpr int64_t kMaxFlowBatch = 64;

// The largest request a FlowWorkspace serves: DiT batch (2 per request with CFG, 1 without:
// 2 for one request, 2·B for B requests sampled together by flow_sample_batch), latent length Ta,
// visual length Tv, text length L and sync length S·8.
struct FlowLimits {
  int64_t batch = 2;
  int64_t audio_len = 0;
  int64_t visual_len = 0;
  int64_t text_len = 0;
  int64_t sync_len = 0;
  // Timesteps whose time embedding and triple-block modulations are kept (TimestepTable): a
  // schedule of up to this many steps is computed once and then found by every request with the
  // same step count (~1 MB a row in XXL bf16). At least `batch` are kept.
  int64_t timestep_rows = 64;
};

// Device memory of a FlowWorkspace, per arena.
struct FlowWorkspaceBytes {
  size_t inputs = 0;   // the conditions' device copies, x and v
  size_t context = 0;  // the DiT context (Mmdit::context_arena_bytes)
  size_t step = 0;     // one forward's activations (Mmdit::step_arena_bytes)
  size_t timesteps = 0;  // the timestep table (Mmdit::timestep_table_bytes)
};

struct FlowBatchItem;
struct FlowBatchResult;

// Everything the sampler needs on the device, reserved once for the largest request, plus the
// denoising steps recorded per shape (Backend::record). Each request rewinds the arenas, so a
// request of the same shape as an earlier one gets the same addresses and replays that
// request's recorded step instead of issuing every op again; nothing is allocated on the device
// after the first request of a shape. Tied to one Mmdit (and its backend); one request at a time.
class FlowWorkspace {
 public:
  FlowWorkspace(const Mmdit& model, const FlowLimits& limits);
  // The same with the step activations in `step`, an arena the caller owns (and must keep alive)
  // and may use for other work between requests, as the pipeline does with its stage arena. The
  // recorded steps point into it, so each request requires it frozen (its memory no longer
  // moves), at its base (nothing else allocated: the same offsets every request) and with room
  // for one step at the limits; anything else is an internal error, not a silent re-record.
  FlowWorkspace(const Mmdit& model, const FlowLimits& limits, Arena& step);
  ~FlowWorkspace();
  FlowWorkspace(const FlowWorkspace&) = delete;
  FlowWorkspace& operator=(const FlowWorkspace&) = delete;

  static FlowWorkspaceBytes bytes(const Mmdit& model, const FlowLimits& limits);

  const FlowLimits& limits() const { return limits_; }
  const Arena& inputs_arena() const { return *inputs_; }
  const Arena& context_arena() const { return *context_; }
  const Arena& step_arena() const { return *step_; }
  const TimestepTable& timestep_table() const { return *timesteps_; }
  const Arena& timestep_arena() const { return *timestep_arena_; }
  // Computes the timestep rows of a schedule of `steps` now (a warm-up does it for the default
  // step count, so the first request finds them as every later one does).
  void precompute_schedule(int steps);
  bool owns_step_arena() const { return owned_step_ != nullptr; }
  // Steps recorded so far (each a new shape or new addresses) and graphs kept now.
  size_t graphs_recorded() const;
  size_t graphs_cached() const;
  // Why recording was switched off for this workspace ("" while it works): a step that cannot be
  // recorded runs eagerly instead, with the same results.
  const std::string& graph_error() const;

  struct Graphs;  // flow_sampler.cpp

 private:
  FlowWorkspace(const Mmdit& model, const FlowLimits& limits, Arena* step);  // null: own one
  // The step arena, checked frozen, empty and large enough for a step, as every sampler needs it
  // (recorded steps point into it from offset 0); `who` names the sampler in the error.
  Arena& empty_step_arena(const char* who);

  friend Tensor flow_sample(const Mmdit& model, const FlowConditions& cond,
                            const FlowSampleParams& params, int64_t audio_len, const Tensor* noise,
                            FlowWorkspace& workspace, const FlowCallbacks& callbacks);
  friend std::vector<FlowBatchResult> flow_sample_batch(const Mmdit& model,
                                                        const std::vector<FlowBatchItem>& items,
                                                        int64_t audio_len,
                                                        FlowWorkspace& workspace);
  friend Tensor flow_sample_windows(const Mmdit& model, const FlowConditions& cond,
                                    const FlowSampleParams& params, int64_t audio_len,
                                    const std::vector<FlowWindow>& windows, const Tensor* noise,
                                    FlowWorkspace& workspace, const FlowCallbacks& callbacks);

  const Mmdit& model_;
  FlowLimits limits_;
  std::unique_ptr<Arena> inputs_, context_, owned_step_, timestep_arena_;
  std::unique_ptr<TimestepTable> timesteps_;
  Arena* step_ = nullptr;  // owned_step_ or the caller's
  size_t step_bytes_ = 0;  // one step at the limits
  Tensor v_host_;  // host staging for the velocity, [batch, latent_dim, audio_len] at the limits
  std::unique_ptr<Graphs> graphs_;
};

// Runs the sampler and returns the final latent, host F32 [1, latent_dim, Ta]. `noise` is the
// initial latent [1, latent_dim, Ta] (host, any float dtype) or nullptr to draw it from `seed`
// with length `audio_len`. All device memory comes from `workspace`; a request beyond its
// limits is refused (kInvalidInput). Steps: x and the timesteps are uploaded, the DiT forward
// runs (the first step of a shape not seen before eagerly; later steps as a recorded graph,
// which the same shape reuses in later requests), v comes back and CFG + Euler run on the host.
// FOLEY_CUDA_GRAPHS=0 in the environment runs every step eagerly. Results are the same bits
// either way.
Tensor flow_sample(const Mmdit& model, const FlowConditions& cond, const FlowSampleParams& params,
                   int64_t audio_len, const Tensor* noise, FlowWorkspace& workspace,
                   const FlowCallbacks& callbacks = {});

// One request of a batch (flow_sample_batch): its conditions, parameters (steps, guidance, seed
// are its own), initial noise ([1, latent_dim, Ta] host, or null: drawn from params.seed) and
// callbacks (its own progress; its own cancel flag, which takes it out of the batch).
struct FlowBatchItem {
  const FlowConditions* cond = nullptr;
  FlowSampleParams params;
  const Tensor* noise = nullptr;
  FlowCallbacks callbacks;
};

// What became of one request: its final latent (host F32 [1, latent_dim, Ta]), or the error that
// stopped it (Error(kCancelled) when its cancel flag was seen, kInvalidInput for a request that
// does not fit the batch, or whatever its progress callback threw).
struct FlowBatchResult {
  Tensor latent;
  std::exception_ptr error;
};

// Several requests sampled together: every step evaluates the DiT once on all their CFG rows
// ([uncond_1, cond_1, uncond_2, cond_2, ...]: 2 rows per request with CFG, 1 without), each row
// with its own conditions, text length (Mmdit::prepare's text_lens: prompts of different lengths
// share the batch) and timestep, then each request takes its own guided Euler step on its own
// latent. So each request's latent is the one flow_sample gives it alone, bit for bit wherever
// the backend's per-row results do not depend on the batch's size (the CPU backend: every op
// computes a row on its own; tests/batch_test.cpp); a GEMM whose algorithm changes with the
// number of rows may differ in the last bits.
// All requests must have latent length `audio_len` and equal visual and sync lengths (those set
// the joint attention's sequence), and together at most workspace.limits().batch rows (else
// kInvalidInput for the whole call); steps, guidance, seeds and prompts may all differ. A request
// leaves the batch when it has taken its steps, when its cancel flag is set (checked before every
// step) or when its callback throws; the others go on with a smaller batch (inputs and context
// rebuilt for the remaining rows, which changes none of their results). Device memory is the
// workspace's; a batch of a new shape (rows, lengths, text lengths) runs its first step eagerly
// and records the next, as flow_sample does.
std::vector<FlowBatchResult> flow_sample_batch(const Mmdit& model,
                                               const std::vector<FlowBatchItem>& items,
                                               int64_t audio_len, FlowWorkspace& workspace);

// A latent longer than the workspace's limits, sampled in overlapping windows fused at every
// step (MultiDiffusion, Bar-Tal et al. 2023): each step evaluates the DiT (with CFG) on every
// window's part of the one long latent with that window's rows of the conditions, blends the
// guided velocities with flow_window_weights, and takes one Euler step on the whole latent. So
// the windows agree on the overlaps as the noise is removed, and the result is one continuous
// latent rather than pieces to crossfade. `cond` holds the whole clip's conditions; `noise` is
// [1, latent_dim, audio_len] or null (drawn from the seed over the whole length). Device memory
// is the workspace's (one window at a time); host memory is the latent and one velocity sum.
// Each window's first step of a new shape runs eagerly and later ones replay its recorded step;
// cancellation is checked before every window.
Tensor flow_sample_windows(const Mmdit& model, const FlowConditions& cond,
                           const FlowSampleParams& params, int64_t audio_len,
                           const std::vector<FlowWindow>& windows, const Tensor* noise,
                           FlowWorkspace& workspace, const FlowCallbacks& callbacks = {});

// The same with device memory allocated for this request and every step run eagerly. `arena` is
// the step arena (see Mmdit::forward): if it is still in growth mode it is frozen with room for
// one step (Mmdit::step_arena_bytes) beyond its high-water mark; a frozen arena is used as it is.
Tensor flow_sample(const Mmdit& model, const FlowConditions& cond, const FlowSampleParams& params,
                   int64_t audio_len, const Tensor* noise, Arena& arena,
                   const FlowCallbacks& callbacks = {});

}  // namespace foley
