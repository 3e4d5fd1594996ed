// CUDA normalisation, softmax and RoPE kernels (F32 math).
//
// layer_norm, layer_norm_modulate, rms_norm and rope also read and write 16-bit activations (the
// DiT's bf16 path, model-spec §2.7: norms and RoPE compute in fp32 and round once on output).
//
// Row-wise ops run one thread block per row (rows may be strided; the last dim is contiguous),
// head-sized rms rows one warp per row, and rows cached in registers for layer_norm_modulate;
// quad-aligned rows up to 2048 wide take one warp per row with vector loads (warp_rows)
// instead, unless FOLEY_CUDA_VECTOR_ROWS=0. All accumulate statistics in double in two passes,
// as the CPU oracle does, so the backends differ only by summation order. A row's statistics
// are complete (a reduction over all of it) before any of it is written, so every op here works
// in place.
#include <cmath>
#include <type_traits>

#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_strided.h"

namespace foley {
namespace cuda {
namespace {

// Sum over the block; every thread gets the total. blockDim.x is a multiple of 32.
__device__ double block_sum(double v) {
  __shared__ double partial[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // the previous call's readers are done with `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : 0.0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ float block_max(float v) {
  __shared__ float partial[32];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

struct Moments {
  float mean, rstd;
};

// Two-pass mean and 1/sqrt(var + eps) of the row at element offset `r0`, in double.
__device__ Moments row_moments(FloatIn x, int64_t r0, int64_t C, float eps) {
  double s = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += load_float(x, r0 + c);
  const double mean = block_sum(s) / static_cast<double>(C);
  double q = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const double d = load_float(x, r0 + c) - mean;
    q += d * d;
  }
  const double var = block_sum(q) / static_cast<double>(C);
  return {static_cast<float>(mean), static_cast<float>(1.0 / sqrt(var + eps))};
}

// Optional parameter vector (weight or bias) in any float dtype.
struct OptVec {
  FloatIn v;
  bool present;
};

__global__ void layer_norm_rows(StridedNd rows, int64_t nrows, FloatOut y, FloatIn x, int64_t C,
                                float eps, OptVec w, OptVec b) {
  for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x) {
    int64_t off[2];
    nd_offsets<2>(rows, r, off);
    const Moments m = row_moments(x, off[1], C, eps);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      float v = __fmul_rn(__fsub_rn(load_float(x, off[1] + c), m.mean), m.rstd);
      if (w.present) v = __fmul_rn(v, load_float(w.v, c));
      if (b.present) v = __fadd_rn(v, load_float(b.v, c));
      store_float(y, off[0] + c, v);
    }
  }
}

// Rows of C <= 128·V elements, C a multiple of 4 and every operand quad-aligned (the DiT's
// hidden rows of 1536 and head rows of 128): one warp per row, each lane holding V runs of four
// in registers, so x is read once and the reductions are shuffles alone, no barriers. A block
// per row with scalar loads and two block-wide reductions ran at 300-460 GB/s on an H100.
enum class RowKind { kLayerNorm, kRmsNorm, kModulate };

constexpr int kWarpRowsPerBlock = 4;
constexpr int kMaxQuadsPerLane = 16;

__device__ __forceinline__ double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// p0, p1: weight and bias vectors (layer norm), the weight (rms norm), or the per-row shift and
// scale operands 2 and 3 of the nest (modulate).
struct WarpRowArgs {
  StridedNd rows;
  int64_t nrows;
  FloatOut y;
  FloatIn x, p0, p1;
  bool has0, has1;
  int C;
  float eps;
};

template <RowKind K, int V>
__global__ void __launch_bounds__(32 * kWarpRowsPerBlock) warp_rows(WarpRowArgs a) {
  constexpr int kOps = K == RowKind::kModulate ? 4 : 2;
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kWarpRowsPerBlock + (threadIdx.x >> 5);
  if (r >= a.nrows) return;
  int64_t off[kOps];
  nd_offsets<kOps>(a.rows, r, off);
  float v[V][4];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int c = 4 * (lane + 32 * j);
    if (c < a.C) {
      load4(a.x, off[1] + c, v[j]);
    } else {
      v[j][0] = v[j][1] = v[j][2] = v[j][3] = 0.0f;
    }
  }
  // Two-pass statistics in double, as the CPU oracle and the block kernels; the zero padding
  // past C adds nothing to the sums and is skipped in the centred one.
  float mean = 0.0f, rstd;
  if constexpr (K == RowKind::kRmsNorm) {
    double q = 0;
#pragma unroll
    for (int j = 0; j < V; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) q += double(v[j][e]) * v[j][e];
    rstd = static_cast<float>(1.0 / sqrt(warp_sum_d(q) / static_cast<double>(a.C) + a.eps));
  } else {
    double s = 0;
#pragma unroll
    for (int j = 0; j < V; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s += v[j][e];
    const double m = warp_sum_d(s) / static_cast<double>(a.C);
    double q = 0;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      if (4 * (lane + 32 * j) >= a.C) break;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const double d = v[j][e] - m;
        q += d * d;
      }
    }
    mean = static_cast<float>(m);
    rstd = static_cast<float>(1.0 / sqrt(warp_sum_d(q) / static_cast<double>(a.C) + a.eps));
  }
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int c = 4 * (lane + 32 * j);
    if (c >= a.C) break;
    float o[4], p[4] = {}, q[4] = {};
    if constexpr (K == RowKind::kModulate) {
      load4(a.p0, off[kOps - 2] + c, p);
      load4(a.p1, off[kOps - 1] + c, q);
    } else {
      if (a.has0) load4(a.p0, c, p);
      if (a.has1) load4(a.p1, c, q);
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if constexpr (K == RowKind::kRmsNorm) {
        // (x·r)·w, normalise first and scale after, as the reference RMSNorm.
        const float n = __fmul_rn(v[j][e], rstd);
        o[e] = a.has0 ? __fmul_rn(n, p[e]) : n;
      } else {
        float n = __fmul_rn(__fsub_rn(v[j][e], mean), rstd);
        if constexpr (K == RowKind::kModulate) {
          n = __fadd_rn(__fmul_rn(n, __fadd_rn(1.0f, q[e])), p[e]);  // p shift, q scale
        } else {
          if (a.has0) n = __fmul_rn(n, p[e]);
          if (a.has1) n = __fadd_rn(n, q[e]);
        }
        o[e] = n;
      }
    }
    store4(a.y, off[0] + c, o);
  }
}

