// The backend interface: memory on one device plus the op set the five networks need.
//
// Conventions shared by every op (and by every implementation, CPU and CUDA):
// - Tensors are row-major; outputs are preallocated by the caller with the exact shape.
// - Activations are F32; a backend with supports_16bit_activations() also takes BF16/F16 ones
//   where an op says "16-bit ok" (outputs rounded once from the F32 math). Weights may be F32,
//   BF16 or F16. Accumulation, norms, softmax and RoPE are always computed in F32.
// - Sequence tensors are channel-last: [B, T, C]. Attention tensors are [B, L, H, D] and may be
//   strided views (e.g. slices of a fused QKV buffer); the last dim must be contiguous.
// - Linear weights use PyTorch's layout [N, K] (y = x·Wᵀ + b). Convolution weights are stored by
//   the converter as [K_taps, C_out, C_in] so each tap is a Linear weight.
// - Inputs given as broadcast views (stride 0) are allowed wherever an op says "broadcast".
// - Output may alias an input only where the op says so.
// The CPU backend is the oracle: every other backend is tested against it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/arena.h"
#include "core/quant.h"
#include "core/tensor.h"

namespace foley {

enum class Activation { kGeluTanh, kGeluErf, kSilu, kTanh };

// Rotary tables for adjacent-pair ("GPT-J", interleaved) RoPE: for position row p and pair i,
// (x[2i], x[2i+1]) -> (x[2i]·cos − x[2i+1]·sin, x[2i+1]·cos + x[2i]·sin). Both are F32 [L, D/2].
struct RopeTable {
  Tensor cos;
  Tensor sin;
};

// Ops recorded by Backend::record, replayed as one unit on the backend's queue: the same kernels
// with the same arguments (device pointers, shapes), reading whatever those buffers hold at replay.
class OpGraph {
 public:
  virtual ~OpGraph() = default;
  virtual void replay() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceKind device() const = 0;
  virtual std::string name() const = 0;
  // True where linear (x, y with 16-bit weights of the same dtype), conv1d/conv_transpose1d (x),
  // layer_norm / layer_norm_modulate (y), rms_norm and rope (x, y), the elementwise ops (any
  // operand but gated_residual's x) and attention (q, k, v, out) accept 16-bit activations. The
  // CPU backend, the oracle, computes in F32 only.
  virtual bool supports_16bit_activations() const { return false; }
  // While on, products of F32 operands (linear, convolutions, patch embedding and attention on
  // F32 weights and activations) may use the device's reduced-precision math: TF32 tensor cores
  // on CUDA (inputs rounded to 10 mantissa bits, F32 accumulation). Not the reference's
  // precision: only GeneratorOptions::precision = kFast turns it on, around the video encoders.
  // The CPU has no such math and ignores it.
  virtual void set_fast_f32_matmul(bool on) { (void)on; }
  virtual bool fast_f32_matmul() const { return false; }

  // ---- memory -------------------------------------------------------------------------------
  virtual BlockAllocator block_allocator() = 0;
  // Copies between host and this device (or within one device); shapes and dtypes must match,
  // both tensors contiguous.
  virtual void copy_from_host(const Tensor& dst, const Tensor& host_src) = 0;
  virtual void copy_to_host(const Tensor& host_dst, const Tensor& src) = 0;
  virtual void synchronize() = 0;

  // ---- recording ------------------------------------------------------------------------------
  // Records the ops `work` issues on this backend without running them, for OpGraph::replay.
  // Null where the backend cannot record (the CPU): the caller then runs `work` itself. `work`
  // may issue only device ops: no transfer from or to host memory, no synchronize(), no arena
  // growth (memory or state an op creates on first use must exist already, so run the same work
  // once eagerly first). Everything `work` touches must outlive the graph. If recording fails
  // (work throws, or issues something that cannot be recorded) this throws foley::Error and the
  // backend stays usable.
  virtual std::unique_ptr<OpGraph> record(const std::function<void()>& work) {
    (void)work;
    return nullptr;
  }

  // ---- data movement --------------------------------------------------------------------------
  // dst = src, elementwise over equal shapes; any strides (src may broadcast); converts dtype.
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void fill(const Tensor& dst, float value) = 0;

  // ---- dense ----------------------------------------------------------------------------------
  // y[..., N] = x[..., K] · w[N, K]ᵀ + bias[N] (+ beta·y when beta != 0). x rows may be strided
  // (row stride >= K, last dim contiguous); y contiguous.
  virtual void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                      float beta = 0.0f) = 0;

