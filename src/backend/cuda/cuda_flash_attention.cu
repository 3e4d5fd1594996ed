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
//
// Short sequences give too few blocks for that to fill the card: the DiT's 24 pairs at L = 500
// are 192 blocks of 4 warps on 132 SMs, ~6 warps an SM, and each warp's chain of dependent
// ldmatrix/mma/exp2 then sets the time. The split kernel (flash_forward_split) runs 8 warps per
// block instead: two groups of 4 warps over the same 64 queries, group g taking key tiles g,
// g + 2, ... with its own online-softmax state, merged through shared memory at the end. Same
// work per block in half the sequential tiles, twice the warps an SM to hide latency. With
// FOLEY_CUDA_FLASH_SPLIT=auto it is used while the blocks would not fill two per SM and there are
// at least two key tiles; =1 forces it, and unset or 0 keeps the single-group kernel: on an H100
// the split one passed the op tests but gained nothing at the DiT's lengths (BENCHMARKS.md,
// run O).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_dense.h"
#include "backend/cuda/cuda_flash_attention.h"

namespace foley {
namespace cuda {
namespace {

constexpr int kRows = 64;  // queries per block and keys per tile
constexpr int kWarps = 4;  // warps per query tile (per key group in the split kernel)
constexpr int kGroupThreads = kWarps * 32;
constexpr int kGroups = 2;  // key groups of the split kernel
constexpr int kSplitThreads = kGroups * kGroupThreads;

// Shared memory of both kernels: five [64, D + 8] bf16 tiles (87 040 bytes for D = 128).
// Single-group kernel: Q + two (K, V) buffers. Split kernel: Q + one K and one V buffer per
// group. Two blocks must fit an SM (228 KB, ~113 KB a block) or L = 500's 192 blocks need a
// second wave; double-buffering both groups would take Q + 8 tiles = 139 KB, so each group
// instead overlaps its single K and V buffers as FlashAttention-2 does: K(t + 2) loads during the
// softmax and P·V of tile t, V(t + 2) during the next Q·Kᵀ, and the other group and block hide
// the rest.
template <int D>
constexpr int smem_bytes() {
  return 5 * kRows * (D + 8) * 2;
}

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
// memory (row stride D + 8) by kThreads threads (tid = 0 .. kThreads − 1); rows past L are
// zero-filled (source size 0). 32-bit offsets inside the tile keep the split kernel's registers
// down.
template <int D, int kThreads>
__device__ __forceinline__ void load_tile_async(const __nv_bfloat16* panel, int64_t L, int64_t r0,
                                                __nv_bfloat16* s, int tid) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  const __nv_bfloat16* base = panel + r0 * D;
  const int rows = L - r0 < kRows ? int(L - r0) : kRows;
#pragma unroll
  for (int i = tid; i < kRows * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const bool inside = r < rows;
    const __nv_bfloat16* src = inside ? base + (r * D + c * 8) : panel;
    asm volatile(
        "cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(s + r * (D + 8) + c * 8)),
        "l"(src), "r"(inside ? 16 : 0));
  }
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
// Waits until at most n of this thread's committed copy groups are still in flight.
template <int n>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(n) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
  cp_async_wait<0>();
}
// Barrier for the kGroupThreads threads of one key group (ids 1, 2; 0 is __syncthreads'), so a
// group never waits for the other one's tiles.
__device__ __forceinline__ void group_sync(int group) {
  // Immediate ids: a register id makes ptxas reserve all 16 barriers.
  if (group == 0)
    asm volatile("bar.sync 1, %0;\n" ::"n"(kGroupThreads) : "memory");
  else
    asm volatile("bar.sync 2, %0;\n" ::"n"(kGroupThreads) : "memory");
}

__device__ __forceinline__ void store_out(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void store_out(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}

// s += Q·Kᵀ for one warp's 16 query rows × the 64 keys of sk: 8 n-tiles of 8 keys. The Q
// fragments come from qa(kk), slice kk of D.
template <int D, typename QFrag>
__device__ __forceinline__ void tile_scores(float (&s)[8][4], QFrag qa, const __nv_bfloat16* sk,
                                            int lane) {
  constexpr int kLd = D + 8;
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const uint32_t(&a)[4] = qa(kk);
#pragma unroll
    for (int j = 0; j < 8; j += 2) {
      uint32_t b[4];  // keys of n-tiles j and j+1, d slice kk (low and high halves)
      ldmatrix_x4(b, sk + (8 * (j + lane / 16) + lane % 8) * kLd + kk * 16 + ((lane / 8) % 2) * 8);
      mma_bf16(s[j], a, b[0], b[1]);
      mma_bf16(s[j + 1], a, b[2], b[3]);
    }
  }
}

// One tile's online-softmax step: masks keys >= valid, updates the running max m and sum l,
// rescales o and leaves P (bf16, relative to the new max) in pa as A fragments. This thread holds
// rows lane/4 (r = 0) and lane/4 + 8 (r = 1), columns 8j + 2(lane%4) + {0, 1}; m is uniform
// over the 4 lanes of a row, l is this lane's partial sum.
template <int D>
__device__ __forceinline__ void tile_softmax(float (&s)[8][4], int valid, float scale_log2,
                                             float (&m)[2], float (&l)[2], float (&o)[D / 8][4],
                                             uint32_t (&pa)[4][4], int lane) {
  float mx[2] = {m[0], m[1]};
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
  // Keys 16i..16i+15 are n-tiles 2i and 2i+1.
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
}

// o += P·V: the V tile [64 keys, D] read transposed as B fragments.
template <int D>
__device__ __forceinline__ void tile_pv(float (&o)[D / 8][4], const uint32_t (&pa)[4][4],
                                        const __nv_bfloat16* sv, int lane) {
  constexpr int kLd = D + 8;
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
  const int tid = threadIdx.x;

  load_tile_async<D, kGroupThreads>(qp, Lq, q0, sq, tid);
  load_tile_async<D, kGroupThreads>(kp, Lk, 0, skv, tid);
  load_tile_async<D, kGroupThreads>(vp, Lk, 0, skv + kRows * kLd, tid);
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
      load_tile_async<D, kGroupThreads>(kp, Lk, k0 + kRows, next, tid);
      load_tile_async<D, kGroupThreads>(vp, Lk, k0 + kRows, next + kRows * kLd, tid);
      cp_async_commit();
    }
    const __nv_bfloat16* sk = skv + buf * 2 * kRows * kLd;
    const __nv_bfloat16* sv = sk + kRows * kLd;

