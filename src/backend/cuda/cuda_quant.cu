// linear_quantized on CUDA: 8-bit weights (one scale per output channel) times activations
// quantised per row on the fly, through cuBLASLt. Both formats take the same three steps:
// 1. one kernel quantises x's rows (E4M3 or int8 codes + one F32 scale per row);
// 2. one cuBLASLt GEMM multiplies the codes with unit scales into a 32-bit accumulator in
//    scratch: FP8 (sm_89+) into F32, INT8 (sm_80+, IMMA) into exact int32;
// 3. one kernel applies both scales and the bias and writes y in its dtype.
// cuBLASLt 13.0 finds no FP8 kernel on sm_90 with per-row/per-column ("outer vector") scales,
// which would fold step 3 into the GEMM (measured: bench/results/2026-12-07-h100-quant-1.txt).
// Layouts as in cuda_dense.cu: yᵀ[N,M] = W·xᵀ, A = W (op T, "TN", which FP8 and IMMA require).
// The quantisation matches core/quant.h's quantize_row bit for bit (same F32 operations, RNE
// conversions with saturation), so the CPU backend is the oracle.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <array>
#include <map>
#include <mutex>
#include <string>

#include "backend/cuda/cuda_dense.h"

namespace foley {
namespace cuda {

namespace {

using QuantKey = std::array<int64_t, 4>;  // format, M, N, K

struct QuantPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

template <typename T>
__device__ float to_f32(T v);
template <>
__device__ float to_f32<float>(float v) {
  return v;
}
template <>
__device__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <>
__device__ float to_f32<__half>(__half v) {
  return __half2float(v);
}

constexpr int kQuantThreads = 256;

// Where row m of a [..., K] tensor starts: rows come in groups of `inner` rows `st` apart, the
// groups `sb` apart (a row range of each batch member of a joint [B, L, C] buffer is one such
// map; a plain [M, K] has inner = M).
struct RowMap {
  int64_t inner = 1, st = 0, sb = 0;
  __device__ int64_t offset(int64_t m) const { return (m / inner) * sb + (m % inner) * st; }
};

// One block per row: amax, then codes = RNE(x · (qmax / amax)) saturated; scale = amax / qmax.
// With taps = 3 the row is [x[t−1] | x[t] | x[t+1]] of time steps of x (`inner` = T), zeros
// outside the sequence: the k=3 convolution's input, never written out.
template <typename T>
__global__ void quantize_rows_kernel(const T* x, RowMap map, int64_t Kx, int taps, bool fp8,
                                     uint8_t* codes, float* scales) {
  const int64_t row = blockIdx.x, K = Kx * taps;
  const int64_t t = row % map.inner;
  const T* xr = x + map.offset(row);
  auto load = [&](int64_t k) -> float {
    if (taps == 1) return to_f32(xr[k]);
    const int64_t j = k / Kx - taps / 2, src = t + j;
    return src < 0 || src >= map.inner ? 0.0f : to_f32(xr[j * map.st + k % Kx]);
  };
  float amax = 0.0f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) amax = fmaxf(amax, fabsf(load(k)));
  __shared__ float warp_max[kQuantThreads / 32];
  for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = amax;
  __syncthreads();
  amax = warp_max[0];
  for (int w = 1; w < kQuantThreads / 32; ++w) amax = fmaxf(amax, warp_max[w]);
  const float qmax = fp8 ? 448.0f : 127.0f;
  const float inv = amax > 0.0f ? __fdiv_rn(qmax, amax) : 1.0f;
  uint8_t* cr = codes + row * K;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const float v = __fmul_rn(load(k), inv);
    if (fp8) {
      cr[k] = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
    } else {
      const int q = __float2int_rn(v);
      cr[k] = static_cast<uint8_t>(static_cast<int8_t>(max(-127, min(127, q))));
    }
  }
  if (threadIdx.x == 0) scales[row] = amax > 0.0f ? __fdiv_rn(amax, qmax) : 1.0f;
}

// y[m, n] = acc[m, n]·x_scale[m]·w_scale[n] + bias[n], in y's dtype.
template <typename Acc, typename T>
__global__ void scale_epilogue_kernel(const Acc* acc, int64_t M, int64_t N, const float* x_scale,
                                      const float* w_scale, const float* bias, T* y, RowMap ymap) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= M * N) return;
  const int64_t m = i / N, n = i % N;
  float v = __fmul_rn(__fmul_rn(static_cast<float>(acc[i]), x_scale[m]), w_scale[n]);
  if (bias) v += bias[n];
  T* out = y + ymap.offset(m) + n;
  if constexpr (std::is_same<T, float>::value) {
    *out = v;
  } else if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    *out = __float2bfloat16_rn(v);
  } else {
    *out = __float2half_rn(v);
  }
}

