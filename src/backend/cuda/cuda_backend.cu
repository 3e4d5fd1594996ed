// The CUDA backend: construction, device memory, transfers and the data-movement ops. The compute
// ops live in the sibling files named in cuda_internal.h.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_strided.h"
#include "backend/cuda_arch.h"

namespace foley {
namespace cuda {

void cuda_check(cudaError_t status, const char* what, const char* file, int line) {
  if (status != cudaSuccess)
    throw_check_failure(file, line, std::string(what) + ": " + cudaGetErrorString(status));
}

void not_supported(const char* op) {
  throw Error(ErrorKind::kUnsupported,
              std::string("CUDA op '") + op + "' is not implemented yet; use the CPU backend");
}

namespace {

void check_transfer(const Tensor& dst, const Tensor& src) {
  FOLEY_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype(),
              "transfer between %s and %s", dst.describe().c_str(), src.describe().c_str());
  FOLEY_CHECK(dst.is_contiguous() && src.is_contiguous(), "transfers need contiguous tensors");
}

// Same-dtype strided copy of elements of type T (the dtype only matters for its size).
template <typename T>
__global__ void copy_same(StridedNd L, T* dst, const T* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    int64_t off[2];
    nd_offsets<2>(L, i, off);
    dst[off[0]] = src[off[1]];
  }
}

// Converting copy between float dtypes; every value goes through F32 (exact for BF16 and F16).
__global__ void copy_convert(StridedNd L, void* dst, int dst_dtype, FloatIn src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    int64_t off[2];
    nd_offsets<2>(L, i, off);
    const float v = load_float(src, off[1]);
    if (dst_dtype == static_cast<int>(DType::kF32)) {
      static_cast<float*>(dst)[off[0]] = v;
    } else {
      static_cast<uint16_t*>(dst)[off[0]] =
          dst_dtype == static_cast<int>(DType::kBF16) ? f32_to_bf16_bits(v) : f32_to_f16_bits(v);
    }
  }
}

template <typename T>
__global__ void fill_bits(StridedNd L, T* dst, T bits, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    dst[nd_offset(L, 0, i)] = bits;
}

}  // namespace

// ---- shared helpers of cuda_strided.h ----------------------------------------------------------

StridedNd make_nd(std::initializer_list<const Tensor*> ops, bool skip_last) {
  StridedNd L;
  L.nops = static_cast<int>(ops.size());
  FOLEY_CHECK(L.nops >= 1 && L.nops <= kMaxOps, "make_nd: bad operand count");
  const Tensor& ref = **ops.begin();
  const int r = ref.rank() - (skip_last ? 1 : 0);
  for (const Tensor* t : ops) {
    bool same = t->rank() == ref.rank();
    for (int d = 0; same && d < r; ++d) same = t->dim(d) == ref.dim(d);
    FOLEY_CHECK(same && (skip_last || t->shape() == ref.shape()), "operand %s, expected %s%s",
                t->describe().c_str(), ref.shape().str().c_str(),
                skip_last ? " (last dim aside)" : "");
  }
  // Non-trivial dims outermost first, merged into the previous one whenever
  // outer_stride == inner_stride · inner_dim holds for every operand.
  for (int d = 0; d < r; ++d) {
    if (ref.dim(d) == 1) continue;
    int64_t s[kMaxOps] = {};
    int o = 0;
    for (const Tensor* t : ops) s[o++] = t->stride(d);
    if (L.rank > 0) {
      const int prev = L.rank - 1;
      bool merge = true;
      for (int k = 0; k < L.nops; ++k) merge = merge && L.strides[k][prev] == s[k] * ref.dim(d);
      if (merge) {
        L.dims[prev] *= ref.dim(d);
        for (int k = 0; k < L.nops; ++k) L.strides[k][prev] = s[k];
        continue;
      }
    }
    L.dims[L.rank] = ref.dim(d);
    for (int k = 0; k < L.nops; ++k) L.strides[k][L.rank] = s[k];
    ++L.rank;
  }
  if (L.rank == 0) {  // a scalar, or every dim of size 1 (a zero-size dim is never dropped)
    L.rank = 1;
    L.dims[0] = 1;
    for (int k = 0; k < L.nops; ++k) L.strides[k][0] = 1;
  }
  return L;
}

bool vector_rows_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("FOLEY_CUDA_VECTOR_ROWS");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

bool quad_aligned(const StridedNd& L, std::initializer_list<const Tensor*> ops, int ndims) {
  int o = 0;
  for (const Tensor* t : ops) {
    if (reinterpret_cast<uintptr_t>(t->raw()) % (4 * dtype_size(t->dtype())) != 0) return false;
    for (int d = 0; d < ndims; ++d)
      if (L.dims[d] > 1 && L.strides[o][d] % 4 != 0) return false;
    ++o;
  }
  return true;
}

void check_device(const Tensor& t, const char* op, const char* what) {
  FOLEY_CHECK(t.defined(), "%s: %s is undefined", op, what);
  FOLEY_CHECK(t.device() == DeviceKind::kCUDA, "%s: %s %s is not in CUDA device memory", op, what,
              t.describe().c_str());
}