    float s[8][4];
    const auto q_frag = [&](int kk) -> const uint32_t(&)[4] { return qa[kk]; };
    tile_scores<D>(s, q_frag, sk, lane);
    const int valid = Lk - k0 < kRows ? int(Lk - k0) : kRows;  // keys of this tile
    uint32_t pa[4][4];
    tile_softmax<D>(s, valid, scale_log2, m, l, o, pa, lane);
    tile_pv<D>(o, pa, sv, lane);
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

// The key-split kernel: threads [0, 128) are group 0, [128, 256) group 1; warp w of a group owns
// query rows 16w .. 16w + 15 of the tile, so threads gt of both groups hold the same rows and
// columns and merge element by element.
//
// Registers: two blocks of 256 threads per SM leave 128 a thread. o (D/2 a thread, 64 for
// D = 128) and S (32) must stay live, so Q is re-read from shared memory for every tile instead
// of being kept in 32 registers of fragments as flash_forward does (1/8 more ldmatrix traffic);
// 32-bit tile offsets (load_tile_async, t, k0) took the last spills out.
//
// Pipeline of one group over its tiles t (single K and V buffers; all barriers group-local):
//   S = Q·K(t)ᵀ          K(t) visible, V(t) may still be in flight
//   wait V(t), barrier   everyone is done reading K(t); V(t) visible
//   load K(t + 2)        into the K buffer just released
//   softmax, O += P·V(t)
//   wait K(t + 2), barrier   everyone is done reading V(t); K(t + 2) visible
//   load V(t + 2)        into the V buffer just released
// so after the loop no copy is in flight and the group's own buffers are free for the merge.
template <int D, typename Out>
__global__ void __launch_bounds__(kSplitThreads, 2)
    flash_forward_split(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                        int64_t Lq, int64_t Lk, float scale_log2, int64_t p0, int64_t H, Out* out,
                        int64_t osb, int64_t osl, int64_t osh) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int kLd = D + 8;
  constexpr int kTile = kRows * kLd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = warp / kWarps, gwarp = warp % kWarps;
  const int gt = threadIdx.x % kGroupThreads;
  __nv_bfloat16* sq = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* sk = sq + (1 + 2 * group) * kTile;  // this group's K, then its V
  __nv_bfloat16* sv = sk + kTile;
  const int64_t group_pair = blockIdx.y;
  const int64_t q0 = int64_t(blockIdx.x) * kRows;
  const __nv_bfloat16* qp = q + group_pair * Lq * D;
  const __nv_bfloat16* kp = k + group_pair * Lk * D;
  const __nv_bfloat16* vp = v + group_pair * Lk * D;
  const int tiles = int((Lk + kRows - 1) / kRows);  // < 2^31 / 64: checked at launch

