// Windowed flow sampling for clips longer than the model's trained length (flow_sampler.h).
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "models/flow_sampler_internal.h"

namespace foley {

using namespace flow_internal;

namespace {

[[noreturn]] void bad_windows(const char* why, size_t k) {
  throw make_error(ErrorKind::kInvalidInput, "flow windows: %s (window %zu)", why, k);
}

void check_windows(const std::vector<FlowWindow>& windows, int64_t audio_len) {
  if (windows.empty()) bad_windows("none given", 0);
  for (size_t k = 0; k < windows.size(); ++k) {
    const FlowWindow& w = windows[k];
    if (w.audio_len < 1 || w.audio_begin < 0 || w.audio_begin + w.audio_len > audio_len)
      bad_windows("outside the latent", k);
    if (k == 0 && w.audio_begin != 0) bad_windows("the first does not start at 0", k);
    if (k > 0) {
      const FlowWindow& p = windows[k - 1];
      if (w.audio_begin <= p.audio_begin || w.audio_begin > p.audio_begin + p.audio_len)
        bad_windows("not in order, or a gap before it", k);
      if (w.audio_begin + w.audio_len <= p.audio_begin + p.audio_len)
        bad_windows("inside its predecessor", k);
    }
    if (k > 1 && w.audio_begin < windows[k - 2].audio_begin + windows[k - 2].audio_len)
      bad_windows("overlaps a window other than its neighbours", k);
  }
  const FlowWindow& last = windows.back();
  if (last.audio_begin + last.audio_len != audio_len)
    bad_windows("the last does not end the latent", windows.size() - 1);
}

}  // namespace

std::vector<std::vector<float>> flow_window_weights(const std::vector<FlowWindow>& windows,
                                                    int64_t audio_len) {
  check_windows(windows, audio_len);
  constexpr double kPi = 3.14159265358979323846;
  std::vector<std::vector<float>> raw(windows.size());
  for (size_t k = 0; k < windows.size(); ++k) raw[k].assign(size_t(windows[k].audio_len), 1.0f);
  for (size_t k = 1; k < windows.size(); ++k) {
    const FlowWindow& p = windows[k - 1];
    const FlowWindow& w = windows[k];
    const int64_t m = p.audio_begin + p.audio_len - w.audio_begin;  // overlap, may be 0
    for (int64_t i = 0; i < m; ++i) {
      const float up =
          static_cast<float>(0.5 - 0.5 * std::cos(kPi * (double(i) + 0.5) / double(m)));
      raw[k][size_t(i)] = up;
      raw[k - 1][size_t(w.audio_begin - p.audio_begin + i)] = 1.0f - up;
    }
  }
  // Normalise: the pairs sum to one up to rounding; make it exact per frame.
  std::vector<float> sum(size_t(audio_len), 0.0f);
  for (size_t k = 0; k < windows.size(); ++k)
    for (int64_t i = 0; i < windows[k].audio_len; ++i)
      sum[size_t(windows[k].audio_begin + i)] += raw[k][size_t(i)];
  for (size_t k = 0; k < windows.size(); ++k)
    for (int64_t i = 0; i < windows[k].audio_len; ++i)
      raw[k][size_t(i)] /= sum[size_t(windows[k].audio_begin + i)];
  return raw;
}

Tensor flow_sample_windows(const Mmdit& model, const FlowConditions& cond,
                           const FlowSampleParams& params, int64_t audio_len,
                           const std::vector<FlowWindow>& windows, const Tensor* noise,
                           FlowWorkspace& ws, const FlowCallbacks& callbacks) {
  FOLEY_CHECK(&model == &ws.model_, "flow_sample_windows: the workspace belongs to another model");
  const std::vector<std::vector<float>> weights = flow_window_weights(windows, audio_len);
  HostInputs in = host_inputs(model, cond, params, audio_len, noise);
  if (in.Ta != audio_len)
    throw make_error(ErrorKind::kInvalidInput, "initial noise has %lld frames, expected %lld",
                     (long long)in.Ta, (long long)audio_len);
  const FlowLimits& l = ws.limits_;
  if (in.B > l.batch || in.L > l.text_len)
    throw make_error(ErrorKind::kInvalidInput,
                     "request (batch %lld, text %lld) is larger than the sampler (%lld, %lld)",
                     (long long)in.B, (long long)in.L, (long long)l.batch, (long long)l.text_len);
  for (size_t k = 0; k < windows.size(); ++k) {
    const FlowWindow& w = windows[k];
    if (w.audio_len > l.audio_len || w.visual_len < 1 || w.visual_len > l.visual_len ||
        w.sync_len < 1 || w.sync_len > l.sync_len || w.visual_begin < 0 ||
        w.visual_begin + w.visual_len > in.Tv || w.sync_begin < 0 ||
        w.sync_begin + w.sync_len > in.S8)
      throw make_error(ErrorKind::kInvalidInput,
                       "flow window %zu (Ta %lld, clip rows %lld+%lld of %lld, sync rows "
                       "%lld+%lld of %lld) does not fit the conditions or the sampler (Ta %lld, "
                       "Tv %lld, sync %lld)",
                       k, (long long)w.audio_len, (long long)w.visual_begin,
                       (long long)w.visual_len, (long long)in.Tv, (long long)w.sync_begin,
                       (long long)w.sync_len, (long long)in.S8, (long long)l.audio_len,
                       (long long)l.visual_len, (long long)l.sync_len);
  }
  Arena& step = ws.empty_step_arena("flow_sample_windows");

  Backend& be = model.backend();
  const int64_t C = model.config().latent_dim, T = audio_len, B = in.B;
  const std::vector<float> sigmas = flow_sigmas(params.steps);
  precompute_schedule(model, *ws.timesteps_, sigmas);
  std::vector<float> v_sum(size_t(C * T));
  Tensor x_window = Tensor::empty({1, C, l.audio_len}, DType::kF32);
  // One recorder per window shape: equal shapes get equal addresses (the arenas are rewound per
  // window), so every full-length window shares one recorded step.
  std::vector<std::unique_ptr<GraphedForward>> forwards;
  float* xs = in.x.data<float>();
  const int n = static_cast<int>(windows.size());
  for (int i = 0; i < params.steps; ++i) {
    const float t = sigmas[size_t(i)] * 1000.0f;
    const float ts[2] = {t, t};
    std::fill(v_sum.begin(), v_sum.end(), 0.0f);
    for (int k = 0; k < n; ++k) {
      if (callbacks.cancel && callbacks.cancel->load())
        throw Error(ErrorKind::kCancelled, "sampling cancelled");
      const FlowWindow& w = windows[size_t(k)];
      const int64_t Tw = w.audio_len;
      HostInputs win;
      win.B = B;
      win.cfg = in.cfg;
      win.Ta = Tw;
      win.Tv = w.visual_len;
      win.S8 = w.sync_len;
      win.L = in.L;
      win.clip = in.clip.slice(0, w.visual_begin, w.visual_len);
      win.sync = in.sync.slice(0, w.sync_begin, w.sync_len);
      win.text = in.text;
      win.uncond_text = in.uncond_text;
      win.x = Tensor(x_window.raw(), DType::kF32, {1, C, Tw}, DeviceKind::kCPU);
      float* xw = win.x.data<float>();
      for (int64_t c = 0; c < C; ++c)
        std::memcpy(xw + c * Tw, xs + c * T + w.audio_begin, size_t(Tw) * sizeof(float));

      Arena::Scope inputs_scope(*ws.inputs_), context_scope(*ws.context_), step_scope(step);
      const DeviceInputs d = upload_inputs(model, win, *ws.inputs_);
      const std::unique_ptr<DitContext> ctx =
          model.prepare(d.clip, d.sync, d.text, Tw, *ws.context_);
      const StepGraphKey key{B,         Tw,        win.Tv,      win.L,       win.S8,
                             d.x.raw(), d.v.raw(), ctx->base(), step.mark(), ctx->text_rows()};
      GraphedForward* graphed = nullptr;
      for (auto& f : forwards)
        if (f->key() == key) graphed = f.get();
      if (!graphed) {
        forwards.push_back(std::make_unique<GraphedForward>(be, *ws.graphs_, key));
        graphed = forwards.back().get();
      }
      for (int64_t b = 0; b < B; ++b) be.copy_from_host(d.x.select(0, b), win.x.select(0, 0));
      model.set_timesteps(*ctx, *ws.timesteps_, ts);
      (*graphed)([&] { model.forward(*ctx, d.x, d.v, step); });
      const Tensor v_host(ws.v_host_.raw(), DType::kF32, {B, C, Tw}, DeviceKind::kCPU);
      be.copy_to_host(v_host, d.v);
      be.synchronize();
      const float* vu = v_host.data<float>();
      const float* vc = vu + (B - 1) * C * Tw;
      const float s = params.guidance;
      const float* wk = weights[size_t(k)].data();
      for (int64_t c = 0; c < C; ++c) {
        float* dst = v_sum.data() + c * T + w.audio_begin;
        for (int64_t j = 0; j < Tw; ++j) {
          const int64_t o = c * Tw + j;
          const float guided = in.cfg ? vu[o] + s * (vc[o] - vu[o]) : vc[o];
          dst[j] += wk[j] * guided;
        }
      }
      if (callbacks.window_progress) callbacks.window_progress(i + 1, params.steps, k + 1, n);
    }
    const float dt = sigmas[size_t(i) + 1] - sigmas[size_t(i)];
    for (int64_t j = 0; j < C * T; ++j) xs[j] = xs[j] + dt * v_sum[size_t(j)];
    if (callbacks.progress) callbacks.progress(i + 1, params.steps);
  }
  return in.x;
}

}  // namespace foley
