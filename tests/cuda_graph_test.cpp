// Backend::record and the sampler's recorded denoising steps. On CUDA (skipped without a device):
// a recorded DiT forward replays to the eager forward's bits, the sampler gives the same latent
// with and without graphs (FOLEY_CUDA_GRAPHS=0), requests after the first allocate no device
// memory, and a recording that fails leaves the backend usable. The tiny DiT is the golden case's
// (its official checkpoint converted here), as in cuda_models_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/device_upload.h"
#include "convert/convert.h"
#include "cuda_test_util.h"
#include "dit_fixture.h"
#include "io/safetensors.h"
#include "models/flow_sampler.h"
#include "models/mmdit.h"
#include "models/weight_store.h"

namespace foley {
namespace {

using test::ScopedEnv;

using test::download;
using test::upload;

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// The golden case tiny-a: its tensors and its DiT converted with `dtype` weights (once per dtype
// and process); null when the case is absent.
struct GoldenDit {
  std::shared_ptr<WeightStore> store;
  std::unique_ptr<SafetensorsFile> tensors;

  static const GoldenDit* get(DType dtype) {
    namespace fs = std::filesystem;
    static std::map<DType, std::unique_ptr<GoldenDit>> cache;
    auto& slot = cache[dtype];
    if (!slot) {
      const std::string bundle = test::golden_dit_bundle(dtype);
      if (bundle.empty()) return nullptr;
      const fs::path dir = test::golden_root() / "tiny-a";
      slot = std::make_unique<GoldenDit>();
      slot->store = WeightStore::open(bundle);
      slot->tensors = std::make_unique<SafetensorsFile>(
          SafetensorsFile::open((dir / "tensors.safetensors").string()));
    }
    return slot.get();
  }
  Tensor tensor(const char* name) const { return test::to_f32(tensors->tensor(name)); }
  // A stored [1, T, C] feature tensor as [T, C], its first `rows` rows (all when 0).
  Tensor row(const char* name, int64_t rows = 0) const {
    const Tensor t = tensor(name);
    const Tensor r = t.reshape({t.dim(1), t.dim(2)});
    if (rows == 0 || rows == r.dim(0)) return r;
    return test::to_f32(r.slice(0, 0, rows));
  }
};

#define GOLDEN_DIT_OR_SKIP(name, dtype)          \
  const GoldenDit* name = GoldenDit::get(dtype); \
  if (name == nullptr) GTEST_SKIP() << "no golden case tiny-a"

TEST(OpGraph, CpuBackendDoesNotRecord) {
  auto be = make_cpu_backend();
  int ran = 0;
  EXPECT_EQ(be->record([&] { ++ran; }), nullptr);
  EXPECT_EQ(ran, 0) << "record() must not run the work it cannot record";
}

// One forward recorded and replayed: bit for bit the eager forward, reading the buffers'
// contents at replay time (a new timestep gives that timestep's velocity).
TEST(CudaGraph, RecordedDitForwardReplaysTheEagerForwardBitwise) {
  FOLEY_CUDA_OR_SKIP(be);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    GOLDEN_DIT_OR_SKIP(g, dtype);
    const Mmdit model(*g->store, be);
    const Tensor x = upload(be, g->tensor("dit_in_x"));
    const Tensor t = g->tensor("dit_in_t");
    const auto ctx =
        model.prepare(upload(be, g->tensor("dit_in_clip")), upload(be, g->tensor("dit_in_sync")),
                      upload(be, g->tensor("dit_in_text")), x.dim(2));
    Arena step(be.block_allocator());
    step.freeze(model.step_arena_bytes(x.dim(0), x.dim(2), ctx->visual_len()));
    const Tensor v_eager = test::device_poisoned(be, x.shape());
    model.forward(*ctx, x, t.data<float>(), v_eager, step);
    const Tensor want = download(be, v_eager);
    ASSERT_EQ(test::count_nonfinite(want), 0);

    const Tensor v = test::device_poisoned(be, x.shape());
    std::unique_ptr<OpGraph> graph = be.record([&] { model.forward(*ctx, x, v, step); });
    ASSERT_NE(graph, nullptr);
    EXPECT_EQ(step.used(), 0u);
    EXPECT_EQ(test::count_nonfinite(download(be, v)), v.numel()) << "recording ran the ops";
    graph->replay();
    EXPECT_TRUE(same_bits(download(be, v), want));

    Tensor t2 = Tensor::empty(t.shape(), DType::kF32);
    for (int64_t i = 0; i < t.numel(); ++i) t2.data<float>()[i] = 0.37f * t.data<float>()[i] + 3;
    model.forward(*ctx, x, t2.data<float>(), v_eager, step);
    const Tensor want2 = download(be, v_eager);
    EXPECT_FALSE(same_bits(want2, want));
    model.set_timesteps(*ctx, t2.data<float>());
    graph->replay();
    EXPECT_TRUE(same_bits(download(be, v), want2));
  }
}

FlowLimits golden_limits(const GoldenDit& g) {
  FlowLimits l;
  l.audio_len = g.tensor("sample_noise").dim(2);
  l.visual_len = g.row("siglip2_features").dim(0);
  l.text_len = g.row("text_feat").dim(0);
  l.sync_len = g.row("sync_features").dim(0);
  return l;
}

// The golden case's sampling request, or a shorter one (every length cut down) when `shorter`.
struct SampleRequest {
  FlowConditions cond;
  Tensor noise;
};
SampleRequest golden_request(const GoldenDit& g, bool shorter) {
  const FlowLimits l = golden_limits(g);
  const int64_t tv = shorter ? l.visual_len - 5 : 0, sync = shorter ? l.sync_len - 16 : 0,
                text = shorter ? l.text_len - 2 : 0, ta = shorter ? l.audio_len - 40 : 0;
  SampleRequest r;
  r.cond = {g.row("siglip2_features", tv), g.row("sync_features", sync), g.row("text_feat", text),
            g.row("uncond_text_feat", text)};
  const Tensor noise = g.tensor("sample_noise");
  r.noise = shorter ? test::to_f32(noise.slice(2, 0, ta)) : noise;
  return r;
}

FlowSampleParams golden_params() {
  FlowSampleParams p;
  p.steps = 4;
  p.guidance = 4.5f;
  return p;
}

// Graphs on and off give the same latent bit for bit, for two shapes; each shape is recorded
// once and replayed by later requests.
TEST(CudaGraph, FlowSampleWithGraphsMatchesEagerBitwise) {
  FOLEY_CUDA_OR_SKIP(be);
  GOLDEN_DIT_OR_SKIP(g, DType::kBF16);
  const Mmdit model(*g->store, be);
  FlowWorkspace ws(model, golden_limits(*g));
  const FlowSampleParams params = golden_params();
  const SampleRequest full = golden_request(*g, false), cut = golden_request(*g, true);
  auto sample = [&](const SampleRequest& r) {
    return flow_sample(model, r.cond, params, r.noise.dim(2), &r.noise, ws);
  };
  Tensor eager_full, eager_cut;
  {
    ScopedEnv off("FOLEY_CUDA_GRAPHS", "0");
    eager_full = sample(full);
    eager_cut = sample(cut);
  }
  EXPECT_EQ(ws.graphs_recorded(), 0u);
  ASSERT_NE(eager_full.shape(), eager_cut.shape());

  EXPECT_TRUE(same_bits(sample(full), eager_full));
  EXPECT_EQ(ws.graph_error(), "");
  EXPECT_EQ(ws.graphs_recorded(), 1u);
  EXPECT_TRUE(same_bits(sample(cut), eager_cut));
  EXPECT_EQ(ws.graphs_recorded(), 2u);
  EXPECT_TRUE(same_bits(sample(full), eager_full));  // replayed from the first step
  EXPECT_TRUE(same_bits(sample(cut), eager_cut));
  EXPECT_EQ(ws.graphs_recorded(), 2u);
  EXPECT_EQ(ws.graphs_cached(), 2u);
  EXPECT_EQ(ws.graph_error(), "");

  // The one-shot path (fresh memory, every step eager) agrees as well.
  Arena arena(be.block_allocator());
  const double err = test::max_rel_error(
      flow_sample(model, full.cond, params, full.noise.dim(2), &full.noise, arena), eager_full);
  EXPECT_LE(err, 1e-6) << "one-shot path vs workspace";
}

// After the first request of a shape, requests take no device memory: the workspace's arenas,
// the recorded graph and the backend's scratch are all reused (cudaMemGetInfo counts the whole
// device, so nothing else may run on it meanwhile).
TEST(CudaGraph, RequestsAfterTheFirstAllocateNoDeviceMemory) {
  FOLEY_CUDA_OR_SKIP(be);
  GOLDEN_DIT_OR_SKIP(g, DType::kBF16);
  const Mmdit model(*g->store, be);
  FlowWorkspace ws(model, golden_limits(*g));
  const FlowSampleParams params = golden_params();
  const SampleRequest r = golden_request(*g, false);
  const Tensor first = flow_sample(model, r.cond, params, r.noise.dim(2), &r.noise, ws);
  be.synchronize();
  size_t free_before = 0, free_after = 0, total = 0;
  ASSERT_TRUE(cuda_memory_info(0, &free_before, &total));
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(same_bits(flow_sample(model, r.cond, params, r.noise.dim(2), &r.noise, ws), first));
  be.synchronize();
  ASSERT_TRUE(cuda_memory_info(0, &free_after, &total));
  EXPECT_EQ(free_after, free_before);
  EXPECT_EQ(ws.graphs_recorded(), 1u);
  EXPECT_EQ(ws.graph_error(), "");
}

// A recording whose work throws, or issues what cannot be recorded (a synchronising download,
// an arena that must cudaMalloc), fails with foley::Error, runs none of the work, and leaves the
// backend recording and running as before.
TEST(CudaGraph, FailedRecordingLeavesTheBackendUsable) {
  FOLEY_CUDA_OR_SKIP(be);
  const Tensor t = test::device_empty(be, {4096}, DType::kF32);
  be.fill(t, 0.0f);
  auto expect_all = [&](float value) {
    const Tensor h = download(be, t);
    for (int64_t i = 0; i < h.numel(); ++i)
      if (h.data<float>()[i] != value) {
        ADD_FAILURE() << "element " << i << " is " << h.data<float>()[i] << ", expected " << value;
        return;
      }
  };
  try {
    be.record([&] {
      be.fill(t, 1.0f);
      throw Error(ErrorKind::kInvalidInput, "boom");
    });
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("boom"), std::string::npos) << e.what();
  }
  expect_all(0.0f);
  EXPECT_THROW(be.record([&] {
    be.fill(t, 1.0f);
    Tensor h = Tensor::empty(t.shape(), DType::kF32);
    be.copy_to_host(h, t);
  }),
               Error);
  expect_all(0.0f);
  EXPECT_THROW(be.record([&] {
    Arena grows(be.block_allocator());
    be.fill(grows.alloc({16}, DType::kF32), 1.0f);
  }),
               Error);
  be.fill(t, 2.0f);
  expect_all(2.0f);
  std::unique_ptr<OpGraph> graph = be.record([&] { be.fill(t, 3.0f); });
  ASSERT_NE(graph, nullptr);
  expect_all(2.0f);
  graph->replay();
  expect_all(3.0f);
}