// The RowMap of a [..., K] tensor's rows, if its leading dims fold into two levels.
bool row_map(const Tensor& t, RowMap& map) {
  int d = t.rank() - 2;
  int64_t n = 1, st = t.dim(-1), m = 1, sb = 0;
  for (; d >= 0; --d) {
    if (t.dim(d) == 1) continue;
    if (n == 1) {
      st = t.stride(d), n = t.dim(d);
    } else if (t.stride(d) == st * n) {
      n *= t.dim(d);
    } else {
      break;
    }
  }
  for (; d >= 0; --d) {
    if (t.dim(d) == 1) continue;
    if (m == 1) {
      sb = t.stride(d), m = t.dim(d);
    } else if (t.stride(d) == sb * m) {
      m *= t.dim(d);
    } else {
      return false;
    }
  }
  map = RowMap{n, st, sb};
  return true;
}

}  // namespace

struct QuantState {
  std::map<QuantKey, QuantPlan> plans;
  ~QuantState() {
    for (auto& [key, p] : plans) {
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.d);
      cublasLtMatmulDescDestroy(p.desc);
    }
  }
};

QuantState& CudaBackend::quant() {
  if (!quant_) quant_ = std::make_shared<QuantState>();
  return *quant_;
}

bool CudaBackend::supports_quantized(QuantFormat format) const {
  return format == QuantFormat::kI8 ? cc_ >= 80 : cc_ >= 89;
}

namespace {

// Creates the plan; false when cuBLASLt has no algorithm for it.
bool create_quant_plan(const LtContext& lt, QuantFormat f, int64_t M, int64_t N, int64_t K,
                       QuantPlan& p) {
  const bool fp8 = f == QuantFormat::kE4M3;
  const cublasComputeType_t compute = fp8 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32I;
  const cudaDataType_t scale_type = fp8 ? CUDA_R_32F : CUDA_R_32I;
  FOLEY_LT_CHECK(cublasLtMatmulDescCreate(&p.desc, compute, scale_type));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  FOLEY_LT_CHECK(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  FOLEY_LT_CHECK(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  const cudaDataType_t in = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_8I;
  const cudaDataType_t out = fp8 ? CUDA_R_32F : CUDA_R_32I;
  FOLEY_LT_CHECK(cublasLtMatrixLayoutCreate(&p.a, in, uint64_t(K), uint64_t(N), K));
  FOLEY_LT_CHECK(cublasLtMatrixLayoutCreate(&p.b, in, uint64_t(K), uint64_t(M), K));
  FOLEY_LT_CHECK(cublasLtMatrixLayoutCreate(&p.d, out, uint64_t(N), uint64_t(M), N));

  cublasLtMatmulPreference_t pref = nullptr;
  FOLEY_LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = lt.workspace_bytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof ws);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t s =
      cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(lt.handle), p.desc, p.a, p.b,
                                     p.d, p.d, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (s != CUBLAS_STATUS_SUCCESS || found == 0) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.d);
    cublasLtMatmulDescDestroy(p.desc);
    p = QuantPlan{};
    return false;
  }
  p.algo = result.algo;
  return true;
}

