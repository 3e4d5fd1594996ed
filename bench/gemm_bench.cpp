// GFLOP/s of CpuBackend::linear on DiT-like shapes (M tokens = 1000..1500, K and N = 1536 or
// 6144), with F32 and BF16 weights, next to oneDNN's own figure for the same product:
//   Linear/<w dtype>        our op, including argument checks, the primitive-cache lookup and,
//                           for BF16, converting the f32 activations to bf16;
//   OneDnnPlain/<dtype>     a oneDNN matmul on the same plain layouts, with already-converted
//                           inputs and a primitive created once (our overhead = the difference);
//   OneDnnPacked/<dtype>    the same with weights reordered into oneDNN's preferred layout
//                           (format_tag::any) ahead of time: what pre-packing weights would buy.
// Run: build/bin/gemm_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

#include "backend/cpu/cpu_backend.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace foley {
namespace {

using dt = dnnl::memory::data_type;
using dims = dnnl::memory::dims;

Tensor filled(const Shape& s, DType dtype, float scale) {
  Tensor t = Tensor::empty(s, dtype);
  uint32_t state = 12345;
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

void set_rate(benchmark::State& state, int64_t M, int64_t K, int64_t N) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(M) * double(N) * double(K) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// args: M, K, N, weight dtype (0 = f32, 1 = bf16)
void BM_Linear(benchmark::State& state) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  const DType wdt = state.range(3) ? DType::kBF16 : DType::kF32;
  static CpuBackend backend;
  Tensor x = filled({M, K}, DType::kF32, 2.f);
  Tensor w = filled({N, K}, wdt, 0.1f);
  Tensor b = filled({N}, DType::kF32, 1.f);
  Tensor y = Tensor::empty({M, N}, DType::kF32);
  backend.linear(x, w, &b, y, 0.0f);  // warm-up: primitive creation and JIT
  for (auto _ : state) {
    backend.linear(x, w, &b, y, 0.0f);
    benchmark::DoNotOptimize(y.raw());
  }
  set_rate(state, M, K, N);
}

// A oneDNN matmul of the same product. packed: weights in the layout oneDNN asks for.
void run_onednn(benchmark::State& state, bool packed) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  const dt t = state.range(3) ? dt::bf16 : dt::f32;
  const DType ft = state.range(3) ? DType::kBF16 : DType::kF32;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  Tensor x = filled({M, K}, ft, 2.f), w = filled({N, K}, ft, 0.1f);
  Tensor b = filled({N}, DType::kF32, 1.f), y = Tensor::empty({M, N}, DType::kF32);
  const dnnl::memory::desc src_md({M, K}, t, dims{K, 1});
  const dnnl::memory::desc wei_plain({K, N}, t, dims{1, K});
  const dnnl::memory::desc wei_md =
      packed ? dnnl::memory::desc({K, N}, t, dnnl::memory::format_tag::any) : wei_plain;
  const dnnl::memory::desc bias_md({1, N}, dt::f32, dims{N, 1});
  const dnnl::memory::desc dst_md({M, N}, dt::f32, dims{N, 1});
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_md, bias_md, dst_md), eng);
  dnnl::matmul prim(pd);
  dnnl::memory wei_user(wei_plain, eng, w.raw());
  dnnl::memory wei(pd.weights_desc(), eng);
  dnnl::reorder(wei_user, wei).execute(stream, wei_user, wei);
  std::unordered_map<int, dnnl::memory> args = {
      {DNNL_ARG_SRC, dnnl::memory(src_md, eng, x.raw())},
      {DNNL_ARG_WEIGHTS, wei},
      {DNNL_ARG_BIAS, dnnl::memory(bias_md, eng, b.raw())},
      {DNNL_ARG_DST, dnnl::memory(dst_md, eng, y.raw())}};
  prim.execute(stream, args);
  stream.wait();
  for (auto _ : state) {
    prim.execute(stream, args);
    stream.wait();
  }
  state.SetLabel(pd.impl_info_str());
  set_rate(state, M, K, N);
}

void BM_OneDnnPlain(benchmark::State& state) {
  run_onednn(state, false);
}
void BM_OneDnnPacked(benchmark::State& state) {
  run_onednn(state, true);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "K", "N", "bf16"});
  for (int64_t wdt : {0, 1})
    for (int64_t M : {1000, 1500})
      for (auto [K, N] : {std::pair<int64_t, int64_t>{1536, 1536}, {1536, 6144}, {6144, 1536}})
        b->Args({M, K, N, wdt});
  b->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);
}

BENCHMARK(BM_Linear)->Apply(shapes);
BENCHMARK(BM_OneDnnPlain)->Apply(shapes);
BENCHMARK(BM_OneDnnPacked)->Apply(shapes);

}  // namespace
}  // namespace foley

BENCHMARK_MAIN();
