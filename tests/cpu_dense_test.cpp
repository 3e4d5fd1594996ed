// CPU backend: linear, conv1d, conv_transpose1d and patch_embed against scalar references with
// double accumulation. The references round x to bf16 when the weight is BF16 (the documented
// numerics: bf16 x bf16 products, f32 accumulation), so every dtype is held to max|err|/max|ref|
// <= 1e-5; the bf16 path is additionally checked to stay within 1e-2 of the full-f32 product.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cmath>
#include <functional>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/dtype.h"
#include "foley/error.h"
#include "test_util.h"

namespace foley {
namespace {

using test::max_rel_error;
using test::random_tensor;
using test::to_f32;

CpuBackend& cpu() {
  static CpuBackend backend;
  return backend;
}

// Element (i0, i1, ...) of a contiguous F32 tensor.
float& at(Tensor& t, std::initializer_list<int64_t> idx) {
  int64_t off = 0, d = 0;
  for (int64_t i : idx) off += i * t.stride(int(d++));
  return t.data<float>()[off];
}

// Writes a contiguous F32 tensor's values into a (possibly strided) F32 view.
void assign(const Tensor& view, const Tensor& src) {
  const Tensor s = to_f32(src);
  std::vector<int64_t> idx(size_t(view.rank()), 0);
  for (int64_t i = 0; i < view.numel(); ++i) {
    int64_t off = 0;
    for (int d = 0; d < view.rank(); ++d) off += idx[size_t(d)] * view.stride(d);
    view.data<float>()[off] = s.data<float>()[i];
    for (int d = view.rank() - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < view.dim(d)) break;
      idx[size_t(d)] = 0;
    }
  }
}

// x values as the GEMM sees them for a weight of dtype wdt.
float operand(float v, DType wdt) {
  return wdt == DType::kBF16 ? bf16_to_f32(f32_to_bf16(v)) : v;
}

// y = x·wᵀ + b + beta·y0 over the last dim, x any shape [..., K].
Tensor ref_linear(const Tensor& x, const Tensor& w, const Tensor* b, float beta, const Tensor* y0,
                  bool round_x) {
  const Tensor xc = to_f32(x), wc = to_f32(w);
  const Tensor bc = b ? to_f32(*b) : Tensor();
  const Tensor yc = y0 ? to_f32(*y0) : Tensor();
  const int64_t K = w.dim(1), N = w.dim(0), M = x.numel() / K;
  Shape ys;
  for (int i = 0; i + 1 < x.rank(); ++i) ys.push_back(x.dim(i));
  ys.push_back(N);
  Tensor out = Tensor::empty(ys, DType::kF32);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = b ? bc.data<float>()[n] : 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const float xv = xc.data<float>()[m * K + k];
        acc += double(round_x ? operand(xv, DType::kBF16) : xv) * wc.data<float>()[n * K + k];
      }
      if (beta != 0.0f) acc += double(beta) * yc.data<float>()[m * N + n];
      out.data<float>()[m * N + n] = float(acc);
    }
  return out;
}

struct LinearCase {
  int64_t M, K, N;
};

TEST(CpuLinear, AllWeightDtypesShapesBiasAndBeta) {
  const std::vector<LinearCase> cases = {
      {1, 1, 1}, {5, 3, 7}, {37, 200, 129}, {64, 96, 64}, {130, 67, 45}};
  for (DType wdt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (const LinearCase& c : cases) {
      SCOPED_TRACE(std::string(dtype_name(wdt)) + " M=" + std::to_string(c.M) +
                   " K=" + std::to_string(c.K) + " N=" + std::to_string(c.N));
      Tensor x = random_tensor({c.M, c.K}, DType::kF32, 100 + c.M, -2.f, 2.f);
      Tensor w = random_tensor({c.N, c.K}, wdt, 200 + c.N);
      Tensor b = random_tensor({c.N}, c.N % 2 ? DType::kBF16 : DType::kF32, 300 + c.N);
      const bool rx = wdt == DType::kBF16;
      Tensor y = Tensor::empty({c.M, c.N}, DType::kF32);
      cpu().linear(x, w, &b, y, 0.0f);
      const Tensor ref = ref_linear(x, w, &b, 0.0f, nullptr, rx);
      EXPECT_LE(max_rel_error(y, ref), 1e-5);
      if (rx) {
        EXPECT_LE(max_rel_error(y, ref_linear(x, w, &b, 0.0f, nullptr, false)), 1e-2);
      }
      // No bias, accumulate: y = x·wᵀ + 0.5·y.
      const Tensor y0 = to_f32(y);
      cpu().linear(x, w, nullptr, y, 0.5f);
      EXPECT_LE(max_rel_error(y, ref_linear(x, w, nullptr, 0.5f, &y0, rx)), 1e-5);
    }
  }
}

