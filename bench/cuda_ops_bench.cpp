// Throughput of the CUDA backend's heavy ops at the shapes the networks run (skipped without a
// CUDA device; builds without CUDA too):
//   CudaLinear/M/K/N/wdt     DiT XXL projections (hidden 1536, CFG batch 2 × (Ta + Tv) ≈ 1740
//                            tokens): QKV, output, MLP up/down. wdt 0 = F32 (FOLEY_CUDA_TF32=1
//                            switches it to TF32), 1 = BF16.
//   CudaAttention/B/L/H/D/rope/flash  DiT joint attention, B=2 H=12 L=870 D=128; flash = 1 runs
//                            the fused bf16 kernel (FOLEY_CUDA_ATTENTION=flash), 0 the F32 path.
//   CudaConv1d/T/Ci/Co/K/wdt    DAC decoder residual convs (720k × 64, k=7) and its widest stage
//                               (752 × 2048), the DiT's k=3 conv-MLP.
//   CudaConvT/T/Ci/Co/stride/wdt  a DAC upsampling layer.
// Every iteration enqueues the op and waits for the stream, so the times are device times plus
// one synchronisation. Counters: TFLOP/s and GB/s (compulsory bytes: inputs, weights, outputs).
// Run: build/bin/cuda_ops_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <memory>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace foley {
namespace {

Backend* gpu() {
  static std::unique_ptr<Backend> backend = make_cuda_backend();
  return backend.get();
}

// A device tensor filled with small pseudo-random values.
Tensor device_filled(const Shape& s, DType dtype, float scale = 1.0f) {
  Tensor host = Tensor::empty(s, dtype);
  uint32_t state = 12345;
  for (int64_t i = 0; i < host.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    const float v = scale * (float(state >> 8) / float(1 << 24) - 0.5f);
    if (dtype == DType::kF32) {
      host.data<float>()[i] = v;
    } else if (dtype == DType::kBF16) {
      host.data<uint16_t>()[i] = f32_to_bf16(v);
    } else {
      host.data<uint16_t>()[i] = f32_to_f16(v);
    }
  }
  BlockAllocator alloc = gpu()->block_allocator();
  void* p = alloc.allocate(std::max<size_t>(host.nbytes(), 1));
  Tensor d(p, dtype, s, DeviceKind::kCUDA,
           std::shared_ptr<void>(p, [alloc](void* q) { alloc.release(q); }));
  gpu()->copy_from_host(d, host);
  gpu()->synchronize();
  return d;
}

void set_rates(benchmark::State& state, double flops, double bytes) {
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

DType weight_dtype(int64_t code) {
  return code == 0 ? DType::kF32 : DType::kBF16;
}

void BM_CudaLinear(benchmark::State& state) {
  if (!gpu()) return state.SkipWithError("no CUDA device");
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  const DType wdt = weight_dtype(state.range(3));
  const Tensor x = device_filled({M, K}, DType::kF32);
  const Tensor w = device_filled({N, K}, wdt, 0.05f);
  const Tensor b = device_filled({N}, DType::kF32);
  const Tensor y = device_filled({M, N}, DType::kF32);
  gpu()->linear(x, w, &b, y);  // plan creation and workspace outside the timing
  gpu()->synchronize();
  for (auto _ : state) {
    gpu()->linear(x, w, &b, y);
    gpu()->synchronize();
  }
  set_rates(state, 2.0 * M * N * K,
            double(M * K * 4 + N * K * int64_t(dtype_size(wdt)) + M * N * 4));
}
BENCHMARK(BM_CudaLinear)
    ->ArgsProduct({{1740}, {1536}, {4608, 1536, 6144}, {0, 1}})
    ->Args({1740, 6144, 1536, 0})
    ->Args({1740, 6144, 1536, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

void BM_CudaAttention(benchmark::State& state) {
  if (!gpu()) return state.SkipWithError("no CUDA device");
  const int64_t B = state.range(0), L = state.range(1), H = state.range(2), D = state.range(3);
  const bool rope = state.range(4) != 0;
  // The fused bf16 kernel is opt-in through the environment (read per call).
  if (state.range(5)) {
    setenv("FOLEY_CUDA_ATTENTION", "flash", 1);
  } else {
    unsetenv("FOLEY_CUDA_ATTENTION");
  }
  const Tensor qkv = device_filled({B, L, 3, H, D}, DType::kF32);
  const Tensor q = qkv.select(2, 0), k = qkv.select(2, 1), v = qkv.select(2, 2);
  const Tensor out = device_filled({B, L, H, D}, DType::kF32);
  const RopeTable table{device_filled({L, D / 2}, DType::kF32),
                        device_filled({L, D / 2}, DType::kF32)};
  const float scale = 1.0f / std::sqrt(float(D));
  auto run = [&] {
    gpu()->attention(q, k, v, scale, out, rope ? &table : nullptr, rope ? &table : nullptr);
  };
  run();
  gpu()->synchronize();
  for (auto _ : state) {
    run();
    gpu()->synchronize();
  }
  set_rates(state, 4.0 * B * H * L * L * D, double(4 * B * L * H * D * 4));
}
BENCHMARK(BM_CudaAttention)
    ->Args({2, 870, 12, 128, 0, 0})
    ->Args({2, 870, 12, 128, 1, 0})
    ->Args({2, 1200, 12, 128, 1, 0})
    ->Args({2, 870, 12, 128, 0, 1})
    ->Args({2, 870, 12, 128, 1, 1})
    ->Args({2, 1200, 12, 128, 1, 1})
    ->Args({2, 870, 12, 64, 1, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

void BM_CudaConv1d(benchmark::State& state) {
  if (!gpu()) return state.SkipWithError("no CUDA device");
  const int64_t T = state.range(0), Ci = state.range(1), Co = state.range(2), K = state.range(3);
  const DType wdt = weight_dtype(state.range(4));
  const Tensor x = device_filled({1, T, Ci}, DType::kF32);
  const Tensor w = device_filled({K, Co, Ci}, wdt, 0.05f);
  const Tensor b = device_filled({Co}, DType::kF32);
  const Tensor y = device_filled({1, T, Co}, DType::kF32);
  const int pad = int(K / 2);
  gpu()->conv1d(x, w, &b, 1, pad, y);
  gpu()->synchronize();
  for (auto _ : state) {
    gpu()->conv1d(x, w, &b, 1, pad, y);
    gpu()->synchronize();
  }
  set_rates(state, 2.0 * T * Ci * Co * K,
            double(T * Ci * 4 + K * Co * Ci * int64_t(dtype_size(wdt)) + T * Co * 4));
}
BENCHMARK(BM_CudaConv1d)
    ->Args({720000, 64, 64, 7, 0})
    ->Args({720000, 64, 64, 7, 1})
    ->Args({752, 2048, 2048, 7, 1})
    ->Args({1000, 1536, 4096, 3, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

void BM_CudaConvT(benchmark::State& state) {
  if (!gpu()) return state.SkipWithError("no CUDA device");
  const int64_t T = state.range(0), Ci = state.range(1), Co = state.range(2);
  const int stride = int(state.range(3));
  const DType wdt = weight_dtype(state.range(4));
  const int64_t K = 2 * stride, pad = (stride + 1) / 2, outpad = stride % 2;
  const int64_t To = (T - 1) * stride - 2 * pad + K + outpad;
  const Tensor x = device_filled({1, T, Ci}, DType::kF32);
  const Tensor w = device_filled({K, Co, Ci}, wdt, 0.05f);
  const Tensor b = device_filled({Co}, DType::kF32);
  const Tensor y = device_filled({1, To, Co}, DType::kF32);
  auto run = [&] { gpu()->conv_transpose1d(x, w, &b, stride, int(pad), int(outpad), y); };
  run();
  gpu()->synchronize();
  for (auto _ : state) {
    run();
    gpu()->synchronize();
  }
  set_rates(state, 2.0 * T * Ci * Co * K,
            double(T * Ci * 4 + K * Co * Ci * int64_t(dtype_size(wdt)) + To * Co * 4));
}
BENCHMARK(BM_CudaConvT)
    ->Args({360000, 128, 64, 2, 0})
    ->Args({360000, 128, 64, 2, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace foley

BENCHMARK_MAIN();