  // Copy groups of every thread: {Q part, K(first)}, {V(first)}. A group without tiles (Lk <= 64
  // for group 1) commits only its Q part and an empty group.
  int t = group;
  load_tile_async<D, kSplitThreads>(qp, Lq, q0, sq, threadIdx.x);
  if (t < tiles) load_tile_async<D, kGroupThreads>(kp, Lk, t * kRows, sk, gt);
  cp_async_commit();
  if (t < tiles) load_tile_async<D, kGroupThreads>(vp, Lk, t * kRows, sv, gt);
  cp_async_commit();
  cp_async_wait<1>();
  __syncthreads();  // Q comes from both groups' copies

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const __nv_bfloat16* sq_warp = sq + (gwarp * 16 + lane % 16) * kLd + (lane / 16) * 8;

  for (; t < tiles; t += kGroups) {
    const int k0 = t * kRows;
    const bool more = t + kGroups < tiles;
    float s[8][4];
    uint32_t qa[4];
    const auto q_frag = [&](int kk) -> const uint32_t(&)[4] {
      ldmatrix_x4(qa, sq_warp + kk * 16);
      return qa;
    };
    tile_scores<D>(s, q_frag, sk, lane);
    cp_async_wait_all();
    group_sync(group);
    if (more) {
      load_tile_async<D, kGroupThreads>(kp, Lk, k0 + kGroups * kRows, sk, gt);
      cp_async_commit();
    }
    const int valid = Lk - k0 < kRows ? int(Lk - k0) : kRows;  // keys of this tile
    uint32_t pa[4][4];
    tile_softmax<D>(s, valid, scale_log2, m, l, o, pa, lane);
    tile_pv<D>(o, pa, sv, lane);
    cp_async_wait_all();
    group_sync(group);
    if (more) {
      load_tile_async<D, kGroupThreads>(vp, Lk, k0 + kGroups * kRows, sv, gt);
      cp_async_commit();
    }
  }

  // Merge: group g normalises and writes output columns [g·D/2, (g + 1)·D/2), so each group
  // hands the other half of its o, with its m and partial l, to the other group through its own
  // (now idle) K/V buffers, laid out [value][gt] so the stores and loads are conflict-free.
  // Group 0 always has tile 0, whose keys give finite m for every row (also padded query rows,
  // zero-filled), so the merged max is finite and a group without tiles (m = -inf, l = 0, o = 0)
  // contributes exp2(-inf) = 0 rather than NaN.
  constexpr int kHalf = D / 16;  // n-tiles of o per half
  constexpr int kXch = kHalf * 4 + 4;
  static_assert(kXch * kGroupThreads * 4 <= 2 * kTile * 2, "merge exchange must fit K and V");
  float* mine = reinterpret_cast<float*>(sk);
  const float* theirs = reinterpret_cast<const float*>(sq + (1 + 2 * (1 - group)) * kTile);
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
    if ((n < kHalf) != (group == 0))
#pragma unroll
      for (int e = 0; e < 4; ++e) mine[((n % kHalf) * 4 + e) * kGroupThreads + gt] = o[n][e];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mine[(kHalf * 4 + r) * kGroupThreads + gt] = m[r];
    mine[(kHalf * 4 + 2 + r) * kGroupThreads + gt] = l[r];
  }
  __syncthreads();
  float ca[2], cb[2], inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float mo = theirs[(kHalf * 4 + r) * kGroupThreads + gt];
    const float lo = theirs[(kHalf * 4 + 2 + r) * kGroupThreads + gt];
    const float mm = fmaxf(m[r], mo);
    ca[r] = exp2f(m[r] - mm);
    cb[r] = exp2f(mo - mm);
    float lr = l[r] * ca[r] + lo * cb[r];
    lr += __shfl_xor_sync(0xffffffffu, lr, 1);
    lr += __shfl_xor_sync(0xffffffffu, lr, 2);
    inv[r] = 1.0f / lr;
  }
  const int64_t pair = p0 + group_pair;
  Out* ob = out + (pair / H) * osb + (pair % H) * osh;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = q0 + gwarp * 16 + lane / 4 + 8 * r;
    if (row >= Lq) continue;
    Out* orow = ob + row * osl;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      if ((n < kHalf) != (group == 0)) continue;
      const int d = 8 * n + 2 * (lane % 4);
      const float* x = theirs + ((n % kHalf) * 4 + 2 * r) * kGroupThreads + gt;
      store_out(orow + d, (o[n][2 * r] * ca[r] + x[0] * cb[r]) * inv[r]);
      store_out(orow + d + 1, (o[n][2 * r + 1] * ca[r] + x[kGroupThreads] * cb[r]) * inv[r]);
    }
  }
}

