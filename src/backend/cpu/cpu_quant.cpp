// linear_quantized on the CPU: the oracle for the GPU's FP8 and INT8 GEMMs. Activation rows are
// quantised exactly as the CUDA kernel does (core/quant.h), the codes multiply as F32 numbers
// (every code is exact in F32; int8 products sum exactly below 2^24) and the two scales are
// applied to each sum.
#include <array>

#include "backend/cpu/cpu_internal.h"

namespace foley {

void CpuBackend::linear_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                  const Tensor* bias, const Tensor& y) {
  const char* op = "linear_quantized";
  cpu::check_f32(x, op, "x");
  cpu::check_f32(y, op, "y");
  cpu::check_host(w, op, "w");
  cpu::check_host(w_scale, op, "w_scale");
  if (bias) cpu::check_float(*bias, op, "bias");
  const QuantFormat format = check_quantized_linear(x, w, w_scale, bias, y);
  const int64_t N = w.dim(0), K = w.dim(1);
  const int64_t M = K > 0 ? x.numel() / K : y.numel() / std::max<int64_t>(N, 1);
  if (y.numel() == 0) return;

  Arena::Scope scope(scratch());
  std::array<float, 256> value{};
  for (int c = 0; c < 256; ++c) value[size_t(c)] = quant_code_value(format, uint8_t(c));

  // x's rows as codes (stored as the F32 numbers they stand for) and their scales.
  const Tensor xq = scratch().alloc({M, K}, DType::kF32);
  copy(xq.reshape(x.shape()), x);
  // Scratch only: per-step code never reaches the system allocator.
  float* x_scale = static_cast<float*>(scratch().alloc_bytes(size_t(M) * sizeof(float)));
  uint8_t* codes = static_cast<uint8_t*>(scratch().alloc_bytes(size_t(M * K)));
  float* xr = xq.data<float>();
  parallel_for(M, 16, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float* row = xr + m * K;
      uint8_t* c = codes + m * K;
      x_scale[m] = quantize_row(row, K, format, c);
      for (int64_t k = 0; k < K; ++k) row[k] = value[c[k]];
    }
  });
  const Tensor wq = scratch().alloc({N, K}, DType::kF32);
  const uint8_t* wc = static_cast<const uint8_t*>(w.raw());
  float* wr = wq.data<float>();
  parallel_for(N * K, 1 << 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) wr[i] = value[wc[i]];
  });

  const Tensor acc = scratch().alloc({M, N}, DType::kF32);
  linear(xq, wq, nullptr, acc, 0.0f);
  const float* ws = w_scale.data<float>();
  const float* b = bias ? cpu::vector_f32(scratch(), *bias) : nullptr;
  float* a = acc.data<float>();
  parallel_for(M, 16, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t n = 0; n < N; ++n) {
        float& v = a[m * N + n];
        v = v * x_scale[m] * ws[n] + (b ? b[n] : 0.0f);
      }
  });
  copy(y, acc.reshape(y.shape()));
}

void CpuBackend::conv3_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                 const Tensor* bias, const Tensor& y) {
  cpu::check_f32(x, "conv3_quantized", "x");
  check_quantized_conv3(x, w, w_scale, bias, y);
  Arena::Scope scope(scratch());
  const int64_t B = x.dim(0), T = x.dim(1), K = x.dim(2);
  const Tensor cols = scratch().alloc({B, T, 3 * K}, DType::kF32);
  unfold3(x, cols);
  linear_quantized(cols, w, w_scale, bias, y);
}

}  // namespace foley
