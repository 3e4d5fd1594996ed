// The raw GEMM behind every weighted CUDA op (linear, the per-tap convolutions, patch embedding,
// the attention products), plus the small conversion helpers those ops share.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>

#include "backend/cuda/cuda_internal.h"
#include "core/check.h"
#include "core/dtype.h"

namespace foley {
namespace cuda {

// y[M,N] = x[M,K]·wᵀ (+ bias[N]) (+ beta·y), row-major with row strides, on the backend's stream.
// w is [N,K] (a Linear weight) or, with w_kn, [K,N] (e.g. V in P·V). A strided batch of such
// products runs as one call when batch > 1 (element strides sx, sw, sy between batch members).
// x may be F32, BF16 or F16; when its dtype differs from the weight's 16-bit dtype the rows are
// converted in scratch first (so a 16-bit weight always multiplies 16-bit activations, f32
// accumulation). y is F32, or the weight's 16-bit dtype (rounded once from the f32 result, which
// is what a bf16 Linear under autocast returns).
struct DeviceGemm {
  int64_t M = 0, N = 0, K = 0;
  const void* x = nullptr;
  DType xdt = DType::kF32;
  int64_t ldx = 0;
  const void* w = nullptr;
  DType wdt = DType::kF32;
  int64_t ldw = 0;
  bool w_kn = false;
  const float* bias = nullptr;  // device, contiguous F32 [N]
  void* y = nullptr;
  DType ydt = DType::kF32;
  int64_t ldy = 0;
  float beta = 0.0f;
  int64_t batch = 1, sx = 0, sw = 0, sy = 0;
};
void run_gemm(CudaBackend& be, const DeviceGemm& g);

// run_gemm's path for at most four rows with a 16-bit [N, K] weight (cuda_gemv.cu): whether a
// product qualifies (only with FOLEY_CUDA_GEMV=1: it measured no gain, cuda_gemv.cu), and the
// product.
bool gemv_fits(const DeviceGemm& g);
void run_gemv(CudaBackend& be, const DeviceGemm& g);

// A cuBLASLt status that is not success: a check failure naming the call.
inline void lt_check(int status, const char* what, const char* file, int line) {
  if (status != 0)  // CUBLAS_STATUS_SUCCESS
    throw_check_failure(file, line,
                        std::string(what) + ": cuBLAS status " + std::to_string(status));
}
#define FOLEY_LT_CHECK(expr) \
  ::foley::cuda::lt_check(static_cast<int>(expr), #expr, __FILE__, __LINE__)

// The cuBLASLt handle (a cublasLtHandle_t), its workspace and the lock that serialises plan
// creation and launches, for GEMMs planned elsewhere (cuda_quant.cu).
struct LtContext {
  void* handle;
  void* workspace;
  size_t workspace_bytes;
  std::mutex* mutex;
};
LtContext lt_context(CudaBackend& be);

// rows × K elements of x (row stride ldx) converted to `dt` (BF16 or F16, round to nearest even)
// into a contiguous scratch buffer; the caller holds an Arena::Scope on be.scratch().
void* convert_rows(CudaBackend& be, const float* x, int64_t rows, int64_t K, int64_t ldx, DType dt);
// The same into a caller-provided contiguous buffer.
void convert_rows_to(CudaBackend& be, const float* x, int64_t rows, int64_t K, int64_t ldx,
                     DType dt, void* out);

// A contiguous F32 device copy of a 1-D parameter vector of any float dtype (the vector itself
// when it already is one); scratch as above.
const float* vector_f32(CudaBackend& be, const Tensor& v);

// rows of y (row stride ldy, width N) = bias (or 0) + beta·y.
void init_rows(CudaBackend& be, float* y, int64_t rows, int64_t N, int64_t ldy, const float* bias,
               float beta);

inline unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// ---- argument checks of the dense, attention and convolution ops ----------------------------

// Activations: F32 in device memory.
inline void check_activation(const Tensor& t, const char* op, const char* what) {
  FOLEY_CHECK(t.defined() && t.device() == DeviceKind::kCUDA && t.dtype() == DType::kF32,
              "%s: %s must be an F32 CUDA tensor, got %s", op, what, t.describe().c_str());
}
// Activations that may also be 16-bit (BF16 or F16) in device memory.
inline void check_activation16(const Tensor& t, const char* op, const char* what) {
  FOLEY_CHECK(
      t.defined() && t.device() == DeviceKind::kCUDA &&
          (t.dtype() == DType::kF32 || t.dtype() == DType::kBF16 || t.dtype() == DType::kF16),
      "%s: %s must be an F32/BF16/F16 CUDA tensor, got %s", op, what, t.describe().c_str());
}
// A GEMM's x and y dtypes against its weight's: x is F32 or the weight's dtype, y F32 or (with
// a 16-bit weight) the weight's dtype.
inline void check_gemm_dtypes(DType x, DType w, DType y, const char* op) {
  FOLEY_CHECK((x == DType::kF32 || x == w) && (y == DType::kF32 || (y == w && w != DType::kF32)),
              "%s: %s activations / %s output with %s weights (16-bit activations must match "
              "16-bit weights)",
              op, dtype_name(x), dtype_name(y), dtype_name(w));
}
// Parameters: F32, BF16 or F16 in device memory.
inline void check_param(const Tensor& t, const char* op, const char* what) {
  FOLEY_CHECK(
      t.defined() && t.device() == DeviceKind::kCUDA &&
          (t.dtype() == DType::kF32 || t.dtype() == DType::kBF16 || t.dtype() == DType::kF16),
      "%s: %s must be an F32/BF16/F16 CUDA tensor, got %s", op, what, t.describe().c_str());
}
inline void check_param_vector(const Tensor& t, int64_t n, const char* op, const char* what) {
  check_param(t, op, what);
  check_vector_shape(t, n, op, what);
}

// The rows of two tensors with equal leading dims ([..., K] and [..., N]): leading dims merge
// into `rows` rows with one row stride each where both tensors' strides allow it; the remaining
// (outer) dims are enumerated by offsets().
struct RowNest {
  int64_t rows = 1;
  int64_t row_stride[2] = {0, 0};
  int64_t outer = 1;
  int nouter = 0;
  int64_t dims[kMaxRank] = {};
  int64_t strides[2][kMaxRank] = {};

  std::array<int64_t, 2> offsets(int64_t o) const {
    std::array<int64_t, 2> off{0, 0};
    for (int d = nouter - 1; d >= 0; --d) {
      const int64_t i = o % dims[d];
      o /= dims[d];
      off[0] += i * strides[0][d];
      off[1] += i * strides[1][d];
    }
    return off;
  }
};
inline RowNest row_nest(const Tensor& a, const Tensor& b) {
  RowNest n;
  n.row_stride[0] = a.dim(-1);
  n.row_stride[1] = b.dim(-1);
  int d = a.rank() - 2;
  for (; d >= 0 && a.dim(d) == 1; --d) {
  }
  if (d >= 0) {
    n.rows = a.dim(d);
    n.row_stride[0] = a.stride(d);
    n.row_stride[1] = b.stride(d);
    for (--d; d >= 0; --d) {
      if (a.dim(d) == 1) continue;
      if (a.stride(d) != n.row_stride[0] * n.rows || b.stride(d) != n.row_stride[1] * n.rows) break;
      n.rows *= a.dim(d);
    }
  }
  // Dims 0..d (those of size > 1) are the outer loop, outermost first.
  for (int e = 0; e <= d; ++e) {
    if (a.dim(e) == 1) continue;
    n.dims[n.nouter] = a.dim(e);
    n.strides[0][n.nouter] = a.stride(e);
    n.strides[1][n.nouter] = b.stride(e);
    n.outer *= a.dim(e);
    ++n.nouter;
  }
  return n;
}

}  // namespace cuda
}  // namespace foley
