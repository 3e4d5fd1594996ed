// Convolutions, resampling and patch embedding, channel-last.
//
// Both 1-D convolutions are sums of per-tap GEMMs: tap k of w [K, Co, Ci] is a Linear weight
// [Co, Ci] applied to a shifted range of input rows and accumulated (beta = 1) into a range of
// output rows. Only the row ranges where the tap lands inside the signal are multiplied, so the
// zero padding is never materialised. Time is processed in chunks of output rows (~16 MB of
// input + output rows, which stay in the last-level cache across the taps); this also bounds the
// scratch a GEMM needs for bf16 activations (the DAC decoder runs 720k steps).
#include <cmath>

#include "backend/cpu/cpu_internal.h"

namespace foley {
namespace cpu {
namespace {

// Output rows per chunk: input + output rows of a chunk take about 16 MB. Smaller chunks would
// stay in L2 across the taps, but every GEMM call pays a fork/join of the OpenMP team, which
// dominates with narrow channels (64) and gets worse on a busy machine; 16 MB keeps a 720k-step
// DAC layer at ~20 chunks while still bounding the bf16 conversion scratch.
int64_t time_chunk(int64_t Ci, int64_t Co) {
  return std::max<int64_t>(1024, (int64_t{16} << 20) / (4 * (Ci + Co)));
}

// `rows` rows of y (row stride ldy) = bias (or 0), in parallel.
void init_rows(float* y, int64_t ldy, int64_t rows, int64_t Co, const float* bias) {
  parallel_for(rows, std::max<int64_t>(1, 16384 / Co), [&](int64_t r0, int64_t r1) {
    for (int64_t t = r0; t < r1; ++t) {
      float* r = y + t * ldy;
      if (bias) {
        std::memcpy(r, bias, size_t(Co) * 4);
      } else {
        std::memset(r, 0, size_t(Co) * 4);
      }
    }
  });
}

struct ConvArgs {
  int64_t B, T, Ci, To, Co, K;
  const float* bias;
};

ConvArgs check_conv(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                    const char* op) {
  check_f32(x, op, "x");
  check_float(w, op, "w");
  check_f32(y, op, "y");
  check_rank(x, 3, op, "x");
  check_rank(w, 3, op, "w");
  check_rank(y, 3, op, "y");
  check_last_contiguous(x, op, "x");
  check_last_contiguous(y, op, "y");
  FOLEY_CHECK(w.is_contiguous(), "%s: w %s must be contiguous [K, Co, Ci]", op,
              w.describe().c_str());
  ConvArgs a{x.dim(0), x.dim(1), x.dim(2), y.dim(1), w.dim(1), w.dim(0), nullptr};
  FOLEY_CHECK(w.dim(2) == a.Ci, "%s: w %s does not match x %s (C_in)", op, w.describe().c_str(),
              x.describe().c_str());
  FOLEY_CHECK(y.dim(0) == a.B && y.dim(2) == a.Co, "%s: y %s does not match x %s and w %s", op,
              y.describe().c_str(), x.describe().c_str(), w.describe().c_str());
  FOLEY_CHECK(a.K >= 1, "%s: empty kernel", op);
  if (bias) check_vector(*bias, a.Co, op, "bias");
  return a;
}

// Element stride of dim 1 (time) for row pointers; a single row may have any stride.
int64_t row_stride(const Tensor& t, int64_t width) {
  return t.dim(1) > 1 ? t.stride(1) : width;
}

}  // namespace
}  // namespace cpu

using namespace cpu;

void CpuBackend::conv1d(const Tensor& x, const Tensor& w, const Tensor* bias, int dilation, int pad,
                        const Tensor& y) {
  const char* op = "conv1d";
  ConvArgs a = check_conv(x, w, bias, y, op);
  FOLEY_CHECK(dilation >= 1 && pad >= 0, "conv1d: bad dilation %d / padding %d", dilation, pad);
  const int64_t span = int64_t(dilation) * (a.K - 1);
  FOLEY_CHECK(a.To == a.T + 2 * pad - span,
              "conv1d: y has %lld steps, expected T + 2·pad − dilation·(K−1) = %lld",
              static_cast<long long>(a.To), static_cast<long long>(a.T + 2 * pad - span));
  if (y.numel() == 0) return;
  Arena::Scope scope(scratch());
  a.bias = bias ? vector_f32(scratch(), *bias) : nullptr;
  const int64_t ldx = row_stride(x, a.Ci), ldy = row_stride(y, a.Co);
  const int64_t chunk = time_chunk(a.Ci, a.Co);
  const size_t tap_bytes = size_t(a.Co * a.Ci) * dtype_size(w.dtype());
  Gemm g;
  g.N = a.Co;
  g.K = a.Ci;
  g.ldx = ldx;
  g.wdt = w.dtype();
  g.ldw = a.Ci;
  g.ldy = ldy;
  g.beta = 1.0f;
  for (int64_t b = 0; b < a.B; ++b) {
    const float* xb = x.data<float>() + b * x.stride(0);
    float* yb = y.data<float>() + b * y.stride(0);
    for (int64_t c0 = 0; c0 < a.To; c0 += chunk) {
      const int64_t c1 = std::min(a.To, c0 + chunk);
      // Output t reads input t + off(k); tap k is valid on rows [t0(k), t1(k)) of the chunk.
      auto off = [&](int64_t k) { return k * dilation - pad; };
      auto t0 = [&](int64_t k) { return std::max(c0, -off(k)); };
      auto t1 = [&](int64_t k) { return std::min(c1, a.T - off(k)); };
      // Away from the signal's ends some tap covers the whole chunk: it writes bias + product
      // (beta = 0), saving a pass over y. Near the ends the rows start from the bias instead.
      int64_t first = -1;
      for (int64_t k = 0; k < a.K && first < 0; ++k)
        if (t0(k) == c0 && t1(k) == c1) first = k;
      if (first < 0) init_rows(yb + c0 * ldy, ldy, c1 - c0, a.Co, a.bias);
      for (int64_t i = 0; i < a.K; ++i) {
        const int64_t k = first < 0 ? i : (i == 0 ? first : (i <= first ? i - 1 : i));
        if (t1(k) <= t0(k)) continue;
        g.M = t1(k) - t0(k);
        g.x = xb + (t0(k) + off(k)) * ldx;
        g.w = static_cast<const char*>(w.raw()) + size_t(k) * tap_bytes;
        g.y = yb + t0(k) * ldy;
        g.beta = (first >= 0 && i == 0) ? 0.0f : 1.0f;
        g.bias = (first >= 0 && i == 0) ? a.bias : nullptr;
        gemm(g);
      }
    }
  }
}

void CpuBackend::conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride,
                                  int pad, int output_padding, const Tensor& y) {
  const char* op = "conv_transpose1d";
  ConvArgs a = check_conv(x, w, bias, y, op);
  FOLEY_CHECK(stride >= 1 && pad >= 0 && output_padding >= 0 &&
                  (output_padding < stride || output_padding == 0),
              "conv_transpose1d: bad stride %d / padding %d / output_padding %d", stride, pad,
              output_padding);
  const int64_t expect = (a.T - 1) * stride - 2 * pad + a.K + output_padding;
  FOLEY_CHECK(a.To == expect,
              "conv_transpose1d: y has %lld steps, expected (T−1)·stride − 2·pad + K + "
              "output_padding = %lld",
              static_cast<long long>(a.To), static_cast<long long>(expect));
  if (y.numel() == 0) return;
  Arena::Scope scope(scratch());
  a.bias = bias ? vector_f32(scratch(), *bias) : nullptr;
  const int64_t ldx = row_stride(x, a.Ci), ldy = row_stride(y, a.Co);
  const int64_t chunk = round_up(time_chunk(a.Ci, a.Co), stride);
  const size_t tap_bytes = size_t(a.Co * a.Ci) * dtype_size(w.dtype());
  Gemm g;
  g.N = a.Co;
  g.K = a.Ci;
  g.ldx = ldx;
  g.wdt = w.dtype();
  g.ldw = a.Ci;
  g.ldy = ldy * stride;  // a tap writes every stride-th output row
  g.beta = 1.0f;
  for (int64_t b = 0; b < a.B; ++b) {
    const float* xb = x.data<float>() + b * x.stride(0);
    float* yb = y.data<float>() + b * y.stride(0);
    for (int64_t c0 = 0; c0 < a.To; c0 += chunk) {
      const int64_t c1 = std::min(a.To, c0 + chunk);
      init_rows(yb + c0 * ldy, ldy, c1 - c0, a.Co, a.bias);
      if (a.T == 0) continue;
      for (int64_t k = 0; k < a.K; ++k) {
        // Input t lands on output t·stride + off; keep inputs that land inside [c0, c1).
        const int64_t off = k - pad;
        const int64_t i0 = std::max<int64_t>(0, -floor_div(-(c0 - off), stride));
        const int64_t i1 = std::min<int64_t>(a.T, -floor_div(-(c1 - off), stride));
        if (i1 <= i0) continue;
        g.M = i1 - i0;
        g.x = xb + i0 * ldx;
        g.w = static_cast<const char*>(w.raw()) + size_t(k) * tap_bytes;
        g.y = yb + (i0 * stride + off) * ldy;
        gemm(g);
      }
    }
  }
}

