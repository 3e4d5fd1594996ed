// Golden-case stages of the diffusion transformer: "dit" (one forward on the CFG batch) and
// "sample" (the whole Euler CFG run from the case's noise and features).
#include <array>
#include <cmath>
#include <vector>

#include "api/golden.h"
#include "core/check.h"
#include "foley/media.h"
#include "models/flow_sampler.h"
#include "models/mmdit.h"

namespace foley::golden {
namespace {

// Contiguous host F32 copy of a stored tensor (golden tensors are F32, possibly strided views).
Tensor host_copy(const Tensor& t) {
  FOLEY_CHECK(t.dtype() == DType::kF32, "golden DiT input %s is not F32", t.describe().c_str());
  Tensor out = Tensor::empty(t.shape(), DType::kF32);
  const int r = t.rank();
  std::array<int64_t, kMaxRank> idx{};
  for (int64_t i = 0, n = t.numel(); i < n; ++i) {
    int64_t off = 0;
    for (int d = 0; d < r; ++d) off += idx[static_cast<size_t>(d)] * t.stride(d);
    out.data<float>()[i] = t.data<float>()[off];
    for (int d = r - 1; d >= 0; --d) {
      if (++idx[static_cast<size_t>(d)] < t.dim(d)) break;
      idx[static_cast<size_t>(d)] = 0;
    }
  }
  return out;
}

// A stored feature tensor [1, T, C] (its batch dimension of 1) as host F32 [T, C].
Tensor feature_rows(const GoldenCase& g, const char* name) {
  const Tensor t = host_copy(g.tensor(name));
  if (t.rank() != 3 || t.dim(0) != 1)
    throw Error(ErrorKind::kInvalidInput, std::string(name) + " must be [1, T, C]");
  return t.reshape({t.dim(1), t.dim(2)});
}

// A device copy of a stored tensor, allocated from `arena`.
Tensor upload(Backend& be, Arena& arena, const Tensor& stored) {
  const Tensor host = host_copy(stored);
  Tensor dev = arena.alloc(host.shape(), DType::kF32);
  be.copy_from_host(dev, host);
  return dev;
}

std::vector<StageOutput> run_dit(const StageContext& ctx) {
  Backend& be = ctx.backend;
  const Mmdit model(ctx.weights, be);
  const GoldenCase& g = ctx.gcase;
  Arena io(be.block_allocator());
  const Tensor x = upload(be, io, g.tensor("dit_in_x"));
  const Tensor clip = upload(be, io, g.tensor("dit_in_clip"));
  const Tensor sync = upload(be, io, g.tensor("dit_in_sync"));
  const Tensor text = upload(be, io, g.tensor("dit_in_text"));
  const Tensor t_host = host_copy(g.tensor("dit_in_t"));
  if (t_host.numel() != x.dim(0))
    throw Error(ErrorKind::kInvalidInput, "dit_in_t must hold one timestep per batch row");

  const auto dctx = model.prepare(clip, sync, text, x.dim(2));
  Tensor v = io.alloc(x.shape(), DType::kF32);
  Arena step(be.block_allocator(), model.step_arena_bytes(x.dim(0), x.dim(2), clip.dim(1)));
  model.forward(*dctx, x, t_host.data<float>(), v, step);
  Tensor v_host = Tensor::empty(v.shape(), DType::kF32);
  be.copy_to_host(v_host, v);
  be.synchronize();
  return {{"dit_out_v", v_host}};
}

// The Euler CFG sampler from the case's stored noise with its steps and guidance.
Tensor sample_case(const Mmdit& model, const GoldenCase& g, const FlowConditions& cond,
                   const char* noise_name) {
  FlowSampleParams params;
  params.steps = static_cast<int>(g.number("steps"));
  params.guidance = static_cast<float>(g.number("guidance"));
  const Tensor noise = host_copy(g.tensor(noise_name));
  Arena step(model.backend().block_allocator());
  return flow_sample(model, cond, params, noise.dim(2), &noise, step);
}

std::vector<StageOutput> run_sample(const StageContext& ctx) {
  Backend& be = ctx.backend;
  const Mmdit model(ctx.weights, be);
  const GoldenCase& g = ctx.gcase;
  auto row = [&](const char* name) { return feature_rows(g, name); };
  FlowConditions cond{row("siglip2_features"), row("sync_features"), row("text_feat"),
                      row("uncond_text_feat")};
  return {{"sample_latent", sample_case(model, g, cond, "sample_noise")}};
}

// Host F32 [rows, n]: the learned vector `v` [n] (on the backend's device) in every row.
Tensor tiled(Backend& be, const Tensor& v, int64_t rows) {
  Tensor one = Tensor::empty({v.numel()}, DType::kF32);
  be.copy_to_host(one, v);
  be.synchronize();
  Tensor out = Tensor::empty({rows, v.numel()}, DType::kF32);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < v.numel(); ++i)
      out.data<float>()[r * v.numel() + i] = one.data<float>()[i];
  return out;
}

// Sound from text alone (Generator::generate_text): the learned empty visual and sync features in
// both CFG rows, at the lengths the case gives (text_only_Tv, text_only_sync_len) or, failing
// those, the lengths of a 25 fps clip of text_only_seconds.
std::vector<StageOutput> run_text_only(const StageContext& ctx) {
  Backend& be = ctx.backend;
  const Mmdit model(ctx.weights, be);
  const GoldenCase& g = ctx.gcase;
  const nlohmann::json& j = g.json();
  int64_t tv = 0, s8 = 0;
  if (j.contains("text_only_Tv") && j.contains("text_only_sync_len")) {
    tv = static_cast<int64_t>(g.number("text_only_Tv"));
    s8 = static_cast<int64_t>(g.number("text_only_sync_len"));
  } else {
    const ClipTiming t =
        clip_timing(static_cast<int>(std::lround(g.number("text_only_seconds") * 25)));
    tv = int64_t{t.sync_frames - 1} * 8 / 25 + 1;
    s8 = int64_t{t.sync_segments} * 8;
  }
  auto row = [&](const char* name) { return feature_rows(g, name); };

  FlowConditions cond{tiled(be, model.empty_clip_feat(), tv),
                      tiled(be, model.empty_sync_feat(), s8), row("text_feat"),
                      row("uncond_text_feat")};
  return {{"text_only_latent", sample_case(model, g, cond, "text_only_noise")}};
}

}  // namespace

void register_dit_stages(std::vector<Stage>& stages) {
  stages.push_back({"dit", {"dit"}, run_dit});
  stages.push_back({"sample", {"dit"}, run_sample});
  stages.push_back({"text_only", {"dit"}, run_text_only});
}

}  // namespace foley::golden
