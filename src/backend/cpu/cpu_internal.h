// Shared plumbing of the CPU backend's op files: argument checks, strided iteration over
// coalesced dims, dtype loads, per-slot parallelism and the raw GEMM entry point.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <utility>

#include "backend/cpu/cpu_backend.h"
#include "core/check.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "backend/op_checks.h"
#include "core/thread_pool.h"

namespace foley::cpu {

// ---- argument checks (messages name the op and the argument) -------------------------------

void check_host(const Tensor& t, const char* op, const char* what);
// A defined host tensor of dtype F32 (activations on this backend).
void check_f32(const Tensor& t, const char* op, const char* what);
// A defined host tensor of F32, BF16 or F16 (weights and other parameters).
void check_float(const Tensor& t, const char* op, const char* what);
// Shape, rank and stride checks are the backend-neutral ones of backend/op_checks.h.
// A contiguous 1-D parameter vector of length n in any float dtype.
void check_vector(const Tensor& t, int64_t n, const char* op, const char* what);

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
inline int64_t round_up(int64_t a, int64_t b) {
  return ceil_div(a, b) * b;
}
// Floor division for possibly negative numerators (b > 0).
inline int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// ---- dtype helpers ----------------------------------------------------------------------------

// f16 -> f32 through a 64k-entry table: the scalar bit-twiddling version in core/dtype is too slow
// for converting whole weight matrices.
const float* f16_table();
inline float load_f32(const void* base, DType dt, int64_t i) {
  switch (dt) {
    case DType::kF32:
      return static_cast<const float*>(base)[i];
    case DType::kBF16:
      return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    default:
      return f16_table()[static_cast<const uint16_t*>(base)[i]];
  }
}
// Converts n contiguous elements of a float dtype to f32 / bf16 (round to nearest even).
void convert_to_f32(const void* src, DType dt, int64_t n, float* dst);
void convert_f32_to_bf16(const float* src, int64_t n, uint16_t* dst);
// A contiguous f32 copy of a 1-D parameter vector (weight, bias, alpha), or the vector itself when
// it already is one. The copy lives in `arena` (callers hold an Arena::Scope).
const float* vector_f32(Arena& arena, const Tensor& t);
// Parameters of any float dtype as F32 with the same broadcast structure: stride-0 dims stay
// stride 0, so a broadcast view is converted once, not once per use. Returns t itself when F32.
Tensor as_f32(Arena& arena, const Tensor& t);

// ---- strided iteration ------------------------------------------------------------------------

// A loop nest over the common shape of up to kMaxOps tensors with equal shapes and any strides,
// with dims of size 1 dropped and adjacent dims merged wherever every operand allows it. After
// coalescing, contiguous tensors are a single long inner dim.
struct StridedLoop {
  static constexpr int kMaxOps = 4;
  int rank = 0;  // >= 1
  int nops = 0;
  std::array<int64_t, kMaxRank> dims{};
  std::array<std::array<int64_t, kMaxRank>, kMaxOps> strides{};  // bytes
  std::array<char*, kMaxOps> base{};

