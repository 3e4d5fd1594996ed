// CPU time of one MMDiT denoising step (CFG batch of 2) at a given model size, random weights.
//
//   mmdit_bench [tiny|xl|xxl] [steps=1] [bf16|f32] [Ta=500] [Tv=80] [sync=240] [text=77]
//
// Weights are random and shared between blocks of the same shape (one block's worth of memory
// instead of 5.8 GB for XL); each block still streams its weights from DRAM, as one XL block's
// matrices (~140 MB in bf16) are far larger than any cache. Reports the per-request context time
// (text K/V of every block, visual and sync projections) and the time per step after a warm-up
// step. Threads: FOLEY_THREADS (default: all cores).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "backend/backend.h"
#include "core/thread_pool.h"
#include "models/mmdit.h"

namespace foley {
namespace {

Tensor random_weights(const Shape& s, DType dtype, float scale, uint32_t seed) {
  Tensor t = Tensor::empty(s, dtype);
  uint32_t state = seed;
  for (int64_t i = 0; i < t.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    const float v = scale * (float(state >> 8) / float(1 << 24) - 0.5f);
    if (dtype == DType::kF32) {
      t.data<float>()[i] = v;
    } else {
      t.data<uint16_t>()[i] = f32_to_bf16(v);
    }
  }
  return t;
}

MmditConfig config_for(const std::string& size) {
  MmditConfig c;
  if (size == "tiny") {  // the golden case's sizes
    c.hidden = 128, c.heads = 2, c.depth_triple = 2, c.depth_single = 2;
    c.clip_dim = c.sync_dim = c.text_dim = 64;
  } else if (size == "xl") {
    c.hidden = 1408, c.heads = 11, c.depth_triple = 12, c.depth_single = 24;
  } else if (size == "xxl") {
    c.hidden = 1536, c.heads = 12, c.depth_triple = 18, c.depth_single = 36;
  } else {
    std::fprintf(stderr, "unknown size %s (tiny, xl, xxl)\n", size.c_str());
    std::exit(2);
  }
  c.head_dim = c.hidden / c.heads;
  c.mlp_hidden = 4 * c.hidden;
  c.conv_mlp_hidden = MmditConfig::conv_mlp_width(4 * c.hidden);
  c.sync_mlp_hidden = c.conv_mlp_hidden;
  return c;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run(int argc, char** argv) {
  const std::string size = argc > 1 ? argv[1] : "xl";
  const int steps = argc > 2 ? std::atoi(argv[2]) : 1;
  const DType wdt = argc > 3 && std::string(argv[3]) == "f32" ? DType::kF32 : DType::kBF16;
  const bool tiny = size == "tiny";
  const int64_t ta = argc > 4 ? std::atoll(argv[4]) : (tiny ? 128 : 500);
  const int64_t tv = argc > 5 ? std::atoll(argv[5]) : (tiny ? 21 : 80);
  const int64_t s8 = argc > 6 ? std::atoll(argv[6]) : (tiny ? 56 : 240);
  const int64_t L = argc > 7 ? std::atoll(argv[7]) : (tiny ? 34 : 77);
  const MmditConfig c = config_for(size);

  auto backend = make_cpu_backend();
  std::map<std::pair<std::string, bool>, Tensor> cache;
  auto get = [&](const std::string& name, const Shape& shape, DitWeight kind) {
    (void)name;
    const bool matrix = kind != DitWeight::kVector;
    auto& t = cache[{shape.str(), matrix}];
    if (!t.defined() || t.numel() == 0) {
      const float scale = matrix ? 2.0f / std::sqrt(float(shape.dim(-1))) : 0.1f;
      t = random_weights(shape, matrix ? wdt : DType::kF32, scale, uint32_t(cache.size()));
    }
    return t;
  };
  const auto t_load = std::chrono::steady_clock::now();
  const Mmdit model(c, get, *backend);
  std::printf(
      "%s: H %lld, %lld heads, %lld+%lld blocks, %s weights; Ta %lld Tv %lld sync %lld "
      "text %lld; %d threads; weights made in %.1f s\n",
      size.c_str(), (long long)c.hidden, (long long)c.heads, (long long)c.depth_triple,
      (long long)c.depth_single, dtype_name(wdt), (long long)ta, (long long)tv, (long long)s8,
      (long long)L, ThreadPool::global().size(), seconds_since(t_load));

  Tensor clip = random_weights({2, tv, c.clip_dim}, DType::kF32, 2.f, 1);
  Tensor sync = random_weights({2, s8, c.sync_dim}, DType::kF32, 2.f, 2);
  Tensor text = random_weights({2, L, c.text_dim}, DType::kF32, 1.f, 3);
  Tensor x = random_weights({2, c.latent_dim, ta}, DType::kF32, 3.f, 4);
  Tensor v = Tensor::empty(x.shape(), DType::kF32);

  auto t0 = std::chrono::steady_clock::now();
  auto ctx = model.prepare(clip, sync, text, ta);
  std::printf("context (per request): %.3f s\n", seconds_since(t0));

  Arena arena(backend->block_allocator(), model.step_arena_bytes(2, ta, tv));
  const float t[2] = {735.f, 735.f};
  t0 = std::chrono::steady_clock::now();
  model.forward(*ctx, x, t, v, arena);
  std::printf("step 1 (warm-up; step arena %.1f MB, high water %.1f MB): %.3f s\n",
              arena.reserved() / 1e6, arena.high_water() / 1e6, seconds_since(t0));
  if (steps > 1) {
    t0 = std::chrono::steady_clock::now();
    for (int i = 1; i < steps; ++i) model.forward(*ctx, x, t, v, arena);
    std::printf("steady state: %.3f s per step (CFG batch 2), mean of %d\n",
                seconds_since(t0) / (steps - 1), steps - 1);
  }
  return 0;
}

}  // namespace
}  // namespace foley

int main(int argc, char** argv) {
  return foley::run(argc, argv);
}
