// CUDA dense layers through cuBLASLt: the raw GEMM every weighted op uses, and `linear`.
//
// Numerics mirror the CPU backend: F32 weights run a plain FP32 GEMM (TF32 only while the
// backend's fast_f32_matmul() is on: --precision fast's encoders, or FOLEY_CUDA_TF32=1), BF16/F16 weights multiply activations converted to the weight's dtype with
// f32 accumulation (bf16 autocast). Row-major products are issued as their column-major
// transposes: yᵀ[N,M] = W·xᵀ, so bias is cuBLASLt's per-row (N) epilogue and beta·y is its C.
// Plans (descriptors, layouts and the heuristic's algorithm) are cached per shape, strides,
// dtypes and pointer alignment; the workspace is one allocation made at first use, so steady
// state never allocates and every call is graph-capturable.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <array>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "backend/cuda/cuda_dense.h"

namespace foley {
namespace cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

using PlanKey = std::array<int64_t, 20>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

cudaDataType_t cuda_type(DType dt) {
  switch (dt) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      throw Error(ErrorKind::kUnsupported,
                  std::string("CUDA GEMM: unsupported dtype ") + dtype_name(dt));
  }
}

// Largest power of two (<= 256) dividing every value: cuBLASLt picks kernels by alignment.
int64_t alignment(std::initializer_list<int64_t> values) {
  int64_t a = 256;
  for (int64_t v : values)
    while (a > 1 && v % a != 0) a /= 2;
  return a;
}

}  // namespace

struct DenseState {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::mutex mutex;
  std::map<PlanKey, Plan> plans;

  DenseState() {
    FOLEY_LT_CHECK(cublasLtCreate(&handle));
    FOLEY_CUDA_CHECK(cudaMalloc(&workspace, kWorkspaceBytes));
  }
  ~DenseState() {
    for (auto& [key, p] : plans) {
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
      cublasLtMatmulDescDestroy(p.desc);
    }
    cudaFree(workspace);
    cublasLtDestroy(handle);
  }
};

DenseState& CudaBackend::dense() {
  if (!dense_) dense_ = std::make_shared<DenseState>();
  return *dense_;
}

LtContext lt_context(CudaBackend& be) {
  DenseState& st = be.dense();
  return {st.handle, st.workspace, kWorkspaceBytes, &st.mutex};
}

namespace {

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld,
                                   int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  FOLEY_LT_CHECK(cublasLtMatrixLayoutCreate(&l, type, uint64_t(rows), uint64_t(cols), ld));
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    FOLEY_LT_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                    sizeof count));
    FOLEY_LT_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                    &stride, sizeof stride));
  }
  return l;
}

Plan create_plan(DenseState& st, const DeviceGemm& g, const PlanKey& key) {
  const int64_t align_a = key[16], align_b = key[17], align_c = key[18];
  const bool tf32 = key[14] != 0;
  Plan p;
  const cublasComputeType_t compute = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  FOLEY_LT_CHECK(cublasLtMatmulDescCreate(&p.desc, compute, CUDA_R_32F));
  const cublasOperation_t ta = g.w_kn ? CUBLAS_OP_N : CUBLAS_OP_T, tb = CUBLAS_OP_N;
  FOLEY_LT_CHECK(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  FOLEY_LT_CHECK(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  if (g.bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    // cuBLASLt finds no kernel for an F32 bias with a 16-bit D: run_gemm hands it a bias of
    // D's dtype then.
    const cudaDataType_t bt = cuda_type(g.ydt);
    FOLEY_LT_CHECK(
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    FOLEY_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt,
                                                  sizeof bt));
    if (g.batch > 1) {
      const int64_t zero = 0;  // one bias for every batch member
      FOLEY_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                                                    &zero, sizeof zero));
    }
  }
  const cudaDataType_t in = cuda_type(g.wdt);
  p.a = g.w_kn ? make_layout(in, g.N, g.K, g.ldw, g.batch, g.sw)
               : make_layout(in, g.K, g.N, g.ldw, g.batch, g.sw);
  p.b = make_layout(in, g.K, g.M, g.ldx, g.batch, g.sx);
  p.c = make_layout(cuda_type(g.ydt), g.N, g.M, g.ldy, g.batch, g.sy);

  cublasLtMatmulPreference_t pref = nullptr;
  FOLEY_LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  const uint32_t aa = uint32_t(align_a), ab = uint32_t(align_b), ac = uint32_t(align_c);
  auto set = [&](cublasLtMatmulPreferenceAttributes_t attr, const void* value, size_t size) {
    const cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, attr, value, size);
    if (st != CUBLAS_STATUS_SUCCESS) cublasLtMatmulPreferenceDestroy(pref);
    FOLEY_LT_CHECK(st);
  };
  set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
  set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
  set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac);
  set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(st.handle, p.desc, p.a, p.b, p.c, p.c,
                                                          pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (s != CUBLAS_STATUS_SUCCESS || found == 0) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.desc);
    throw Error(ErrorKind::kUnsupported,
                "cuBLASLt has no algorithm for M=" + std::to_string(g.M) +
                    " N=" + std::to_string(g.N) + " K=" + std::to_string(g.K) + " (" +
                    dtype_name(g.wdt) + ", status " + std::to_string(s) + ")");
  }
  p.algo = result.algo;
  return p;
}

