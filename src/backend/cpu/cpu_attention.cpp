// RoPE and attention.
//
// Attention runs in two phases per group of (batch, head) pairs:
//  1. pack: Q rotated into [Lq, D] rows, K rotated and transposed into [D, Lk] panels, V copied
//     into [Lk, Dv] rows, all zero-padded to the micro-kernel's tile sizes. Rotation happens on
//     these scratch copies, never on the inputs, and strided q/k/v views cost nothing extra.
//  2. compute: work items of (pair, block of 64 queries) spread over the thread pool. Each item
//     forms its score block S = Q·Kᵀ (kept whole: at most 64 × ~1.6k floats, L2-resident), runs a
//     max-subtracted softmax in f32, multiplies by V and scales by 1/Σ while writing out.
// Groups bound the packed scratch memory when there are many short sequences (Synchformer's
// divided attention has ~10⁵ pairs of 9 tokens).
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_simd.h"

namespace foley {
namespace cpu {

namespace {
std::atomic<int> g_isa_cap{static_cast<int>(Isa::kAvx512)};
}

Isa detected_isa() {
  static const Isa isa = [] {
    Isa best = Isa::kGeneric;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::kAvx2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
      best = Isa::kAvx512;
    if (const char* cap = std::getenv("FOLEY_CPU_ISA")) {
      const std::string_view c(cap);
      if (c == "generic") best = Isa::kGeneric;
      if (c == "avx2" && best == Isa::kAvx512) best = Isa::kAvx2;
    }
    return best;
  }();
  return isa;
}

Isa cpu_isa() {
  return std::min(detected_isa(), static_cast<Isa>(g_isa_cap.load()));
}
void set_isa_cap(Isa cap) {
  g_isa_cap = static_cast<int>(cap);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "generic";
  }
}

namespace {

constexpr int64_t kQueryBlock = 64;  // queries per work item
constexpr int64_t kPanel = 32;       // key/value column padding: a multiple of every 2W
constexpr int64_t kMaxHeadDim = 1024;

using GemmFn = void (*)(int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t,
                        float*, int64_t);
using SoftmaxFn = void (*)(float*, int64_t, int64_t, int64_t, float, float*);

#define FOLEY_ATTENTION_KERNELS(SUFFIX, TARGET, W)                                               \
  TARGET void gemm_##SUFFIX(int64_t rows, int64_t cols, int64_t kd, const float* A, int64_t lda, \
                            const float* B, int64_t ldb, float* C, int64_t ldc) {                \
    block_gemm<W>(rows, cols, kd, A, lda, B, ldb, C, ldc);                                       \
  }                                                                                              \
  TARGET void softmax_##SUFFIX(float* S, int64_t rows, int64_t n, int64_t ld, float scale,       \
                               float* inv) {                                                     \
    softmax_rows<W>(S, rows, n, ld, scale, inv);                                                 \
  }
FOLEY_ATTENTION_KERNELS(avx512, FOLEY_TARGET_AVX512, 16)
FOLEY_ATTENTION_KERNELS(avx2, FOLEY_TARGET_AVX2, 8)
FOLEY_ATTENTION_KERNELS(generic, , 4)
#undef FOLEY_ATTENTION_KERNELS

struct Kernels {
  GemmFn gemm;
  SoftmaxFn softmax;
};
Kernels kernels() {
  switch (cpu_isa()) {
    case Isa::kAvx512:
      return {gemm_avx512, softmax_avx512};
    case Isa::kAvx2:
      return {gemm_avx2, softmax_avx2};
    default:
      return {gemm_generic, softmax_generic};
  }
}

// (x[2i], x[2i+1]) -> (x0·c − x1·s, x1·c + x0·s); y may alias x.
inline void rotate_pairs(const float* x, const float* c, const float* s, int64_t half, float* y) {
  for (int64_t i = 0; i < half; ++i) {
    const float x0 = x[2 * i], x1 = x[2 * i + 1];
    y[2 * i] = x0 * c[i] - x1 * s[i];
    y[2 * i + 1] = x1 * c[i] + x0 * s[i];
  }
}

