// Products of at most four rows with a 16-bit [N, K] weight: the DiT's per-sample modulation
// projections (M = 2, N up to 9·1536, once per block and step). They are weight-read bound, and
// cuBLASLt's kernels for them read the weights at ~1.2 TB/s on an H100; one warp per output
// column with 16-byte loads, several in flight per lane, streams them at close to the
// memory's rate. f32 accumulation as the GEMM; only the summation order differs from it.
// Opt-in (FOLEY_CUDA_GEMV=1): the DiT's M = 2 modulation products it was written for now run
// once per schedule at M = 50 (Mmdit's timestep table), so on an H100 it changed no step time
// (BENCHMARKS.md, run O).
#include <cuda_bf16.h>

#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_dense.h"
#include "backend/cuda/cuda_strided.h"

namespace foley {
namespace cuda {
namespace {

constexpr int kGemvWarps = 4;
constexpr int kMaxGemvRows = 4;

// Eight 16-bit values packed in a uint4, as f32.
template <bool kBf16>
__device__ __forceinline__ void unpack8(const uint4& q, float (&f)[8]) {
  const uint32_t u[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint16_t lo = static_cast<uint16_t>(u[i] & 0xffffu),
                   hi = static_cast<uint16_t>(u[i] >> 16);
    f[2 * i] = kBf16 ? bf16_bits_to_f32(lo) : f16_bits_to_f32(lo);
    f[2 * i + 1] = kBf16 ? bf16_bits_to_f32(hi) : f16_bits_to_f32(hi);
  }
}

template <int M, bool kBf16>
__global__ void __launch_bounds__(32 * kGemvWarps)
    gemv_rows(const uint16_t* __restrict__ w, int64_t ldw, const uint16_t* __restrict__ x,
              int64_t ldx, int64_t N, int64_t K, const float* bias, FloatOut y, int64_t ldy,
              float beta) {
  const int lane = threadIdx.x & 31;
  const int64_t n = int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  if (n >= N) return;
  const uint16_t* wr = w + n * ldw;
  float acc[M] = {};
#pragma unroll 4
  for (int64_t k = 8 * lane; k < K; k += 8 * 32) {
    float wf[8];
    unpack8<kBf16>(__ldg(reinterpret_cast<const uint4*>(wr + k)), wf);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float xf[8];
      unpack8<kBf16>(__ldg(reinterpret_cast<const uint4*>(x + m * ldx + k)), xf);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[m] = fmaf(wf[i], xf[i], acc[m]);
    }
  }
#pragma unroll
  for (int m = 0; m < M; ++m)
    for (int o = 16; o > 0; o >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
  if (lane < M) {
    float v = acc[0];
#pragma unroll
    for (int m = 1; m < M; ++m)
      if (lane == m) v = acc[m];
    const int64_t at = lane * ldy + n;
    if (bias) {
      // cuBLASLt's epilogue adds the bias rounded to a 16-bit y's dtype (run_gemm hands it
      // one); the same here.
      float b = bias[n];
      if (y.dtype == static_cast<int>(DType::kBF16)) b = bf16_bits_to_f32(f32_to_bf16_bits(b));
      if (y.dtype == static_cast<int>(DType::kF16)) b = f16_bits_to_f32(f32_to_f16_bits(b));
      v += b;
    }
    if (beta != 0.0f) v += beta * load_float({y.p, y.dtype}, at);
    store_float(y, at, v);
  }
}

bool aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

template <int M>
void launch(const DeviceGemm& g, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((g.N + kGemvWarps - 1) / kGemvWarps);
  const auto* w = static_cast<const uint16_t*>(g.w);
  const auto* x = static_cast<const uint16_t*>(g.x);
  const FloatOut y{g.y, static_cast<int>(g.ydt)};
  if (g.wdt == DType::kBF16)
    gemv_rows<M, true><<<blocks, 32 * kGemvWarps, 0, stream>>>(w, g.ldw, x, g.ldx, g.N, g.K, g.bias,
                                                               y, g.ldy, g.beta);
  else
    gemv_rows<M, false><<<blocks, 32 * kGemvWarps, 0, stream>>>(w, g.ldw, x, g.ldx, g.N, g.K,
                                                                g.bias, y, g.ldy, g.beta);
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

bool gemv_fits(const DeviceGemm& g) {
  static const bool enabled = [] {
    const char* v = std::getenv("FOLEY_CUDA_GEMV");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  // 16-byte loads of w's and x's rows; the grid's x limit bounds N.
  return enabled && g.batch == 1 && g.M >= 1 && g.M <= kMaxGemvRows && !g.w_kn &&
         (g.wdt == DType::kBF16 || g.wdt == DType::kF16) && g.xdt == g.wdt && g.K % 8 == 0 &&
         g.ldw % 8 == 0 && g.ldx % 8 == 0 && aligned(g.w, 16) && aligned(g.x, 16) &&
         g.N / kGemvWarps < (int64_t{1} << 31);
}

void run_gemv(CudaBackend& be, const DeviceGemm& g) {
  switch (g.M) {
    case 1:
      return launch<1>(g, be.stream());
    case 2:
      return launch<2>(g, be.stream());
    case 3:
      return launch<3>(g, be.stream());
    default:
      return launch<4>(g, be.stream());
  }
}

}  // namespace cuda
}  // namespace foley