TEST(CpuLinear, StridedRowsBatchDimsAndWeightViews) {
  const int64_t B = 3, T = 13, K = 40, N = 24;
  for (DType wdt : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(wdt));
    const bool rx = wdt == DType::kBF16;
    Tensor xc = random_tensor({B, T, K}, DType::kF32, 400);
    // Rows strided inside a fused buffer: [B, T, 3K] sliced along the last dim (mergeable).
    Tensor fused = Tensor::zeros({B, T, 3 * K}, DType::kF32);
    Tensor xs = fused.slice(2, K, K);
    assign(xs, xc);
    // A slice along T: batch and time cannot merge, so the op loops over B.
    Tensor tall = Tensor::zeros({B, T + 5, K}, DType::kF32);
    Tensor xt = tall.slice(1, 2, T);
    assign(xt, xc);
    // The weight as a row block of a fused [3N, K] weight, and as a column slice (ldw > K).
    Tensor wbig = random_tensor({3 * N, 2 * K}, wdt, 401);
    for (const Tensor& w :
         {wbig.slice(0, N, N).slice(1, 0, K), wbig.slice(0, 2 * N, N).slice(1, K, K)}) {
      const Tensor ref = ref_linear(xc, w, nullptr, 0.0f, nullptr, rx);
      for (const Tensor& x : {xc, xs, xt}) {
        Tensor y = Tensor::empty({B, T, N}, DType::kF32);
        cpu().linear(x, w, nullptr, y, 0.0f);
        EXPECT_LE(max_rel_error(y, ref), 1e-5);
        // Output rows strided too (a slice of a wider buffer).
        Tensor ybig = Tensor::zeros({B, T, N + 8}, DType::kF32);
        cpu().linear(x, w, nullptr, ybig.slice(2, 4, N), 0.0f);
        EXPECT_LE(max_rel_error(ybig.slice(2, 4, N), ref), 1e-5);
        EXPECT_EQ(ybig.data<float>()[0], 0.0f);  // the gap is untouched
      }
    }
  }
}

TEST(CpuLinear, LargeOperandsTakeTheChunkedPaths) {
  // BF16 converts x in row chunks of 16 MB / (2K) rows; F16 widens w in row chunks of 16 MB / 4K.
  const int64_t K = 4096;
  Tensor x = random_tensor({2100, K}, DType::kF32, 500);
  Tensor w = random_tensor({8, K}, DType::kBF16, 501);
  Tensor y = Tensor::empty({2100, 8}, DType::kF32);
  cpu().linear(x, w, nullptr, y, 0.0f);
  EXPECT_LE(max_rel_error(y, ref_linear(x, w, nullptr, 0.0f, nullptr, true)), 1e-5);
  Tensor x2 = random_tensor({3, K}, DType::kF32, 502);
  Tensor w2 = random_tensor({1030, K}, DType::kF16, 503);
  Tensor b2 = random_tensor({1030}, DType::kF16, 504);
  Tensor y2 = Tensor::empty({3, 1030}, DType::kF32);
  cpu().linear(x2, w2, &b2, y2, 0.0f);
  EXPECT_LE(max_rel_error(y2, ref_linear(x2, w2, &b2, 0.0f, nullptr, false)), 1e-5);
}

