// Fused attention (FlashAttention-2 style) for head dims 64 and 128: bf16 tensor-core products
// (mma.sync m16n8k16, f32 accumulation) with an online softmax in f32, so the Lq × Lk scores
// never leave registers. q, k and v are packed (and rotated) into bf16 [pair, L, D] panels first;
// the kernel writes f32 or bf16 straight into out's strided view.
//
// Numerics differ from the F32 path by the bf16 rounding of q, k, v and of the probabilities
// (~3e-3 relative): the precision of the reference's SDPA on bf16 tensors, so it is the default
// for bf16 inputs and opt-in for F32 ones (cuda_attention.cu).
//
// One block = 64 queries of one (batch, head) pair, 4 warps of 16 query rows each; key/value
// tiles of 64 rows stream through two shared-memory buffers with cp.async, the next tile loading
// while the current one is multiplied (rows padded by 8 elements so ldmatrix is free of bank
// conflicts).
#include <cuda_bf16.h>

#include <algorithm>

#include "backend/cuda/cuda_dense.h"
#include "backend/cuda/cuda_flash_attention.h"

namespace foley {
namespace cuda {
namespace {

constexpr int kRows = 64;  // queries per block and keys per tile
constexpr int kWarps = 4;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a·b for one m16n8k16 bf16 tile.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Asynchronous copy of rows [r0, r0 + kRows) of a contiguous [L, D] bf16 panel into shared
// memory (row stride D + 8); rows past L are zero-filled (source size 0).
template <int D>
__device__ __forceinline__ void load_tile_async(const __nv_bfloat16* panel, int64_t L, int64_t r0,
                                                __nv_bfloat16* s) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
#pragma unroll
  for (int i = threadIdx.x; i < kRows * kChunks; i += kWarps * 32) {
    const int r = i / kChunks, c = i % kChunks;
    const bool inside = r0 + r < L;
    const __nv_bfloat16* src = panel + (inside ? (r0 + r) * D + c * 8 : 0);
    asm volatile(
        "cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(s + r * (D + 8) + c * 8)),
        "l"(src), "r"(inside ? 16 : 0));
  }
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::);
}

__device__ __forceinline__ void store_out(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void store_out(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}

template <int D, typename Out>
__global__ void __launch_bounds__(kWarps * 32)
    flash_forward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                  int64_t Lq, int64_t Lk, float scale_log2, int64_t p0, int64_t H, Out* out,
                  int64_t osb, int64_t osl, int64_t osh) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int kLd = D + 8;
  // Q, then two buffers of (K, V) tiles: the next tile loads while this one is multiplied.
  __nv_bfloat16* sq = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* skv = sq + kRows * kLd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t group_pair = blockIdx.y;
  const int64_t q0 = int64_t(blockIdx.x) * kRows;
  const __nv_bfloat16* qp = q + group_pair * Lq * D;
  const __nv_bfloat16* kp = k + group_pair * Lk * D;
  const __nv_bfloat16* vp = v + group_pair * Lk * D;