// Rows of at most 32·kWarpMax elements (the DiT's head rows of 64/128): one warp per row, the row
// held in registers and reduced with shuffles alone. A block per row with barriers spent most of
// its time waiting (12k rows of 128 per call ran at ~280 GB/s).
constexpr int kWarpMax = 8;
constexpr int kRowsPerWarpBlock = 8;

__global__ void rms_norm_warp_rows(StridedNd rows, int64_t nrows, FloatOut y, FloatIn x, int C,
                                   float eps, OptVec w) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerWarpBlock + (threadIdx.x >> 5);
  if (r >= nrows) return;
  int64_t off[2];
  nd_offsets<2>(rows, r, off);
  float v[kWarpMax];
  double q = 0;
#pragma unroll
  for (int i = 0; i < kWarpMax; ++i) {
    const int c = lane + 32 * i;
    v[i] = c < C ? load_float(x, off[1] + c) : 0.0f;
    q += double(v[i]) * v[i];
  }
  const float inv = static_cast<float>(1.0 / sqrt(warp_sum_d(q) / static_cast<double>(C) + eps));
#pragma unroll
  for (int i = 0; i < kWarpMax; ++i) {
    const int c = lane + 32 * i;
    if (c >= C) break;
    const float n = __fmul_rn(v[i], inv);
    store_float(y, off[0] + c, w.present ? __fmul_rn(n, load_float(w.v, c)) : n);
  }
}

__global__ void rms_norm_rows(StridedNd rows, int64_t nrows, FloatOut y, FloatIn x, int64_t C,
                              float eps, OptVec w) {
  for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x) {
    int64_t off[2];
    nd_offsets<2>(rows, r, off);
    double q = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const double v = load_float(x, off[1] + c);
      q += v * v;
    }
    const float inv = static_cast<float>(1.0 / sqrt(block_sum(q) / static_cast<double>(C) + eps));
    // (x·r)·w, normalise first and scale after, as the reference RMSNorm.
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float v = __fmul_rn(load_float(x, off[1] + c), inv);
      store_float(y, off[0] + c, w.present ? __fmul_rn(v, load_float(w.v, c)) : v);
    }
  }
}

// Row of C <= kCachePer·blockDim elements held in registers: x is read from memory once
// instead of three times (mean, variance, output), the statistics stay the two-pass doubles.
constexpr int kCachePer = 8;