TEST(CpuLinear, PrimitivesAreCachedAndSharedAcrossThreads) {
  Tensor x = random_tensor({17, 40}, DType::kF32, 600),
         w = random_tensor({23, 40}, DType::kBF16, 601);
  Tensor y = Tensor::empty({17, 23}, DType::kF32);
  cpu().linear(x, w, nullptr, y, 0.0f);
  const size_t cached = CpuBackend::cached_matmuls();
  for (int i = 0; i < 3; ++i) cpu().linear(x, w, nullptr, y, 0.0f);
  EXPECT_EQ(CpuBackend::cached_matmuls(), cached);  // same key: no new primitive
  cpu().linear(x.slice(0, 0, 16), w, nullptr, y.slice(0, 0, 16), 0.0f);
  const size_t grown = CpuBackend::cached_matmuls();
  EXPECT_GT(grown, cached);  // a new M builds (one, or two where bf16 falls back to f32)
  cpu().linear(x.slice(0, 0, 16), w, nullptr, y.slice(0, 0, 16), 0.0f);
  EXPECT_EQ(CpuBackend::cached_matmuls(), grown);

  // Backends on several threads share the process-wide cache while creating and executing.
  const Tensor ref = ref_linear(x, w, nullptr, 0.0f, nullptr, true);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      CpuBackend backend;
      for (int i = 0; i < 20; ++i) {
        const int64_t m = 1 + (i * 7 + t) % 17;  // a mix of new and shared keys
        Tensor yt = Tensor::empty({m, 23}, DType::kF32);
        backend.linear(x.slice(0, 0, m), w, nullptr, yt, 0.0f);
        if (max_rel_error(yt, ref.slice(0, 0, m)) > 1e-5) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(CpuLinear, RejectsBadArguments) {
  Tensor x = random_tensor({4, 8}, DType::kF32, 1), w = random_tensor({6, 8}, DType::kF32, 2);
  Tensor y = Tensor::empty({4, 6}, DType::kF32);
  EXPECT_THROW(cpu().linear(x, random_tensor({6, 7}, DType::kF32, 3), nullptr, y, 0.f), Error);
  EXPECT_THROW(cpu().linear(x, w, nullptr, Tensor::empty({4, 5}, DType::kF32), 0.f), Error);
  Tensor b = random_tensor({5}, DType::kF32, 4);
  EXPECT_THROW(cpu().linear(x, w, &b, y, 0.f), Error);
  EXPECT_THROW(cpu().linear(random_tensor({4, 8}, DType::kBF16, 5), w, nullptr, y, 0.f), Error);
  EXPECT_THROW(cpu().linear(x.transpose(0, 1), w.slice(1, 0, 4), nullptr, y, 0.f), Error);
}

// conv1d reference: y[b,t] = bias + Σ_k w[k]·x[b, t + k·dil − pad] with zeros outside.
Tensor ref_conv1d(const Tensor& x, const Tensor& w, const Tensor* bias, int dil, int pad) {
  Tensor xc = to_f32(x), wc = to_f32(w);
  const int64_t B = x.dim(0), T = x.dim(1), Ci = x.dim(2), K = w.dim(0), Co = w.dim(1);
  const int64_t To = T + 2 * pad - dil * (K - 1);
  const Tensor bc = bias ? to_f32(*bias) : Tensor();
  Tensor y = Tensor::empty({B, To, Co}, DType::kF32);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < To; ++t)
      for (int64_t co = 0; co < Co; ++co) {
        double acc = bias ? bc.data<float>()[co] : 0.0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t ti = t + k * dil - pad;
          if (ti < 0 || ti >= T) continue;
          for (int64_t ci = 0; ci < Ci; ++ci)
            acc += double(operand(at(xc, {b, ti, ci}), w.dtype())) * at(wc, {k, co, ci});
        }
        at(y, {b, t, co}) = float(acc);
      }
  return y;
}

