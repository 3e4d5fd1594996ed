// CUDA attention: out = softmax(q·kᵀ·scale)·v, per (batch, head) pair, no mask.
//
// The straightforward three-phase form, in F32 throughout (parity with the CPU oracle):
//  1. pack q, k (rotated by the optional RoPE tables) and v from their strided [B, L, H, D]
//     views into contiguous [pair, L, D] scratch panels (strided inputs such as slices of a fused
//     QKV buffer cost nothing extra, and RoPE never touches the inputs);
//  2. S = Q·Kᵀ as one strided-batched cuBLASLt GEMM over the pairs, a row softmax (one warp per
//     row, max-subtracted, scaled) in place, then O = P·V as a second batched GEMM;
//  3. scatter O into out's [B, Lq, H, Dv] view.
// Pairs go in groups that bound the score scratch (~64 MB), so long sequences with many heads
// and Synchformer's ~10⁵ tiny groups both fit.
// q, k, v and out may also be 16-bit (all of q, k, v one dtype; out that dtype or F32). BF16
// inputs with head dims 64 and 128 take the fused bf16 kernel (cuda_flash_attention.cu) after
// packing bf16 panels with the same pack kernel: that is the reference's own precision (SDPA on
// bf16 tensors, model-spec §2.7), so it is the default there; FOLEY_CUDA_ATTENTION=exact sends
// them through the F32 path instead, and FOLEY_CUDA_ATTENTION=flash sends F32 inputs through
// the fused kernel.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "backend/cuda/cuda_dense.h"
#include "backend/cuda/cuda_flash_attention.h"
#include "backend/cuda/cuda_strided.h"

