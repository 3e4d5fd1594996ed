// Elementwise ops. Every operand has the output's exact shape; broadcasting is expressed with
// stride-0 views, which map_f32 iterates like any other stride (a broadcast operand is read,
// never materialised). Second operands (gates, shifts, biases) may be BF16/F16 parameters and are
// converted once, keeping their broadcast structure.
#include <cmath>

#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_simd.h"

namespace foley {
namespace cpu {
namespace {

// Inputs of y's shape in any float dtype (converted) and the F32 output.
void check_same(const Tensor& y, const Tensor& t, const char* op, const char* what) {
  check_float(t, op, what);
  check_shape(t, y.shape(), op, what);
}

// Snake in libm arithmetic, for arguments beyond the vector sine's range reduction.
inline float snake1(float v, float alpha, float inv_alpha) {
  const float s = std::sin(alpha * v);
  return v + inv_alpha * (s * s);
}

// Vector kernels over contiguous runs. The transcendental functions are the polynomial ones
// of cpu_simd.h: libm's scalar calls would cost more than the GEMMs around them (GELU on a
// 1500 x 6144 MLP activation, snake on 720k x 64 DAC steps). The last partial vector goes
// through a padded buffer so every element gets the same arithmetic.
template <int W, typename VF, typename... P>
FOLEY_INLINE void vector_run(float* y, int64_t n, VF vf, const P*... in) {
  int64_t i = 0;
  for (; i + W <= n; i += W) vstore<W>(y + i, vf(vload<W>(in + i)...));
  if (i < n) {
    float buf[sizeof...(P)][W] = {};
    const float* src[] = {in...};
    for (size_t k = 0; k < sizeof...(P); ++k)
      for (int64_t j = i; j < n; ++j) buf[k][j - i] = src[k][j];
    float out[W];
    [&]<size_t... K>(std::index_sequence<K...>) {
      vstore<W>(out, vf(vload<W>(buf[K])...));
    }
    (std::make_index_sequence<sizeof...(P)>{});
    for (int64_t j = i; j < n; ++j) y[j] = out[j - i];
  }
}

template <int W>
FOLEY_INLINE void activation_run(Activation act, const float* x, float* y, int64_t n) {
  using V = typename Vec<W>::type;
  switch (act) {
    case Activation::kGeluTanh:
      return vector_run<W>(
          y, n, [](const V& v) FOLEY_LAMBDA_INLINE { return vgelu_tanh<W>(v); }, x);
    case Activation::kGeluErf:
      return vector_run<W>(
          y, n, [](const V& v) FOLEY_LAMBDA_INLINE { return vgelu_erf<W>(v); }, x);
    case Activation::kSilu:
      return vector_run<W>(
          y, n, [](const V& v) FOLEY_LAMBDA_INLINE { return vsilu<W>(v); }, x);
    case Activation::kTanh:  // rare (the DAC's last op): libm
      for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      return;
  }
}

template <int W>
FOLEY_INLINE void swiglu_run(const float* a, const float* b, float* y, int64_t n) {
  using V = typename Vec<W>::type;
  vector_run<W>(
      y, n, [](const V& u, const V& v) FOLEY_LAMBDA_INLINE { return vsilu<W>(u) * v; }, a, b);
}

template <int W>
FOLEY_INLINE void snake_run(const float* x, const float* alpha, const float* inv, float* y,
                            int64_t n) {
  using V = typename Vec<W>::type;
  bool large = false;  // arguments beyond the range reduction's exact range: libm instead
  vector_run<W>(
      y, n,
      [&](const V& v, const V& al, const V& ia) FOLEY_LAMBDA_INLINE {
        const V arg = al * v;
        for (int k = 0; k < W; ++k) large |= !(arg[k] < 1e5f && arg[k] > -1e5f);
        return v + ia * vsin2<W>(arg);
      },
      x, alpha, inv);
  if (large)
    for (int64_t i = 0; i < n; ++i) y[i] = snake1(x[i], alpha[i], inv[i]);
}

#define FOLEY_ELEMENTWISE_KERNELS(SUFFIX, TARGET, W)                                      \
  TARGET void activation_##SUFFIX(Activation act, const float* x, float* y, int64_t n) {  \
    activation_run<W>(act, x, y, n);                                                      \
  }                                                                                       \
  TARGET void swiglu_##SUFFIX(const float* a, const float* b, float* y, int64_t n) {      \
    swiglu_run<W>(a, b, y, n);                                                            \
  }                                                                                       \
  TARGET void snake_##SUFFIX(const float* x, const float* al, const float* inv, float* y, \
                             int64_t n) {                                                 \
    snake_run<W>(x, al, inv, y, n);                                                       \
  }
FOLEY_ELEMENTWISE_KERNELS(avx512, FOLEY_TARGET_AVX512, 16)
FOLEY_ELEMENTWISE_KERNELS(avx2, FOLEY_TARGET_AVX2, 8)
FOLEY_ELEMENTWISE_KERNELS(generic, , 4)
#undef FOLEY_ELEMENTWISE_KERNELS

struct Kernels {
  void (*activation)(Activation, const float*, float*, int64_t);
  void (*swiglu)(const float*, const float*, float*, int64_t);
  void (*snake)(const float*, const float*, const float*, float*, int64_t);
};
Kernels kernels() {
  switch (cpu_isa()) {
    case Isa::kAvx512:
      return {activation_avx512, swiglu_avx512, snake_avx512};
    case Isa::kAvx2:
      return {activation_avx2, swiglu_avx2, snake_avx2};
    default:
      return {activation_generic, swiglu_generic, snake_generic};
  }
}

