// CUDA convolutions, resampling and patch embedding, channel-last.
//
// As on the CPU, both 1-D convolutions are sums of per-tap GEMMs: tap k of w [K, Co, Ci] is a
// Linear weight applied to the range of input rows where the tap lands inside the signal and
// accumulated (beta = 1) into the matching output rows, so padding is never materialised. A
// transposed conv's tap writes every stride-th output row (ldy = stride·Co). With 16-bit weights
// the input is converted once per call, not once per tap. patch_embed is im2col + one GEMM.
#include <cmath>

#include "backend/cuda/cuda_dense.h"

namespace foley {
namespace cuda {
namespace {

struct ConvArgs {
  int64_t B, T, Ci, To, Co, K;
};

ConvArgs check_conv(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                    const char* op) {
  check_activation16(x, op, "x");
  check_activation(y, op, "y");
  check_param(w, op, "w");
  check_gemm_dtypes(x.dtype(), w.dtype(), y.dtype(), op);
  FOLEY_CHECK(x.rank() == 3 && y.rank() == 3 && w.rank() == 3,
              "%s: expected x [B,T,Ci], w [K,Co,Ci], y [B,To,Co], got %s, %s, %s", op,
              x.describe().c_str(), w.describe().c_str(), y.describe().c_str());
  check_last_contiguous(x, op, "x");
  check_last_contiguous(y, op, "y");
  FOLEY_CHECK(w.is_contiguous(), "%s: w %s must be contiguous [K, Co, Ci]", op,
              w.describe().c_str());
  ConvArgs a{x.dim(0), x.dim(1), x.dim(2), y.dim(1), w.dim(1), w.dim(0)};
  FOLEY_CHECK(w.dim(2) == a.Ci, "%s: w %s does not match x %s (C_in)", op, w.describe().c_str(),
              x.describe().c_str());
  FOLEY_CHECK(y.dim(0) == a.B && y.dim(2) == a.Co, "%s: y %s does not match x %s and w %s", op,
              y.describe().c_str(), x.describe().c_str(), w.describe().c_str());
  FOLEY_CHECK(a.K >= 1, "%s: empty kernel", op);
  if (bias) check_param_vector(*bias, a.Co, op, "bias");
  return a;
}

int64_t row_stride(const Tensor& t) {
  return t.dim(1) > 1 ? t.stride(1) : t.dim(2);
}

int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// The input as the GEMMs read it: x itself when its dtype is the weight's, else one converted
// copy of every batch row in scratch (contiguous [B, T, Ci]). y stays F32 even for 16-bit x: the
// taps accumulate into it (beta = 1), and rounding between taps would lose what one f32
// accumulation keeps.
struct ConvInput {
  const char* base;
  DType dt;
  int64_t ldx, sb;  // elements
};
ConvInput conv_input(CudaBackend& be, const Tensor& x, DType wdt) {
  if (x.dtype() == wdt)
    return {static_cast<const char*>(x.raw()), wdt, row_stride(x), x.stride(0)};
  const int64_t B = x.dim(0), T = x.dim(1), Ci = x.dim(2);
  char* out = static_cast<char*>(be.scratch().alloc_bytes(size_t(B * T * Ci) * 2));
  for (int64_t b = 0; b < B; ++b)
    convert_rows_to(be, x.data<float>() + b * x.stride(0), T, Ci, row_stride(x), wdt,
                    out + size_t(b * T * Ci) * 2);
  return {out, wdt, Ci, T * Ci};
}

__global__ void resample_rows(const float* x, int64_t xsb, int64_t xst, int64_t T, float* y,
                              int64_t ysb, int64_t yst, int64_t To, int64_t C, float scale) {
  const int64_t n = (To * C);
  const int64_t b = blockIdx.y;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / C, c = i % C;
    const float pos = (static_cast<float>(t) + 0.5f) * scale;
    const int64_t src = min(static_cast<int64_t>(floorf(pos)), T - 1);
    y[b * ysb + t * yst + c] = x[b * xsb + src * xst + c];
  }
}

// cols[r, (c, dt, dh, dw)] for patches n0.. of batch b.
__global__ void im2col(const float* x, int64_t sc, int64_t st, int64_t sh, int64_t sw, int64_t C,
                       int64_t kt, int64_t kh, int64_t kw, int64_t Hp, int64_t Wp, int64_t n0,
                       int64_t rows, float* cols) {
  const int64_t Kd = C * kt * kh * kw;
  const int64_t total = rows * Kd;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / Kd, j = i % Kd;
    const int64_t dw = j % kw, dh = (j / kw) % kh, dt = (j / (kw * kh)) % kt,
                  c = j / (kw * kh * kt);
    const int64_t n = n0 + r;
    const int64_t pt = n / (Hp * Wp), ph = (n / Wp) % Hp, pw = n % Wp;
    cols[i] = x[c * sc + (pt * kt + dt) * st + (ph * kh + dh) * sh + (pw * kw + dw) * sw];
  }
}

// cols[b, t, j·C + c] = x[b, t + j − 1, c] (zero outside [0, T)), in units of U: 16-byte
// vectors when rows allow, else one element. One pass, written in order.
template <typename U>
__global__ void unfold3_rows(const U* x, int64_t xsb, int64_t xst, int64_t T, int64_t Cu,
                             int64_t total, U* cols) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % Cu, j = (i / Cu) % 3, bt = i / (3 * Cu);
    const int64_t t = bt % T, b = bt / T, src = t + j - 1;
    if (src >= 0 && src < T) {
      cols[i] = x[b * xsb + src * xst + c];
    } else {
      cols[i] = U{};
    }
  }
}