void check_rope_table(const RopeTable& t, int64_t L, int64_t D, const char* op, const char* what) {
  FOLEY_CHECK(D % 2 == 0, "%s: RoPE needs an even head dim, got %lld", op,
              static_cast<long long>(D));
  for (const Tensor* p : {&t.cos, &t.sin}) {
    check_f32(*p, op, what);
    FOLEY_CHECK(p->rank() == 2 && p->dim(0) >= L && p->dim(1) == D / 2,
                "%s: %s table must be F32 [>=%lld, %lld], got %s", op, what,
                static_cast<long long>(L), static_cast<long long>(D / 2), p->describe().c_str());
    check_last_contiguous(*p, op, what);
  }
}

// Row l of a rope table: pointers to cos and sin.
struct RopeRow {
  const float* c;
  const float* s;
};
inline RopeRow rope_row(const RopeTable& t, int64_t l) {
  return {t.cos.data<float>() + l * t.cos.stride(0), t.sin.data<float>() + l * t.sin.stride(0)};
}

// Pointer to element [b, l, h, 0] of a [B, L, H, D] view.
inline const float* at(const Tensor& t, int64_t b, int64_t l, int64_t h) {
  return t.data<float>() + b * t.stride(0) + l * t.stride(1) + h * t.stride(2);
}

}  // namespace
}  // namespace cpu

using namespace cpu;

