// Several requests sampled together (flow_sampler.h, flow_sample_batch): one DiT evaluation per
// step over every request's CFG rows, each request's own guided Euler step on the host.
#include <algorithm>
#include <cstring>
#include <optional>

#include "core/check.h"
#include "models/flow_sampler_internal.h"

namespace foley {

using namespace flow_internal;

namespace {

// One request still in the batch.
struct Member {
  size_t index = 0;  // into the caller's items
  HostInputs in;
  std::vector<float> sigmas;
  int step = 0;  // steps taken
};

// [len, dim] host rows zero-padded to [rows, dim] (rows >= len).
Tensor padded_rows(const Tensor& src, int64_t rows) {
  const int64_t len = src.dim(0), dim = src.dim(1);
  if (len == rows) return src;
  Tensor out = Tensor::empty({rows, dim}, DType::kF32);
  std::memset(out.data<float>(), 0, size_t(rows * dim) * sizeof(float));
  std::memcpy(out.data<float>(), src.data<float>(), size_t(len * dim) * sizeof(float));
  return out;
}

}  // namespace

std::vector<FlowBatchResult> flow_sample_batch(const Mmdit& model,
                                               const std::vector<FlowBatchItem>& items,
                                               int64_t audio_len, FlowWorkspace& ws) {
  FOLEY_CHECK(&model == &ws.model_, "flow_sample_batch: the workspace belongs to another model");
  const MmditConfig& c = model.config();
  const FlowLimits& l = ws.limits_;
  std::vector<FlowBatchResult> out(items.size());

  // Each request's inputs, checked on its own: one that does not fit fails alone.
  std::vector<Member> active;
  int64_t Tv = -1, S8 = -1, rows = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    try {
      const FlowBatchItem& item = items[i];
      FOLEY_CHECK(item.cond != nullptr, "flow_sample_batch: item %zu has no conditions", i);
      Member m;
      m.index = i;
      m.in = host_inputs(model, *item.cond, item.params, audio_len, item.noise);
      const HostInputs& in = m.in;
      if (in.Ta != audio_len)
        throw make_error(ErrorKind::kInvalidInput, "initial noise has %lld frames, the batch %lld",
                         (long long)in.Ta, (long long)audio_len);
      check_fits(in, l);  // one request's rows; the batch's total is checked below
      if (Tv < 0) {
        Tv = in.Tv;
        S8 = in.S8;
      } else if (in.Tv != Tv || in.S8 != S8) {
        throw make_error(ErrorKind::kInvalidInput,
                         "request's visual and sync lengths (%lld, %lld) differ from the batch's "
                         "(%lld, %lld); it must be sampled apart",
                         (long long)in.Tv, (long long)in.S8, (long long)Tv, (long long)S8);
      }
      m.sigmas = flow_sigmas(item.params.steps);
      rows += in.B;
      active.push_back(std::move(m));
    } catch (...) {
      out[i].error = std::current_exception();
    }
  }
  if (rows > l.batch)
    throw make_error(ErrorKind::kInvalidInput,
                     "a batch of %lld DiT rows is larger than the sampler was sized for (%lld)",
                     (long long)rows, (long long)l.batch);
  Arena& step = ws.empty_step_arena("flow_sample_batch");
  for (const Member& m : active) precompute_schedule(model, *ws.timesteps_, m.sigmas);