namespace foley {
namespace cuda {

namespace {

// 64 MB of panels and scores per group: the backend scratch arena keeps its high-water mark for
// the Generator's lifetime, and groups of this size already give batched GEMMs of >= 10 pairs
// for SigLIP2's 1024-token frames. Measured on an H100: 0.14 GB less device memory than a 256 MB
// budget, for ~30 ms more SigLIP2 attention per 10 s clip (BENCHMARKS.md, run H).
constexpr int64_t kScoreBudgetFloats = int64_t{16} << 20;

// A [B, L, H, D] view of any float dtype: base pointer and element strides.
struct HeadView {
  FloatIn p;
  int64_t sb, sl, sh;
};

HeadView head_view(const Tensor& t) {
  return {float_in(t), t.stride(0), t.stride(1), t.stride(2)};
}

// out[pair, l, d] = view[b, l, h, d] for pairs p0.. (pair = b·H + h), rotated when cos/sin given
// (adjacent pairs: (x0, x1) -> (x0·c − x1·s, x1·c + x0·s)).
__device__ __forceinline__ void store(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}

// Rows are spread as grid (ceil(L / 8), pairs) × block (32, 8): one row per threadIdx.y, the
// lanes over d, so no per-element 64-bit division (which dominated a flat-index version).
constexpr int kRowsPerBlock = 8;

template <typename Out>
__global__ void pack_heads(HeadView in, int64_t p0, int64_t H, int64_t L, int64_t D,
                           const float* cos, const float* sin, int64_t ldc, int64_t lds, Out* out) {
  const int64_t l = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (l >= L) return;
  const int64_t pair = p0 + blockIdx.y;
  const int64_t row = (pair / H) * in.sb + l * in.sl + (pair % H) * in.sh;
  Out* dst = out + (int64_t(blockIdx.y) * L + l) * D;
  for (int64_t d = threadIdx.x; d < D; d += 32) {
    float v = load_float(in.p, row + d);
    if (cos) {
      const float c = cos[l * ldc + d / 2], s = sin[l * lds + d / 2];
      const float x0 = load_float(in.p, row + (d & ~int64_t(1)));
      const float x1 = load_float(in.p, row + (d | 1));
      v = (d & 1) ? x1 * c + x0 * s : x0 * c - x1 * s;
    }
    store(dst + d, v);
  }
}

// pack_heads for quad-aligned views with D % 4 == 0 (every DiT and encoder head): four
// elements, two rotation pairs, per lane and one vector load and store for them, instead of a
// scalar load per element and two more for its rotation partner.
__device__ __forceinline__ void store_quad(float* p, const float (&v)[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void store_quad(__nv_bfloat16* p, const float (&v)[4]) {
  const __nv_bfloat162 lo = __floats2bfloat162_rn(v[0], v[1]),
                       hi = __floats2bfloat162_rn(v[2], v[3]);
  *reinterpret_cast<uint2*>(p) =
      make_uint2(*reinterpret_cast<const uint32_t*>(&lo), *reinterpret_cast<const uint32_t*>(&hi));
}

template <typename Out>
__global__ void pack_head_quads(HeadView in, int64_t p0, int64_t H, int64_t L, int64_t D,
                                const float* cos, const float* sin, int64_t ldc, int64_t lds,
                                Out* out) {
  const int64_t l = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (l >= L) return;
  const int64_t pair = p0 + blockIdx.y;
  const int64_t row = (pair / H) * in.sb + l * in.sl + (pair % H) * in.sh;
  Out* dst = out + (int64_t(blockIdx.y) * L + l) * D;
  for (int64_t d = 4 * threadIdx.x; d < D; d += 4 * 32) {
    float v[4];
    load4(in.p, row + d, v);
    if (cos) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float c = cos[l * ldc + d / 2 + h], s = sin[l * lds + d / 2 + h];
        const float x0 = v[2 * h], x1 = v[2 * h + 1];
        v[2 * h] = x0 * c - x1 * s;
        v[2 * h + 1] = x1 * c + x0 * s;
      }
    }
    store_quad(dst + d, v);
  }
}

bool head_quads_fit(const Tensor& t) {
  const int64_t es = int64_t(dtype_size(t.dtype()));
  if (!vector_rows_enabled() || t.dim(3) % 4 != 0 ||
      reinterpret_cast<uintptr_t>(t.raw()) % (4 * es) != 0)
    return false;
  for (int d = 0; d < 3; ++d)
    if (t.dim(d) > 1 && t.stride(d) % 4 != 0) return false;
  return true;
}

// out view[b, l, h, d] = O[pair, l, d], same launch shape as pack_heads.
__global__ void scatter_heads(const float* o, int64_t p0, int64_t H, int64_t L, int64_t D,
                              FloatOut out, int64_t sb, int64_t sl, int64_t sh) {
  const int64_t l = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (l >= L) return;
  const int64_t pair = p0 + blockIdx.y;
  const float* src = o + (int64_t(blockIdx.y) * L + l) * D;
  const int64_t dst = (pair / H) * sb + l * sl + (pair % H) * sh;
  for (int64_t d = threadIdx.x; d < D; d += 32) store_float(out, dst + d, src[d]);
}

dim3 row_grid(int64_t L, int64_t pairs) {
  return dim3(static_cast<unsigned>((L + kRowsPerBlock - 1) / kRowsPerBlock),
              static_cast<unsigned>(pairs));
}
const dim3 kRowBlock(32, kRowsPerBlock);

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Rows of S [rows, n] -> softmax(S·scale), one warp per row.
__global__ void softmax_rows(float* S, int64_t rows, int64_t n, float scale) {
  const int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  float* r = S + row * n;
  float m = -INFINITY;
  for (int64_t j = lane; j < n; j += 32) m = fmaxf(m, r[j] * scale);
  m = warp_max(m);
  float sum = 0.0f;
  for (int64_t j = lane; j < n; j += 32) {
    const float e = expf(r[j] * scale - m);
    r[j] = e;
    sum += e;
  }
  const float inv = 1.0f / warp_sum(sum);
  for (int64_t j = lane; j < n; j += 32) r[j] *= inv;
}

void check_rope(const RopeTable& t, int64_t L, int64_t D, const char* what) {
  FOLEY_CHECK(D % 2 == 0, "attention: RoPE needs an even head dim, got %lld",
              static_cast<long long>(D));
  for (const Tensor* p : {&t.cos, &t.sin}) {
    check_activation(*p, "attention", what);
    FOLEY_CHECK(p->rank() == 2 && p->dim(0) >= L && p->dim(1) == D / 2,
                "attention: %s table must be F32 [>=%lld, %lld], got %s", what,
                static_cast<long long>(L), static_cast<long long>(D / 2), p->describe().c_str());
    check_last_contiguous(*p, "attention", what);
  }
}

// The fused bf16 kernel rounds q, k, v and the probabilities to bf16 (~3e-3 relative against
// the F32 oracle): the default for bf16 inputs, opt-in for F32 ones. Read per call so tests can
// switch it.
bool use_flash(DType dt, int64_t D, int64_t Dv) {
  if (!flash_supports(D, Dv)) return false;
  const char* mode = std::getenv("FOLEY_CUDA_ATTENTION");
  if (mode != nullptr && std::strcmp(mode, "exact") == 0) return false;
  if (dt == DType::kBF16) return true;
  return mode != nullptr && std::strcmp(mode, "flash") == 0 && dt == DType::kF32;
}

}  // namespace

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                            const Tensor& out, const RopeTable* rope_q, const RopeTable* rope_k) {
  const char* op = "attention";
  for (const Tensor* t : {&q, &k, &v, &out}) {
    check_activation16(*t, op, "q/k/v/out");
    FOLEY_CHECK(t->rank() == 4, "attention: q/k/v/out must be [B, L, H, D], got %s",
                t->describe().c_str());
    check_last_contiguous(*t, op, "q/k/v/out");
  }
  const int64_t B = q.dim(0), Lq = q.dim(1), H = q.dim(2), D = q.dim(3);
  const int64_t Lk = k.dim(1), Dv = v.dim(3);
  FOLEY_CHECK(k.shape() == Shape({B, Lk, H, D}) && v.shape() == Shape({B, Lk, H, Dv}) &&
                  out.shape() == Shape({B, Lq, H, Dv}),
              "attention: shapes q %s, k %s, v %s, out %s do not agree", q.describe().c_str(),
              k.describe().c_str(), v.describe().c_str(), out.describe().c_str());
  FOLEY_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype() &&
                  (out.dtype() == q.dtype() || out.dtype() == DType::kF32),
              "attention: q/k/v must share one dtype and out be that dtype or F32 (q %s, k %s, "
              "v %s, out %s)",
              dtype_name(q.dtype()), dtype_name(k.dtype()), dtype_name(v.dtype()),
              dtype_name(out.dtype()));
  if (rope_q) check_rope(*rope_q, Lq, D, "rope_q");
  if (rope_k) check_rope(*rope_k, Lk, D, "rope_k");
  if (out.numel() == 0) return;
  FOLEY_CHECK(Lk >= 1, "attention: no keys (Lk = 0) for %lld queries", static_cast<long long>(Lq));