// Multiprocessors of the device current at the first call: the choice of kernel is only a
// heuristic, and the machines this runs on have one kind of GPU.
int sm_count() {
  static const int n = [] {
    int dev = 0, sms = 0;
    FOLEY_CUDA_CHECK(cudaGetDevice(&dev));
    FOLEY_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return sms;
  }();
  return n;
}

// The split kernel pays a merge and re-reads Q per tile, so it is worth it only where the
// single-group kernel leaves SMs short of warps: fewer blocks than two per SM (its residency),
// and at least two key tiles to share. Read per call so tests and timings can switch it.
bool use_split(const FlashArgs& a, int64_t q_tiles) {
  const char* mode = std::getenv("FOLEY_CUDA_FLASH_SPLIT");
  if (mode != nullptr && std::strcmp(mode, "0") == 0) return false;
  if (mode != nullptr && std::strcmp(mode, "1") == 0) return true;
  // Unset: the single-group kernel (the split one measured no gain, run O); "auto" applies the
  // rule above.
  if (mode == nullptr || std::strcmp(mode, "auto") != 0) return false;
  return a.Lk > kRows && q_tiles * a.pairs < 2 * int64_t(sm_count());
}

template <int D, typename Out>
void launch(const FlashArgs& a, cudaStream_t stream) {
  constexpr int smem = smem_bytes<D>();
  // Both kernels at the first (eager) launch, so a graph recorded later with the other kernel
  // needs no configuration call.
  static const bool configured = [&] {
    FOLEY_CUDA_CHECK(cudaFuncSetAttribute(flash_forward<D, Out>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    FOLEY_CUDA_CHECK(cudaFuncSetAttribute(flash_forward_split<D, Out>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    return true;
  }();
  (void)configured;
  const int64_t q_tiles = (a.Lq + kRows - 1) / kRows;
  const bool split = use_split(a, q_tiles);
  const dim3 grid(static_cast<unsigned>(q_tiles), static_cast<unsigned>(a.pairs));
  const auto kernel = split ? flash_forward_split<D, Out> : flash_forward<D, Out>;
  kernel<<<grid, split ? kSplitThreads : kGroupThreads, smem, stream>>>(
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
  // Tile and row offsets inside a panel are 32-bit.
  constexpr int64_t kMaxL = (int64_t{1} << 31) - kRows;
  FOLEY_CHECK(
      a.pairs >= 1 && a.pairs <= 65535 && a.Lq >= 1 && a.Lk >= 1 && a.Lq <= kMaxL && a.Lk <= kMaxL,
      "flash attention: bad launch (pairs %lld, Lq %lld, Lk %lld)", static_cast<long long>(a.pairs),
      static_cast<long long>(a.Lq), static_cast<long long>(a.Lk));
  if (a.D == 64) return a.out_bf16 ? launch<64, __nv_bfloat16>(a, stream) : launch<64, float>(a, stream);
  if (a.D == 128)
    return a.out_bf16 ? launch<128, __nv_bfloat16>(a, stream) : launch<128, float>(a, stream);
  not_supported("flash attention for this head dim");
}

}  // namespace cuda
}  // namespace foley