void CpuBackend::resample_nearest_exact(const Tensor& x, const Tensor& y) {
  const char* op = "resample_nearest_exact";
  check_f32(x, op, "x");
  check_f32(y, op, "y");
  check_rank(x, 3, op, "x");
  check_rank(y, 3, op, "y");
  check_last_contiguous(x, op, "x");
  check_last_contiguous(y, op, "y");
  const int64_t B = x.dim(0), T = x.dim(1), C = x.dim(2), To = y.dim(1);
  FOLEY_CHECK(y.dim(0) == B && y.dim(2) == C, "resample_nearest_exact: y %s does not match x %s",
              y.describe().c_str(), x.describe().c_str());
  if (y.numel() == 0) return;
  FOLEY_CHECK(T >= 1, "resample_nearest_exact: empty input");
  // PyTorch's rule: the scale is a float, the product is rounded to float before the floor.
  const float scale = static_cast<float>(T) / static_cast<float>(To);
  parallel_for(
      B * To, std::max<int64_t>(1, 8192 / std::max<int64_t>(C, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t b = r / To, i = r % To;
          const float pos = (static_cast<float>(i) + 0.5f) * scale;
          const int64_t src = std::min<int64_t>(static_cast<int64_t>(std::floor(pos)), T - 1);
          std::memcpy(y.data<float>() + b * y.stride(0) + i * y.stride(1),
                      x.data<float>() + b * x.stride(0) + src * x.stride(1), size_t(C) * 4);
        }
      });
}

