// The CUDA backend's class, shared by the .cu files that implement its ops (one file per op
// family, mirroring backend/cpu/). Every launch goes on the backend's one stream, so ops are
// ordered without synchronisation and a whole denoising step can be captured as a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/op_checks.h"
#include "core/check.h"

namespace foley {
namespace cuda {

void cuda_check(cudaError_t status, const char* what, const char* file, int line);
#define FOLEY_CUDA_CHECK(expr) ::foley::cuda::cuda_check((expr), #expr, __FILE__, __LINE__)

// For an op (or an input combination of it) that has no CUDA kernel: says so by name instead of
// computing something wrong.
[[noreturn]] void not_supported(const char* op);

struct DenseState;  // cuBLASLt handle, workspace and plan cache (cuda_dense.cu)
struct QuantState;  // the quantised GEMMs' plans (cuda_quant.cu)

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;

  DeviceKind device() const override { return DeviceKind::kCUDA; }
  std::string name() const override { return "cuda:" + std::to_string(device_); }
  bool supports_16bit_activations() const override { return true; }
  void set_fast_f32_matmul(bool on) override { fast_f32_ = on; }
  bool fast_f32_matmul() const override { return fast_f32_; }
  cudaStream_t stream() const { return stream_; }
  DenseState& dense();                            // created on first use (cuda_dense.cu)
  QuantState& quant();                            // created on first use (cuda_quant.cu)
  int compute_capability() const { return cc_; }  // major·10 + minor

  BlockAllocator block_allocator() override;
  void copy_from_host(const Tensor& dst, const Tensor& host_src) override;
  void copy_to_host(const Tensor& host_dst, const Tensor& src) override;
  void synchronize() override;

  // cuda_graph.cu: stream capture into a CUDA graph
  std::unique_ptr<OpGraph> record(const std::function<void()>& work) override;

  // cuda_backend.cu
  void copy(const Tensor& dst, const Tensor& src) override;
  void fill(const Tensor& dst, float value) override;

  // cuda_dense.cu
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              float beta) override;

  // cuda_quant.cu
  void linear_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale, const Tensor* bias,
                        const Tensor& y) override;
  void conv3_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale, const Tensor* bias,
                       const Tensor& y) override;
  bool supports_quantized(QuantFormat format) const override;

  // cuda_norm.cu
  void layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                  const Tensor& y) override;
  void rms_norm(const Tensor& x, const Tensor* weight, float eps, const Tensor& y) override;
  void layer_norm_modulate(const Tensor& x, float eps, const Tensor& shift, const Tensor& scale,
                           const Tensor& y) override;
  void softmax(const Tensor& x, const Tensor& y) override;
  void rope(const Tensor& x, const RopeTable& rope, const Tensor& y) override;

  // cuda_elementwise.cu
  void activation(Activation act, const Tensor& x, const Tensor& y) override;
  void swiglu(const Tensor& a, const Tensor& b, const Tensor& y) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& y) override;
  void mul(const Tensor& a, const Tensor& b, const Tensor& y) override;
  void gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y) override;
  void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                const Tensor& y) override;
  void snake(const Tensor& x, const Tensor& alpha, const Tensor& y) override;

  // cuda_attention.cu
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const Tensor& out,
                 const RopeTable* rope_q, const RopeTable* rope_k) override;

  // cuda_conv.cu
  void conv1d(const Tensor& x, const Tensor& w, const Tensor* bias, int dilation, int pad,
              const Tensor& y) override;
  void conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad,
                        int output_padding, const Tensor& y) override;
  void unfold3(const Tensor& x, const Tensor& cols) override;
  void resample_nearest_exact(const Tensor& x, const Tensor& y) override;
  void patch_embed(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override;

 private:
  int device_;
  bool fast_f32_ = false;  // TF32 for F32 products (FOLEY_CUDA_TF32=1: from the start)
  cudaStream_t stream_ = nullptr;
  std::shared_ptr<DenseState> dense_;  // shared_ptr: destructible where DenseState is incomplete
  std::shared_ptr<QuantState> quant_;
  int cc_ = 0;
};

}  // namespace cuda
}  // namespace foley