  Backend& be = model.backend();
  const int64_t C = c.latent_dim, Ta = audio_len, n = C * Ta;
  // The device state of the current members, rebuilt whenever one leaves; rewound on return.
  std::optional<Arena::Scope> inputs_scope, context_scope;
  const Arena::Scope step_scope(step);
  DeviceInputs d;
  std::unique_ptr<DitContext> ctx;
  std::unique_ptr<GraphedForward> graphed;
  std::vector<int64_t> first_row;  // per member
  int64_t R = 0;
  auto rebuild = [&] {
    graphed.reset();
    ctx.reset();
    context_scope.reset();
    inputs_scope.reset();
    inputs_scope.emplace(*ws.inputs_);
    context_scope.emplace(*ws.context_);
    R = 0;
    int64_t L = 0;
    for (const Member& m : active) {
      R += m.in.B;
      L = std::max(L, m.in.L);
    }
    Arena& a = *ws.inputs_;
    // x and v first, as upload_inputs: their addresses depend only on the rows and Ta.
    d.x = a.alloc({R, C, Ta}, DType::kF32);
    d.v = a.alloc({R, C, Ta}, DType::kF32);
    d.clip = a.alloc({R, Tv, c.clip_dim}, DType::kF32);
    d.sync = a.alloc({R, S8, c.sync_dim}, DType::kF32);
    d.text = a.alloc({R, L, c.text_dim}, DType::kF32);
    std::vector<int64_t> text_lens;
    first_row.clear();
    int64_t r = 0;
    for (const Member& m : active) {
      const HostInputs& in = m.in;
      first_row.push_back(r);
      if (in.cfg) {  // [uncond, cond], as flow_sample
        be.copy(d.clip.select(0, r), model.empty_clip_feat().expand({Tv, c.clip_dim}));
        be.copy(d.sync.select(0, r), model.empty_sync_feat().expand({S8, c.sync_dim}));
        be.copy_from_host(d.text.select(0, r), padded_rows(in.uncond_text, L));
        text_lens.push_back(in.L);
        ++r;
      }
      be.copy_from_host(d.clip.select(0, r), in.clip);
      be.copy_from_host(d.sync.select(0, r), in.sync);
      be.copy_from_host(d.text.select(0, r), padded_rows(in.text, L));
      text_lens.push_back(in.L);
      ++r;
    }
    ctx = model.prepare(d.clip, d.sync, d.text, Ta, *ws.context_, text_lens);
    graphed =
        std::make_unique<GraphedForward>(be, *ws.graphs_,
                                         StepGraphKey{R, Ta, Tv, L, S8, d.x.raw(), d.v.raw(),
                                                      ctx->base(), step.mark(), ctx->text_rows()});
  };

  // Members whose `leave` is set go; returns whether any did.
  std::vector<bool> leave;
  auto drop_leavers = [&] {
    std::vector<Member> kept;
    for (size_t k = 0; k < active.size(); ++k)
      if (!leave[k]) kept.push_back(std::move(active[k]));
    const bool changed = kept.size() != active.size();
    active = std::move(kept);
    return changed;
  };

  bool stale = true;  // the device state does not match the members
  std::vector<float> ts;
  while (!active.empty()) {
    leave.assign(active.size(), false);
    for (size_t k = 0; k < active.size(); ++k) {
      const FlowCallbacks& cb = items[active[k].index].callbacks;
      if (cb.cancel && cb.cancel->load()) {
        out[active[k].index].error =
            std::make_exception_ptr(Error(ErrorKind::kCancelled, "sampling cancelled"));
        leave[k] = true;
      }
    }
    if (drop_leavers()) stale = true;
    if (active.empty()) break;
    if (stale) {
      rebuild();
      stale = false;
    }
    // Each row at its own request's timestep.
    ts.clear();
    for (size_t k = 0; k < active.size(); ++k) {
      const Member& m = active[k];
      const float t = m.sigmas[size_t(m.step)] * 1000.0f;
      for (int64_t b = 0; b < m.in.B; ++b) {
        ts.push_back(t);
        be.copy_from_host(d.x.select(0, first_row[k] + b), m.in.x.select(0, 0));
      }
    }
    model.set_timesteps(*ctx, *ws.timesteps_, ts.data());
    (*graphed)([&] { model.forward(*ctx, d.x, d.v, step); });
    const Tensor v_host(ws.v_host_.raw(), DType::kF32, {R, C, Ta}, DeviceKind::kCPU);
    be.copy_to_host(v_host, d.v);
    be.synchronize();
    const float* v = v_host.data<float>();
    leave.assign(active.size(), false);
    for (size_t k = 0; k < active.size(); ++k) {
      Member& m = active[k];
      const FlowBatchItem& item = items[m.index];
      const float* vu = v + first_row[k] * n;
      const float* vc = v + (first_row[k] + m.in.B - 1) * n;
      const size_t i = size_t(m.step);
      cfg_euler_step(m.in.x.data<float>(), vu, vc, n, m.in.cfg, item.params.guidance,
                     m.sigmas[i + 1] - m.sigmas[i]);
      ++m.step;
      try {
        if (item.callbacks.progress) item.callbacks.progress(m.step, item.params.steps);
      } catch (...) {
        out[m.index].error = std::current_exception();
        leave[k] = true;
        continue;
      }
      if (m.step == item.params.steps) {
        out[m.index].latent = m.in.x;
        leave[k] = true;
      }
    }
    if (drop_leavers()) stale = true;
  }
  // Rewind in reverse order of the scopes (the context before the inputs, then the step).
  graphed.reset();
  ctx.reset();
  context_scope.reset();
  inputs_scope.reset();
  return out;
}

}  // namespace foley
