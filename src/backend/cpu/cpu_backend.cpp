// CpuBackend: construction, host transfers, copy/fill, and the shared helpers of cpu_internal.h
// (argument checks, dtype conversion, strided loops).
#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_matmul_cache.h"

namespace foley {
namespace cpu {

// ---- checks ----------------------------------------------------------------------------------

void check_host(const Tensor& t, const char* op, const char* what) {
  FOLEY_CHECK(t.defined(), "%s: %s is undefined", op, what);
  FOLEY_CHECK(t.device() == DeviceKind::kCPU, "%s: %s %s is not a host tensor", op, what,
              t.describe().c_str());
}

void check_f32(const Tensor& t, const char* op, const char* what) {
  check_host(t, op, what);
  FOLEY_CHECK(t.dtype() == DType::kF32, "%s: %s must be F32 on the CPU backend, got %s", op, what,
              t.describe().c_str());
}

void check_float(const Tensor& t, const char* op, const char* what) {
  check_host(t, op, what);
  FOLEY_CHECK(is_float_compute(t.dtype()), "%s: %s must be F32, BF16 or F16, got %s", op, what,
              t.describe().c_str());
}

void check_vector(const Tensor& t, int64_t n, const char* op, const char* what) {
  check_float(t, op, what);
  check_vector_shape(t, n, op, what);
}

// ---- dtype helpers ---------------------------------------------------------------------------

const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = f16_to_f32(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

void convert_to_f32(const void* src, DType dt, int64_t n, float* dst) {
  if (dt == DType::kF32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    return;
  }
  const uint16_t* s = static_cast<const uint16_t*>(src);
  if (dt == DType::kBF16) {
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
  } else {
    const float* table = f16_table();
    for (int64_t i = 0; i < n; ++i) dst[i] = table[s[i]];
  }
}

void convert_f32_to_bf16(const float* src, int64_t n, uint16_t* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}

const float* vector_f32(Arena& arena, const Tensor& t) {
  if (t.dtype() == DType::kF32) return t.data<float>();
  float* out = static_cast<float*>(arena.alloc_bytes(static_cast<size_t>(t.numel()) * 4));
  convert_to_f32(t.raw(), t.dtype(), t.numel(), out);
  return out;
}

Tensor as_f32(Arena& arena, const Tensor& t) {
  if (t.dtype() == DType::kF32) return t;
  // Materialise only the distinct elements: broadcast dims shrink to 1, then re-expand.
  Shape compact;
  for (int i = 0; i < t.rank(); ++i) compact.push_back(t.stride(i) == 0 ? 1 : t.dim(i));
  Tensor src = t.as_strided(compact, [&] {
    std::array<int64_t, kMaxRank> s{};
    for (int i = 0; i < t.rank(); ++i) s[size_t(i)] = t.stride(i);
    return s;
  }());
  Tensor out = arena.alloc(compact, DType::kF32);
  const StridedLoop L = make_loop({&out, &src});
  run_loop(L, 1 << 15, [&](const auto& p, const auto& sb, int64_t n) {
    float* o = reinterpret_cast<float*>(p[0]);
    const int64_t so = sb[0] / 4, si = sb[1] / 2;
    for (int64_t i = 0; i < n; ++i) o[i * so] = load_f32(p[1], t.dtype(), i * si);
  });
  std::array<int64_t, kMaxRank> strides{};
  for (int i = 0; i < t.rank(); ++i) strides[size_t(i)] = t.stride(i) == 0 ? 0 : out.stride(i);
  return out.as_strided(t.shape(), strides);
}

// ---- strided loops ---------------------------------------------------------------------------

int64_t StridedLoop::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dims[size_t(i)];
  return n;
}

void StridedLoop::offsets(int64_t pos, std::array<int64_t, kMaxOps>& out) const {
  for (int o = 0; o < nops; ++o) out[size_t(o)] = 0;
  for (int d = rank - 1; d >= 0; --d) {
    const int64_t n = dims[size_t(d)];
    const int64_t i = pos % n;
    pos /= n;
    for (int o = 0; o < nops; ++o) out[size_t(o)] += i * strides[size_t(o)][size_t(d)];
  }
}

StridedLoop make_loop(std::initializer_list<const Tensor*> ops, bool skip_last) {
  StridedLoop L;
  L.nops = static_cast<int>(ops.size());
  FOLEY_CHECK(L.nops >= 1 && L.nops <= StridedLoop::kMaxOps, "make_loop: bad operand count");
  const Tensor& ref = **ops.begin();
  const int r = ref.rank() - (skip_last ? 1 : 0);
  {
    int o = 0;
    for (const Tensor* t : ops) {
      bool same = t->rank() == ref.rank();
      for (int d = 0; same && d < r; ++d) same = t->dim(d) == ref.dim(d);
      FOLEY_CHECK(same && (skip_last || t->shape() == ref.shape()),
                  "operand %d has shape %s, expected %s%s", o, t->shape().str().c_str(),
                  ref.shape().str().c_str(), skip_last ? " (last dim aside)" : "");
      L.base[size_t(o++)] = static_cast<char*>(t->raw());
    }
  }
  // Collect non-trivial dims outermost first, merging into the previous (outer) one whenever
  // outer_stride == inner_stride * inner_dim holds for every operand.
  for (int d = 0; d < r; ++d) {
    if (ref.dim(d) == 1) continue;
    std::array<int64_t, StridedLoop::kMaxOps> s{};
    int o = 0;
    for (const Tensor* t : ops) {
      s[size_t(o)] = t->stride(d) * static_cast<int64_t>(dtype_size(t->dtype()));
      ++o;
    }
    if (L.rank > 0) {
      const size_t prev = static_cast<size_t>(L.rank - 1);
      bool merge = true;
      for (int k = 0; k < L.nops; ++k)
        merge = merge && L.strides[size_t(k)][prev] == s[size_t(k)] * ref.dim(d);
      if (merge) {
        L.dims[prev] *= ref.dim(d);
        for (int k = 0; k < L.nops; ++k) L.strides[size_t(k)][prev] = s[size_t(k)];
        continue;
      }
    }
    L.dims[size_t(L.rank)] = ref.dim(d);
    for (int k = 0; k < L.nops; ++k) L.strides[size_t(k)][size_t(L.rank)] = s[size_t(k)];
    ++L.rank;
  }
  if (L.rank == 0) {  // a scalar, or every dim of size 1 (a zero-size dim is never dropped)
    L.rank = 1;
    L.dims[0] = 1;
  }
  return L;
}

namespace {

// Elementwise conversion kernels: Tag types select the storage format.
struct F32T {
  using Storage = float;
  static float load(float v) { return v; }
  static float store(float v) { return v; }
};
struct BF16T {
  using Storage = uint16_t;
  static float load(uint16_t v) { return bf16_to_f32(v); }
  static uint16_t store(float v) { return f32_to_bf16(v); }
};
struct F16T {
  using Storage = uint16_t;
  static float load(uint16_t v) { return f16_table()[v]; }
  static uint16_t store(float v) { return f32_to_f16(v); }
};

template <typename To, typename From>
void convert_loop(const StridedLoop& L) {
  using TS = typename To::Storage;
  using FS = typename From::Storage;
  run_loop(L, 1 << 15, [](const auto& p, const auto& sb, int64_t n) {
    TS* d = reinterpret_cast<TS*>(p[0]);
    const FS* s = reinterpret_cast<const FS*>(p[1]);
    const int64_t sd = sb[0] / int64_t(sizeof(TS)), ss = sb[1] / int64_t(sizeof(FS));
    for (int64_t i = 0; i < n; ++i) d[i * sd] = To::store(From::load(s[i * ss]));
  });
}

template <typename To>
void convert_from(const StridedLoop& L, DType from) {
  switch (from) {
    case DType::kF32:
      return convert_loop<To, F32T>(L);
    case DType::kBF16:
      return convert_loop<To, BF16T>(L);
    default:
      return convert_loop<To, F16T>(L);
  }
}

void check_no_broadcast_dst(const Tensor& t, const char* op) {
  for (int i = 0; i < t.rank(); ++i)
    FOLEY_CHECK(t.dim(i) <= 1 || t.stride(i) != 0,
                "%s: destination %s is a broadcast view (stride 0 in dim %d)", op,
                t.describe().c_str(), i);
}

}  // namespace
}  // namespace cpu

using namespace cpu;

// The scratch arena starts with one generous block. Host pages are only committed when touched,
// so this costs address space, not memory. It also keeps the ops' alternating small and large
// scoped allocations inside the first block: Arena (core/arena.cpp) only searches blocks at or
// below the current offset, so in growth mode a request that overflows an earlier block appends
// a new, larger block on every Scope cycle instead of reusing the later ones.
constexpr size_t kInitialScratchBytes = size_t{256} << 20;

// One primitive cache per process: backends created per job or per thread reuse each other's
// primitives (and their JIT code); the cache locks internally and primitives execute
// concurrently, each call bringing its own scratchpad from its backend's arena.
MatmulCache& shared_matmuls() {
  static MatmulCache* cache = new MatmulCache();  // never destroyed: outlives static backends
  return *cache;
}

CpuBackend::CpuBackend() : matmuls_(&shared_matmuls()) {
  scratch_ = std::make_unique<Arena>(host_block_allocator(), kInitialScratchBytes);
}

size_t CpuBackend::cached_matmuls() {
  return shared_matmuls().size();
}
CpuBackend::~CpuBackend() = default;

void CpuBackend::copy_from_host(const Tensor& dst, const Tensor& host_src) {
  copy_to_host(dst, host_src);  // both live in host memory on this backend
}

void CpuBackend::copy_to_host(const Tensor& host_dst, const Tensor& src) {
  check_host(host_dst, "copy_to_host", "dst");
  check_host(src, "copy_to_host", "src");
  FOLEY_CHECK(host_dst.shape() == src.shape() && host_dst.dtype() == src.dtype(),
              "copy_to_host: %s vs %s", host_dst.describe().c_str(), src.describe().c_str());
  FOLEY_CHECK(host_dst.is_contiguous() && src.is_contiguous(),
              "copy_to_host: both tensors must be contiguous");
  if (host_dst.raw() != src.raw() && src.nbytes())
    std::memmove(host_dst.raw(), src.raw(), src.nbytes());
}

void CpuBackend::copy(const Tensor& dst, const Tensor& src) {
  check_host(dst, "copy", "dst");
  check_host(src, "copy", "src");
  FOLEY_CHECK(dst.shape() == src.shape(), "copy: shapes differ: dst %s, src %s",
              dst.describe().c_str(), src.describe().c_str());
  check_no_broadcast_dst(dst, "copy");
  const StridedLoop L = make_loop({&dst, &src});
  if (dst.dtype() == src.dtype()) {
    // Same dtype: a byte copy of any element size, memcpy where the inner run is contiguous.
    const int64_t es = static_cast<int64_t>(dtype_size(dst.dtype()));
    run_loop(L, 1 << 15, [es](const auto& p, const auto& sb, int64_t n) {
      if (sb[0] == es && sb[1] == es) {
        std::memcpy(p[0], p[1], static_cast<size_t>(n * es));
        return;
      }
      for (int64_t i = 0; i < n; ++i) std::memcpy(p[0] + i * sb[0], p[1] + i * sb[1], size_t(es));
    });
    return;
  }
  FOLEY_CHECK(is_float_compute(dst.dtype()) && is_float_compute(src.dtype()),
              "copy: cannot convert %s to %s (float dtypes only)", dtype_name(src.dtype()),
              dtype_name(dst.dtype()));
  switch (dst.dtype()) {
    case DType::kF32:
      return convert_from<F32T>(L, src.dtype());
    case DType::kBF16:
      return convert_from<BF16T>(L, src.dtype());
    default:
      return convert_from<F16T>(L, src.dtype());
  }
}

void CpuBackend::fill(const Tensor& dst, float value) {
  check_float(dst, "fill", "dst");
  check_no_broadcast_dst(dst, "fill");
  const StridedLoop L = make_loop({&dst});
  const DType dt = dst.dtype();
  const uint16_t h = dt == DType::kBF16 ? f32_to_bf16(value) : f32_to_f16(value);
  run_loop(L, 1 << 15, [&](const auto& p, const auto& sb, int64_t n) {
    if (dt == DType::kF32) {
      float* d = reinterpret_cast<float*>(p[0]);
      const int64_t s = sb[0] / 4;
      for (int64_t i = 0; i < n; ++i) d[i * s] = value;
    } else {
      uint16_t* d = reinterpret_cast<uint16_t*>(p[0]);
      const int64_t s = sb[0] / 2;
      for (int64_t i = 0; i < n; ++i) d[i * s] = h;
    }
  });
}

std::unique_ptr<Backend> make_cpu_backend() {
  return std::make_unique<CpuBackend>();
}

}  // namespace foley
