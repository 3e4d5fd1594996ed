// Strided iteration and argument checks shared by the CUDA data-movement, elementwise and
// row-wise kernels (cuda_backend.cu, cuda_elementwise.cu, cuda_norm.cu). Included by .cu files
// only, so it stays C++17.
//
// A loop nest is described on the host by StridedNd: the common shape of up to kMaxOps operands
// with size-1 dims dropped and adjacent dims merged where every operand allows it, so contiguous
// tensors become one dim and a [B, T, C] tensor with a stride-0 T broadcast becomes [B, T·C]
// only where that is exact. Kernels turn a flat index into per-operand element offsets with
// 64-bit div/mod over the (at most 6) remaining dims.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "backend/cuda/cuda_internal.h"
#include "core/dtype.h"

namespace foley {
namespace cuda {

constexpr int kMaxOps = 4;

struct StridedNd {
  int rank = 0;  // >= 1 after make_nd (a scalar is one dim of size 1)
  int nops = 0;
  int64_t dims[kMaxRank] = {};
  int64_t strides[kMaxOps][kMaxRank] = {};  // elements

  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < rank; ++d) n *= dims[d];
    return n;
  }
  // Every operand is one unit-stride run (after coalescing).
  bool contiguous() const {
    if (rank != 1) return false;
    for (int o = 0; o < nops; ++o)
      if (strides[o][0] != 1) return false;
    return true;
  }
};

// ops[0] defines the shape; every operand must have exactly that shape. With skip_last the last
// dim is left out of the nest (row-wise ops: the nest enumerates rows).
StridedNd make_nd(std::initializer_list<const Tensor*> ops, bool skip_last = false);

// Element offset of operand `op` for flat position `i` of the nest.
__device__ __forceinline__ int64_t nd_offset(const StridedNd& L, int op, int64_t i) {
  int64_t off = 0;
  for (int d = L.rank - 1; d >= 0; --d) {
    const int64_t n = L.dims[d];
    const int64_t q = i / n;
    off += (i - q * n) * L.strides[op][d];
    i = q;
  }
  return off;
}

// All operand offsets at once (one div/mod chain for all of them).
template <int N>
__device__ __forceinline__ void nd_offsets(const StridedNd& L, int64_t i, int64_t (&off)[N]) {
#pragma unroll
  for (int o = 0; o < N; ++o) off[o] = 0;
  for (int d = L.rank - 1; d >= 0; --d) {
    const int64_t n = L.dims[d];
    const int64_t q = i / n;
    const int64_t r = i - q * n;
#pragma unroll
    for (int o = 0; o < N; ++o) off[o] += r * L.strides[o][d];
    i = q;
  }
}

// nd_offsets for nests of fewer than 2³² elements: the flat index is split with 32-bit
// division, several times cheaper than the 64-bit emulation (the offsets stay 64-bit).
template <int N>
__device__ __forceinline__ void nd_offsets32(const StridedNd& L, uint32_t i, int64_t (&off)[N]) {
#pragma unroll
  for (int o = 0; o < N; ++o) off[o] = 0;
  for (int d = L.rank - 1; d >= 0; --d) {
    const uint32_t n = static_cast<uint32_t>(L.dims[d]);
    const uint32_t q = i / n;
    const int64_t r = static_cast<int64_t>(i - q * n);
#pragma unroll
    for (int o = 0; o < N; ++o) off[o] += r * L.strides[o][d];
    i = q;
  }
}