struct ConvCase {
  int64_t B, T, Ci, Co, K;
  int dil, pad;
};

// The DiT's k=3 convolutions run as unfold3 (the rows [x[t−1] | x[t] | x[t+1]]) and one linear
// with the taps side by side ([Co, 3·Ci], as the converter stores them): the same convolution.
TEST(CpuConv, Unfold3ThenLinearIsTheK3Convolution) {
  for (const auto& [B, T, Ci, Co] : std::vector<std::array<int64_t, 4>>{
           {2, 40, 24, 16}, {1, 1, 5, 3}, {3, 2, 7, 9}, {1, 300, 64, 32}}) {
    const Tensor wide = random_tensor({B, T, Ci + 4}, DType::kF32, 700 + T);
    const Tensor x = wide.slice(2, 1, Ci);  // strided rows, as a slice of a joint buffer
    const Tensor taps = random_tensor({3, Co, Ci}, DType::kF32, 701 + T);
    const Tensor bias = random_tensor({Co}, DType::kF32, 702 + T);
    Tensor packed = Tensor::empty({Co, 3 * Ci}, DType::kF32);
    for (int64_t o = 0; o < Co; ++o)
      for (int64_t k = 0; k < 3; ++k)
        for (int64_t i = 0; i < Ci; ++i)
          packed.data<float>()[(o * 3 + k) * Ci + i] = taps.data<float>()[(k * Co + o) * Ci + i];
    const Tensor cols = Tensor::empty({B, T, 3 * Ci}, DType::kF32);
    cpu().unfold3(x, cols);
    // Every element of cols is a copy of x or an exact zero at the sequence ends.
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < 3; ++k)
          for (int64_t i = 0; i < Ci; ++i) {
            const int64_t src = t + k - 1;
            const float want =
                src < 0 || src >= T ? 0.0f : x.data<float>()[b * x.stride(0) + src * x.stride(1) + i];
            ASSERT_EQ(cols.data<float>()[((b * T + t) * 3 + k) * Ci + i], want);
          }
    Tensor y = Tensor::empty({B, T, Co}, DType::kF32);
    cpu().linear(cols, packed, &bias, y, 0.f);
    EXPECT_LE(max_rel_error(y, ref_conv1d(x, taps, &bias, 1, 1)), 1e-5) << B << "x" << T;
  }
  // cols must be [B, T, 3C] of x's dtype.
  const Tensor x = random_tensor({1, 4, 3}, DType::kF32, 710);
  EXPECT_THROW(cpu().unfold3(x, Tensor::empty({1, 4, 8}, DType::kF32)), Error);
  EXPECT_THROW(cpu().unfold3(x, Tensor::empty({1, 4, 9}, DType::kBF16)), Error);
}

TEST(CpuConv, Conv1dDilationPaddingDtypes) {
  const std::vector<ConvCase> cases = {
      {2, 37, 5, 6, 7, 3, 9},     {1, 10, 3, 4, 3, 1, 1}, {2, 30, 4, 3, 7, 2, 0},
      {3, 9, 8, 5, 1, 1, 0},      {1, 4, 2, 3, 7, 1, 3},  {2, 3, 3, 2, 5, 2, 4},
      {1, 2100, 4096, 1, 3, 1, 1}};  // crosses time chunks (1024 rows)
  for (const ConvCase& c : cases) {
    for (DType wdt : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE(std::string(dtype_name(wdt)) + " T=" + std::to_string(c.T) +
                   " K=" + std::to_string(c.K) + " dil=" + std::to_string(c.dil) +
                   " pad=" + std::to_string(c.pad));
      Tensor x = random_tensor({c.B, c.T, c.Ci}, DType::kF32, 600 + c.T);
      Tensor w = random_tensor({c.K, c.Co, c.Ci}, wdt, 700 + c.K);
      Tensor b = random_tensor({c.Co}, DType::kF32, 800);
      const int64_t To = c.T + 2 * c.pad - c.dil * (c.K - 1);
      Tensor y = Tensor::empty({c.B, To, c.Co}, DType::kF32);
      cpu().conv1d(x, w, &b, c.dil, c.pad, y);
      EXPECT_LE(max_rel_error(y, ref_conv1d(x, w, &b, c.dil, c.pad)), 1e-5);
    }
  }
  // Strided input rows, no bias; wrong output length is rejected.
  Tensor big = random_tensor({2, 20, 12}, DType::kF32, 900);
  Tensor x = big.slice(2, 2, 6);
  Tensor w = random_tensor({3, 5, 6}, DType::kF32, 901);
  Tensor y = Tensor::empty({2, 20, 5}, DType::kF32);
  cpu().conv1d(x, w, nullptr, 1, 1, y);
  EXPECT_LE(max_rel_error(y, ref_conv1d(x, w, nullptr, 1, 1)), 1e-5);
  EXPECT_THROW(cpu().conv1d(x, w, nullptr, 1, 0, y), Error);
}