__global__ void rows_to_16bit(const float* x, int64_t rows, int64_t K, int64_t ldx, void* out,
                              bool bf16) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= rows * K) return;
  const float v = x[(i / K) * ldx + i % K];
  if (bf16) {
    static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(v);
  } else {
    static_cast<__half*>(out)[i] = __float2half_rn(v);
  }
}

__global__ void vector_to_f32(const uint16_t* v, int64_t n, bool bf16, float* out) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const uint16_t h = v[i];
  out[i] = bf16 ? __bfloat162float(__ushort_as_bfloat16(h)) : __half2float(__ushort_as_half(h));
}

__global__ void init_rows_kernel(float* y, int64_t rows, int64_t N, int64_t ldy, const float* bias,
                                 float beta) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= rows * N) return;
  const int64_t n = i % N;
  float& out = y[(i / N) * ldy + n];
  out = (bias ? bias[n] : 0.0f) + (beta != 0.0f ? beta * out : 0.0f);
}

}  // namespace

void convert_rows_to(CudaBackend& be, const float* x, int64_t rows, int64_t K, int64_t ldx,
                     DType dt, void* out) {
  FOLEY_CHECK(dt == DType::kBF16 || dt == DType::kF16, "convert_rows: to %s", dtype_name(dt));
  if (rows * K == 0) return;
  rows_to_16bit<<<blocks_for(rows * K, 256), 256, 0, be.stream()>>>(x, rows, K, ldx, out,
                                                                    dt == DType::kBF16);
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

void* convert_rows(CudaBackend& be, const float* x, int64_t rows, int64_t K, int64_t ldx,
                   DType dt) {
  void* out = be.scratch().alloc_bytes(size_t(rows * K) * 2);
  convert_rows_to(be, x, rows, K, ldx, dt, out);
  return out;
}

const float* vector_f32(CudaBackend& be, const Tensor& v) {
  if (v.dtype() == DType::kF32) return v.data<float>();
  FOLEY_CHECK(v.dtype() == DType::kBF16 || v.dtype() == DType::kF16, "parameter vector of dtype %s",
              dtype_name(v.dtype()));
  const int64_t n = v.numel();
  float* out = static_cast<float*>(be.scratch().alloc_bytes(size_t(n) * 4));
  if (n == 0) return out;
  vector_to_f32<<<blocks_for(n, 256), 256, 0, be.stream()>>>(v.data<uint16_t>(), n,
                                                             v.dtype() == DType::kBF16, out);
  FOLEY_CUDA_CHECK(cudaGetLastError());
  return out;
}

void init_rows(CudaBackend& be, float* y, int64_t rows, int64_t N, int64_t ldy, const float* bias,
               float beta) {
  if (rows * N == 0) return;
  init_rows_kernel<<<blocks_for(rows * N, 256), 256, 0, be.stream()>>>(y, rows, N, ldy, bias, beta);
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

void run_gemm(CudaBackend& be, const DeviceGemm& g0) {
  FOLEY_CHECK(g0.M >= 0 && g0.N >= 0 && g0.K >= 0 && g0.batch >= 1, "gemm: bad sizes");
  if (g0.M == 0 || g0.N == 0) return;
  if (g0.K == 0) {
    FOLEY_CHECK(g0.ydt == DType::kF32, "gemm: K = 0 with a 16-bit y");
    for (int64_t b = 0; b < g0.batch; ++b)
      init_rows(be, static_cast<float*>(g0.y) + b * g0.sy, g0.M, g0.N, g0.ldy, g0.bias, g0.beta);
    return;
  }
  DeviceGemm g = g0;
  // A single row's (or column's) stride is irrelevant: normalise it so such calls share a plan
  // and cuBLASLt's ld >= rows rule holds.
  if (g.M == 1) g.ldx = g.K, g.ldy = g.N;
  if (g.w_kn ? g.K == 1 : g.N == 1) g.ldw = g.w_kn ? g.N : g.K;
  FOLEY_CHECK(g.ldx >= g.K && g.ldy >= g.N && g.ldw >= (g.w_kn ? g.N : g.K),
              "gemm: row strides (x %lld, w %lld, y %lld) below the row widths",
              static_cast<long long>(g.ldx), static_cast<long long>(g.ldw),
              static_cast<long long>(g.ldy));

  Arena::Scope scope(be.scratch());
  if (g.xdt != g.wdt) {
    FOLEY_CHECK(g.xdt == DType::kF32 && g.wdt != DType::kF32 && g.batch == 1,
                "gemm: %s activations with %s weights", dtype_name(g.xdt), dtype_name(g.wdt));
    g.x = convert_rows(be, static_cast<const float*>(g.x), g.M, g.K, g.ldx, g.wdt);
    g.xdt = g.wdt;
    g.ldx = g.K;
  }
  check_gemm_dtypes(g.xdt, g.wdt, g.ydt, "gemm");
  if (gemv_fits(g)) return run_gemv(be, g);
  const int64_t es = int64_t(dtype_size(g.wdt)), yes = int64_t(dtype_size(g.ydt));
  PlanKey key{g.M,
              g.N,
              g.K,
              g.ldx,
              g.ldw,
              g.ldy,
              int64_t(g.wdt),
              g.w_kn,
              g.bias != nullptr,
              g.batch,
              g.batch > 1 ? g.sx : 0,
              g.batch > 1 ? g.sw : 0,
              g.batch > 1 ? g.sy : 0,
              int64_t(g.ydt),
              g.wdt == DType::kF32 && be.fast_f32_matmul(),  // TF32
              0,
              alignment({int64_t(reinterpret_cast<uintptr_t>(g.w)), g.ldw * es, g.sw * es}),
              alignment({int64_t(reinterpret_cast<uintptr_t>(g.x)), g.ldx * es, g.sx * es}),
              alignment({int64_t(reinterpret_cast<uintptr_t>(g.y)), g.ldy * yes, g.sy * yes}),
              0};
  DenseState& st = be.dense();
  std::lock_guard<std::mutex> lock(st.mutex);
  auto it = st.plans.find(key);
  if (it == st.plans.end()) it = st.plans.emplace(key, create_plan(st, g, key)).first;
  Plan& p = it->second;
  const void* bias = g.bias;
  if (bias && g.ydt != DType::kF32) {
    void* b16 = be.scratch().alloc_bytes(size_t(g.N) * 2);
    convert_rows_to(be, g.bias, 1, g.N, g.N, g.ydt, b16);
    bias = b16;
  }
  if (bias) {
    FOLEY_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                  sizeof bias));
  }
  const float alpha = 1.0f, beta = g.beta;
  FOLEY_LT_CHECK(cublasLtMatmul(st.handle, p.desc, &alpha, g.w, p.a, g.x, p.b, &beta, g.y, p.c, g.y,
                                p.c, &p.algo, st.workspace, kWorkspaceBytes, be.stream()));
}

void CudaBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                         float beta) {
  const char* op = "linear";
  check_activation16(x, op, "x");
  check_activation16(y, op, "y");
  check_param(w, op, "w");
  if (bias) check_param(*bias, op, "bias");
  check_gemm_dtypes(x.dtype(), w.dtype(), y.dtype(), op);
  const int64_t N = check_linear_shapes(x, w, bias, y), K = w.dim(1);
  if (y.numel() == 0) return;

  Arena::Scope scope(scratch());
  DeviceGemm g;
  g.N = N;
  g.K = K;
  g.w = w.raw();
  g.wdt = w.dtype();
  g.ldw = N > 1 ? w.stride(0) : K;
  g.bias = bias ? vector_f32(*this, *bias) : nullptr;
  g.beta = beta;
  g.xdt = x.dtype();
  g.ydt = y.dtype();
  // Leading dims merge into M where both x's and y's strides allow it; the innermost unmerged
  // dim becomes a strided batch and any further ones an outer loop.
  const RowNest nest = row_nest(x, y);
  g.M = nest.rows;
  g.ldx = nest.row_stride[0];
  g.ldy = nest.row_stride[1];
  const int64_t xes = int64_t(dtype_size(x.dtype())), yes = int64_t(dtype_size(y.dtype()));
  if (nest.nouter == 1 && nest.outer > 1 && x.dtype() == w.dtype()) {
    // One unmerged dim (e.g. a row range of each batch member of a joint [B, L, C] buffer):
    // a strided batch sharing the weight, one call instead of one per member.
    g.batch = nest.outer;
    g.sx = nest.strides[0][0], g.sw = 0, g.sy = nest.strides[1][0];
    g.x = x.raw();
    g.y = y.raw();
    return run_gemm(*this, g);
  }
  for (int64_t o = 0; o < nest.outer; ++o) {
    const std::array<int64_t, 2> off = nest.offsets(o);
    g.x = static_cast<const char*>(x.raw()) + off[0] * xes;
    g.y = static_cast<char*>(y.raw()) + off[1] * yes;
    run_gemm(*this, g);
  }
}

}  // namespace cuda
}  // namespace foley
