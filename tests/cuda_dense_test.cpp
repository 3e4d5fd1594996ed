// CUDA backend: linear against the CPU oracle on fresh random inputs (outputs poisoned with NaN
// first). Tolerances, max|cuda − cpu| / max|cpu|: F32 weights 1e-5 (both FP32 GEMMs, only the
// summation order differs); BF16 weights 1e-5 too, as both backends round x to bf16 the same way
// (round to nearest even) and accumulate exact bf16 products in f32; F16 weights 1e-3, since the
// CUDA path rounds x to f16 (11-bit mantissa) while the CPU keeps f32 activations.
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "cuda_test_util.h"
#include "foley/error.h"

namespace foley {
namespace {

using test::cpu_oracle;
using test::download;
using test::expect_parity;
using test::mirror_view;
using test::random_tensor;
using test::upload;

double tolerance(DType wdt) {
  return wdt == DType::kF16 ? 1e-3 : 1e-5;
}

struct LinearCase {
  std::vector<int64_t> lead;  // leading dims of x and y
  int64_t K, N;
  DType wdt;
  bool bias;
  float beta;
  int64_t x_pad;    // extra columns per x row (row stride K + x_pad)
  bool slice_time;  // x and y are slices along dim 1 of larger buffers (not mergeable rows)
};

uint64_t g_seed = 1000;

// Runs one case on both backends and checks parity.
double run_case(Backend& gpu, const LinearCase& c) {
  CpuBackend& cpu = cpu_oracle();
  const uint64_t seed = g_seed += 17;
  Shape xs(c.lead.begin(), c.lead.end()), ys = xs;
  // Parent buffers: x rows padded, and both optionally 3 steps longer along dim 1.
  Shape xp = xs, yp = ys;
  xp.push_back(c.K + c.x_pad);
  yp.push_back(c.N);
  if (c.slice_time) {
    xp[1] += 3;
    yp[1] += 3;
  }
  xs.push_back(c.K);
  ys.push_back(c.N);
  const Tensor x_host = random_tensor(xp, DType::kF32, seed);
  Tensor x_view = c.x_pad ? x_host.slice(-1, 1, c.K) : x_host;
  if (c.slice_time) x_view = x_view.slice(1, 2, c.lead[1]);
  const Tensor w = random_tensor({c.N, c.K}, c.wdt, seed + 1);
  const Tensor b = random_tensor({c.N}, c.wdt, seed + 2);
  const Tensor y0 = random_tensor(yp, DType::kF32, seed + 3);

  // CPU oracle on host copies.
  Tensor y_cpu_parent = test::to_f32(y0);
  const Tensor y_cpu = c.slice_time ? y_cpu_parent.slice(1, 2, c.lead[1]) : y_cpu_parent;
  cpu.linear(x_view, w, c.bias ? &b : nullptr, y_cpu, c.beta);

  // CUDA: y starts as y0 where beta reads it, NaN elsewhere.
  const Tensor x_dev_parent = upload(gpu, x_host);
  const Tensor x_dev = mirror_view(x_host, x_dev_parent, x_view);
  const Tensor w_dev = upload(gpu, w), b_dev = upload(gpu, b);
  const Tensor y_dev_parent = c.beta != 0.0f ? upload(gpu, y0) : test::device_poisoned(gpu, yp);
  const Tensor y_dev = mirror_view(y_cpu_parent, y_dev_parent, y_cpu);
  gpu.linear(x_dev, w_dev, c.bias ? &b_dev : nullptr, y_dev, c.beta);
  const Tensor y_gpu = test::to_f32(download(gpu, y_dev_parent));
  const Tensor got = c.slice_time ? y_gpu.slice(1, 2, c.lead[1]) : y_gpu;

  char what[160];
  std::snprintf(what, sizeof what, "linear %s K=%lld N=%lld %s bias=%d beta=%g pad=%lld slice=%d",
                xs.str().c_str(), static_cast<long long>(c.K), static_cast<long long>(c.N),
                dtype_name(c.wdt), c.bias, c.beta, static_cast<long long>(c.x_pad), c.slice_time);
  const double err = expect_parity(test::to_f32(got), test::to_f32(y_cpu), tolerance(c.wdt), what);
  // Rows outside a time slice must be untouched (still y0 or NaN-poisoned).
  if (c.slice_time && c.beta != 0.0f) {
    EXPECT_EQ(test::max_abs_error(y_gpu.slice(1, 0, 2), test::to_f32(y0).slice(1, 0, 2)), 0.0)
        << what;
  }
  std::printf("  %-90s rel err %.2e\n", what, err);
  return err;
}

TEST(CudaDense, LinearMatchesCpuAcrossShapesAndDtypes) {
  FOLEY_CUDA_OR_SKIP(gpu);
  for (DType wdt : {DType::kF32, DType::kBF16, DType::kF16}) {
    const std::vector<LinearCase> cases = {
        {{1}, 1, 1, wdt, false, 0.0f, 0, false},
        {{7}, 3, 5, wdt, true, 0.0f, 0, false},
        {{2, 9}, 33, 17, wdt, true, 0.0f, 5, false},
        {{2, 37}, 64, 96, wdt, false, 1.0f, 0, false},
        {{3, 50}, 130, 70, wdt, true, 0.5f, 3, false},
        {{300}, 257, 129, wdt, true, 0.0f, 0, false},
        {{2, 6}, 48, 40, wdt, true, 1.0f, 0, true},
        {{2, 5}, 31, 19, wdt, false, 0.0f, 2, true},
        {{64}, 1536, 256, wdt, true, 0.0f, 1536 * 2, false},  // a slice of a fused QKV buffer
        {{128}, 2048, 24, wdt, false, 0.0f, 0, false},        // long K
        // At most four rows with a 16-bit weight: the GEMV path (cuda_gemv.cu).
        {{2}, 1536, 1003, wdt, true, 0.0f, 0, false},
        {{4}, 40, 77, wdt, true, 1.0f, 0, false},
        {{1, 3}, 264, 50, wdt, false, 0.5f, 8, false},
        {{2, 1}, 8, 5, wdt, true, 0.0f, 0, true},
    };
    for (const LinearCase& c : cases) run_case(gpu, c);
  }
}

TEST(CudaDense, LinearRejectsBadShapes) {
  FOLEY_CUDA_OR_SKIP(gpu);
  const Tensor x = test::device_poisoned(gpu, {4, 8});
  const Tensor w = test::device_poisoned(gpu, {6, 7});
  const Tensor y = test::device_poisoned(gpu, {4, 6});
  EXPECT_THROW(gpu.linear(x, w, nullptr, y), Error);
  const Tensor host_x = random_tensor({4, 7}, DType::kF32, 5);
  EXPECT_THROW(gpu.linear(host_x, w, nullptr, y), Error);  // host memory
}

}  // namespace
}  // namespace foley
