// linear_quantized on CUDA: 8-bit weights (one scale per output channel) times activations
// quantised per row on the fly, through cuBLASLt.
//
// - FP8 (sm_89+): one kernel quantises x's rows to E4M3 with their scales, then one cuBLASLt FP8
//   GEMM applies both scale vectors itself (outer-vector scaling: A's per row of Wᵀ = per output
//   channel, B's per token) and the bias, writing y in its dtype. Nothing else touches y.
// - INT8 (sm_80+): the same quantisation to int8, an IMMA GEMM into int32 (exact sums) in
//   scratch, then one kernel applies both scales and the bias and writes y.
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

void lt_check(cublasStatus_t s, const char* what, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw_check_failure(file, line, std::string(what) + ": cuBLAS status " + std::to_string(s));
}
#define FOLEY_LT_CHECK(expr) lt_check((expr), #expr, __FILE__, __LINE__)

using QuantKey = std::array<int64_t, 8>;

struct QuantPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool fused_bias = false;  // FP8: bias in cuBLASLt's epilogue
};

cudaDataType_t y_type(DType dt) {
  switch (dt) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      throw Error(ErrorKind::kUnsupported,
                  std::string("quantised GEMM: unsupported output dtype ") + dtype_name(dt));
  }
}

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

// One block per row: amax, then codes = RNE(x · (qmax / amax)) saturated; scale = amax / qmax.
template <typename T>
__global__ void quantize_rows_kernel(const T* x, int64_t K, int64_t ldx, bool fp8, uint8_t* codes,
                                     float* scales) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * ldx;
  float amax = 0.0f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) amax = fmaxf(amax, fabsf(to_f32(xr[k])));
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
    const float v = __fmul_rn(to_f32(xr[k]), inv);
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
template <typename T>
__global__ void int8_epilogue_kernel(const int32_t* acc, int64_t M, int64_t N, const float* x_scale,
                                     const float* w_scale, const float* bias, T* y, int64_t ldy) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= M * N) return;
  const int64_t m = i / N, n = i % N;
  float v = __fmul_rn(__fmul_rn(static_cast<float>(acc[i]), x_scale[m]), w_scale[n]);
  if (bias) v += bias[n];
  if constexpr (std::is_same<T, float>::value) {
    y[m * ldy + n] = v;
  } else if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    y[m * ldy + n] = __float2bfloat16_rn(v);
  } else {
    y[m * ldy + n] = __float2half_rn(v);
  }
}

// [..., K] with all leading dims collapsing into rows of one stride: that stride, else -1.
int64_t uniform_row_stride(const Tensor& t) {
  const int r = t.rank();
  if (r < 2) return t.dim(-1);
  int64_t ld = -1, rows_below = 1;
  for (int d = r - 2; d >= 0; --d) {
    if (t.dim(d) == 1) continue;
    if (ld < 0) {
      ld = t.stride(d);
    } else if (t.stride(d) != ld * rows_below) {
      return -1;
    }
    rows_below *= t.dim(d);
  }
  return ld < 0 ? t.dim(-1) : ld;
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

// Creates the plan; false when cuBLASLt has no algorithm for it (FP8: then retried without the
// fused bias).
bool create_quant_plan(const LtContext& lt, QuantFormat f, int64_t M, int64_t N, int64_t K,
                       int64_t ldy, DType ydt, bool bias, QuantPlan& p) {
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
  const cudaDataType_t out = fp8 ? y_type(ydt) : CUDA_R_32I;
  if (fp8) {
    const int32_t outer = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    FOLEY_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &outer,
                                                  sizeof outer));
    FOLEY_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &outer,
                                                  sizeof outer));
    if (bias) {
      const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      const cudaDataType_t bt = y_type(ydt);
      FOLEY_LT_CHECK(
          cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
      FOLEY_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                    &bt, sizeof bt));
      p.fused_bias = true;
    }
  }
  FOLEY_LT_CHECK(cublasLtMatrixLayoutCreate(&p.a, in, uint64_t(K), uint64_t(N), K));
  FOLEY_LT_CHECK(cublasLtMatrixLayoutCreate(&p.b, in, uint64_t(K), uint64_t(M), K));
  FOLEY_LT_CHECK(cublasLtMatrixLayoutCreate(&p.d, out, uint64_t(N), uint64_t(M), fp8 ? ldy : N));

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
void launch_quantize(CudaBackend& be, const void* x, int64_t M, int64_t K, int64_t ldx, bool fp8,
                     uint8_t* codes, float* scales) {
  quantize_rows_kernel<T><<<unsigned(M), kQuantThreads, 0, be.stream()>>>(
      static_cast<const T*>(x), K, ldx, fp8, codes, scales);
}

