// End-to-end GPU numbers for BENCHMARKS.md (driven by bench/run_h100.sh). Each mode is a fresh
// process, so "start" means process start; every result line is "key value" on stdout.
//
//   e2e_bench read BUNDLE                 blob read with the loader's readers, no device (disk
//                                         or page-cache bandwidth)
//   e2e_bench evict BUNDLE                drop the bundle's pages from the page cache
//   e2e_bench load BUNDLE [verify]        loader sweep: GB/s per ring shape (+ byte check)
//   e2e_bench dit BUNDLE [ready]          MMDiT alone: start->ready, CFG step time at 5/10/15 s,
//                                         TFLOP/s, 50-step sampling, VRAM, drift
// The whole pipeline (public Generator) is measured by bench/pipeline_bench.cpp.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/device_upload.h"
#include "io/mapped_file.h"
#include "models/flow_sampler.h"
#include "models/mmdit.h"
#include "models/weight_store.h"

namespace foley {
namespace {

using Clock = std::chrono::steady_clock;
const Clock::time_point g_start = Clock::now();  // static init: as close to exec as we get

double secs(Clock::time_point a, Clock::time_point b = Clock::now()) {
  return std::chrono::duration<double>(b - a).count();
}

void out(const char* key, double v) {
  std::printf("%s %.6g\n", key, v), std::fflush(stdout);
}
void out_s(const char* key, const std::string& v) {
  std::printf("%s %s\n", key, v.c_str()), std::fflush(stdout);
}

double used_gb() {
  size_t free = 0, total = 0;
  return cuda_memory_info(0, &free, &total) ? double(total - free) / 1e9 : -1;
}

Tensor host_random(const Shape& s, float scale, uint32_t seed) {
  Tensor t = Tensor::empty(s, DType::kF32);
  uint32_t st = seed * 2654435761u + 1;
  for (int64_t i = 0; i < t.numel(); ++i) {
    st = st * 1664525u + 1013904223u;
    t.data<float>()[i] = scale * (float(st >> 8) / float(1 << 24) - 0.5f);
  }
  return t;
}

Tensor device_copy(Backend& be, const Tensor& host) {
  BlockAllocator a = be.block_allocator();
  void* p = a.allocate(host.nbytes());
  Tensor d(p, host.dtype(), host.shape(), be.device(), std::shared_ptr<void>(p, a.release));
  be.copy_from_host(d, host);
  return d;
}

// Sequence lengths of a clip of `sec` seconds (model-spec §1): Tv at 8 fps, 8 sync tokens per
// 16-frame window at stride 8 over 25 fps, Ta = 50 latent frames per second (T25 · 2).
struct ClipShape {
  double seconds;
  int64_t ta, tv, s8;
};
ClipShape clip_shape(double sec) {
  const int64_t t25 = std::min<int64_t>(int64_t(sec * 25 + 1e-9), 376);
  return {sec, t25 * 2, std::min<int64_t>(int64_t(sec * 8 + 1e-9), 120), ((t25 - 16) / 8 + 1) * 8};
}

// Matmul + attention FLOPs of one forward at batch B (what the kernels must do; elementwise work
// is not counted). Text K/V and the visual/sync projections are per request, not per step.
double mmdit_step_flops(const MmditConfig& c, int64_t B, int64_t ta, int64_t tv, int64_t L) {
  const double H = double(c.hidden), n = double(ta + tv);
  // triple: qkv 3H², self proj H², cross q H², cross proj H², MLP 2·H·mlp per token and stream
  const double triple = 2.0 * (6.0 * H * H + 2.0 * H * double(c.mlp_hidden)) * n + 4.0 * n * n * H +
                        4.0 * n * double(L) * H;
  // single: qkv 3H², conv k3 H->H (3H²), ConvMLP k3: 3·3·H·C
  const double single = 2.0 * (6.0 * H * H + 9.0 * H * double(c.conv_mlp_hidden)) * double(ta) +
                        4.0 * double(ta) * double(ta) * H;
  const double io = 2.0 * 2.0 * double(c.latent_dim) * H * double(ta);  // embed + final linear
  return double(B) * (double(c.depth_triple) * triple + double(c.depth_single) * single + io);
}

RingOptions ring_from_env() {
  RingOptions o;
  if (const char* e = std::getenv("FOLEY_LOAD_READERS")) o.readers = std::atoi(e);
  if (const char* e = std::getenv("FOLEY_LOAD_CHUNK_MB"))
    o.chunk_bytes = size_t(std::atoi(e)) << 20;
  if (const char* e = std::getenv("FOLEY_LOAD_SLOTS")) o.slots = std::atoi(e);
  return o;
}

void print_upload(const char* tag, const UploadStats& s) {
  std::printf(
      "%s_upload s %.4f GB/s %.2f bytes %llu context_s %.3f first_wait_s %.3f direct_bytes %llu "
      "cached_at_start %llu readers %d slots %d chunk_MiB %zu\n",
      tag, s.seconds, s.gb_per_s(), (unsigned long long)s.bytes, s.context_seconds,
      s.first_submit_wait, (unsigned long long)s.direct_bytes,
      (unsigned long long)s.cached_bytes_at_start, s.readers, s.slots, s.chunk_bytes >> 20);
  std::fflush(stdout);
}

int mode_read(const std::string& path, bool direct) {
  auto store = WeightStore::open(path);
  RingOptions o = ring_from_env();
  o.mode = direct ? ReadMode::kDirect : ReadMode::kBuffered;
  StagingRing ring(o.slots, (o.chunk_bytes + 4095) / 4096 * 4096);
  RingSink sink{[](int, const uint8_t*, uint64_t, size_t) {}, [](int) {}, [] {}};
  UploadStats s;
  const auto t0 = Clock::now();
  stream_file_range(path, store->file().data_offset(), store->blob_bytes(), o, ring, sink, &s);
  s.seconds = secs(t0);
  print_upload(direct ? "read_direct" : "read_buffered", s);
  return 0;
}

int mode_load(const std::string& path, bool verify) {
  const size_t total = WeightStore::open(path)->blob_bytes();
  const int readers[] = {4, 8, 16};
  const size_t chunks[] = {16, 32, 64};
  for (int r : readers)
    for (size_t c : chunks) {
      RingOptions o;
      o.readers = r, o.slots = r + 4, o.chunk_bytes = c << 20, o.mode = ReadMode::kBuffered;
      UploadStats s;
      auto store = WeightStore::open_on_cuda(path, 0, o, &s);
      print_upload("sweep", s);
    }
  if (verify) {
    auto host = WeightStore::open(path);
    auto dev = host->upload_to_cuda(0, ring_from_env());
    auto be = make_cuda_backend();
    auto file = MappedFile::open(path);
    const uint8_t* blob = file->data() + host->file().data_offset();
    size_t mismatches = 0;
    const size_t piece = size_t(256) << 20;
    Tensor buf = Tensor::empty({int64_t(piece)}, DType::kU8);
    for (size_t off = 0; off < total; off += piece) {
      const int64_t n = int64_t(std::min(piece, total - off));
      Tensor d(dev->device_copy().data + off, DType::kU8, {n}, DeviceKind::kCUDA);
      Tensor h = buf.slice(0, 0, n);
      be->copy_to_host(h, d);
      mismatches += std::memcmp(h.raw(), blob + off, size_t(n)) != 0;
    }
    out("verify_pieces_differing", double(mismatches));
  }
  return 0;
}

int mode_dit(const std::string& path, bool ready_only) {
  const auto t_main = Clock::now();
  UploadStats us;
  auto store = WeightStore::open_on_cuda(path, 0, ring_from_env(), &us);
  const double t_loaded = secs(g_start);
  auto be = make_cuda_backend();
  Mmdit model(*store, *be);
  const double t_built = secs(g_start);
  const MmditConfig& c = model.config();
  const int64_t L = 77;
  const ClipShape big{15.04, 752, 121, 368};  // the longest clip the pipeline accepts
  Arena step(be->block_allocator());
  step.freeze(model.step_arena_bytes(2, big.ta, big.tv));
  auto make_ctx = [&](const ClipShape& s) {
    Tensor clip = device_copy(*be, host_random({2, s.tv, c.clip_dim}, 2.f, 1));
    Tensor sync = device_copy(*be, host_random({2, s.s8, c.sync_dim}, 2.f, 2));
    Tensor text = device_copy(*be, host_random({2, L, c.text_dim}, 1.f, 3));
    return model.prepare(clip, sync, text, s.ta);
  };
  // Warm-up at the largest shape: one request context and one CFG step.
  Tensor x = device_copy(*be, host_random({2, c.latent_dim, big.ta}, 3.f, 4));
  Tensor v = device_copy(*be, host_random({2, c.latent_dim, big.ta}, 0.f, 5));
  const float t2[2] = {735.f, 735.f};
  {
    auto ctx = make_ctx(big);
    model.forward(*ctx, x, t2, v, step);
    be->synchronize();
  }
  const double t_ready = secs(g_start);
  out("dit_start_to_loaded_s", t_loaded);
  out("dit_start_to_built_s", t_built);
  out("dit_start_to_ready_s", t_ready);
  out("dit_main_to_ready_s", secs(t_main));
  print_upload("dit", us);
  out("vram_used_after_ready_GB", used_gb());
  if (ready_only) return 0;
  double peak = used_gb();

  for (double sec : {5.0, 10.0, 15.0}) {
    const ClipShape s = clip_shape(sec);
    Tensor xc = device_copy(*be, host_random({2, c.latent_dim, s.ta}, 3.f, 6));
    Tensor vc = device_copy(*be, host_random({2, c.latent_dim, s.ta}, 0.f, 7));
    auto t0 = Clock::now();
    auto ctx = make_ctx(s);
    be->synchronize();
    const double ctx_s = secs(t0);
    for (int i = 0; i < 3; ++i) model.forward(*ctx, xc, t2, vc, step);
    be->synchronize();
    const int n = 10;
    t0 = Clock::now();
    for (int i = 0; i < n; ++i) model.forward(*ctx, xc, t2, vc, step);
    be->synchronize();
    const double step_s = secs(t0) / n;
    const double fl = mmdit_step_flops(c, 2, s.ta, s.tv, L);
    std::printf(
        "dit_step sec %.0f Ta %lld Tv %lld sync %lld ms %.3f TFLOPs %.2f TFLOP/s %.1f "
        "context_ms %.2f\n",
        sec, (long long)s.ta, (long long)s.tv, (long long)s.s8, step_s * 1e3, fl / 1e12,
        fl / step_s / 1e12, ctx_s * 1e3);
    // The same step recorded once as a CUDA graph and replayed, as the sampler runs it: the
    // timestep rows copied from the workspace's table (its schedule computed beforehand), then
    // the replay.
    const auto table = model.make_timestep_table(2);
    model.precompute_timesteps(*table, t2, 2);
    model.set_timesteps(*ctx, *table, t2);
    t0 = Clock::now();
    const auto graph = be->record([&] { model.forward(*ctx, xc, vc, step); });
    const double record_s = secs(t0);
    if (graph) {
      auto sampler_step = [&] {
        model.set_timesteps(*ctx, *table, t2);
        graph->replay();
      };
      for (int i = 0; i < 3; ++i) sampler_step();
      be->synchronize();
      t0 = Clock::now();
      for (int i = 0; i < n; ++i) sampler_step();
      be->synchronize();
      const double g_s = secs(t0) / n;
      std::printf("dit_step_graph sec %.0f Ta %lld ms %.3f TFLOP/s %.1f record_ms %.2f\n", sec,
                  (long long)s.ta, g_s * 1e3, fl / g_s / 1e12, record_s * 1e3);
    }
    std::fflush(stdout);
    peak = std::max(peak, used_gb());
  }

  if (const char* only = std::getenv("E2E_STEPS_ONLY"); only && std::string(only) == "1") return 0;
  // The denoising stage as a request runs it: 50 Euler steps with CFG 4.5 at 10 s, 20 times.
  const ClipShape s10 = clip_shape(10.0);
  FlowConditions cond{host_random({s10.tv, c.clip_dim}, 2.f, 8),
                      host_random({s10.s8, c.sync_dim}, 2.f, 9),
                      host_random({L, c.text_dim}, 1.f, 10), host_random({L, c.text_dim}, 1.f, 11)};
  FlowSampleParams p;
  p.steps = 50, p.guidance = 4.5f;
  try {
    std::vector<double> times;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = Clock::now();
      p.seed = uint64_t(i + 1);
      Tensor lat = flow_sample(model, cond, p, s10.ta, nullptr, step);
      times.push_back(secs(t0));
    }
    std::sort(times.begin() + 1, times.end());
    out("sample50_10s_eager_median_s", times[times.size() / 2]);
    // The request path: a FlowWorkspace reserved for the longest clip (what the Generator
    // holds), its step recorded at the first request of the shape and replayed after.
    FlowLimits lim;
    lim.batch = 2, lim.audio_len = big.ta, lim.visual_len = big.tv, lim.text_len = L,
    lim.sync_len = big.s8;
    FlowWorkspace ws(model, lim);
    const double before = used_gb();
    times.clear();
    const auto t_loop = Clock::now();
    const char* reps = std::getenv("FOLEY_BENCH_REPEATS");  // fewer for run_h100.sh's quant part
    const int max_i = reps ? std::max(1, std::atoi(reps)) : 20;
    for (int i = 0; i < max_i && secs(t_loop) < 45; ++i) {
      const auto t0 = Clock::now();
      p.seed = uint64_t(i + 1);
      Tensor lat = flow_sample(model, cond, p, s10.ta, nullptr, ws);
      times.push_back(secs(t0));
      peak = std::max(peak, used_gb());
    }
    const double after = used_gb();
    out("sample50_10s_first_s", times[0]);
    std::sort(times.begin() + 1, times.end());
    out("sample50_10s_median_s", times[times.size() / 2]);
    out("sample50_requests", double(times.size()));
    out("sample50_drift_bytes", (after - before) * 1e9);
    out("sample50_graphs_recorded", double(ws.graphs_recorded()));
    if (!ws.graph_error().empty()) out_s("sample50_graph_error", ws.graph_error().c_str());
  } catch (const std::exception& e) {
    out_s("sample50_error", e.what());
  }
  out("vram_used_peak_GB", peak);
  out("step_arena_GB", double(step.reserved()) / 1e9);
  out("weights_GB", double(store->blob_bytes()) / 1e9);
  return 0;
}

int run(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: e2e_bench read|read_direct|evict|load|dit BUNDLE ...\n");
    return 2;
  }
  const std::string mode = argv[1], path = argv[2];
  if (mode == "read") return mode_read(path, false);
  if (mode == "read_direct") return mode_read(path, true);
  if (mode == "evict") {
    const uint64_t blob = WeightStore::open(path)->blob_bytes();
    evict_from_page_cache(path);
    out("cached_after_evict_bytes", double(cached_bytes(path, 0, blob)));
    return 0;
  }
  int rc = 2;
  if (mode == "load") {
    rc = mode_load(path, argc > 3 && std::string(argv[3]) == "verify");
  } else if (mode == "dit") {
    rc = mode_dit(path, argc > 3 && std::string(argv[3]) == "ready");
  } else {
    std::fprintf(stderr, "unknown mode or missing arguments\n");
    return 2;
  }
  out_s("device", cuda_device_name(0));  // last: querying it first would create the context
  return rc;
}

}  // namespace
}  // namespace foley

int main(int argc, char** argv) {
  try {
    return foley::run(argc, argv);
  } catch (const std::exception& e) {
    std::printf("error %s\n", e.what());
    return 1;
  }
}