template <typename U>
void launch_unfold3(cudaStream_t stream, const Tensor& x, const Tensor& cols, int64_t unit) {
  const int64_t B = x.dim(0), T = x.dim(1), es = int64_t(dtype_size(x.dtype()));
  const int64_t per = unit / es;  // elements per unit
  const int64_t Cu = x.dim(2) / per, total = B * T * 3 * Cu;
  const int64_t xst = T > 1 ? x.stride(1) / per : Cu, xsb = B > 1 ? x.stride(0) / per : T * xst;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 1 << 16));
  unfold3_rows<U><<<std::max(blocks, 1u), 256, 0, stream>>>(
      static_cast<const U*>(x.raw()), xsb, xst, T, Cu, total, static_cast<U*>(cols.raw()));
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

unsigned stride_blocks(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>((n + 255) / 256, 1), 65535));
}

}  // namespace

void CudaBackend::conv1d(const Tensor& x, const Tensor& w, const Tensor* bias, int dilation,
                         int pad, const Tensor& y) {
  const char* op = "conv1d";
  const ConvArgs a = check_conv(x, w, bias, y, op);
  FOLEY_CHECK(dilation >= 1 && pad >= 0, "conv1d: bad dilation %d / padding %d", dilation, pad);
  const int64_t span = int64_t(dilation) * (a.K - 1);
  FOLEY_CHECK(a.To == a.T + 2 * pad - span,
              "conv1d: y has %lld steps, expected T + 2·pad − dilation·(K−1) = %lld",
              static_cast<long long>(a.To), static_cast<long long>(a.T + 2 * pad - span));
  if (y.numel() == 0) return;
  Arena::Scope scope(scratch());
  const float* b = bias ? vector_f32(*this, *bias) : nullptr;
  const ConvInput in = conv_input(*this, x, w.dtype());
  const int64_t ldy = row_stride(y);
  const size_t tap_bytes = size_t(a.Co * a.Ci) * dtype_size(w.dtype());
  const int64_t es = int64_t(dtype_size(in.dt));
  // Output t reads input t + off(k); tap k is valid on output rows [t0(k), t1(k)).
  auto off = [&](int64_t k) { return k * dilation - pad; };
  auto t0 = [&](int64_t k) { return std::max<int64_t>(0, -off(k)); };
  auto t1 = [&](int64_t k) { return std::min<int64_t>(a.To, a.T - off(k)); };
  // A tap that covers every output row writes bias + product (beta = 0), saving a pass over y.
  int64_t first = -1;
  for (int64_t k = 0; k < a.K && first < 0; ++k)
    if (t0(k) == 0 && t1(k) == a.To) first = k;
  if (first < 0)
    for (int64_t bi = 0; bi < a.B; ++bi)
      init_rows(*this, y.data<float>() + bi * y.stride(0), a.To, a.Co, ldy, b, 0.0f);
  // One GEMM per tap over every batch row at once (a strided batch sharing the tap's weight):
  // the DiT's ConvMLP runs B = 2 rows of ~500 steps, and two half-size GEMMs per tap cost ~15 %
  // more than one batched call.
  for (int64_t i = 0; i < a.K; ++i) {
    const int64_t k = first < 0 ? i : (i == 0 ? first : (i <= first ? i - 1 : i));
    if (t1(k) <= t0(k)) continue;
    DeviceGemm g;
    g.M = t1(k) - t0(k);
    g.N = a.Co;
    g.K = a.Ci;
    g.x = in.base + (t0(k) + off(k)) * in.ldx * es;
    g.xdt = in.dt;
    g.ldx = in.ldx;
    g.w = static_cast<const char*>(w.raw()) + size_t(k) * tap_bytes;
    g.wdt = w.dtype();
    g.ldw = a.Ci;
    g.y = y.data<float>() + t0(k) * ldy;
    g.ldy = ldy;
    g.beta = (first >= 0 && i == 0) ? 0.0f : 1.0f;
    g.bias = (first >= 0 && i == 0) ? b : nullptr;
    g.batch = a.B;
    g.sx = in.sb, g.sw = 0, g.sy = y.stride(0);
    run_gemm(*this, g);
  }
}

