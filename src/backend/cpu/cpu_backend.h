// The CPU backend: F32 activations, F32/BF16/F16 weights, GEMMs through oneDNN, everything else
// in plain loops parallelised over the global ThreadPool. It is the reference every other
// backend is tested against, so clarity wins over cleverness outside the hot loops.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace foley {
namespace cpu {
struct Gemm;
class MatmulCache;
}  // namespace cpu

class CpuBackend final : public Backend {
 public:
  CpuBackend();
  ~CpuBackend() override;

  DeviceKind device() const override { return DeviceKind::kCPU; }
  std::string name() const override { return "cpu"; }

  BlockAllocator block_allocator() override { return host_block_allocator(); }
  void copy_from_host(const Tensor& dst, const Tensor& host_src) override;
  void copy_to_host(const Tensor& host_dst, const Tensor& src) override;
  void synchronize() override {}

  void copy(const Tensor& dst, const Tensor& src) override;
  void fill(const Tensor& dst, float value) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              float beta) override;
  void linear_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale, const Tensor* bias,
                        const Tensor& y) override;  // cpu_quant.cpp
  void conv3_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale, const Tensor* bias,
                       const Tensor& y) override;
  bool supports_quantized(QuantFormat) const override { return true; }
  void layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                  const Tensor& y) override;
  void rms_norm(const Tensor& x, const Tensor* weight, float eps, const Tensor& y) override;
  void layer_norm_modulate(const Tensor& x, float eps, const Tensor& shift, const Tensor& scale,
                           const Tensor& y) override;
  void activation(Activation act, const Tensor& x, const Tensor& y) override;
  void swiglu(const Tensor& a, const Tensor& b, const Tensor& y) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& y) override;
  void mul(const Tensor& a, const Tensor& b, const Tensor& y) override;
  void gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y) override;
  void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                const Tensor& y) override;
  void snake(const Tensor& x, const Tensor& alpha, const Tensor& y) override;
  void softmax(const Tensor& x, const Tensor& y) override;
  void rope(const Tensor& x, const RopeTable& rope, const Tensor& y) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const Tensor& out,
                 const RopeTable* rope_q, const RopeTable* rope_k) override;
  void conv1d(const Tensor& x, const Tensor& w, const Tensor* bias, int dilation, int pad,
              const Tensor& y) override;
  void conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad,
                        int output_padding, const Tensor& y) override;
  void resample_nearest_exact(const Tensor& x, const Tensor& y) override;
  void patch_embed(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override;

  // y = x·wᵀ (+ bias) (+ beta·y) on raw row-major matrices: the one GEMM entry point behind
  // linear, the convolutions and patch_embed (cpu_dense.cpp).
  void gemm(const cpu::Gemm& g);

  // oneDNN primitives built so far, process-wide (diagnostics and tests).
  static size_t cached_matmuls();

 private:
  cpu::MatmulCache* matmuls_;  // shared by every CpuBackend in the process
};

}  // namespace foley
