#include "models/flow_sampler.h"

#include <array>
#include <cmath>

#include "core/check.h"

namespace foley {

namespace {

// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
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

// Tensor of any float dtype on the host -> contiguous F32 copy.
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

}  // namespace

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
        philox4x32({static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 0, 0}, key);
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

Tensor flow_sample(const Mmdit& model, const FlowConditions& cond, const FlowSampleParams& params,
                   int64_t audio_len, const Tensor* noise, Arena& arena,
                   const FlowCallbacks& callbacks) {
  const MmditConfig& c = model.config();
  Backend& be = model.backend();
  if (params.steps < 1 || params.steps > 1000)
    throw make_error(ErrorKind::kInvalidInput, "steps must be in [1, 1000], got %d", params.steps);
  if (!std::isfinite(params.guidance))
    throw Error(ErrorKind::kInvalidInput, "guidance must be finite");

  Tensor x = noise ? host_f32(*noise, "initial noise")
                   : flow_initial_noise(c.latent_dim, audio_len, params.seed);
  const int64_t Ta = x.dim(2);
  expect_shape(x, {1, c.latent_dim, Ta}, "initial noise");
  const Tensor clip = host_f32(cond.clip, "clip features");
  const Tensor sync = host_f32(cond.sync, "sync features");
  const Tensor text = host_f32(cond.text, "text features");
  const int64_t Tv = clip.dim(0), S8 = sync.dim(0), L = text.dim(0);
  expect_shape(clip, {Tv, c.clip_dim}, "clip features");
  expect_shape(sync, {S8, c.sync_dim}, "sync features");
  expect_shape(text, {L, c.text_dim}, "text features");

  // CFG only when guidance > 1, as the official pipeline; the conditional row is always last.
  const bool cfg = params.guidance > 1.0f;
  const int64_t B = cfg ? 2 : 1;
  Arena inputs(be.block_allocator());
  const Tensor clip_d = inputs.alloc({B, Tv, c.clip_dim}, DType::kF32);
  const Tensor sync_d = inputs.alloc({B, S8, c.sync_dim}, DType::kF32);
  const Tensor text_d = inputs.alloc({B, L, c.text_dim}, DType::kF32);
  be.copy_from_host(clip_d.select(0, B - 1), clip);
  be.copy_from_host(sync_d.select(0, B - 1), sync);
  be.copy_from_host(text_d.select(0, B - 1), text);
  if (cfg) {
    const Tensor uncond_text = host_f32(cond.uncond_text, "negative text features");
    expect_shape(uncond_text, {L, c.text_dim}, "negative text features (same length as text)");
    be.copy(clip_d.select(0, 0), model.empty_clip_feat().expand({Tv, c.clip_dim}));
    be.copy(sync_d.select(0, 0), model.empty_sync_feat().expand({S8, c.sync_dim}));
    be.copy_from_host(text_d.select(0, 0), uncond_text);
  }
  const std::unique_ptr<DitContext> ctx = model.prepare(clip_d, sync_d, text_d, Ta);

  // A growth-mode arena becomes one block that fits a step (see Mmdit::step_arena_bytes); a
  // frozen one must already be large enough, or the first step throws.
  if (!arena.frozen()) arena.freeze(model.step_arena_bytes(B, Ta, Tv));

  // Per-step buffers, all allocated before the loop.
  const Tensor x_d = inputs.alloc({B, c.latent_dim, Ta}, DType::kF32);
  const Tensor v_d = inputs.alloc({B, c.latent_dim, Ta}, DType::kF32);
  Tensor v = Tensor::empty({B, c.latent_dim, Ta}, DType::kF32);
  const std::vector<float> sigmas = flow_sigmas(params.steps);
  const int64_t n = c.latent_dim * Ta;
  float* xs = x.data<float>();
  const float* vu = v.data<float>();
  const float* vc = v.data<float>() + (B - 1) * n;
  const float s = params.guidance;

  for (int i = 0; i < params.steps; ++i) {
    if (callbacks.cancel && callbacks.cancel->load())
      throw Error(ErrorKind::kCancelled, "sampling cancelled");
    const float t = sigmas[static_cast<size_t>(i)] * 1000.0f;
    const float ts[2] = {t, t};
    for (int64_t b = 0; b < B; ++b) be.copy_from_host(x_d.select(0, b), x.select(0, 0));
    model.forward(*ctx, x_d, ts, v_d, arena);
    be.copy_to_host(v, v_d);
    const float dt = sigmas[static_cast<size_t>(i) + 1] - sigmas[static_cast<size_t>(i)];
    for (int64_t j = 0; j < n; ++j) {
      // The official order of F32 operations: u + s·(c − u), then x + dt·v.
      const float guided = cfg ? vu[j] + s * (vc[j] - vu[j]) : vc[j];
      xs[j] = xs[j] + dt * guided;
    }
    if (callbacks.progress) callbacks.progress(i + 1, params.steps);
  }
  return x;
}

}  // namespace foley
