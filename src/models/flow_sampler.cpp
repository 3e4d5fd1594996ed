#include "models/flow_sampler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/check.h"
#include "models/flow_sampler_internal.h"

namespace foley {

using namespace flow_internal;

// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{kM0} * ctr[0];
    const uint64_t p1 = uint64_t{kM1} * ctr[2];
    ctr = {static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<uint32_t>(p1),
           static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<uint32_t>(p0)};
    key[0] += kW0;
    key[1] += kW1;
  }
  return ctr;
}

namespace flow_internal {

Tensor host_f32(const Tensor& t, const char* what) {
  FOLEY_CHECK(t.device() == DeviceKind::kCPU, "%s must be a host tensor", what);
  Tensor out = Tensor::empty(t.shape(), DType::kF32);
  const int r = t.rank();
  std::array<int64_t, kMaxRank> idx{};
  for (int64_t i = 0, n = t.numel(); i < n; ++i) {
    int64_t off = 0;
    for (int d = 0; d < r; ++d) off += idx[static_cast<size_t>(d)] * t.stride(d);
    float v;
    switch (t.dtype()) {
      case DType::kF32:
        v = t.data<float>()[off];
        break;
      case DType::kBF16:
        v = bf16_to_f32(t.data<uint16_t>()[off]);
        break;
      case DType::kF16:
        v = f16_to_f32(t.data<uint16_t>()[off]);
        break;
      default:
        throw make_error(ErrorKind::kInvalidInput, "%s: unsupported dtype %s", what,
                         dtype_name(t.dtype()));
    }
    out.data<float>()[i] = v;
    for (int d = r - 1; d >= 0; --d) {
      if (++idx[static_cast<size_t>(d)] < t.dim(d)) break;
      idx[static_cast<size_t>(d)] = 0;
    }
  }
  return out;
}

void check_fits(const HostInputs& in, const FlowLimits& l) {
  if (in.B > l.batch || in.Ta > l.audio_len || in.Tv > l.visual_len || in.L > l.text_len ||
      in.S8 > l.sync_len)
    throw make_error(ErrorKind::kInvalidInput,
                     "request (batch %lld, Ta %lld, Tv %lld, text %lld, sync %lld) is larger than "
                     "the sampler was sized for (%lld, %lld, %lld, %lld, %lld)",
                     (long long)in.B, (long long)in.Ta, (long long)in.Tv, (long long)in.L,
                     (long long)in.S8, (long long)l.batch, (long long)l.audio_len,
                     (long long)l.visual_len, (long long)l.text_len, (long long)l.sync_len);
}

}  // namespace flow_internal

Tensor flow_initial_noise(int64_t latent_dim, int64_t audio_len, uint64_t seed) {
  Tensor noise = Tensor::empty({1, latent_dim, audio_len}, DType::kF32);
  float* out = noise.data<float>();
  const int64_t n = noise.numel();
  const std::array<uint32_t, 2> key = {static_cast<uint32_t>(seed),
                                       static_cast<uint32_t>(seed >> 32)};
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  for (int64_t base = 0; base < n; base += 4) {
    const uint64_t c = static_cast<uint64_t>(base / 4);
    const auto r =
        philox4x32_10({static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 0, 0}, key);
    // Two Box–Muller pairs per block; (x + 0.5)·2⁻³² lies strictly inside (0, 1).
    for (int pair = 0; pair < 2; ++pair) {
      const double u1 = (r[static_cast<size_t>(2 * pair)] + 0.5) * 0x1p-32;
      const double u2 = (r[static_cast<size_t>(2 * pair + 1)] + 0.5) * 0x1p-32;
      const double rad = std::sqrt(-2.0 * std::log(u1));
      const double z[2] = {rad * std::cos(kTwoPi * u2), rad * std::sin(kTwoPi * u2)};
      for (int k = 0; k < 2; ++k) {
        const int64_t i = base + 2 * pair + k;
        if (i < n) out[i] = bf16_to_f32(f32_to_bf16(static_cast<float>(z[k])));
      }
    }
  }
  return noise;
}