void CpuBackend::rope(const Tensor& x, const RopeTable& table, const Tensor& y) {
  const char* op = "rope";
  check_f32(x, op, "x");
  check_f32(y, op, "y");
  check_rank(x, 4, op, "x");
  check_shape(y, x.shape(), op, "y");
  check_last_contiguous(x, op, "x");
  check_last_contiguous(y, op, "y");
  const int64_t B = x.dim(0), L = x.dim(1), H = x.dim(2), D = x.dim(3);
  check_rope_table(table, L, D, op, "rope");
  parallel_for(
      B * L, std::max<int64_t>(1, 4096 / std::max<int64_t>(H * D, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t b = r / L, l = r % L;
          const RopeRow rr = rope_row(table, l);
          for (int64_t h = 0; h < H; ++h)
            rotate_pairs(at(x, b, l, h), rr.c, rr.s, D / 2, const_cast<float*>(at(y, b, l, h)));
        }
      });
}

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                           const Tensor& out, const RopeTable* rope_q, const RopeTable* rope_k) {
  const char* op = "attention";
  check_f32(q, op, "q");
  check_f32(k, op, "k");
  check_f32(v, op, "v");
  check_f32(out, op, "out");
  for (const Tensor* t : {&q, &k, &v, &out}) check_rank(*t, 4, op, "q/k/v/out");
  const int64_t B = q.dim(0), Lq = q.dim(1), H = q.dim(2), D = q.dim(3);
  const int64_t Lk = k.dim(1), Dv = v.dim(3);
  check_shape(k, {B, Lk, H, D}, op, "k");
  check_shape(v, {B, Lk, H, Dv}, op, "v");
  check_shape(out, {B, Lq, H, Dv}, op, "out");
  check_last_contiguous(q, op, "q");
  check_last_contiguous(k, op, "k");
  check_last_contiguous(v, op, "v");
  check_last_contiguous(out, op, "out");
  if (rope_q) check_rope_table(*rope_q, Lq, D, op, "rope_q");
  if (rope_k) check_rope_table(*rope_k, Lk, D, op, "rope_k");
  FOLEY_CHECK(D <= kMaxHeadDim, "attention: head dim %lld above %lld", static_cast<long long>(D),
              static_cast<long long>(kMaxHeadDim));
  if (out.numel() == 0) return;
  FOLEY_CHECK(Lk >= 1, "attention: no keys (Lk = 0) for %lld queries", static_cast<long long>(Lq));

  const Kernels kern = kernels();
  const int64_t Lqp = round_up(Lq, 4), Lkp = round_up(Lk, kPanel), Dvp = round_up(Dv, kPanel);
  const int64_t qb = std::min(kQueryBlock, Lqp);
  const int64_t nqb = ceil_div(Lq, qb);
  // Packed floats per (b, h) pair; a group of pairs is packed and computed at a time.
  const int64_t per_pair = Lqp * D + D * Lkp + Lk * Dvp;
  const int64_t pairs = B * H;
  const int64_t group = std::clamp<int64_t>((int64_t{32} << 20) / (4 * per_pair), 1, pairs);

  Arena& arena = scratch();
  Arena::Scope scope(arena);
  const int slots = num_slots();
  float* packed = static_cast<float*>(arena.alloc_bytes(size_t(group * per_pair) * 4));
  // Per slot: the score block, the output block and the row sums.
  const int64_t per_slot = qb * Lkp + qb * Dvp + qb;
  float* slot_mem = static_cast<float*>(arena.alloc_bytes(size_t(slots * per_slot) * 4));

  for (int64_t g0 = 0; g0 < pairs; g0 += group) {
    const int64_t gn = std::min(group, pairs - g0);
    auto qp_of = [&](int64_t i) { return packed + i * per_pair; };
    auto kt_of = [&](int64_t i) { return packed + i * per_pair + Lqp * D; };
    auto vp_of = [&](int64_t i) { return packed + i * per_pair + Lqp * D + D * Lkp; };

    parallel_for(gn, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = (g0 + i) / H, h = (g0 + i) % H;
        float* qp = qp_of(i);
        for (int64_t l = 0; l < Lq; ++l) {
          const float* src = at(q, b, l, h);
          if (rope_q) {
            const RopeRow rr = rope_row(*rope_q, l);
            rotate_pairs(src, rr.c, rr.s, D / 2, qp + l * D);
          } else {
            std::memcpy(qp + l * D, src, size_t(D) * 4);
          }
        }
        std::memset(qp + Lq * D, 0, size_t((Lqp - Lq) * D) * 4);
        float* kt = kt_of(i);
        float row[kMaxHeadDim];  // one rotated key row
        for (int64_t j = 0; j < Lk; ++j) {
          const float* src = at(k, b, j, h);
          if (rope_k) {
            const RopeRow rr = rope_row(*rope_k, j);
            rotate_pairs(src, rr.c, rr.s, D / 2, row);
            src = row;
          }
          for (int64_t d = 0; d < D; ++d) kt[d * Lkp + j] = src[d];
        }
        for (int64_t d = 0; d < D; ++d) std::memset(kt + d * Lkp + Lk, 0, size_t(Lkp - Lk) * 4);
        float* vp = vp_of(i);
        for (int64_t j = 0; j < Lk; ++j) {
          std::memcpy(vp + j * Dvp, at(v, b, j, h), size_t(Dv) * 4);
          std::memset(vp + j * Dvp + Dv, 0, size_t(Dvp - Dv) * 4);
        }
      }
    });

    parallel_items(gn * nqb, [&](int slot, int64_t item) {
      const int64_t i = item / nqb, l0 = (item % nqb) * qb;
      const int64_t b = (g0 + i) / H, h = (g0 + i) % H;
      const int64_t rows = std::min(qb, Lq - l0);
      const int64_t rows4 = round_up(rows, 4);
      float* S = slot_mem + slot * per_slot;
      float* O = S + qb * Lkp;
      float* inv = O + qb * Dvp;
      kern.gemm(rows4, Lkp, D, qp_of(i) + l0 * D, D, kt_of(i), Lkp, S, Lkp);
      // Padding rows (zero queries) keep all-zero scores, so their product stays zero.
      kern.softmax(S, rows, Lk, Lkp, scale, inv);
      kern.gemm(rows4, Dvp, Lk, S, Lkp, vp_of(i), Dvp, O, Dvp);
      for (int64_t r = 0; r < rows; ++r) {
        float* dst = const_cast<float*>(at(out, b, l0 + r, h));
        const float* o = O + r * Dvp;
        for (int64_t c = 0; c < Dv; ++c) dst[c] = o[c] * inv[r];
      }
    });
  }
}

}  // namespace foley