// ---- dtype conversions (the same rounding as core/dtype.h on the host) -------------------------

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) {
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
}
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
__device__ __forceinline__ float f16_bits_to_f32(uint16_t h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
__device__ __forceinline__ uint16_t f32_to_f16_bits(float f) {
  uint16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}

// A float operand of any compute dtype, read as F32.
struct FloatIn {
  const void* p;
  int dtype;  // static_cast<int>(DType)
};
__device__ __forceinline__ float load_float(const FloatIn& in, int64_t i) {
  if (in.dtype == static_cast<int>(DType::kF32)) return static_cast<const float*>(in.p)[i];
  const uint16_t h = static_cast<const uint16_t*>(in.p)[i];
  return in.dtype == static_cast<int>(DType::kBF16) ? bf16_bits_to_f32(h) : f16_bits_to_f32(h);
}

// A float operand of any compute dtype, written from F32 (round to nearest even).
struct FloatOut {
  void* p;
  int dtype;
};
__device__ __forceinline__ void store_float(const FloatOut& out, int64_t i, float v) {
  if (out.dtype == static_cast<int>(DType::kF32)) {
    static_cast<float*>(out.p)[i] = v;
  } else {
    static_cast<uint16_t*>(out.p)[i] =
        out.dtype == static_cast<int>(DType::kBF16) ? f32_to_bf16_bits(v) : f32_to_f16_bits(v);
  }
}

// Four consecutive elements of an operand at element offset i (a multiple of 4, see
// quad_aligned): one 16-byte (F32) or 8-byte (16-bit) access instead of four scalar ones. The
// row kernels' bandwidth was bound by scalar, dtype-switched loads (350-800 GB/s on an H100).
__device__ __forceinline__ void load4(const FloatIn& in, int64_t i, float (&v)[4]) {
  if (in.dtype == static_cast<int>(DType::kF32)) {
    const float4 q = *reinterpret_cast<const float4*>(static_cast<const float*>(in.p) + i);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    return;
  }
  const uint2 q = *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(in.p) + i);
  const uint16_t h[4] = {static_cast<uint16_t>(q.x & 0xffffu), static_cast<uint16_t>(q.x >> 16),
                         static_cast<uint16_t>(q.y & 0xffffu), static_cast<uint16_t>(q.y >> 16)};
  const bool bf16 = in.dtype == static_cast<int>(DType::kBF16);
#pragma unroll
  for (int k = 0; k < 4; ++k) v[k] = bf16 ? bf16_bits_to_f32(h[k]) : f16_bits_to_f32(h[k]);
}

__device__ __forceinline__ void store4(const FloatOut& out, int64_t i, const float (&v)[4]) {
  if (out.dtype == static_cast<int>(DType::kF32)) {
    *reinterpret_cast<float4*>(static_cast<float*>(out.p) + i) =
        make_float4(v[0], v[1], v[2], v[3]);
    return;
  }
  uint16_t h[4];
  const bool bf16 = out.dtype == static_cast<int>(DType::kBF16);
#pragma unroll
  for (int k = 0; k < 4; ++k) h[k] = bf16 ? f32_to_bf16_bits(v[k]) : f32_to_f16_bits(v[k]);
  *reinterpret_cast<uint2*>(static_cast<uint16_t*>(out.p) + i) =
      make_uint2(h[0] | (uint32_t{h[1]} << 16), h[2] | (uint32_t{h[3]} << 16));
}

// Every operand's base is aligned to 4 elements and its stride along each of the nest's first
// `ndims` dims (size-1 dims aside) is a multiple of 4, so offsets of multiples of 4 along a
// unit-stride run take load4/store4.
bool quad_aligned(const StridedNd& L, std::initializer_list<const Tensor*> ops, int ndims);

// Whether the vector-load row kernels (elementwise quads, warp-per-row norms, attention's quad
// packing) are on: the default since they were measured on an H100 (the 10-s step 24.2 -> 21.1
// ms, BENCHMARKS.md run O); FOLEY_CUDA_VECTOR_ROWS=0 takes the scalar kernels (the CUDA op tests
// cover both settings).
bool vector_rows_enabled();

// ---- launch and checks -----------------------------------------------------------------------

constexpr int kThreads = 256;
inline unsigned grid_for(int64_t n, int threads = kThreads, int64_t cap = int64_t{1} << 20) {
  int64_t g = (n + threads - 1) / threads;
  if (g > cap) g = cap;  // grid-stride loops cover the rest
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

// A defined tensor in this backend's device memory.
void check_device(const Tensor& t, const char* op, const char* what);
// ... of dtype F32 (outputs and row-wise activations).
void check_device_f32(const Tensor& t, const char* op, const char* what);
// ... of dtype F32, BF16 or F16 (parameters and second operands).
void check_device_float(const Tensor& t, const char* op, const char* what);
// No dim of size > 1 with stride 0: writing through it would race.
void check_writable(const Tensor& t, const char* op, const char* what);
// A contiguous 1-D parameter vector of length n in any float dtype.
void check_vector(const Tensor& t, int64_t n, const char* op, const char* what);

inline FloatIn float_in(const Tensor& t) {
  return {t.raw(), static_cast<int>(t.dtype())};
}
inline FloatOut float_out(const Tensor& t) {
  return {t.raw(), static_cast<int>(t.dtype())};
}

}  // namespace cuda
}  // namespace foley
