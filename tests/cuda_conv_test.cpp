// CUDA backend: conv1d, conv_transpose1d, resample_nearest_exact and patch_embed against the CPU
// oracle on fresh random inputs (outputs poisoned with NaN first). Tolerances (max|cuda − cpu| /
// max|cpu|) as for linear: F32 and BF16 weights 1e-5 (same operands, the per-tap sums are only
// ordered differently), F16 weights 1e-3 (the CUDA path rounds x to f16). Resampling is a copy:
// exact.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <vector>

#include "cuda_test_util.h"

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

uint64_t g_seed = 9000;

struct ConvCase {
  int64_t B, T, Ci, Co, K;
  int dilation_or_stride, pad, output_padding;  // output_padding < 0: a plain conv1d
  DType wdt;
  bool bias;
  bool strided_x;  // x is a channel slice of a wider buffer
};

void run_conv(Backend& gpu, const ConvCase& c) {
  const uint64_t seed = g_seed += 13;
  const bool transposed = c.output_padding >= 0;
  const int64_t wide = c.strided_x ? c.Ci + 5 : c.Ci;
  const Tensor xp = random_tensor({c.B, c.T, wide}, DType::kF32, seed);
  const Tensor xh = c.strided_x ? xp.slice(2, 2, c.Ci) : xp;
  const Tensor w = random_tensor({c.K, c.Co, c.Ci}, c.wdt, seed + 1, -0.5f, 0.5f);
  const Tensor b = random_tensor({c.Co}, c.wdt, seed + 2);
  const int s = c.dilation_or_stride;
  const int64_t To = transposed ? (c.T - 1) * s - 2 * c.pad + c.K + c.output_padding
                                : c.T + 2 * c.pad - int64_t(s) * (c.K - 1);
  Tensor want = Tensor::empty({c.B, To, c.Co}, DType::kF32);
  const Tensor xd_parent = upload(gpu, xp);
  const Tensor xd = mirror_view(xp, xd_parent, xh);
  const Tensor wd = upload(gpu, w), bd = upload(gpu, b);
  const Tensor y = test::device_poisoned(gpu, want.shape());
  if (transposed) {
    cpu_oracle().conv_transpose1d(xh, w, c.bias ? &b : nullptr, s, c.pad, c.output_padding, want);
    gpu.conv_transpose1d(xd, wd, c.bias ? &bd : nullptr, s, c.pad, c.output_padding, y);
  } else {
    cpu_oracle().conv1d(xh, w, c.bias ? &b : nullptr, s, c.pad, want);
    gpu.conv1d(xd, wd, c.bias ? &bd : nullptr, s, c.pad, y);
  }
  char what[200];
  std::snprintf(what, sizeof what,
                "%s B=%lld T=%lld Ci=%lld Co=%lld K=%lld %s=%d pad=%d outpad=%d %s bias=%d "
                "strided=%d",
                transposed ? "conv_transpose1d" : "conv1d", static_cast<long long>(c.B),
                static_cast<long long>(c.T), static_cast<long long>(c.Ci),
                static_cast<long long>(c.Co), static_cast<long long>(c.K),
                transposed ? "stride" : "dil", s, c.pad, c.output_padding, dtype_name(c.wdt),
                c.bias, c.strided_x);
  const double err = expect_parity(download(gpu, y), want, tolerance(c.wdt), what);
  std::printf("  %-100s rel err %.2e\n", what, err);
}

TEST(CudaConv, Conv1dMatchesCpu) {
  FOLEY_CUDA_OR_SKIP(gpu);
  for (DType wdt : {DType::kF32, DType::kBF16, DType::kF16}) {
    const ConvCase cases[] = {
        {1, 1, 1, 1, 1, 1, 0, -1, wdt, false, false},
        {2, 50, 8, 12, 7, 1, 3, -1, wdt, true, false},   // DAC's k=7 convs
        {1, 64, 16, 16, 7, 9, 27, -1, wdt, true, true},  // dilated residual unit
        {2, 40, 24, 24, 3, 1, 1, -1, wdt, true, true},   // the DiT's k=3 convs
        {1, 5, 6, 4, 7, 1, 3, -1, wdt, false, false},    // no tap covers every output row
        {1, 20, 5, 3, 3, 2, 0, -1, wdt, true, false},    // valid conv, shorter output
        {2, 300, 64, 32, 1, 1, 0, -1, wdt, true, false},
    };
    for (const ConvCase& c : cases) run_conv(gpu, c);
  }
}

TEST(CudaConv, ConvTranspose1dMatchesCpu) {
  FOLEY_CUDA_OR_SKIP(gpu);
  for (DType wdt : {DType::kF32, DType::kBF16, DType::kF16}) {
    const ConvCase cases[] = {
        {1, 1, 1, 1, 1, 1, 0, 0, wdt, false, false},
        {2, 30, 16, 8, 16, 8, 4, 0, wdt, true, false},  // DAC: K = 2·stride, pad = stride/2
        {1, 25, 12, 6, 4, 2, 1, 0, wdt, true, true},
        {1, 17, 8, 4, 6, 3, 2, 1, wdt, true, false},  // odd stride with output padding
        {2, 9, 10, 7, 3, 4, 0, 2, wdt, false, true},  // K < stride: gaps hold only the bias
        {1, 40, 32, 16, 10, 5, 3, 1, wdt, true, false},
    };
    for (const ConvCase& c : cases) run_conv(gpu, c);
  }
}