// Runs vec(out, in..., n) on every run of the loop nest. Strided runs are gathered into small
// contiguous blocks first, so a result never depends on the operands' layout.
template <typename VecRun, typename... In>
void map_runs(const Tensor& y, VecRun vec, const In&... in) {
  constexpr size_t N = sizeof...(In);
  constexpr int64_t kBlock = 256;
  const StridedLoop L = make_loop({&y, &in...});
  run_loop(L, 1 << 14, [&](const auto& p, const auto& sb, int64_t n) {
    [&]<size_t... I>(std::index_sequence<I...>) {
      float* out = reinterpret_cast<float*>(p[0]);
      if (sb[0] == 4 && ((sb[I + 1] == 4) && ...)) {
        vec(out, reinterpret_cast<const float*>(p[I + 1])..., n);
        return;
      }
      float tin[N][kBlock], tout[kBlock];
      for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
        const int64_t m = std::min(kBlock, n - i0);
        for (size_t k = 0; k < N; ++k)
          for (int64_t i = 0; i < m; ++i)
            tin[k][i] = *reinterpret_cast<const float*>(p[k + 1] + (i0 + i) * sb[k + 1]);
        vec(tout, tin[I]..., m);
        for (int64_t i = 0; i < m; ++i) out[(i0 + i) * (sb[0] / 4)] = tout[i];
      }
    }
    (std::make_index_sequence<N>{});
  });
}

}  // namespace
}  // namespace cpu

using namespace cpu;

void CpuBackend::activation(Activation act, const Tensor& x, const Tensor& y) {
  const char* op = "activation";
  check_f32(y, op, "y");
  check_same(y, x, op, "x");
  Arena::Scope scope(scratch());
  const Tensor xf = as_f32(scratch(), x);
  const Kernels k = kernels();
  if (act == Activation::kTanh)
    return map_f32(
        y, [](float v) { return std::tanh(v); }, xf);
  FOLEY_CHECK(
      act == Activation::kGeluTanh || act == Activation::kGeluErf || act == Activation::kSilu,
      "activation: unknown kind %d", static_cast<int>(act));
  map_runs(
      y, [&](float* o, const float* i, int64_t n) { k.activation(act, i, o, n); }, xf);
}

void CpuBackend::swiglu(const Tensor& a, const Tensor& b, const Tensor& y) {
  const char* op = "swiglu";
  check_f32(y, op, "y");
  check_same(y, a, op, "a");
  check_same(y, b, op, "b");
  Arena::Scope scope(scratch());
  const Kernels k = kernels();
  map_runs(
      y, [&](float* o, const float* u, const float* v, int64_t n) { k.swiglu(u, v, o, n); },
      as_f32(scratch(), a), as_f32(scratch(), b));
}

void CpuBackend::add(const Tensor& a, const Tensor& b, const Tensor& y) {
  const char* op = "add";
  check_f32(y, op, "y");
  check_same(y, a, op, "a");
  check_same(y, b, op, "b");
  Arena::Scope scope(scratch());
  map_f32(
      y, [](float u, float v) { return u + v; }, as_f32(scratch(), a), as_f32(scratch(), b));
}

void CpuBackend::mul(const Tensor& a, const Tensor& b, const Tensor& y) {
  const char* op = "mul";
  check_f32(y, op, "y");
  check_same(y, a, op, "a");
  check_same(y, b, op, "b");
  Arena::Scope scope(scratch());
  map_f32(
      y, [](float u, float v) { return u * v; }, as_f32(scratch(), a), as_f32(scratch(), b));
}

void CpuBackend::gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y) {
  const char* op = "gated_residual";
  check_f32(x, op, "x");
  check_same(x, gate, op, "gate");
  check_same(x, y, op, "y");
  Arena::Scope scope(scratch());
  map_f32(
      x, [](float r, float g, float v) { return r + g * v; }, x, as_f32(scratch(), gate),
      as_f32(scratch(), y));
}

void CpuBackend::modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                          const Tensor& y) {
  const char* op = "modulate";
  check_f32(y, op, "y");
  check_same(y, x, op, "x");
  check_same(y, shift, op, "shift");
  check_same(y, scale, op, "scale");
  Arena::Scope scope(scratch());
  map_f32(
      y, [](float v, float sh, float sc) { return v * (1.0f + sc) + sh; }, as_f32(scratch(), x),
      as_f32(scratch(), shift), as_f32(scratch(), scale));
}

void CpuBackend::snake(const Tensor& x, const Tensor& alpha, const Tensor& y) {
  const char* op = "snake";
  check_f32(y, op, "y");
  check_same(y, x, op, "x");
  FOLEY_CHECK(x.rank() >= 1, "snake: x must have rank >= 1");
  const int64_t C = x.dim(-1);
  check_vector(alpha, C, op, "alpha");
  Arena::Scope scope(scratch());
  const float* a = vector_f32(scratch(), alpha);
  // 1/(alpha + 1e-9) once per channel; in f32 the 1e-9 only matters for alpha near zero.
  float* inv = static_cast<float*>(scratch().alloc_bytes(size_t(C) * 4));
  for (int64_t c = 0; c < C; ++c) inv[c] = 1.0f / (a[c] + 1e-9f);
  const Tensor av =
      Tensor(const_cast<float*>(a), DType::kF32, {C}, DeviceKind::kCPU).expand(y.shape());
  const Tensor iv = Tensor(inv, DType::kF32, {C}, DeviceKind::kCPU).expand(y.shape());
  const Kernels k = kernels();
  map_runs(
      y,
      [&](float* o, const float* v, const float* al, const float* ia, int64_t n) {
        k.snake(v, al, ia, o, n);
      },
      as_f32(scratch(), x), av, iv);
}

}  // namespace foley