__device__ Moments cached_moments(const float (&v)[kCachePer], int64_t C, float eps) {
  double s = 0;
#pragma unroll
  for (int i = 0; i < kCachePer; ++i)
    if (threadIdx.x + int64_t(i) * blockDim.x < C) s += v[i];
  const double mean = block_sum(s) / static_cast<double>(C);
  double q = 0;
#pragma unroll
  for (int i = 0; i < kCachePer; ++i)
    if (threadIdx.x + int64_t(i) * blockDim.x < C) {
      const double d = v[i] - mean;
      q += d * d;
    }
  const double var = block_sum(q) / static_cast<double>(C);
  return {static_cast<float>(mean), static_cast<float>(1.0 / sqrt(var + eps))};
}

__global__ void layer_norm_modulate_cached(StridedNd rows, int64_t nrows, FloatOut y, FloatIn x,
                                           FloatIn shift, FloatIn scale, int64_t C, float eps) {
  for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x) {
    int64_t off[4];
    nd_offsets<4>(rows, r, off);
    float v[kCachePer];
#pragma unroll
    for (int i = 0; i < kCachePer; ++i) {
      const int64_t c = threadIdx.x + int64_t(i) * blockDim.x;
      v[i] = c < C ? load_float(x, off[1] + c) : 0.0f;
    }
    const Moments m = cached_moments(v, C, eps);
#pragma unroll
    for (int i = 0; i < kCachePer; ++i) {
      const int64_t c = threadIdx.x + int64_t(i) * blockDim.x;
      if (c >= C) break;
      const float n = __fmul_rn(__fsub_rn(v[i], m.mean), m.rstd);
      const float sc = load_float(scale, off[3] + c), sh = load_float(shift, off[2] + c);
      store_float(y, off[0] + c, __fadd_rn(__fmul_rn(n, __fadd_rn(1.0f, sc)), sh));
    }
  }
}

// y = LN(x)·(1 + scale) + shift; shift and scale rows may broadcast (stride-0 row dims).
__global__ void layer_norm_modulate_rows(StridedNd rows, int64_t nrows, FloatOut y, FloatIn x,
                                         FloatIn shift, FloatIn scale, int64_t C, float eps) {
  for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x) {
    int64_t off[4];
    nd_offsets<4>(rows, r, off);
    const Moments m = row_moments(x, off[1], C, eps);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float n = __fmul_rn(__fsub_rn(load_float(x, off[1] + c), m.mean), m.rstd);
      const float sc = load_float(scale, off[3] + c), sh = load_float(shift, off[2] + c);
      store_float(y, off[0] + c, __fadd_rn(__fmul_rn(n, __fadd_rn(1.0f, sc)), sh));
    }
  }
}

__global__ void softmax_rows(StridedNd rows, int64_t nrows, float* y, const float* x, int64_t C) {
  for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x) {
    int64_t off[2];
    nd_offsets<2>(rows, r, off);
    float* yr = y + off[0];
    const float* xr = x + off[1];
    float mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) mx = fmaxf(mx, xr[c]);
    mx = block_max(mx);
    double s = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += expf(xr[c] - mx);
    const float inv = static_cast<float>(1.0 / block_sum(s));
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) yr[c] = __fmul_rn(expf(xr[c] - mx), inv);
  }
}

// One thread per (b, l, h, pair); x and y are [B, L, H, D] views with a unit last stride.
struct RopeArgs {
  int64_t L, H, half;
  int64_t xs[3], ys[3];  // element strides of b, l, h
  FloatIn x;
  FloatOut y;
  const float* cos;
  const float* sin;
  int64_t cos_stride, sin_stride;
};

__global__ void rope_pairs(RopeArgs a, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    int64_t q = i;
    const int64_t p = q % a.half;
    q /= a.half;
    const int64_t h = q % a.H;
    q /= a.H;
    const int64_t l = q % a.L;
    const int64_t b = q / a.L;
    const int64_t xo = b * a.xs[0] + l * a.xs[1] + h * a.xs[2] + 2 * p;
    const int64_t yo = b * a.ys[0] + l * a.ys[1] + h * a.ys[2] + 2 * p;
    const float c = a.cos[l * a.cos_stride + p], s = a.sin[l * a.sin_stride + p];
    const float x0 = load_float(a.x, xo), x1 = load_float(a.x, xo + 1);
    store_float(a.y, yo, __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)));
    store_float(a.y, yo + 1, __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s)));
  }
}

// Threads per row block: enough to cover a row in a few iterations, at least one warp.
int row_threads(int64_t C) {
  if (C <= 64) return 32;
  if (C <= 256) return 64;
  if (C <= 1024) return 128;
  return 256;
}

unsigned row_grid(int64_t nrows) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(nrows, 1), 1 << 20));
}

