// The CUDA backend. This first version provides device memory, transfers and the data-movement
// ops; the compute kernels (cuBLASLt GEMMs, attention, fused elementwise, convolutions) arrive
// with the CUDA issue. Until then every compute op throws kUnsupported naming itself, so a
// caller that selects CUDA learns at once what is missing instead of getting wrong numbers.
#include <cuda_runtime.h>

#include <string>

#include "backend/backend.h"
#include "core/check.h"

namespace foley {
namespace {

void cuda_check(cudaError_t status, const char* what, const char* file, int line) {
  if (status != cudaSuccess)
    throw_check_failure(file, line, std::string(what) + ": " + cudaGetErrorString(status));
}
#define FOLEY_CUDA_CHECK(expr) cuda_check((expr), #expr, __FILE__, __LINE__)

[[noreturn]] void not_yet(const char* op) {
  throw Error(ErrorKind::kUnsupported,
              std::string("CUDA op '") + op + "' is not implemented yet; use the CPU backend");
}

__global__ void fill_f32(float* p, int64_t n, float v) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) p[i] = v;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    FOLEY_CUDA_CHECK(cudaSetDevice(device_));
    FOLEY_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    scratch_ = std::make_unique<Arena>(block_allocator());
  }
  ~CudaBackend() override {
    scratch_.reset();
    cudaStreamDestroy(stream_);
  }

  DeviceKind device() const override { return DeviceKind::kCUDA; }
  std::string name() const override { return "cuda:" + std::to_string(device_); }

  BlockAllocator block_allocator() override {
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

  void copy_from_host(const Tensor& dst, const Tensor& src) override {
    check_transfer(dst, src);
    FOLEY_CUDA_CHECK(
        cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyHostToDevice, stream_));
  }
  void copy_to_host(const Tensor& dst, const Tensor& src) override {
    check_transfer(dst, src);
    FOLEY_CUDA_CHECK(
        cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToHost, stream_));
    FOLEY_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void synchronize() override { FOLEY_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  void copy(const Tensor& dst, const Tensor& src) override {
    if (!(dst.is_contiguous() && src.is_contiguous() && dst.dtype() == src.dtype() &&
          dst.shape() == src.shape()))
      not_yet("copy (strided or converting)");
    FOLEY_CUDA_CHECK(
        cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice, stream_));
  }
  void fill(const Tensor& dst, float value) override {
    if (!(dst.is_contiguous() && dst.dtype() == DType::kF32)) not_yet("fill (non-F32)");
    const int64_t n = dst.numel();
    if (n == 0) return;
    fill_f32<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream_>>>(dst.data<float>(), n,
                                                                          value);
    FOLEY_CUDA_CHECK(cudaGetLastError());
  }

  void linear(const Tensor&, const Tensor&, const Tensor*, const Tensor&, float) override {
    not_yet("linear");
  }
  void layer_norm(const Tensor&, const Tensor*, const Tensor*, float, const Tensor&) override {
    not_yet("layer_norm");
  }
  void rms_norm(const Tensor&, const Tensor*, float, const Tensor&) override { not_yet("rms_norm"); }
  void layer_norm_modulate(const Tensor&, float, const Tensor&, const Tensor&,
                           const Tensor&) override {
    not_yet("layer_norm_modulate");
  }
  void activation(Activation, const Tensor&, const Tensor&) override { not_yet("activation"); }
  void swiglu(const Tensor&, const Tensor&, const Tensor&) override { not_yet("swiglu"); }
  void add(const Tensor&, const Tensor&, const Tensor&) override { not_yet("add"); }
  void mul(const Tensor&, const Tensor&, const Tensor&) override { not_yet("mul"); }
  void gated_residual(const Tensor&, const Tensor&, const Tensor&) override {
    not_yet("gated_residual");
  }
  void modulate(const Tensor&, const Tensor&, const Tensor&, const Tensor&) override {
    not_yet("modulate");
  }
  void snake(const Tensor&, const Tensor&, const Tensor&) override { not_yet("snake"); }
  void softmax(const Tensor&, const Tensor&) override { not_yet("softmax"); }
  void rope(const Tensor&, const RopeTable&, const Tensor&) override { not_yet("rope"); }
  void attention(const Tensor&, const Tensor&, const Tensor&, float, const Tensor&,
                 const RopeTable*, const RopeTable*) override {
    not_yet("attention");
  }
  void conv1d(const Tensor&, const Tensor&, const Tensor*, int, int, const Tensor&) override {
    not_yet("conv1d");
  }
  void conv_transpose1d(const Tensor&, const Tensor&, const Tensor*, int, int, int,
                        const Tensor&) override {
    not_yet("conv_transpose1d");
  }
  void resample_nearest_exact(const Tensor&, const Tensor&) override {
    not_yet("resample_nearest_exact");
  }
  void patch_embed(const Tensor&, const Tensor&, const Tensor*, const Tensor&) override {
    not_yet("patch_embed");
  }

 private:
  static void check_transfer(const Tensor& dst, const Tensor& src) {
    FOLEY_CHECK(dst.shape() == src.shape() && dst.dtype() == src.dtype(),
                "transfer between %s and %s", dst.describe().c_str(), src.describe().c_str());
    FOLEY_CHECK(dst.is_contiguous() && src.is_contiguous(), "transfers need contiguous tensors");
  }

  int device_;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device_index >= count) return nullptr;
  return std::make_unique<CudaBackend>(device_index);
}

}  // namespace foley