  // ---- quantised dense (core/quant.h) ---------------------------------------------------------
  // y[..., N] = x·wᵀ + bias with 8-bit weights: codes w [N, K] (F8E4M3 or I8), one F32 scale per
  // output channel (w ≈ code·w_scale[n]). Each row of x is quantised on the fly to the same
  // format with its own scale (quantize_row), the codes multiply with exact or F32 accumulation
  // and y = Σ·x_scale[m]·w_scale[n] + bias. x and y as for linear (y F32 or 16-bit).
  virtual void linear_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                const Tensor* bias, const Tensor& y) = 0;
  // The single blocks' k=3 Conv1d (stride 1, zero padding 1) with such weights: x [B, T, K],
  // w [N, 3K] tap-major (w[n, j·K + c] multiplies x[t + j − 1, c]), y [B, T, N]: linear_quantized
  // over the rows [x[t−1] | x[t] | x[t+1]] (each quantised as one row), which need not exist in
  // memory.
  virtual void conv3_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                               const Tensor* bias, const Tensor& y) = 0;
  // Whether linear_quantized runs `format` here (FP8 needs sm_89+; the CPU emulates both).
  virtual bool supports_quantized(QuantFormat format) const = 0;

  // ---- normalisation (over the last dim, F32 math) ---------------------------------------------
  virtual void layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                          const Tensor& y) = 0;
  // y = x / sqrt(mean(x²) + eps) · weight (weight optional). May run in place.
  virtual void rms_norm(const Tensor& x, const Tensor* weight, float eps, const Tensor& y) = 0;
  // Fused adaLN: y = LN(x; no affine, eps)·(1 + scale) + shift. x [B,T,C]; shift and scale
  // [B,T,C] with broadcast allowed (per-sample modulation is a stride-0 T).
  virtual void layer_norm_modulate(const Tensor& x, float eps, const Tensor& shift,
                                   const Tensor& scale, const Tensor& y) = 0;

  // ---- elementwise ----------------------------------------------------------------------------
  virtual void activation(Activation act, const Tensor& x, const Tensor& y) = 0;  // in place ok
  // y = silu(a) ⊙ b (SwiGLU's gate). In place on a or b ok.
  virtual void swiglu(const Tensor& a, const Tensor& b, const Tensor& y) = 0;
  // y = a + b, y = a ⊙ b; b may broadcast. In place (y == a) ok.
  virtual void add(const Tensor& a, const Tensor& b, const Tensor& y) = 0;
  virtual void mul(const Tensor& a, const Tensor& b, const Tensor& y) = 0;
  // x += gate ⊙ y (the adaLN gated residual); gate may broadcast. x is updated in place.
  virtual void gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y) = 0;
  // y = x ⊙ (1 + scale) + shift; shift/scale may broadcast. In place ok.
  virtual void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                        const Tensor& y) = 0;
  // Snake: y = x + 1/(alpha + 1e-9) · sin(alpha·x)², x and y [B,T,C], alpha [C]. In place ok.
  virtual void snake(const Tensor& x, const Tensor& alpha, const Tensor& y) = 0;
  // Softmax over the last dim. In place ok.
  virtual void softmax(const Tensor& x, const Tensor& y) = 0;

  // ---- attention ------------------------------------------------------------------------------
  // x [B, L, H, D] -> y rotated with `rope` rows 0..L-1 (table [>=L, D/2]). In place ok.
  virtual void rope(const Tensor& x, const RopeTable& rope, const Tensor& y) = 0;
  // out[B,Lq,H,D] = softmax(q·kᵀ·scale)·v with q [B,Lq,H,D], k and v [B,Lk,H,Dv]; no mask.
  // Optional RoPE tables rotate q and k (rows 0..Lq-1 and 0..Lk-1) before the product.
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                         const Tensor& out, const RopeTable* rope_q = nullptr,
                         const RopeTable* rope_k = nullptr) = 0;

  // ---- convolution and resampling (channel-last) ----------------------------------------------
  // y[B,To,Co] = conv1d(x[B,T,Ci]) with w [K,Co,Ci], stride 1, `dilation`, zero padding `pad` on
  // both sides: To = T + 2·pad − dilation·(K−1).
  virtual void conv1d(const Tensor& x, const Tensor& w, const Tensor* bias, int dilation, int pad,
                      const Tensor& y) = 0;
  // The rows of a k=3, zero-padding-1 convolution over time, side by side: cols[b, t, j·C + c] =
  // x[b, t + j − 1, c], zero where t + j − 1 falls outside [0, T). x [B, T, C] (last dim
  // contiguous), cols [B, T, 3C] contiguous, same dtype. With the tap-major weight [Co, 3C] the
  // convolution is then one linear over 3C inputs (the single blocks' ConvMLP: one GEMM with
  // K = 3C instead of three accumulating ones). The default composes copy and fill.
  virtual void unfold3(const Tensor& x, const Tensor& cols);
  // Transposed conv1d, w [K,Co,Ci] (PyTorch's [Ci,Co,K] permuted by the converter):
  // To = (T−1)·stride − 2·pad + K + output_padding.
  virtual void conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride,
                                int pad, int output_padding, const Tensor& y) = 0;
  // y[B,To,C]: nearest-exact along T: src = min(floor((i + 0.5)·(T/To)), T−1), scale in F32.
  virtual void resample_nearest_exact(const Tensor& x, const Tensor& y) = 0;
  // Non-overlapping patch embedding (stride = kernel). 2-D: x [B,C,H,W], w [D, C, kh, kw] ->
  // y [B, (H/kh)·(W/kw), D]. 3-D: x [B,C,T,H,W], w [D, C, kt, kh, kw] -> y [B, N, D] with
  // tokens ordered (t, h, w).
  virtual void patch_embed(const Tensor& x, const Tensor& w, const Tensor* bias,
                           const Tensor& y) = 0;

  // Scratch memory for ops that need it (im2col, dtype conversion); sized like activations.
  // Virtual only so that a decorator (bench/profile_backend.h) can hand out the arena of the
  // backend it wraps: the ops it forwards run there, and callers must see one arena.
  virtual Arena& scratch() { return *scratch_; }

 protected:
  std::unique_ptr<Arena> scratch_;
};

std::unique_ptr<Backend> make_cpu_backend();
// Null when foley was built without CUDA or no device is present.
std::unique_ptr<Backend> make_cuda_backend(int device_index = 0);

}  // namespace foley