void check_device_f32(const Tensor& t, const char* op, const char* what) {
  check_device(t, op, what);
  FOLEY_CHECK(t.dtype() == DType::kF32, "%s: %s must be F32, got %s", op, what,
              t.describe().c_str());
}

void check_device_float(const Tensor& t, const char* op, const char* what) {
  check_device(t, op, what);
  FOLEY_CHECK(is_float_compute(t.dtype()), "%s: %s must be F32, BF16 or F16, got %s", op, what,
              t.describe().c_str());
}

void check_writable(const Tensor& t, const char* op, const char* what) {
  for (int i = 0; i < t.rank(); ++i)
    FOLEY_CHECK(t.dim(i) <= 1 || t.stride(i) != 0,
                "%s: %s %s is a broadcast view (stride 0 in dim %d)", op, what,
                t.describe().c_str(), i);
}

void check_vector(const Tensor& t, int64_t n, const char* op, const char* what) {
  check_device_float(t, op, what);
  check_vector_shape(t, n, op, what);
}

CudaBackend::CudaBackend(int device) : device_(device) {
  FOLEY_CUDA_CHECK(cudaSetDevice(device_));
  FOLEY_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  int major = 0, minor = 0;
  FOLEY_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_));
  FOLEY_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_));
  cc_ = major * 10 + minor;
  const char* tf32 = std::getenv("FOLEY_CUDA_TF32");
  fast_f32_ = tf32 != nullptr && std::string(tf32) == "1";
  scratch_ = std::make_unique<Arena>(block_allocator());
}

CudaBackend::~CudaBackend() {
  scratch_.reset();
  cudaStreamDestroy(stream_);
}

BlockAllocator CudaBackend::block_allocator() {
  BlockAllocator a;
  a.device = DeviceKind::kCUDA;
  a.allocate = [](size_t bytes) {
    void* p = nullptr;
    FOLEY_CUDA_CHECK(cudaMalloc(&p, bytes));
    return p;
  };
  a.release = [](void* p) { cudaFree(p); };
  return a;
}

void CudaBackend::copy_from_host(const Tensor& dst, const Tensor& src) {
  check_transfer(dst, src);
  FOLEY_CUDA_CHECK(
      cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::copy_to_host(const Tensor& dst, const Tensor& src) {
  check_transfer(dst, src);
  FOLEY_CUDA_CHECK(
      cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToHost, stream_));
  FOLEY_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::synchronize() {
  FOLEY_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy(const Tensor& dst, const Tensor& src) {
  const char* op = "copy";
  check_device(dst, op, "dst");
  check_device(src, op, "src");
  check_shape(src, dst.shape(), op, "src");
  check_writable(dst, op, "dst");
  const int64_t n = dst.numel();
  if (n == 0) return;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    if (dst.raw() != src.raw())
      FOLEY_CUDA_CHECK(
          cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice, stream_));
    return;
  }
  const StridedNd L = make_nd({&dst, &src});
  const unsigned grid = grid_for(n);
  if (dst.dtype() == src.dtype()) {
    switch (dtype_size(dst.dtype())) {
      case 1:
        copy_same<<<grid, kThreads, 0, stream_>>>(L, dst.data<uint8_t>(), src.data<uint8_t>(), n);
        break;
      case 2:
        copy_same<<<grid, kThreads, 0, stream_>>>(L, dst.data<uint16_t>(), src.data<uint16_t>(), n);
        break;
      case 4:
        copy_same<<<grid, kThreads, 0, stream_>>>(L, dst.data<uint32_t>(), src.data<uint32_t>(), n);
        break;
      case 8:
        copy_same<<<grid, kThreads, 0, stream_>>>(L, dst.data<uint64_t>(), src.data<uint64_t>(), n);
        break;
      default:
        not_supported("copy (element size)");
    }
  } else {
    FOLEY_CHECK(is_float_compute(dst.dtype()) && is_float_compute(src.dtype()),
                "copy: cannot convert %s to %s (float dtypes only)", dtype_name(src.dtype()),
                dtype_name(dst.dtype()));
    copy_convert<<<grid, kThreads, 0, stream_>>>(L, dst.raw(), static_cast<int>(dst.dtype()),
                                                 float_in(src), n);
  }
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::fill(const Tensor& dst, float value) {
  const char* op = "fill";
  check_device_float(dst, op, "dst");
  check_writable(dst, op, "dst");
  const int64_t n = dst.numel();
  if (n == 0) return;
  const StridedNd L = make_nd({&dst});
  const unsigned grid = grid_for(n);
  if (dst.dtype() == DType::kF32) {
    uint32_t bits;
    std::memcpy(&bits, &value, 4);
    fill_bits<<<grid, kThreads, 0, stream_>>>(L, dst.data<uint32_t>(), bits, n);
  } else {
    const uint16_t bits = dst.dtype() == DType::kBF16 ? f32_to_bf16(value) : f32_to_f16(value);
    fill_bits<<<grid, kThreads, 0, stream_>>>(L, dst.data<uint16_t>(), bits, n);
  }
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device_index >= count) return nullptr;
  check_cuda_device(device_index);  // before the first kernel: refuse a card without code for it
  return std::make_unique<cuda::CudaBackend>(device_index);
}

}  // namespace foley
