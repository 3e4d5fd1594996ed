// CUDA elementwise kernels. Every operand has the output's exact shape; broadcasting is a
// stride-0 view, which the strided kernel reads through like any other stride. Inputs and the
// output may be F32, BF16 or F16 (converted on load and store); the math is F32. A 16-bit output
// is how the DiT's bf16 activations (model-spec §2.7: bf16 between layers) are
// written by the op that produces them, instead of a separate conversion before each GEMM.
// gated_residual's x (the residual stream, updated in place) stays F32.
//
// Three paths: all operands F32 and contiguous run a float4 kernel; operands of any dtype whose
// innermost dim is a unit-stride run of a multiple of 4 (the DiT's bf16 rows, broadcast gates)
// run four elements per thread with vector loads; anything else runs one generic strided kernel
// with per-element index math.
// Products and sums that the CPU oracle rounds separately use __fmul_rn/__fadd_rn, so nvcc does
// not contract them into FMAs and the two backends round alike.
#include <cmath>

#include "backend/cuda/cuda_internal.h"
#include "backend/cuda/cuda_strided.h"

namespace foley {
namespace cuda {
namespace {

template <int N>
struct Inputs {
  FloatIn in[N];
};
template <int N>
struct Ptrs {
  const float* p[N];
};

template <Activation A>
struct ActivationF {
  __device__ float operator()(const float* v) const {
    const float x = v[0];
    if constexpr (A == Activation::kGeluTanh) {
      // x·sigmoid(2u) = 0.5·x·(1 + tanh(u)), the CPU oracle's form.
      const float x3 = __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, x), x), x);
      const float u = __fmul_rn(0.7978845608028654f, __fadd_rn(x, x3));
      return x / (1.0f + expf(-2.0f * u));
    } else if constexpr (A == Activation::kGeluErf) {
      return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    } else if constexpr (A == Activation::kSilu) {
      return x / (1.0f + expf(-x));
    } else {
      return tanhf(x);
    }
  }
};

struct SwigluF {
  __device__ float operator()(const float* v) const {
    return __fmul_rn(v[0] / (1.0f + expf(-v[0])), v[1]);
  }
};
struct AddF {
  __device__ float operator()(const float* v) const { return __fadd_rn(v[0], v[1]); }
};
struct MulF {
  __device__ float operator()(const float* v) const { return __fmul_rn(v[0], v[1]); }
};
// r + g·v
struct GatedResidualF {
  __device__ float operator()(const float* v) const {
    return __fadd_rn(v[0], __fmul_rn(v[1], v[2]));
  }
};
// x·(1 + scale) + shift, operands (x, shift, scale)
struct ModulateF {
  __device__ float operator()(const float* v) const {
    return __fadd_rn(__fmul_rn(v[0], __fadd_rn(1.0f, v[2])), v[1]);
  }
};
// x + 1/(alpha + 1e-9)·sin(alpha·x)², operands (x, alpha)
struct SnakeF {
  __device__ float operator()(const float* v) const {
    const float inv = 1.0f / __fadd_rn(v[1], 1e-9f);
    const float s = sinf(__fmul_rn(v[1], v[0]));
    return __fadd_rn(v[0], __fmul_rn(inv, __fmul_rn(s, s)));
  }
};

template <int N, typename F, bool kSmall>
__global__ void map_strided(StridedNd L, FloatOut y, Inputs<N> in, int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    int64_t off[N + 1];
    if constexpr (kSmall)
      nd_offsets32<N + 1>(L, static_cast<uint32_t>(i), off);
    else
      nd_offsets<N + 1>(L, i, off);
    float v[N];
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = load_float(in.in[k], off[k + 1]);
    store_float(y, off[0], f(v));
  }
}

// Operands of any float dtype whose innermost dim is a unit-stride run of a multiple of 4 (rows
// of the DiT's [B, L, C] activations, broadcast gates and all): four elements per thread, one
// offset computation and one vector access per operand for the four.
template <int N, typename F>
__global__ void map_quads(StridedNd L, FloatOut y, Inputs<N> in, uint32_t n4, F f) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    int64_t off[N + 1];
    nd_offsets32<N + 1>(L, 4 * i, off);
    float a[N][4];
#pragma unroll
    for (int k = 0; k < N; ++k) load4(in.in[k], off[k + 1], a[k]);
    float r[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float v[N];
#pragma unroll
      for (int k = 0; k < N; ++k) v[k] = a[k][e];
      r[e] = f(v);
    }
    store4(y, off[0], r);
  }
}

// All operands F32, contiguous and 16-byte aligned: four elements per thread per iteration.
template <int N, typename F>
__global__ void map_vec4(float* y, Ptrs<N> in, int64_t n4, F f) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n4;
       i += int64_t{gridDim.x} * blockDim.x) {
    float4 a[N];
#pragma unroll
    for (int k = 0; k < N; ++k) a[k] = reinterpret_cast<const float4*>(in.p[k])[i];
    float v[N], r[4];
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = a[k].x;
    r[0] = f(v);
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = a[k].y;
    r[1] = f(v);
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = a[k].z;
    r[2] = f(v);
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = a[k].w;
    r[3] = f(v);
    reinterpret_cast<float4*>(y)[i] = make_float4(r[0], r[1], r[2], r[3]);
  }
}

template <int N, typename F>
__global__ void map_contiguous(float* y, Ptrs<N> in, int64_t begin, int64_t n, F f) {
  for (int64_t i = begin + blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    float v[N];
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = in.p[k][i];
    y[i] = f(v);
  }
}

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