// Windowed sampling of a long latent (three windows, two shapes) on the GPU: the CPU's latent
// within F32 rounding, the same bits with and without recorded steps, and device memory that
// the first long request sized once.
TEST(CudaGraph, WindowedSamplingMatchesTheCpuAndItsEagerRun) {
  FOLEY_CUDA_OR_SKIP(be);
  GOLDEN_DIT_OR_SKIP(g, DType::kF32);
  auto cpu = make_cpu_backend();
  const Mmdit on_gpu(*g->store, be), on_cpu(*g->store, *cpu);
  const MmditConfig& c = on_gpu.config();
  // 24 s at 25 fps: windows [0, 10), [8, 18), [16, 24) s.
  const int t25 = 600;
  const int64_t ta = 1200, tv = (t25 - 1) * 8 / 25 + 1, s8 = ((t25 - 16) / 8 + 1) * 8, L = 8;
  auto features = [](int64_t rows, int64_t dim, float phase) {
    Tensor t = Tensor::empty({rows, dim}, DType::kF32);
    for (int64_t i = 0; i < t.numel(); ++i)
      t.data<float>()[i] = std::sin(phase + 0.013f * float(i));
    return t;
  };
  const FlowConditions cond{features(tv, c.clip_dim, 0.1f), features(s8, c.sync_dim, 0.2f),
                            features(L, c.text_dim, 0.3f), features(L, c.text_dim, 0.4f)};
  std::vector<FlowWindow> windows;
  for (int k = 0; k < 3; ++k) {
    const bool last = k == 2;
    windows.push_back({400 * k, last ? ta - 800 : 500, 64 * k, last ? tv - 128 : 80, 200 * k,
                       last ? s8 - 400 : 240});
  }
  FlowLimits limits;
  limits.audio_len = 752;
  limits.visual_len = 121;
  limits.text_len = L;
  limits.sync_len = 46 * 8;
  FlowSampleParams sp;
  sp.steps = 4;
  sp.seed = 3;
  FlowWorkspace ws_cpu(on_cpu, limits), ws_gpu(on_gpu, limits);
  const Tensor want = flow_sample_windows(on_cpu, cond, sp, ta, windows, nullptr, ws_cpu);
  const Tensor got = flow_sample_windows(on_gpu, cond, sp, ta, windows, nullptr, ws_gpu);
  EXPECT_EQ(ws_gpu.graphs_recorded(), 2u) << ws_gpu.graph_error();  // one per window shape
  double err = 0, scale = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    err = std::max(err, double(std::fabs(got.data<float>()[i] - want.data<float>()[i])));
    scale = std::max(scale, double(std::fabs(want.data<float>()[i])));
  }
  std::printf("[parity] windowed sampling, 3 windows: CUDA vs CPU max rel err %.3g\n", err / scale);
  EXPECT_LE(err, 1e-3 * scale);
  size_t free_before = 0, free_after = 0, total = 0;
  ASSERT_TRUE(cuda_memory_info(0, &free_before, &total));
  const Tensor again = flow_sample_windows(on_gpu, cond, sp, ta, windows, nullptr, ws_gpu);
  ASSERT_TRUE(cuda_memory_info(0, &free_after, &total));
  EXPECT_EQ(free_before, free_after);
  EXPECT_TRUE(same_bits(again, got));
  test::ScopedEnv eager("FOLEY_CUDA_GRAPHS", "0");
  FlowWorkspace ws_eager(on_gpu, limits);
  EXPECT_TRUE(
      same_bits(flow_sample_windows(on_gpu, cond, sp, ta, windows, nullptr, ws_eager), got));
}

}  // namespace
}  // namespace foley