  load_tile_async<D>(qp, Lq, q0, sq);
  load_tile_async<D>(kp, Lk, 0, skv);
  load_tile_async<D>(vp, Lk, 0, skv + kRows * kLd);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  // This warp's 16 query rows as A fragments, one per 16-wide slice of D.
  uint32_t qa[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    ldmatrix_x4(qa[kk], sq + (warp * 16 + lane % 16) * kLd + kk * 16 + (lane / 16) * 8);

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  int buf = 0;
  for (int64_t k0 = 0; k0 < Lk; k0 += kRows, buf ^= 1) {
    // The other buffer was last read in the previous iteration, which ended in a barrier.
    if (k0 + kRows < Lk) {
      __nv_bfloat16* next = skv + (buf ^ 1) * 2 * kRows * kLd;
      load_tile_async<D>(kp, Lk, k0 + kRows, next);
      load_tile_async<D>(vp, Lk, k0 + kRows, next + kRows * kLd);
      cp_async_commit();
    }
    const __nv_bfloat16* sk = skv + buf * 2 * kRows * kLd;
    const __nv_bfloat16* sv = sk + kRows * kLd;

    // S = Q·Kᵀ for 16 rows × 64 keys: 8 n-tiles of 8 keys.
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < 8; j += 2) {
        uint32_t b[4];  // keys of n-tiles j and j+1, d slice kk (low and high halves)
        ldmatrix_x4(b,
                    sk + (8 * (j + lane / 16) + lane % 8) * kLd + kk * 16 + ((lane / 8) % 2) * 8);
        mma_bf16(s[j], qa[kk], b[0], b[1]);
        mma_bf16(s[j + 1], qa[kk], b[2], b[3]);
      }
    }
    // Online softmax; this thread holds rows lane/4 (r = 0) and lane/4 + 8 (r = 1), columns
    // 8j + 2(lane%4) + {0, 1}.
    float mx[2] = {m[0], m[1]};
    const int valid = Lk - k0 < kRows ? int(Lk - k0) : kRows;  // keys of this tile
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = 8 * j + 2 * (lane % 4) + (e & 1);
        const float val = col < valid ? s[j][e] * scale_log2 : -INFINITY;
        s[j][e] = val;
        mx[e / 2] = fmaxf(mx[e / 2], val);
      }
    float corr[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      corr[r] = exp2f(m[r] - mx[r]);  // m = -inf on the first tile: corr = 0
      m[r] = mx[r];
      l[r] *= corr[r];
    }
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n][0] *= corr[0], o[n][1] *= corr[0];
      o[n][2] *= corr[1], o[n][3] *= corr[1];
    }
    uint32_t pa[4][4];  // P as A fragments: keys 16i..16i+15 are n-tiles 2i and 2i+1
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        p[e] = exp2f(s[j][e] - m[e / 2]);
        l[e / 2] += p[e];
      }
      pa[j / 2][(j % 2) * 2 + 0] = pack_bf16(p[0], p[1]);
      pa[j / 2][(j % 2) * 2 + 1] = pack_bf16(p[2], p[3]);
    }
    // O += P·V: V tile [64 keys, D] read transposed as B fragments.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int n = 0; n < D / 8; n += 2) {
        uint32_t b[4];
        ldmatrix_x4_trans(
            b, sv + (16 * i + lane % 8 + ((lane / 8) % 2) * 8) * kLd + 8 * (n + lane / 16));
        mma_bf16(o[n], pa[i], b[0], b[1]);
        mma_bf16(o[n + 1], pa[i], b[2], b[3]);
      }
    }
    cp_async_wait_all();
    __syncthreads();
  }
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    inv[r] = 1.0f / l[r];
  }
  const int64_t pair = p0 + group_pair;
  Out* ob = out + (pair / H) * osb + (pair % H) * osh;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = q0 + warp * 16 + lane / 4 + 8 * r;
    if (row >= Lq) continue;
    Out* orow = ob + row * osl;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const int d = 8 * n + 2 * (lane % 4);
      store_out(orow + d, o[n][2 * r] * inv[r]);
      store_out(orow + d + 1, o[n][2 * r + 1] * inv[r]);
    }
  }
}

template <int D, typename Out>
void launch(const FlashArgs& a, cudaStream_t stream) {
  const int smem = 5 * kRows * (D + 8) * 2;  // Q + two (K, V) buffers
  static const bool configured = [&] {
    FOLEY_CUDA_CHECK(cudaFuncSetAttribute(flash_forward<D, Out>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    return true;
  }();
  (void)configured;
  const dim3 grid(static_cast<unsigned>((a.Lq + kRows - 1) / kRows),
                  static_cast<unsigned>(a.pairs));
  flash_forward<D, Out><<<grid, kWarps * 32, smem, stream>>>(
      static_cast<const __nv_bfloat16*>(a.q), static_cast<const __nv_bfloat16*>(a.k),
      static_cast<const __nv_bfloat16*>(a.v), a.Lq, a.Lk, a.scale * 1.4426950408889634f, a.p0, a.H,
      static_cast<Out*>(a.out), a.osb, a.osl, a.osh);
  FOLEY_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

bool flash_supports(int64_t D, int64_t Dv) {
  return D == Dv && (D == 64 || D == 128);
}

void flash_attention(const FlashArgs& a, cudaStream_t stream) {
  FOLEY_CHECK(a.pairs >= 1 && a.pairs <= 65535 && a.Lq >= 1 && a.Lk >= 1,
              "flash attention: bad launch (pairs %lld)", static_cast<long long>(a.pairs));
  if (a.D == 64) return a.out_bf16 ? launch<64, __nv_bfloat16>(a, stream) : launch<64, float>(a, stream);
  if (a.D == 128)
    return a.out_bf16 ? launch<128, __nv_bfloat16>(a, stream) : launch<128, float>(a, stream);
  not_supported("flash attention for this head dim");
}

}  // namespace cuda
}  // namespace foley