template <typename T>
void launch_epilogue(CudaBackend& be, const int32_t* acc, int64_t M, int64_t N,
                     const float* x_scale, const float* w_scale, const float* bias, void* y,
                     int64_t ldy) {
  int8_epilogue_kernel<T><<<blocks_for(M * N, 256), 256, 0, be.stream()>>>(
      acc, M, N, x_scale, w_scale, bias, static_cast<T*>(y), ldy);
}

// y rows (stride ldy) += bias, for an FP8 plan that could not fuse it.
__global__ void add_bias_kernel(float* y32, __nv_bfloat16* y16, __half* yh, int64_t M, int64_t N,
                                int64_t ldy, const float* bias) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= M * N) return;
  const int64_t m = i / N, n = i % N, at = m * ldy + n;
  if (y32) y32[at] += bias[n];
  if (y16) y16[at] = __float2bfloat16_rn(__bfloat162float(y16[at]) + bias[n]);
  if (yh) yh[at] = __float2half_rn(__half2float(yh[at]) + bias[n]);
}

}  // namespace

void CudaBackend::linear_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                   const Tensor* bias, const Tensor& y) {
  const char* op = "linear_quantized";
  check_activation16(x, op, "x");
  check_activation16(y, op, "y");
  FOLEY_CHECK(w.device() == DeviceKind::kCUDA && w_scale.device() == DeviceKind::kCUDA,
              "%s: weights must be on the GPU", op);
  if (bias) check_param(*bias, op, "bias");
  const QuantFormat format = check_quantized_linear(x, w, w_scale, bias, y);
  if (!supports_quantized(format))
    throw make_error(
        ErrorKind::kUnsupported, "%s: %s needs compute capability %s (this GPU: %d.%d)", op,
        quant_format_name(format), format == QuantFormat::kI8 ? "8.0" : "8.9", cc_ / 10, cc_ % 10);
  const bool fp8 = format == QuantFormat::kE4M3;
  const int64_t N = w.dim(0), K = w.dim(1);
  if (y.numel() == 0) return;
  const int64_t M = y.numel() / N;
  FOLEY_CHECK(K % 16 == 0 && N % 16 == 0,
              "%s: K (%lld) and N (%lld) must be multiples of 16 for the 8-bit tensor cores", op,
              static_cast<long long>(K), static_cast<long long>(N));

  Arena::Scope scope(scratch());
  // x as rows of one stride (a contiguous copy otherwise), quantised into scratch.
  Tensor xr = x;
  int64_t ldx = uniform_row_stride(x);
  if (ldx < 0) {
    xr = scratch().alloc(x.shape(), x.dtype());
    copy(xr, x);
    ldx = K;
  }
  uint8_t* codes = static_cast<uint8_t*>(scratch().alloc_bytes(size_t(M * K)));
  float* x_scale = static_cast<float*>(scratch().alloc_bytes(size_t(M) * 4));
  switch (xr.dtype()) {
    case DType::kF32:
      launch_quantize<float>(*this, xr.raw(), M, K, ldx, fp8, codes, x_scale);
      break;
    case DType::kBF16:
      launch_quantize<__nv_bfloat16>(*this, xr.raw(), M, K, ldx, fp8, codes, x_scale);
      break;
    default:
      launch_quantize<__half>(*this, xr.raw(), M, K, ldx, fp8, codes, x_scale);
      break;
  }
  FOLEY_CUDA_CHECK(cudaGetLastError());

  // y as rows of one stride too, else a contiguous buffer copied into y at the end.
  Tensor yr = y;
  int64_t ldy = uniform_row_stride(y);
  if (ldy < 0) {
    yr = scratch().alloc(y.shape(), y.dtype());
    ldy = N;
  }
  const float* bias32 = bias ? vector_f32(*this, *bias) : nullptr;
  const float* ws = w_scale.data<float>();

  const LtContext lt = lt_context(*this);
  std::lock_guard<std::mutex> lock(*lt.mutex);
  const QuantKey key{int64_t(format), M, N, K, ldy, int64_t(y.dtype()), bias != nullptr, 0};
  QuantState& st = quant();
  auto it = st.plans.find(key);
  if (it == st.plans.end()) {
    QuantPlan p;
    if (!create_quant_plan(lt, format, M, N, K, ldy, y.dtype(), bias != nullptr, p) &&
        !(fp8 && bias && create_quant_plan(lt, format, M, N, K, ldy, y.dtype(), false, p)))
      throw make_error(ErrorKind::kUnsupported,
                       "cuBLASLt has no %s algorithm for M=%lld N=%lld K=%lld (%s output)",
                       quant_format_name(format), (long long)M, (long long)N, (long long)K,
                       dtype_name(y.dtype()));
    it = st.plans.emplace(key, p).first;
  }
  QuantPlan& p = it->second;
  const auto handle = static_cast<cublasLtHandle_t>(lt.handle);
  if (fp8) {
    FOLEY_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ws,
                                                  sizeof ws));
    FOLEY_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                  &x_scale, sizeof x_scale));
    const void* bias_ptr = nullptr;
    if (p.fused_bias) {
      if (y.dtype() == DType::kF32) {
        bias_ptr = bias32;
      } else {
        void* b16 = scratch().alloc_bytes(size_t(N) * 2);
        convert_rows_to(*this, bias32, 1, N, N, y.dtype(), b16);
        bias_ptr = b16;
      }
      FOLEY_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &bias_ptr, sizeof bias_ptr));
    }
    const float alpha = 1.0f, beta = 0.0f;
    FOLEY_LT_CHECK(cublasLtMatmul(handle, p.desc, &alpha, w.raw(), p.a, codes, p.b, &beta, yr.raw(),
                                  p.d, yr.raw(), p.d, &p.algo, lt.workspace, lt.workspace_bytes,
                                  stream()));
    if (bias && !p.fused_bias) {
      const DType dt = y.dtype();
      add_bias_kernel<<<blocks_for(M * N, 256), 256, 0, stream()>>>(
          dt == DType::kF32 ? static_cast<float*>(yr.raw()) : nullptr,
          dt == DType::kBF16 ? static_cast<__nv_bfloat16*>(yr.raw()) : nullptr,
          dt == DType::kF16 ? static_cast<__half*>(yr.raw()) : nullptr, M, N, ldy, bias32);
      FOLEY_CUDA_CHECK(cudaGetLastError());
    }
  } else {
    int32_t* acc = static_cast<int32_t*>(scratch().alloc_bytes(size_t(M * N) * 4));
    const int32_t alpha = 1, beta = 0;
    FOLEY_LT_CHECK(cublasLtMatmul(handle, p.desc, &alpha, w.raw(), p.a, codes, p.b, &beta, acc, p.d,
                                  acc, p.d, &p.algo, lt.workspace, lt.workspace_bytes, stream()));
    switch (y.dtype()) {
      case DType::kF32:
        launch_epilogue<float>(*this, acc, M, N, x_scale, ws, bias32, yr.raw(), ldy);
        break;
      case DType::kBF16:
        launch_epilogue<__nv_bfloat16>(*this, acc, M, N, x_scale, ws, bias32, yr.raw(), ldy);
        break;
      default:
        launch_epilogue<__half>(*this, acc, M, N, x_scale, ws, bias32, yr.raw(), ldy);
        break;
    }
    FOLEY_CUDA_CHECK(cudaGetLastError());
  }
  if (yr.raw() != y.raw()) copy(y, yr);
}

}  // namespace cuda
}  // namespace foley