void CpuBackend::patch_embed(const Tensor& x, const Tensor& w, const Tensor* bias,
                             const Tensor& y) {
  const char* op = "patch_embed";
  check_f32(x, op, "x");
  check_float(w, op, "w");
  check_f32(y, op, "y");
  if (bias) check_float(*bias, op, "bias");
  const PatchEmbedGeometry pg = check_patch_embed_shapes(x, w, bias, y);
  const int64_t B = pg.B, C = pg.C, D = pg.D, kt = pg.kt, kh = pg.kh, kw = pg.kw;
  const int64_t st = pg.st, sh = pg.sh, sw = pg.sw, Hp = pg.Hp, Wp = pg.Wp, N = pg.N, Kd = pg.Kd;
  if (y.numel() == 0) return;

  Arena::Scope scope(scratch());
  Gemm g;
  g.N = D;
  g.K = Kd;
  g.w = w.raw();
  g.wdt = w.dtype();
  g.ldw = Kd;
  g.bias = bias ? vector_f32(scratch(), *bias) : nullptr;
  g.ldx = Kd;
  g.ldy = N > 1 ? y.stride(1) : D;
  const int64_t chunk = std::clamp<int64_t>(int64_t(kConvertChunkBytes) / (4 * Kd), 1, N);
  float* cols = static_cast<float*>(scratch().alloc_bytes(size_t(chunk * Kd) * 4));
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = x.data<float>() + b * x.stride(0);
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
      const int64_t rows = std::min(chunk, N - n0);
      // im2col: one row per patch, columns in w's (c, dt, dh, dw) order.
      parallel_for(rows, 1, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t n = n0 + r;
          const int64_t pt = n / (Hp * Wp), ph = (n / Wp) % Hp, pw = n % Wp;
          float* dst = cols + r * Kd;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t dt = 0; dt < kt; ++dt)
              for (int64_t dh = 0; dh < kh; ++dh) {
                const float* src =
                    xb + c * x.stride(1) + (pt * kt + dt) * st + (ph * kh + dh) * sh + pw * kw * sw;
                for (int64_t dw = 0; dw < kw; ++dw) *dst++ = src[dw * sw];
              }
        }
      });
      g.M = rows;
      g.x = cols;
      g.y = y.data<float>() + b * y.stride(0) + n0 * g.ldy;
      gemm(g);
    }
  }
}

}  // namespace foley