template <typename T>
void launch_quantize_as(CudaBackend& be, const void* x, RowMap map, int64_t M, int64_t Kx, int taps,
                        bool fp8, uint8_t* codes, float* scales) {
  quantize_rows_kernel<T><<<unsigned(M), kQuantThreads, 0, be.stream()>>>(
      static_cast<const T*>(x), map, Kx, taps, fp8, codes, scales);
}

void launch_quantize(CudaBackend& be, const Tensor& x, RowMap map, int64_t M, int64_t Kx, int taps,
                     bool fp8, uint8_t* codes, float* scales) {
  switch (x.dtype()) {
    case DType::kF32:
      return launch_quantize_as<float>(be, x.raw(), map, M, Kx, taps, fp8, codes, scales);
    case DType::kBF16:
      return launch_quantize_as<__nv_bfloat16>(be, x.raw(), map, M, Kx, taps, fp8, codes, scales);
    default:
      return launch_quantize_as<__half>(be, x.raw(), map, M, Kx, taps, fp8, codes, scales);
  }
}

template <typename Acc, typename T>
void launch_epilogue(CudaBackend& be, const void* acc, int64_t M, int64_t N, const float* x_scale,
                     const float* w_scale, const float* bias, void* y, RowMap ymap) {
  scale_epilogue_kernel<Acc, T><<<blocks_for(M * N, 256), 256, 0, be.stream()>>>(
      static_cast<const Acc*>(acc), M, N, x_scale, w_scale, bias, static_cast<T*>(y), ymap);
}

template <typename Acc>
void launch_epilogue_for(CudaBackend& be, DType ydt, const void* acc, int64_t M, int64_t N,
                         const float* x_scale, const float* w_scale, const float* bias, void* y,
                         RowMap ymap) {
  switch (ydt) {
    case DType::kF32:
      return launch_epilogue<Acc, float>(be, acc, M, N, x_scale, w_scale, bias, y, ymap);
    case DType::kBF16:
      return launch_epilogue<Acc, __nv_bfloat16>(be, acc, M, N, x_scale, w_scale, bias, y, ymap);
    default:
      return launch_epilogue<Acc, __half>(be, acc, M, N, x_scale, w_scale, bias, y, ymap);
  }
}

}  // namespace