void CudaBackend::conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride,
                                   int pad, int output_padding, const Tensor& y) {
  const char* op = "conv_transpose1d";
  const ConvArgs a = check_conv(x, w, bias, y, op);
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
  const float* b = bias ? vector_f32(*this, *bias) : nullptr;
  const ConvInput in = conv_input(*this, x, w.dtype());
  const int64_t ldy = row_stride(y);
  const size_t tap_bytes = size_t(a.Co * a.Ci) * dtype_size(w.dtype());
  const int64_t es = int64_t(dtype_size(in.dt));
  for (int64_t bi = 0; bi < a.B; ++bi) {
    float* yb = y.data<float>() + bi * y.stride(0);
    const char* xb = in.base + bi * in.sb * es;
    init_rows(*this, yb, a.To, a.Co, ldy, b, 0.0f);
    for (int64_t k = 0; k < a.K && a.T > 0; ++k) {
      // Input t lands on output t·stride + off; keep inputs that land inside [0, To).
      const int64_t o = k - pad;
      const int64_t i0 = std::max<int64_t>(0, -floor_div(o, stride));
      const int64_t i1 = std::min<int64_t>(a.T, -floor_div(-(a.To - o), stride));
      if (i1 <= i0) continue;
      DeviceGemm g;
      g.M = i1 - i0;
      g.N = a.Co;
      g.K = a.Ci;
      g.x = xb + i0 * in.ldx * es;
      g.xdt = in.dt;
      g.ldx = in.ldx;
      g.w = static_cast<const char*>(w.raw()) + size_t(k) * tap_bytes;
      g.wdt = w.dtype();
      g.ldw = a.Ci;
      g.y = yb + (i0 * stride + o) * ldy;
      g.ldy = ldy * stride;
      g.beta = 1.0f;
      run_gemm(*this, g);
    }
  }
}