// `any_float`: x and y may be F32, BF16 or F16 (else F32 only).
void check_row_op(const Tensor& x, const Tensor& y, const char* op, bool any_float = true) {
  if (any_float) {
    check_device_float(x, op, "x");
    check_device_float(y, op, "y");
  } else {
    check_device_f32(x, op, "x");
    check_device_f32(y, op, "y");
  }
  FOLEY_CHECK(x.rank() >= 1, "%s: x must have rank >= 1", op);
  check_shape(y, x.shape(), op, "y");
  check_last_contiguous(x, op, "x");
  check_last_contiguous(y, op, "y");
  check_writable(y, op, "y");
}

OptVec opt_vec(const Tensor* t, int64_t C, const char* op, const char* what) {
  if (!t) return {{nullptr, 0}, false};
  check_vector(*t, C, op, what);
  return {float_in(*t), true};
}

template <RowKind K>
void launch_warp_rows(const WarpRowArgs& a, cudaStream_t stream) {
  const unsigned blocks =
      static_cast<unsigned>((a.nrows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock);
  const int quads = (a.C / 4 + 31) / 32;  // runs of four per lane
  const auto go = [&](auto v) {
    warp_rows<K, decltype(v)::value><<<blocks, 32 * kWarpRowsPerBlock, 0, stream>>>(a);
  };
  if (quads <= 1)
    go(std::integral_constant<int, 1>{});
  else if (quads <= 2)
    go(std::integral_constant<int, 2>{});
  else if (quads <= 4)
    go(std::integral_constant<int, 4>{});
  else if (quads <= 8)
    go(std::integral_constant<int, 8>{});
  else
    go(std::integral_constant<int, kMaxQuadsPerLane>{});
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

// warp_rows applies: rows of a multiple of 4 up to 128·kMaxQuadsPerLane, quad-aligned rows and
// parameter vectors, and a grid that fits.
bool warp_rows_fit(int64_t C, const StridedNd& rows, std::initializer_list<const Tensor*> ops,
                   std::initializer_list<const Tensor*> vectors) {
  if (!vector_rows_enabled() || C % 4 != 0 || C > 128 * kMaxQuadsPerLane) return false;
  if (rows.numel() / kWarpRowsPerBlock >= (int64_t{1} << 31)) return false;
  for (const Tensor* v : vectors)
    if (v && reinterpret_cast<uintptr_t>(v->raw()) % (4 * dtype_size(v->dtype())) != 0)
      return false;
  return quad_aligned(rows, ops, rows.rank);
}

WarpRowArgs warp_row_args(const StridedNd& rows, const Tensor& y, const Tensor& x, int64_t C,
                          float eps) {
  WarpRowArgs a;
  a.rows = rows;
  a.nrows = rows.numel();
  a.y = float_out(y);
  a.x = float_in(x);
  a.p0 = a.p1 = {nullptr, 0};
  a.has0 = a.has1 = false;
  a.C = static_cast<int>(C);
  a.eps = eps;
  return a;
}

}  // namespace

void CudaBackend::layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                             const Tensor& y) {
  const char* op = "layer_norm";
  check_row_op(x, y, op);
  const int64_t C = x.dim(-1);
  const OptVec w = opt_vec(weight, C, op, "weight"), b = opt_vec(bias, C, op, "bias");
  if (x.numel() == 0) return;
  const StridedNd rows = make_nd({&y, &x}, true);
  const int64_t n = rows.numel();
  if (warp_rows_fit(C, rows, {&y, &x}, {weight, bias})) {
    WarpRowArgs a = warp_row_args(rows, y, x, C, eps);
    a.p0 = w.v, a.has0 = w.present;
    a.p1 = b.v, a.has1 = b.present;
    return launch_warp_rows<RowKind::kLayerNorm>(a, stream_);
  }
  layer_norm_rows<<<row_grid(n), row_threads(C), 0, stream_>>>(rows, n, float_out(y), float_in(x),
                                                               C, eps, w, b);
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor* weight, float eps, const Tensor& y) {
  const char* op = "rms_norm";
  check_row_op(x, y, op);
  const int64_t C = x.dim(-1);
  const OptVec w = opt_vec(weight, C, op, "weight");
  if (x.numel() == 0) return;
  const StridedNd rows = make_nd({&y, &x}, true);
  const int64_t n = rows.numel();
  if (warp_rows_fit(C, rows, {&y, &x}, {weight})) {
    WarpRowArgs a = warp_row_args(rows, y, x, C, eps);
    a.p0 = w.v, a.has0 = w.present;
    return launch_warp_rows<RowKind::kRmsNorm>(a, stream_);
  }
  if (C <= 32 * kWarpMax) {
    const unsigned blocks = static_cast<unsigned>((n + kRowsPerWarpBlock - 1) / kRowsPerWarpBlock);
    rms_norm_warp_rows<<<blocks, 32 * kRowsPerWarpBlock, 0, stream_>>>(
        rows, n, float_out(y), float_in(x), static_cast<int>(C), eps, w);
  } else {
    rms_norm_rows<<<row_grid(n), row_threads(C), 0, stream_>>>(rows, n, float_out(y), float_in(x),
                                                               C, eps, w);
  }
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::layer_norm_modulate(const Tensor& x, float eps, const Tensor& shift,
                                      const Tensor& scale, const Tensor& y) {
  const char* op = "layer_norm_modulate";
  check_row_op(x, y, op);
  check_device_float(shift, op, "shift");
  check_device_float(scale, op, "scale");
  check_shape(shift, x.shape(), op, "shift");
  check_shape(scale, x.shape(), op, "scale");
  check_last_contiguous(shift, op, "shift");
  check_last_contiguous(scale, op, "scale");
  const int64_t C = x.dim(-1);
  if (x.numel() == 0) return;
  const StridedNd rows = make_nd({&y, &x, &shift, &scale}, true);
  const int64_t n = rows.numel();
  if (warp_rows_fit(C, rows, {&y, &x, &shift, &scale}, {})) {
    WarpRowArgs a = warp_row_args(rows, y, x, C, eps);
    a.p0 = float_in(shift), a.p1 = float_in(scale);
    a.has0 = a.has1 = true;
    return launch_warp_rows<RowKind::kModulate>(a, stream_);
  }
  const int threads = row_threads(C);
  if (C <= int64_t(kCachePer) * threads)
    layer_norm_modulate_cached<<<row_grid(n), threads, 0, stream_>>>(
        rows, n, float_out(y), float_in(x), float_in(shift), float_in(scale), C, eps);
  else
    layer_norm_modulate_rows<<<row_grid(n), threads, 0, stream_>>>(
        rows, n, float_out(y), float_in(x), float_in(shift), float_in(scale), C, eps);
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::softmax(const Tensor& x, const Tensor& y) {
  const char* op = "softmax";
  check_row_op(x, y, op, false);
  const int64_t C = x.dim(-1);
  if (x.numel() == 0) return;
  const StridedNd rows = make_nd({&y, &x}, true);
  const int64_t n = rows.numel();
  softmax_rows<<<row_grid(n), row_threads(C), 0, stream_>>>(rows, n, y.data<float>(),
                                                            x.data<float>(), C);
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::rope(const Tensor& x, const RopeTable& table, const Tensor& y) {
  const char* op = "rope";
  check_device_float(x, op, "x");
  check_device_float(y, op, "y");
  FOLEY_CHECK(x.rank() == 4, "rope: x must be [B, L, H, D], got %s", x.describe().c_str());
  check_shape(y, x.shape(), op, "y");
  check_last_contiguous(x, op, "x");
  check_last_contiguous(y, op, "y");
  check_writable(y, op, "y");
  const int64_t B = x.dim(0), L = x.dim(1), H = x.dim(2), D = x.dim(3);
  FOLEY_CHECK(D % 2 == 0, "rope: RoPE needs an even head dim, got %lld", static_cast<long long>(D));
  for (const Tensor* t : {&table.cos, &table.sin}) {
    check_device_f32(*t, op, "table");
    FOLEY_CHECK(t->rank() == 2 && t->dim(0) >= L && t->dim(1) == D / 2,
                "rope: table must be F32 [>=%lld, %lld], got %s", static_cast<long long>(L),
                static_cast<long long>(D / 2), t->describe().c_str());
    check_last_contiguous(*t, op, "table");
  }
  const int64_t n = B * L * H * (D / 2);
  if (n == 0) return;
  RopeArgs a;
  a.L = L;
  a.H = H;
  a.half = D / 2;
  for (int d = 0; d < 3; ++d) {
    a.xs[d] = x.stride(d);
    a.ys[d] = y.stride(d);
  }
  a.x = float_in(x);
  a.y = float_out(y);
  a.cos = table.cos.data<float>();
  a.sin = table.sin.data<float>();
  a.cos_stride = table.cos.stride(0);
  a.sin_stride = table.sin.stride(0);
  rope_pairs<<<grid_for(n), kThreads, 0, stream_>>>(a, n);
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda
}  // namespace foley