// unfold3 is a copy: bitwise equal to the rows it copies, zeros at the ends, for the 16-byte path
// (rows of a multiple of 16 bytes) and the per-element one, contiguous and strided x.
TEST(CudaConv, Unfold3CopiesTheShiftedRows) {
  FOLEY_CUDA_OR_SKIP(gpu);
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16})
    for (const auto& [B, T, C, pad] : std::vector<std::array<int64_t, 4>>{
             {2, 40, 24, 0}, {1, 1, 8, 0}, {3, 7, 5, 0}, {2, 33, 16, 8}, {2, 9, 7, 3}}) {
      const Tensor xp = random_tensor({B, T, C + pad}, dt, g_seed += 5);
      const Tensor xh = pad ? xp.slice(2, pad / 2, C) : xp;
      const Tensor xd_parent = upload(gpu, xp);  // owns the memory the view points into
      const Tensor xd = mirror_view(xp, xd_parent, xh);
      Tensor poison = Tensor::empty({B, T, 3 * C}, dt);
      std::memset(poison.raw(), 0xff, poison.nbytes());  // NaN in every float format
      const Tensor cols = upload(gpu, poison);
      gpu.unfold3(xd, cols);
      const Tensor got = download(gpu, cols);
      const size_t es = dtype_size(dt);
      int64_t wrong = 0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t k = 0; k < 3; ++k)
            for (int64_t c = 0; c < C; ++c) {
              const char* g = static_cast<const char*>(got.raw()) +
                              size_t(((b * T + t) * 3 + k) * C + c) * es;
              const int64_t src = t + k - 1;
              static const char zero[4] = {0, 0, 0, 0};
              const char* want = src < 0 || src >= T
                                     ? zero
                                     : static_cast<const char*>(xh.raw()) +
                                           size_t(b * xh.stride(0) + src * xh.stride(1) + c) * es;
              wrong += std::memcmp(g, want, es) != 0;
            }
      EXPECT_EQ(wrong, 0) << dtype_name(dt) << " B=" << B << " T=" << T << " C=" << C
                          << " strided=" << (pad != 0);
    }
}

TEST(CudaConv, ResampleNearestExactMatchesCpu) {
  FOLEY_CUDA_OR_SKIP(gpu);
  const int64_t shapes[][4] = {
      {1, 1, 1, 1}, {2, 10, 3, 37}, {1, 37, 5, 10}, {3, 250, 8, 751}, {1, 7, 4, 7}};
  for (const auto& s : shapes) {
    const Tensor xp = random_tensor({s[0], s[1], s[2] + 2}, DType::kF32, g_seed += 3);
    const Tensor x = xp.slice(2, 1, s[2]);
    Tensor want = Tensor::empty({s[0], s[3], s[2]}, DType::kF32);
    cpu_oracle().resample_nearest_exact(x, want);
    const Tensor xd_parent = upload(gpu, xp);
    const Tensor y = test::device_poisoned(gpu, want.shape());
    gpu.resample_nearest_exact(mirror_view(xp, xd_parent, x), y);
    expect_parity(download(gpu, y), want, 0.0, "resample_nearest_exact");
  }
}

TEST(CudaConv, PatchEmbedMatchesCpu) {
  FOLEY_CUDA_OR_SKIP(gpu);
  for (DType wdt : {DType::kF32, DType::kBF16}) {
    // 2-D, SigLIP-like (trailing pixels that do not fill a patch are dropped).
    {
      const Tensor x = random_tensor({2, 3, 34, 50}, DType::kF32, g_seed += 3);
      const Tensor w = random_tensor({24, 3, 16, 16}, wdt, g_seed += 3, -0.2f, 0.2f);
      const Tensor b = random_tensor({24}, wdt, g_seed += 3);
      Tensor want = Tensor::empty({2, 2 * 3, 24}, DType::kF32);
      cpu_oracle().patch_embed(x, w, &b, want);
      const Tensor y = test::device_poisoned(gpu, want.shape());
      const Tensor bd = upload(gpu, b);
      gpu.patch_embed(upload(gpu, x), upload(gpu, w), &bd, y);
      expect_parity(download(gpu, y), want, tolerance(wdt), "patch_embed 2-D");
    }
    // 3-D, Synchformer-like tubelets.
    {
      const Tensor x = random_tensor({1, 3, 5, 32, 48}, DType::kF32, g_seed += 3);
      const Tensor w = random_tensor({16, 3, 2, 16, 16}, wdt, g_seed += 3, -0.2f, 0.2f);
      Tensor want = Tensor::empty({1, 2 * 2 * 3, 16}, DType::kF32);
      cpu_oracle().patch_embed(x, w, nullptr, want);
      const Tensor y = test::device_poisoned(gpu, want.shape());
      gpu.patch_embed(upload(gpu, x), upload(gpu, w), nullptr, y);
      expect_parity(download(gpu, y), want, tolerance(wdt), "patch_embed 3-D");
    }
  }
}

}  // namespace
}  // namespace foley