  const int64_t pairs = B * H;
  const cudaStream_t s = stream();
  auto pack = [&](const Tensor& t, int64_t L, int64_t Dh, const RopeTable* rope, int64_t p0,
                  int64_t np, auto* dst) {
    const auto kernel = head_quads_fit(t) ? pack_head_quads<std::remove_pointer_t<decltype(dst)>>
                                          : pack_heads<std::remove_pointer_t<decltype(dst)>>;
    kernel<<<row_grid(L, np), kRowBlock, 0, s>>>(
        head_view(t), p0, H, L, Dh, rope ? rope->cos.data<float>() : nullptr,
        rope ? rope->sin.data<float>() : nullptr, rope ? rope->cos.stride(0) : 0,
        rope ? rope->sin.stride(0) : 0, dst);
    FOLEY_CUDA_CHECK(cudaGetLastError());
  };
  if (use_flash(q.dtype(), D, Dv)) {
    // bf16 panels of every pair in groups of at most 65535 (the grid's y limit).
    const int64_t group = std::min<int64_t>(pairs, 65535);
    Arena::Scope scope(scratch());
    auto* qb =
        static_cast<__nv_bfloat16*>(scratch().alloc_bytes(size_t(group * (Lq + 2 * Lk) * D) * 2));
    __nv_bfloat16* kb = qb + group * Lq * D;
    __nv_bfloat16* vb = kb + group * Lk * D;
    for (int64_t p0 = 0; p0 < pairs; p0 += group) {
      const int64_t np = std::min(group, pairs - p0);
      pack(q, Lq, D, rope_q, p0, np, qb);
      pack(k, Lk, D, rope_k, p0, np, kb);
      pack(v, Lk, D, nullptr, p0, np, vb);
      FlashArgs a;
      a.q = qb, a.k = kb, a.v = vb;
      a.Lq = Lq, a.Lk = Lk, a.D = D, a.scale = scale;
      a.p0 = p0, a.pairs = np, a.H = H;
      a.out = out.raw(), a.out_bf16 = out.dtype() == DType::kBF16;
      a.osb = out.stride(0), a.osl = out.stride(1), a.osh = out.stride(2);
      FOLEY_CHECK(out.dtype() == DType::kBF16 || out.dtype() == DType::kF32,
                  "attention: fused kernel output %s", dtype_name(out.dtype()));
      flash_attention(a, s);
    }
    return;
  }
  const int64_t per_pair = Lq * D + Lk * D + Lk * Dv + Lq * Lk + Lq * Dv;
  // At most 65535 pairs per group: the pack and scatter grids' y limit.
  const int64_t group =
      std::clamp<int64_t>(kScoreBudgetFloats / per_pair, 1, std::min<int64_t>(pairs, 65535));
  Arena::Scope scope(scratch());
  float* qp = static_cast<float*>(scratch().alloc_bytes(size_t(group * per_pair) * 4));
  float* kp = qp + group * Lq * D;
  float* vp = kp + group * Lk * D;
  float* sp = vp + group * Lk * Dv;
  float* op_ = sp + group * Lq * Lk;
  for (int64_t p0 = 0; p0 < pairs; p0 += group) {
    const int64_t np = std::min(group, pairs - p0);
    pack(q, Lq, D, rope_q, p0, np, qp);
    pack(k, Lk, D, rope_k, p0, np, kp);
    pack(v, Lk, Dv, nullptr, p0, np, vp);

    DeviceGemm g;  // S = Q·Kᵀ
    g.batch = np;
    g.M = Lq, g.N = Lk, g.K = D;
    g.x = qp, g.ldx = D, g.sx = Lq * D;
    g.w = kp, g.ldw = D, g.sw = Lk * D;
    g.y = sp, g.ldy = Lk, g.sy = Lq * Lk;
    run_gemm(*this, g);

    const int64_t rows = np * Lq;
    softmax_rows<<<blocks_for(rows * 32, 256), 256, 0, s>>>(sp, rows, Lk, scale);
    FOLEY_CUDA_CHECK(cudaGetLastError());

    DeviceGemm o;  // O = P·V
    o.batch = np;
    o.M = Lq, o.N = Dv, o.K = Lk;
    o.x = sp, o.ldx = Lk, o.sx = Lq * Lk;
    o.w = vp, o.ldw = Dv, o.sw = Lk * Dv, o.w_kn = true;
    o.y = op_, o.ldy = Dv, o.sy = Lq * Dv;
    run_gemm(*this, o);

    scatter_heads<<<row_grid(Lq, np), kRowBlock, 0, s>>>(
        op_, p0, H, Lq, Dv, float_out(out), out.stride(0), out.stride(1), out.stride(2));
    FOLEY_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace cuda
}  // namespace foley