// map_quads applies: the innermost dim is a unit-stride run of a multiple of 4 for every operand,
// the rest aligned (quad_aligned), and 32-bit indices suffice.
template <int N>
bool quads_fit(const StridedNd& L, const Tensor& y, const Tensor* const (&in)[N]) {
  const int last = L.rank - 1;
  if (!vector_rows_enabled() || L.numel() >= (int64_t{1} << 32) || L.dims[last] % 4 != 0)
    return false;
  for (int k = 0; k <= N; ++k)
    if (L.strides[k][last] != 1) return false;
  if constexpr (N == 1) return quad_aligned(L, {&y, in[0]}, last);
  if constexpr (N == 2) return quad_aligned(L, {&y, in[0], in[1]}, last);
  if constexpr (N == 3) return quad_aligned(L, {&y, in[0], in[1], in[2]}, last);
}

// y = f(in...) over y's shape. Checks: y float and writable, inputs float of y's shape, all on
// the device.
template <int N, typename F>
void map(cudaStream_t stream, const char* op, const Tensor& y, const Tensor* const (&in)[N], F f) {
  check_device_float(y, op, "y");
  check_writable(y, op, "y");
  for (int k = 0; k < N; ++k) {
    check_device_float(*in[k], op, "input");
    check_shape(*in[k], y.shape(), op, "input");
  }
  const int64_t n = y.numel();
  if (n == 0) return;
  StridedNd L;
  if constexpr (N == 1) L = make_nd({&y, in[0]});
  if constexpr (N == 2) L = make_nd({&y, in[0], in[1]});
  if constexpr (N == 3) L = make_nd({&y, in[0], in[1], in[2]});
  bool fast = L.contiguous() && y.dtype() == DType::kF32 && aligned16(y.raw());
  for (int k = 0; k < N; ++k)
    fast = fast && in[k]->dtype() == DType::kF32 && aligned16(in[k]->raw());
  if (fast) {
    // After coalescing, a contiguous nest starts at each tensor's data pointer.
    Ptrs<N> p;
    for (int k = 0; k < N; ++k) p.p[k] = in[k]->template data<float>();
    const int64_t n4 = n / 4;
    if (n4 > 0) map_vec4<N><<<grid_for(n4), kThreads, 0, stream>>>(y.data<float>(), p, n4, f);
    if (n4 * 4 < n) map_contiguous<N><<<1, 32, 0, stream>>>(y.data<float>(), p, n4 * 4, n, f);
  } else {
    Inputs<N> ins;
    for (int k = 0; k < N; ++k) ins.in[k] = float_in(*in[k]);
    if (quads_fit(L, y, in)) {
      const int64_t n4 = n / 4;
      map_quads<N><<<grid_for(n4), kThreads, 0, stream>>>(L, float_out(y), ins,
                                                          static_cast<uint32_t>(n4), f);
      FOLEY_CUDA_CHECK(cudaGetLastError());
      return;
    }
    // Every nest here fits 32-bit index math unless it has 2³² elements or more.
    if (n < (int64_t{1} << 32))
      map_strided<N, F, true><<<grid_for(n), kThreads, 0, stream>>>(L, float_out(y), ins, n, f);
    else
      map_strided<N, F, false><<<grid_for(n), kThreads, 0, stream>>>(L, float_out(y), ins, n, f);
  }
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void CudaBackend::activation(Activation act, const Tensor& x, const Tensor& y) {
  const Tensor* in[1] = {&x};
  switch (act) {
    case Activation::kGeluTanh:
      return map(stream_, "activation", y, in, ActivationF<Activation::kGeluTanh>{});
    case Activation::kGeluErf:
      return map(stream_, "activation", y, in, ActivationF<Activation::kGeluErf>{});
    case Activation::kSilu:
      return map(stream_, "activation", y, in, ActivationF<Activation::kSilu>{});
    case Activation::kTanh:
      return map(stream_, "activation", y, in, ActivationF<Activation::kTanh>{});
  }
  FOLEY_CHECK(false, "activation: unknown kind %d", static_cast<int>(act));
}

void CudaBackend::swiglu(const Tensor& a, const Tensor& b, const Tensor& y) {
  const Tensor* in[2] = {&a, &b};
  map(stream_, "swiglu", y, in, SwigluF{});
}

void CudaBackend::add(const Tensor& a, const Tensor& b, const Tensor& y) {
  const Tensor* in[2] = {&a, &b};
  map(stream_, "add", y, in, AddF{});
}

void CudaBackend::mul(const Tensor& a, const Tensor& b, const Tensor& y) {
  const Tensor* in[2] = {&a, &b};
  map(stream_, "mul", y, in, MulF{});
}

void CudaBackend::gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y) {
  check_device_f32(x, "gated_residual", "x");
  const Tensor* in[3] = {&x, &gate, &y};
  map(stream_, "gated_residual", x, in, GatedResidualF{});
}

void CudaBackend::modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                           const Tensor& y) {
  const Tensor* in[3] = {&x, &shift, &scale};
  map(stream_, "modulate", y, in, ModulateF{});
}

void CudaBackend::snake(const Tensor& x, const Tensor& alpha, const Tensor& y) {
  const char* op = "snake";
  FOLEY_CHECK(x.rank() >= 1, "snake: x must have rank >= 1");
  check_vector(alpha, x.dim(-1), op, "alpha");
  const Tensor a = alpha.expand(y.shape());
  const Tensor* in[2] = {&x, &a};
  map(stream_, op, y, in, SnakeF{});
}

}  // namespace cuda
}  // namespace foley
