// The CUDA backend: construction, device memory, transfers and the data-movement ops. The compute
// ops live in the sibling files named in cuda_internal.h.
#include <cuda_runtime.h>

#include <string>

#include "backend/cuda/cuda_internal.h"

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

__global__ void fill_f32(float* p, int64_t n, float v) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) p[i] = v;
}

void check_transfer(const Tensor& dst, const Tensor& src) {
  FOLEY_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype(),
              "transfer between %s and %s", dst.describe().c_str(), src.describe().c_str());
  FOLEY_CHECK(dst.is_contiguous() && src.is_contiguous(), "transfers need contiguous tensors");
}

}  // namespace

CudaBackend::CudaBackend(int device) : device_(device) {
  FOLEY_CUDA_CHECK(cudaSetDevice(device_));
  FOLEY_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
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

void CudaBackend::synchronize() { FOLEY_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

void CudaBackend::copy(const Tensor& dst, const Tensor& src) {
  if (!(dst.is_contiguous() && src.is_contiguous() && dst.dtype() == src.dtype() &&
        dst.shape() == src.shape()))
    not_supported("copy (strided or converting)");
  FOLEY_CUDA_CHECK(
      cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::fill(const Tensor& dst, float value) {
  if (!(dst.is_contiguous() && dst.dtype() == DType::kF32)) not_supported("fill (non-F32)");
  const int64_t n = dst.numel();
  if (n == 0) return;
  fill_f32<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream_>>>(dst.data<float>(), n,
                                                                        value);
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device_index >= count) return nullptr;
  return std::make_unique<cuda::CudaBackend>(device_index);
}

}  // namespace foley