std::vector<float> flow_sigmas(int steps) {
  // torch.linspace's element formula (its CUDA kernel and scalar CPU path): the first half
  // counts up from start, the second half down from end. torch's vectorised CPU path groups
  // elements by the CPU's vector width and can differ from this by one ulp in some entries.
  const int64_t n = steps + 1;
  const float start = 1.0f, end = 0.0f;
  const float step = (end - start) / static_cast<float>(n - 1);
  const int64_t halfway = n / 2;
  std::vector<float> s(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    s[static_cast<size_t>(i)] = i < halfway ? start + step * static_cast<float>(i)
                                            : end - step * static_cast<float>(n - i - 1);
  return s;
}

// ---- one request ------------------------------------------------------------------------------

namespace flow_internal {

size_t aligned_f32(int64_t n) {
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  return (bytes + Arena::kAlignment - 1) / Arena::kAlignment * Arena::kAlignment;
}

void check_steps(int steps) {
  if (steps < 1 || steps > 1000)
    throw make_error(ErrorKind::kInvalidInput, "steps must be in [1, 1000], got %d", steps);
}

HostInputs host_inputs(const Mmdit& model, const FlowConditions& cond,
                       const FlowSampleParams& params, int64_t audio_len, const Tensor* noise) {
  const MmditConfig& c = model.config();
  check_steps(params.steps);
  if (!std::isfinite(params.guidance))
    throw Error(ErrorKind::kInvalidInput, "guidance must be finite");
  HostInputs in;
  in.x = noise ? host_f32(*noise, "initial noise")
               : flow_initial_noise(c.latent_dim, audio_len, params.seed);
  in.Ta = in.x.dim(2);
  expect_shape(in.x, {1, c.latent_dim, in.Ta}, "initial noise");
  in.clip = host_f32(cond.clip, "clip features");
  in.sync = host_f32(cond.sync, "sync features");
  in.text = host_f32(cond.text, "text features");
  in.Tv = in.clip.dim(0);
  in.S8 = in.sync.dim(0);
  in.L = in.text.dim(0);
  expect_shape(in.clip, {in.Tv, c.clip_dim}, "clip features");
  expect_shape(in.sync, {in.S8, c.sync_dim}, "sync features");
  expect_shape(in.text, {in.L, c.text_dim}, "text features");
  // CFG only when guidance > 1, as the official pipeline; the conditional row is always last.
  in.cfg = params.guidance > 1.0f;
  in.B = in.cfg ? 2 : 1;
  if (in.cfg) {
    in.uncond_text = host_f32(cond.uncond_text, "negative text features");
    expect_shape(in.uncond_text, {in.L, c.text_dim},
                 "negative text features (same length as text)");
  }
  return in;
}

// Mirrors upload_inputs' allocations.
size_t inputs_arena_bytes(const MmditConfig& c, int64_t B, int64_t Ta, int64_t Tv, int64_t L,
                          int64_t S8) {
  return 2 * aligned_f32(B * c.latent_dim * Ta) + aligned_f32(B * Tv * c.clip_dim) +
         aligned_f32(B * S8 * c.sync_dim) + aligned_f32(B * L * c.text_dim);
}

DeviceInputs upload_inputs(const Mmdit& model, const HostInputs& in, Arena& arena) {
  const MmditConfig& c = model.config();
  Backend& be = model.backend();
  const int64_t B = in.B;
  DeviceInputs d;
  d.x = arena.alloc({B, c.latent_dim, in.Ta}, DType::kF32);
  d.v = arena.alloc({B, c.latent_dim, in.Ta}, DType::kF32);
  d.clip = arena.alloc({B, in.Tv, c.clip_dim}, DType::kF32);
  d.sync = arena.alloc({B, in.S8, c.sync_dim}, DType::kF32);
  d.text = arena.alloc({B, in.L, c.text_dim}, DType::kF32);
  be.copy_from_host(d.clip.select(0, B - 1), in.clip);
  be.copy_from_host(d.sync.select(0, B - 1), in.sync);
  be.copy_from_host(d.text.select(0, B - 1), in.text);
  if (in.cfg) {
    be.copy(d.clip.select(0, 0), model.empty_clip_feat().expand({in.Tv, c.clip_dim}));
    be.copy(d.sync.select(0, 0), model.empty_sync_feat().expand({in.S8, c.sync_dim}));
    be.copy_from_host(d.text.select(0, 0), in.uncond_text);
  }
  return d;
}

// The Euler loop. `forward` runs the DiT on d.x -> d.v for the timesteps already set.
void run_steps(const Mmdit& model, HostInputs& in, const DitContext& ctx, TimestepTable& table,
               const DeviceInputs& d, const Tensor& v_host, const FlowSampleParams& params,
               const FlowCallbacks& callbacks, const std::function<void()>& forward) {
  Backend& be = model.backend();
  const int64_t B = in.B, n = model.config().latent_dim * in.Ta;
  const std::vector<float> sigmas = flow_sigmas(params.steps);
  precompute_schedule(model, table, sigmas);
  float* xs = in.x.data<float>();
  const float* vu = v_host.data<float>();
  const float* vc = v_host.data<float>() + (B - 1) * n;
  const float s = params.guidance;
  for (int i = 0; i < params.steps; ++i) {
    if (callbacks.cancel && callbacks.cancel->load())
      throw Error(ErrorKind::kCancelled, "sampling cancelled");
    const float t = sigmas[static_cast<size_t>(i)] * 1000.0f;
    const float ts[2] = {t, t};
    for (int64_t b = 0; b < B; ++b) be.copy_from_host(d.x.select(0, b), in.x.select(0, 0));
    model.set_timesteps(ctx, table, ts);
    forward();
    be.copy_to_host(v_host, d.v);
    const float dt = sigmas[static_cast<size_t>(i) + 1] - sigmas[static_cast<size_t>(i)];
    cfg_euler_step(xs, vu, vc, n, in.cfg, s, dt);
    if (callbacks.progress) callbacks.progress(i + 1, params.steps);
  }
}

int64_t timestep_table_rows(const FlowLimits& l) {
  return std::max(l.timestep_rows, l.batch);
}

void precompute_schedule(const Mmdit& model, TimestepTable& table,
                         const std::vector<float>& sigmas) {
  std::vector<float> ts(sigmas.size() - 1);  // the last sigma (0) is never evaluated
  for (size_t i = 0; i < ts.size(); ++i) ts[i] = sigmas[i] * 1000.0f;
  model.precompute_timesteps(table, ts.data(), static_cast<int64_t>(ts.size()));
}

std::unique_ptr<Arena> exact_arena(Backend& be, size_t bytes) {
  auto arena = std::make_unique<Arena>(be.block_allocator());
  arena->freeze(bytes);
  return arena;
}

bool graphs_enabled_by_env() {
  const char* v = std::getenv("FOLEY_CUDA_GRAPHS");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

}  // namespace flow_internal

FlowWorkspaceBytes FlowWorkspace::bytes(const Mmdit& model, const FlowLimits& l) {
  FlowWorkspaceBytes b;
  b.inputs = inputs_arena_bytes(model.config(), l.batch, l.audio_len, l.visual_len, l.text_len,
                                l.sync_len);
  b.context = model.context_arena_bytes(l.batch, l.audio_len, l.visual_len, l.text_len, l.sync_len);
  b.step = model.step_arena_bytes(l.batch, l.audio_len, l.visual_len);
  b.timesteps = model.timestep_table_bytes(timestep_table_rows(l));
  return b;
}

FlowWorkspace::FlowWorkspace(const Mmdit& model, const FlowLimits& limits)
    : FlowWorkspace(model, limits, nullptr) {}

FlowWorkspace::FlowWorkspace(const Mmdit& model, const FlowLimits& limits, Arena& step)
    : FlowWorkspace(model, limits, &step) {}

FlowWorkspace::FlowWorkspace(const Mmdit& model, const FlowLimits& limits, Arena* step)
    : model_(model), limits_(limits), graphs_(std::make_unique<Graphs>()) {
  const FlowLimits& l = limits_;
  if (l.batch < 1 || l.batch > kMaxFlowBatch || l.audio_len < 1 || l.visual_len < 1 ||
      l.text_len < 1 || l.sync_len < 1 || l.timestep_rows < 1)
    throw make_error(ErrorKind::kInvalidInput,
                     "flow workspace limits: batch %lld (1..%lld), Ta %lld, Tv %lld, L %lld, "
                     "sync %lld, timestep rows %lld (all >= 1)",
                     (long long)l.batch, (long long)kMaxFlowBatch, (long long)l.audio_len,
                     (long long)l.visual_len, (long long)l.text_len, (long long)l.sync_len,
                     (long long)l.timestep_rows);
  Backend& be = model_.backend();
  const FlowWorkspaceBytes b = bytes(model_, l);
  inputs_ = exact_arena(be, b.inputs);
  context_ = exact_arena(be, b.context);
  step_bytes_ = b.step;
  if (step) {
    FOLEY_CHECK(step->device() == be.device() && step->reserved() >= b.step,
                "flow workspace: the step arena (%zu bytes reserved) cannot hold a step of %zu",
                step->reserved(), b.step);
    step_ = step;
  } else {
    owned_step_ = exact_arena(be, b.step);
    step_ = owned_step_.get();
  }
  v_host_ = Tensor::empty({l.batch * model_.config().latent_dim * l.audio_len}, DType::kF32);
  timestep_arena_ = exact_arena(be, b.timesteps);
  timesteps_ = model_.make_timestep_table(timestep_table_rows(l), *timestep_arena_);
}

FlowWorkspace::~FlowWorkspace() = default;

size_t FlowWorkspace::graphs_recorded() const {
  return graphs_->recorded;
}
size_t FlowWorkspace::graphs_cached() const {
  return graphs_->entries.size();
}
Arena& FlowWorkspace::empty_step_arena(const char* who) {
  Arena& step = *step_;
  FOLEY_CHECK(step.frozen() && step.used() == 0 && step.reserved() >= step_bytes_,
              "%s: the step arena is %s with %zu bytes in use and %zu reserved (needs frozen, "
              "empty, %zu)",
              who, step.frozen() ? "frozen" : "growing", step.used(), step.reserved(), step_bytes_);
  return step;
}

void FlowWorkspace::precompute_schedule(int steps) {
  check_steps(steps);
  flow_internal::precompute_schedule(model_, *timesteps_, flow_sigmas(steps));
}

const std::string& FlowWorkspace::graph_error() const {
  return graphs_->error;
}

Tensor flow_sample(const Mmdit& model, const FlowConditions& cond, const FlowSampleParams& params,
                   int64_t audio_len, const Tensor* noise, FlowWorkspace& ws,
                   const FlowCallbacks& callbacks) {
  FOLEY_CHECK(&model == &ws.model_, "flow_sample: the workspace belongs to another model");
  HostInputs in = host_inputs(model, cond, params, audio_len, noise);
  check_fits(in, ws.limits_);
  // Recorded steps point into the step arena at offset 0 onwards: a borrowed one must not have
  // moved or be holding anything else (see the borrowing constructor).
  Arena& step = ws.empty_step_arena("flow_sample");
  // Rewound on return, so the next request of this shape gets the same addresses.
  Arena::Scope inputs_scope(*ws.inputs_), context_scope(*ws.context_), step_scope(step);
  const DeviceInputs d = upload_inputs(model, in, *ws.inputs_);
  const std::unique_ptr<DitContext> ctx =
      model.prepare(d.clip, d.sync, d.text, in.Ta, *ws.context_);
  const Tensor v_host(ws.v_host_.raw(), DType::kF32, {in.B, model.config().latent_dim, in.Ta},
                      DeviceKind::kCPU);
  GraphedForward graphed(model.backend(), *ws.graphs_,
                         {in.B, in.Ta, in.Tv, in.L, in.S8, d.x.raw(), d.v.raw(), ctx->base(),
                          step.mark(), ctx->text_rows()});
  run_steps(model, in, *ctx, *ws.timesteps_, d, v_host, params, callbacks,
            [&] { graphed([&] { model.forward(*ctx, d.x, d.v, step); }); });
  return in.x;
}

Tensor flow_sample(const Mmdit& model, const FlowConditions& cond, const FlowSampleParams& params,
                   int64_t audio_len, const Tensor* noise, Arena& arena,
                   const FlowCallbacks& callbacks) {
  HostInputs in = host_inputs(model, cond, params, audio_len, noise);
  Backend& be = model.backend();
  Arena inputs(be.block_allocator(),
               inputs_arena_bytes(model.config(), in.B, in.Ta, in.Tv, in.L, in.S8));
  const DeviceInputs d = upload_inputs(model, in, inputs);
  const std::unique_ptr<DitContext> ctx = model.prepare(d.clip, d.sync, d.text, in.Ta);
  // A growth-mode arena becomes one block that fits a step (see Mmdit::step_arena_bytes); a
  // frozen one must already be large enough, or the first step throws.
  if (!arena.frozen()) arena.freeze(model.step_arena_bytes(in.B, in.Ta, in.Tv));
  const Tensor v_host = Tensor::empty({in.B, model.config().latent_dim, in.Ta}, DType::kF32);
  // The request's whole schedule, as a workspace's table computes it for its first request.
  const std::unique_ptr<TimestepTable> table =
      model.make_timestep_table(std::min<int64_t>(params.steps, FlowLimits{}.timestep_rows));
  run_steps(model, in, *ctx, *table, d, v_host, params, callbacks,
            [&] { model.forward(*ctx, d.x, d.v, arena); });
  return in.x;
}

}  // namespace foley
