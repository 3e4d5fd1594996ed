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

#include <atomic>
#include <cstdint>
#include <functional>
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
  // Checked before every step; when set, sampling stops with Error(kCancelled).
  const std::atomic<bool>* cancel = nullptr;
};

// The initial noise [latent_dim, Ta]: standard normals from Philox4x32-10 (key = seed,
// counter = element index / 4) through Box–Muller, rounded to BF16 like the official noise,
// which torch draws directly in bf16. Deterministic on every platform; it does not reproduce
// torch's generator (nothing practical does), so parity tests inject the reference noise.
Tensor flow_initial_noise(int64_t latent_dim, int64_t audio_len, uint64_t seed);

// The F32 sigma schedule, bit-identical to torch.linspace(1, 0, steps + 1).
std::vector<float> flow_sigmas(int steps);

// Runs the sampler and returns the final latent, host F32 [1, latent_dim, Ta]. `noise` is the
// initial latent [1, latent_dim, Ta] (host, any float dtype) or nullptr to draw it from `seed`
// with length `audio_len`. `arena` is the step arena (see Mmdit::forward): if it is still in
// growth mode it is frozen with room for one step (Mmdit::step_arena_bytes) beyond its
// high-water mark; a frozen arena is used as it is.
Tensor flow_sample(const Mmdit& model, const FlowConditions& cond, const FlowSampleParams& params,
                   int64_t audio_len, const Tensor* noise, Arena& arena,
                   const FlowCallbacks& callbacks = {});

}  // namespace foley