void CudaBackend::resample_nearest_exact(const Tensor& x, const Tensor& y) {
  const char* op = "resample_nearest_exact";
  check_activation(x, op, "x");
  check_activation(y, op, "y");
  FOLEY_CHECK(x.rank() == 3 && y.rank() == 3 && y.dim(0) == x.dim(0) && y.dim(2) == x.dim(2),
              "resample_nearest_exact: y %s does not match x %s", y.describe().c_str(),
              x.describe().c_str());
  check_last_contiguous(x, op, "x");
  check_last_contiguous(y, op, "y");
  const int64_t B = x.dim(0), T = x.dim(1), C = x.dim(2), To = y.dim(1);
  if (y.numel() == 0) return;
  FOLEY_CHECK(T >= 1, "resample_nearest_exact: empty input");
  FOLEY_CHECK(B <= 65535, "resample_nearest_exact: batch %lld too large",
              static_cast<long long>(B));
  // PyTorch's rule: the scale is a float, the product is rounded to float before the floor.
  const float scale = static_cast<float>(T) / static_cast<float>(To);
  const dim3 grid(stride_blocks(To * C), static_cast<unsigned>(B));
  resample_rows<<<grid, 256, 0, stream()>>>(x.data<float>(), x.stride(0), x.stride(1), T,
                                            y.data<float>(), y.stride(0), y.stride(1), To, C,
                                            scale);
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::patch_embed(const Tensor& x, const Tensor& w, const Tensor* bias,
                              const Tensor& y) {
  const char* op = "patch_embed";
  check_activation(x, op, "x");
  check_activation(y, op, "y");
  check_param(w, op, "w");
  if (bias) check_param(*bias, op, "bias");
  const PatchEmbedGeometry pg = check_patch_embed_shapes(x, w, bias, y);
  const int64_t B = pg.B, C = pg.C, D = pg.D, kt = pg.kt, kh = pg.kh, kw = pg.kw;
  const int64_t st = pg.st, sh = pg.sh, sw = pg.sw, Hp = pg.Hp, Wp = pg.Wp, N = pg.N, Kd = pg.Kd;
  if (y.numel() == 0) return;

  Arena::Scope scope(scratch());
  const float* b = bias ? vector_f32(*this, *bias) : nullptr;
  // Every patch of one batch member at once: im2col rows are small next to the activations.
  float* cols = static_cast<float*>(scratch().alloc_bytes(size_t(N * Kd) * 4));
  for (int64_t bi = 0; bi < B; ++bi) {
    im2col<<<stride_blocks(N * Kd), 256, 0, stream()>>>(x.data<float>() + bi * x.stride(0),
                                                        x.stride(1), st, sh, sw, C, kt, kh, kw, Hp,
                                                        Wp, 0, N, cols);
    FOLEY_CUDA_CHECK(cudaGetLastError());
    DeviceGemm g;
    g.M = N;
    g.N = D;
    g.K = Kd;
    g.x = cols;
    g.ldx = Kd;
    g.w = w.raw();
    g.wdt = w.dtype();
    g.ldw = Kd;
    g.bias = b;
    g.y = y.data<float>() + bi * y.stride(0);
    g.ldy = N > 1 ? y.stride(1) : D;
    run_gemm(*this, g);
  }
}

void CudaBackend::unfold3(const Tensor& x, const Tensor& cols) {
  const char* op = "unfold3";
  check_activation16(x, op, "x");
  check_activation16(cols, op, "cols");
  check_unfold3(x, cols);
  if (cols.numel() == 0) return;
  const int64_t es = int64_t(dtype_size(x.dtype()));
  // 16-byte units when every row start of x and cols is 16-byte aligned.
  auto aligned = [&](int64_t elems) { return (elems * es) % 16 == 0; };
  const bool vec = aligned(x.dim(2)) && aligned(x.stride(0)) && aligned(x.stride(1)) &&
                   reinterpret_cast<uintptr_t>(x.raw()) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(cols.raw()) % 16 == 0;
  if (vec) return launch_unfold3<uint4>(stream_, x, cols, 16);
  if (es == 4) return launch_unfold3<uint32_t>(stream_, x, cols, 4);
  FOLEY_CHECK(es == 2, "unfold3: unsupported dtype %s", dtype_name(x.dtype()));
  launch_unfold3<uint16_t>(stream_, x, cols, 2);
}

}  // namespace cuda
}  // namespace foley