namespace {

// Steps 1-3 of the header for M rows of x (as `xmap`, `taps` of Kx values each) into y.
void run_quantized(CudaBackend& be, QuantFormat format, const Tensor& x, RowMap xmap, int64_t M,
                   int64_t Kx, int taps, const Tensor& w, const Tensor& w_scale, const Tensor* bias,
                   const Tensor& y) {
  const bool fp8 = format == QuantFormat::kE4M3;
  const int64_t N = w.dim(0), K = w.dim(1);
  FOLEY_CHECK(K % 16 == 0 && N % 16 == 0,
              "quantised GEMM: K (%lld) and N (%lld) must be multiples of 16 for the 8-bit tensor "
              "cores",
              static_cast<long long>(K), static_cast<long long>(N));
  Arena& scratch = be.scratch();
  Arena::Scope scope(scratch);
  Tensor xr = x;
  if (taps == 1 && !row_map(x, xmap)) {  // leading dims that fold into no two levels: a copy
    xr = scratch.alloc(x.shape(), x.dtype());
    be.copy(xr, x);
    row_map(xr, xmap);
  }
  uint8_t* codes = static_cast<uint8_t*>(scratch.alloc_bytes(size_t(M * K)));
  float* x_scale = static_cast<float*>(scratch.alloc_bytes(size_t(M) * 4));
  launch_quantize(be, xr, xmap, M, Kx, taps, fp8, codes, x_scale);
  FOLEY_CUDA_CHECK(cudaGetLastError());

  Tensor yr = y;
  RowMap ymap;
  if (!row_map(y, ymap)) {
    yr = scratch.alloc(y.shape(), y.dtype());
    row_map(yr, ymap);
  }
  const float* bias32 = bias ? vector_f32(be, *bias) : nullptr;
  const float* ws = w_scale.data<float>();

  const LtContext lt = lt_context(be);
  std::lock_guard<std::mutex> lock(*lt.mutex);
  const QuantKey key{int64_t(format), M, N, K};
  QuantState& st = be.quant();
  auto it = st.plans.find(key);
  if (it == st.plans.end()) {
    QuantPlan p;
    if (!create_quant_plan(lt, format, M, N, K, p))
      throw make_error(ErrorKind::kUnsupported,
                       "cuBLASLt has no %s algorithm for M=%lld N=%lld K=%lld",
                       quant_format_name(format), (long long)M, (long long)N, (long long)K);
    it = st.plans.emplace(key, p).first;
  }
  QuantPlan& p = it->second;
  void* acc = scratch.alloc_bytes(size_t(M * N) * 4);
  const auto handle = static_cast<cublasLtHandle_t>(lt.handle);
  if (fp8) {
    const float alpha = 1.0f, beta = 0.0f;
    FOLEY_LT_CHECK(cublasLtMatmul(handle, p.desc, &alpha, w.raw(), p.a, codes, p.b, &beta, acc, p.d,
                                  acc, p.d, &p.algo, lt.workspace, lt.workspace_bytes,
                                  be.stream()));
    launch_epilogue_for<float>(be, y.dtype(), acc, M, N, x_scale, ws, bias32, yr.raw(), ymap);
  } else {
    const int32_t alpha = 1, beta = 0;
    FOLEY_LT_CHECK(cublasLtMatmul(handle, p.desc, &alpha, w.raw(), p.a, codes, p.b, &beta, acc, p.d,
                                  acc, p.d, &p.algo, lt.workspace, lt.workspace_bytes,
                                  be.stream()));
    launch_epilogue_for<int32_t>(be, y.dtype(), acc, M, N, x_scale, ws, bias32, yr.raw(), ymap);
  }
  FOLEY_CUDA_CHECK(cudaGetLastError());
  if (yr.raw() != y.raw()) be.copy(y, yr);
}

// What both quantised ops ask of their arguments on this backend beyond the shared shape checks:
// device tensors, 16/32-bit activations, and a GPU with the format's instructions.
void check_quantized_args(const CudaBackend& be, QuantFormat format, const Tensor& x,
                          const Tensor& w, const Tensor& w_scale, const Tensor* bias,
                          const Tensor& y, const char* op) {
  check_activation16(x, op, "x");
  check_activation16(y, op, "y");
  FOLEY_CHECK(w.device() == DeviceKind::kCUDA && w_scale.device() == DeviceKind::kCUDA,
              "%s: weights must be on the GPU", op);
  if (bias) check_param(*bias, op, "bias");
  if (!be.supports_quantized(format))
    throw make_error(ErrorKind::kUnsupported,
                     "%s: %s needs compute capability %s (this GPU: %d.%d)", op,
                     quant_format_name(format), format == QuantFormat::kI8 ? "8.0" : "8.9",
                     be.compute_capability() / 10, be.compute_capability() % 10);
}

}  // namespace

void CudaBackend::linear_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                   const Tensor* bias, const Tensor& y) {
  const QuantFormat format = check_quantized_linear(x, w, w_scale, bias, y);
  check_quantized_args(*this, format, x, w, w_scale, bias, y, "linear_quantized");
  if (y.numel() == 0) return;
  run_quantized(*this, format, x, RowMap{}, y.numel() / w.dim(0), w.dim(1), 1, w, w_scale, bias, y);
}

void CudaBackend::conv3_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                  const Tensor* bias, const Tensor& y) {
  const QuantFormat format = check_quantized_conv3(x, w, w_scale, bias, y);
  check_quantized_args(*this, format, x, w, w_scale, bias, y, "conv3_quantized");
  if (y.numel() == 0) return;
  // Time steps are x's dim 1, whatever its strides; batch members dim 0.
  const RowMap xmap{x.dim(1), x.stride(1), x.stride(0)};
  run_quantized(*this, format, x, xmap, x.dim(0) * x.dim(1), x.dim(2), 3, w, w_scale, bias, y);
}

}  // namespace cuda
}  // namespace foley