// conv_transpose1d reference in PyTorch's scatter form: x[b,t] contributes w[k]·x to
// y[b, t·stride − pad + k].
Tensor ref_conv_t(const Tensor& x, const Tensor& w, const Tensor* bias, int s, int pad, int op) {
  Tensor xc = to_f32(x), wc = to_f32(w);
  const int64_t B = x.dim(0), T = x.dim(1), Ci = x.dim(2), K = w.dim(0), Co = w.dim(1);
  const int64_t To = (T - 1) * s - 2 * pad + K + op;
  std::vector<double> acc(size_t(B * To * Co), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t to = t * s - pad + k;
        if (to < 0 || to >= To) continue;
        for (int64_t co = 0; co < Co; ++co)
          for (int64_t ci = 0; ci < Ci; ++ci)
            acc[size_t((b * To + to) * Co + co)] +=
                double(operand(at(xc, {b, t, ci}), w.dtype())) * at(wc, {k, co, ci});
      }
  const Tensor bc = bias ? to_f32(*bias) : Tensor();
  Tensor y = Tensor::empty({B, To, Co}, DType::kF32);
  for (int64_t i = 0; i < y.numel(); ++i)
    y.data<float>()[i] = float(acc[size_t(i)] + (bias ? bc.data<float>()[i % Co] : 0.0));
  return y;
}

struct ConvTCase {
  int64_t B, T, Ci, Co;
  int stride, K, pad, out_pad;
};

TEST(CpuConv, ConvTranspose1dMatchesScatterDefinition) {
  // DAC's upsamplers (K = 2s, pad = ceil(s/2), output_padding = s % 2) and edge cases: K < s
  // (gaps get only the bias), large padding, output padding.
  const std::vector<ConvTCase> cases = {{2, 9, 6, 4, 8, 16, 4, 0}, {1, 7, 5, 3, 5, 10, 3, 1},
                                        {2, 8, 4, 4, 3, 6, 2, 1},  {1, 11, 3, 2, 2, 4, 1, 0},
                                        {2, 5, 3, 3, 4, 2, 0, 3},  {1, 6, 2, 3, 3, 7, 4, 2},
                                        {1, 1, 3, 2, 2, 4, 1, 0},  {1, 300, 4096, 1, 8, 16, 4, 0}};
  for (const ConvTCase& c : cases) {
    for (DType wdt : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE(std::string(dtype_name(wdt)) + " T=" + std::to_string(c.T) +
                   " s=" + std::to_string(c.stride) + " K=" + std::to_string(c.K) +
                   " pad=" + std::to_string(c.pad) + " op=" + std::to_string(c.out_pad));
      Tensor x = random_tensor({c.B, c.T, c.Ci}, DType::kF32, 1000 + c.T);
      Tensor w = random_tensor({c.K, c.Co, c.Ci}, wdt, 1100 + c.K);
      Tensor b = random_tensor({c.Co}, DType::kBF16, 1200);
      const int64_t To = (c.T - 1) * c.stride - 2 * c.pad + c.K + c.out_pad;
      Tensor y = Tensor::empty({c.B, To, c.Co}, DType::kF32);
      cpu().conv_transpose1d(x, w, &b, c.stride, c.pad, c.out_pad, y);
      EXPECT_LE(max_rel_error(y, ref_conv_t(x, w, &b, c.stride, c.pad, c.out_pad)), 1e-5);
    }
  }
  Tensor x = random_tensor({1, 4, 2}, DType::kF32, 1);
  Tensor w = random_tensor({4, 3, 2}, DType::kF32, 2);
  Tensor y = Tensor::empty({1, 9, 3}, DType::kF32);
  EXPECT_THROW(cpu().conv_transpose1d(x, w, nullptr, 2, 1, 2, y),
               Error);  // output_padding >= stride
  EXPECT_THROW(cpu().conv_transpose1d(x, w, nullptr, 2, 1, 0, y), Error);  // wrong length
}