  int64_t inner() const { return dims[static_cast<size_t>(rank - 1)]; }
  int64_t numel() const;
  // Byte offsets of operand `op` for the multi-index of flat position `pos` (inner dim included).
  void offsets(int64_t pos, std::array<int64_t, kMaxOps>& out) const;
};

// ops[0] defines the shape; all must match it exactly. With `skip_last`, the last dim is left
// out of the nest and may differ between operands (row-wise ops: the nest enumerates rows).
StridedLoop make_loop(std::initializer_list<const Tensor*> ops, bool skip_last = false);

// Runs inner(ptrs, byte_strides, n) over every contiguous run of the inner dim, in parallel
// chunks of at least `grain` elements.
template <typename Inner>
void run_loop(const StridedLoop& L, int64_t grain, Inner&& inner) {
  const int64_t total = L.numel();
  const int64_t in = L.inner();
  const size_t last = static_cast<size_t>(L.rank - 1);
  parallel_for(total, grain, [&](int64_t begin, int64_t end) {
    std::array<int64_t, StridedLoop::kMaxOps> off{};
    std::array<int64_t, StridedLoop::kMaxOps> sb{};
    std::array<char*, StridedLoop::kMaxOps> p{};
    for (int o = 0; o < L.nops; ++o) sb[static_cast<size_t>(o)] = L.strides[size_t(o)][last];
    int64_t pos = begin;
    while (pos < end) {
      L.offsets(pos, off);
      const int64_t col = pos % in;
      const int64_t n = std::min(end - pos, in - col);
      for (int o = 0; o < L.nops; ++o) p[size_t(o)] = L.base[size_t(o)] + off[size_t(o)];
      inner(p, sb, n);
      pos += n;
    }
  });
}

// Row-wise ops: fn(row_begin, row_end, ptrs-of-row) over the rows of a skip_last loop.
template <typename Fn>
void for_each_row(const StridedLoop& L, int64_t grain_rows, Fn&& fn) {
  parallel_for(L.numel(), grain_rows, [&](int64_t begin, int64_t end) {
    std::array<int64_t, StridedLoop::kMaxOps> off{};
    std::array<char*, StridedLoop::kMaxOps> p{};
    for (int64_t r = begin; r < end; ++r) {
      L.offsets(r, off);
      for (int o = 0; o < L.nops; ++o) p[size_t(o)] = L.base[size_t(o)] + off[size_t(o)];
      fn(p);
    }
  });
}

// y = f(x0, x1, ...) elementwise over F32 tensors of y's shape; inputs may broadcast. The unit
// stride case is split out so the compiler can vectorise it.
template <typename F, typename... In>
void map_f32(const Tensor& y, F f, const In&... in) {
  constexpr size_t N = sizeof...(In);
  static_assert(N + 1 <= StridedLoop::kMaxOps);
  const StridedLoop L = make_loop({&y, &in...});
  run_loop(L, 1 << 15, [&](const auto& p, const auto& sb, int64_t n) {
    [&]<size_t... I>(std::index_sequence<I...>) {
      float* out = reinterpret_cast<float*>(p[0]);
      if (sb[0] == 4 && ((sb[I + 1] == 4) && ...)) {
        for (int64_t i = 0; i < n; ++i) out[i] = f(reinterpret_cast<const float*>(p[I + 1])[i]...);
      } else {
        const int64_t so = sb[0] / 4;
        for (int64_t i = 0; i < n; ++i)
          out[i * so] = f(reinterpret_cast<const float*>(p[I + 1])[i * (sb[I + 1] / 4)]...);
      }
    }
    (std::make_index_sequence<N>{});
  });
}

// Dynamic scheduling with per-slot state: fn(slot, item) runs every item in [0, items) once,
// and a slot is never used by two threads at the same time, so per-slot scratch buffers need no
// locking. There are num_slots() slots.
inline int num_slots() {
  return ThreadPool::global().size();
}
template <typename Fn>
void parallel_items(int64_t items, Fn&& fn) {
  std::atomic<int64_t> next{0};
  const int64_t slots = std::min<int64_t>(num_slots(), items);
  parallel_for(slots, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s)
      for (int64_t it = next++; it < items; it = next++) fn(static_cast<int>(s), it);
  });
}

// ---- GEMM ------------------------------------------------------------------------------------

// y[M,N] = x[M,K]·w[N,K]ᵀ (+ bias[N]) (+ beta·y) on row-major matrices with row strides.
struct Gemm {
  int64_t M = 0, N = 0, K = 0;
  const float* x = nullptr;
  int64_t ldx = 0;
  const void* w = nullptr;
  DType wdt = DType::kF32;
  int64_t ldw = 0;
  const float* bias = nullptr;  // contiguous F32 or null
  float* y = nullptr;
  int64_t ldy = 0;
  float beta = 0.0f;
};

// Rows of `scratch` the GEMM may use for converting activations (bounds scratch for huge M).
constexpr size_t kConvertChunkBytes = size_t{16} << 20;

}  // namespace foley::cpu