// Patch embedding as a strided convolution, x [B,C,T,H,W] (T = kt = 1 for 2-D).
Tensor ref_patch(const Tensor& x5, const Tensor& w5, const Tensor* bias) {
  Tensor xc = to_f32(x5), wc = to_f32(w5);
  const int64_t B = x5.dim(0), C = x5.dim(1), D = w5.dim(0);
  const int64_t kt = w5.dim(2), kh = w5.dim(3), kw = w5.dim(4);
  const int64_t Tp = x5.dim(2) / kt, Hp = x5.dim(3) / kh, Wp = x5.dim(4) / kw;
  const Tensor bc = bias ? to_f32(*bias) : Tensor();
  Tensor y = Tensor::empty({B, Tp * Hp * Wp, D}, DType::kF32);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < Tp * Hp * Wp; ++n)
      for (int64_t d = 0; d < D; ++d) {
        const int64_t pt = n / (Hp * Wp), ph = (n / Wp) % Hp, pw = n % Wp;
        double acc = bias ? bc.data<float>()[d] : 0.0;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t i = 0; i < kt; ++i)
            for (int64_t j = 0; j < kh; ++j)
              for (int64_t l = 0; l < kw; ++l)
                acc += double(operand(at(xc, {b, c, pt * kt + i, ph * kh + j, pw * kw + l}),
                                      w5.dtype())) *
                       at(wc, {d, c, i, j, l});
        at(y, {b, n, d}) = float(acc);
      }
  return y;
}

TEST(CpuPatchEmbed, TwoAndThreeDims) {
  for (DType wdt : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(wdt));
    // 2-D with sizes that do not divide (trailing pixels dropped, like a strided conv).
    Tensor x = random_tensor({2, 3, 35, 34}, DType::kF32, 1300);
    Tensor w = random_tensor({5, 3, 8, 8}, wdt, 1301);
    Tensor b = random_tensor({5}, DType::kF32, 1302);
    Tensor y = Tensor::empty({2, 4 * 4, 5}, DType::kF32);
    cpu().patch_embed(x, w, &b, y);
    EXPECT_LE(max_rel_error(y, ref_patch(x.unsqueeze(2), w.unsqueeze(2), &b)), 1e-5);
    // 3-D, tokens ordered (t, h, w), input as a channel slice (strided).
    Tensor xbig = random_tensor({1, 5, 5, 33, 32}, DType::kF32, 1303);
    Tensor x3 = xbig.slice(1, 1, 3);
    Tensor w3 = random_tensor({6, 3, 2, 16, 16}, wdt, 1304);
    Tensor y3 = Tensor::empty({1, 2 * 2 * 2, 6}, DType::kF32);
    cpu().patch_embed(x3, w3, nullptr, y3);
    EXPECT_LE(max_rel_error(y3, ref_patch(x3, w3, nullptr)), 1e-5);
    EXPECT_THROW(cpu().patch_embed(x3, w3, nullptr, Tensor::empty({1, 9, 6}, DType::kF32)), Error);
  }
}

}  // namespace
}  // namespace foley
