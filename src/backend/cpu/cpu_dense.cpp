// Dense layers through oneDNN matmul: the primitive cache, the raw GEMM every weighted op uses,
// and `linear`.
//
// Weight dtypes: F32 runs an f32 matmul. BF16 converts the activations to bf16 and runs a
// bf16 x bf16 -> f32 matmul (what PyTorch's bf16 autocast computes). F16, and BF16 on a CPU where
// oneDNN has no fast bf16 kernel, widen the weights to f32 in row chunks instead (for BF16 the
// activations are rounded to bf16 values first, so the numerics stay those of the bf16 path; F16
// keeps f32 activations, as f16 ones could overflow), at the cost of one conversion pass.
// (oneDNN 2.6 has no bf16 matmul at all below AVX-512, not even a reference one.)
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_internal.h"
#include "backend/cpu/cpu_matmul_cache.h"

namespace foley {
namespace cpu {

using dt = dnnl::memory::data_type;

bool MatmulKey::operator==(const MatmulKey& o) const {
  return M == o.M && N == o.N && K == o.K && ldx == o.ldx && ldw == o.ldw && ldy == o.ldy &&
         src == o.src && wei == o.wei && bias == o.bias &&
         std::memcmp(&beta, &o.beta, sizeof beta) == 0;
}

size_t MatmulKeyHash::operator()(const MatmulKey& k) const {
  uint32_t beta_bits;
  std::memcpy(&beta_bits, &k.beta, 4);
  uint64_t h = 1469598103934665603ull;
  for (uint64_t v :
       {uint64_t(k.M), uint64_t(k.N), uint64_t(k.K), uint64_t(k.ldx), uint64_t(k.ldw),
        uint64_t(k.ldy), uint64_t(k.src), uint64_t(k.wei), uint64_t(k.bias), uint64_t(beta_bits)}) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  }
  return static_cast<size_t>(h);
}

MatmulCache::MatmulCache(size_t capacity)
    : engine_(dnnl::engine::kind::cpu, 0), capacity_(capacity) {}

size_t MatmulCache::size() {
  std::lock_guard<std::mutex> lock(mutex_);
  return lru_.size();
}

namespace {

std::shared_ptr<const MatmulEntry> create_matmul(const dnnl::engine& engine, const MatmulKey& k) {
  using dims = dnnl::memory::dims;
  // Plain row-major layouts with explicit strides: x rows may be strided views, the weight is
  // PyTorch's [N, K] read as a transposed [K, N], and y rows may be strided (transposed-conv taps).
  const dnnl::memory::desc src({k.M, k.K}, k.src, dims{k.ldx, 1});
  const dnnl::memory::desc wei({k.K, k.N}, k.wei, dims{1, k.ldw});
  const dnnl::memory::desc dst({k.M, k.N}, dt::f32, dims{k.ldy, 1});
  dnnl::primitive_attr attr;
  // Scratchpad comes from the backend's arena, so steady-state calls never allocate.
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (k.beta != 0.0f) {
    dnnl::post_ops ops;
    ops.append_sum(k.beta);  // dst = matmul + bias + beta·dst
    attr.set_post_ops(ops);
  }
  auto entry = std::make_shared<MatmulEntry>();
  dnnl::matmul::primitive_desc pd;
  try {
    if (k.bias) {
      const dnnl::memory::desc bias({1, k.N}, dt::f32, dims{k.N, 1});
      pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, bias, dst), attr, engine);
    } else {
      pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, dst), attr, engine);
    }
    entry->prim = dnnl::matmul(pd);
  } catch (const dnnl::error& e) {
    entry->impl = e.what();
    return entry;
  }
  entry->ok = true;
  entry->scratchpad_bytes = pd.scratchpad_desc().get_size();
  entry->impl = pd.impl_info_str();
  entry->reference = entry->impl.rfind("ref", 0) == 0;
  return entry;
}

}  // namespace

std::shared_ptr<const MatmulEntry> MatmulCache::get(const MatmulKey& key) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  // Built outside the lock: creation is slow and two threads racing on one key is harmless.
  auto entry = create_matmul(engine_, key);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = index_.find(key);
  if (it != index_.end()) return it->second->second;
  lru_.emplace_front(key, entry);
  index_[key] = lru_.begin();
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return entry;
}

namespace {

void run_matmul(MatmulCache& cache, Arena& scratch, const MatmulKey& key, const void* x,
                const void* w, const float* bias, float* y) {
  auto entry = cache.get(key);
  FOLEY_CHECK(entry->ok, "oneDNN has no matmul for M=%lld N=%lld K=%lld (%s)",
              static_cast<long long>(key.M), static_cast<long long>(key.N),
              static_cast<long long>(key.K), entry->impl.c_str());
  const dnnl::engine& eng = cache.engine();
  using dims = dnnl::memory::dims;
  Arena::Scope scope(scratch);
  void* pad = entry->scratchpad_bytes ? scratch.alloc_bytes(entry->scratchpad_bytes) : nullptr;
  // oneDNN takes non-const handles but only reads sources.
  dnnl::memory src({{key.M, key.K}, key.src, dims{key.ldx, 1}}, eng, const_cast<void*>(x));
  dnnl::memory wei({{key.K, key.N}, key.wei, dims{1, key.ldw}}, eng, const_cast<void*>(w));
  dnnl::memory dst({{key.M, key.N}, dt::f32, dims{key.ldy, 1}}, eng, y);
  dnnl::memory spad({{static_cast<int64_t>(entry->scratchpad_bytes)}, dt::u8, dims{1}}, eng, pad);
  std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, src},
                                                {DNNL_ARG_WEIGHTS, wei},
                                                {DNNL_ARG_DST, dst},
                                                {DNNL_ARG_SCRATCHPAD, spad}};
  if (key.bias) {
    args.emplace(DNNL_ARG_BIAS, dnnl::memory({{1, key.N}, dt::f32, dims{key.N, 1}}, eng,
                                             const_cast<float*>(bias)));
  }
  dnnl::stream stream(eng);
  entry->prim.execute(stream, args);
  stream.wait();
}

// Rows of x [rows, K] (row stride ldx) to bf16 [rows, K] contiguous, in parallel.
void rows_to_bf16(const float* x, int64_t ldx, int64_t rows, int64_t K, uint16_t* out) {
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; ++r) convert_f32_to_bf16(x + r * ldx, K, out + r * K);
               });
}

// Rows of x rounded to bf16 values, kept as f32 [rows, K] contiguous, in parallel.
void rows_round_bf16(const float* x, int64_t ldx, int64_t rows, int64_t K, float* out) {
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; ++r)
                   for (int64_t k = 0; k < K; ++k)
                     out[r * K + k] = bf16_to_f32(f32_to_bf16(x[r * ldx + k]));
               });
}

// Rows of a 16-bit weight [rows, K] (row stride ldw) widened to f32 [rows, K], in parallel.
void rows_to_f32(const uint16_t* w, DType wdt, int64_t ldw, int64_t rows, int64_t K, float* out) {
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; ++r) convert_to_f32(w + r * ldw, wdt, K, out + r * K);
               });
}

// K == 0: the product is empty, y = bias + beta·y.
void gemm_empty_k(const Gemm& g) {
  for (int64_t m = 0; m < g.M; ++m)
    for (int64_t n = 0; n < g.N; ++n) {
      float& out = g.y[m * g.ldy + n];
      out = (g.bias ? g.bias[n] : 0.0f) + (g.beta != 0.0f ? g.beta * out : 0.0f);
    }
}

}  // namespace
}  // namespace cpu

using namespace cpu;

void CpuBackend::gemm(const Gemm& g) {
  FOLEY_CHECK(g.M >= 0 && g.N >= 0 && g.K >= 0, "gemm: negative size");
  if (g.M == 0 || g.N == 0) return;
  if (g.K == 0) return gemm_empty_k(g);
  FOLEY_CHECK(g.ldx >= g.K || g.M == 1, "gemm: x row stride %lld < K %lld",
              static_cast<long long>(g.ldx), static_cast<long long>(g.K));
  FOLEY_CHECK(g.ldy >= g.N || g.M == 1, "gemm: y row stride %lld < N %lld",
              static_cast<long long>(g.ldy), static_cast<long long>(g.N));
  FOLEY_CHECK(g.ldw >= g.K || g.N == 1, "gemm: w row stride %lld < K %lld",
              static_cast<long long>(g.ldw), static_cast<long long>(g.K));
  // A single row's stride is irrelevant: normalise it so such calls share one primitive.
  const int64_t ldx = g.M == 1 ? g.K : g.ldx;
  MatmulKey key;
  key.N = g.N;
  key.K = g.K;
  key.ldw = g.N == 1 ? g.K : g.ldw;
  key.ldy = g.M == 1 ? g.N : g.ldy;
  key.bias = g.bias != nullptr;
  key.beta = g.beta;
  Arena& arena = scratch();

  if (g.wdt == DType::kF32) {
    key.M = g.M;
    key.ldx = ldx;
    run_matmul(*matmuls_, arena, key, g.x, g.w, g.bias, g.y);
    return;
  }
  FOLEY_CHECK(g.wdt == DType::kBF16 || g.wdt == DType::kF16, "gemm: unsupported weight dtype %s",
              dtype_name(g.wdt));

  if (g.wdt == DType::kBF16) {
    // Activations go to bf16 in row chunks that bound the scratch memory.
    const int64_t chunk =
        std::clamp<int64_t>(static_cast<int64_t>(kConvertChunkBytes) / (2 * g.K), 1, g.M);
    key.src = dt::bf16;
    key.wei = dt::bf16;
    key.ldx = g.K;
    key.M = chunk;
    const auto probe = matmuls_->get(key);
    if (probe->ok && !probe->reference) {
      for (int64_t m0 = 0; m0 < g.M; m0 += chunk) {
        Arena::Scope scope(arena);
        key.M = std::min(chunk, g.M - m0);
        auto* xb = static_cast<uint16_t*>(arena.alloc_bytes(size_t(key.M * g.K) * 2));
        rows_to_bf16(g.x + m0 * g.ldx, g.ldx, key.M, g.K, xb);
        run_matmul(*matmuls_, arena, key, xb, g.w, g.bias, g.y + m0 * g.ldy);
      }
      return;
    }
  }

  // Widen the weight to f32 in row (output channel) chunks; each chunk is a GEMM on a column
  // slice of y. With BF16 weights the activations are first rounded to bf16 values, so this
  // path computes what the native bf16 one does: results do not depend on the CPU's ISA.
  const bool round_x = g.wdt == DType::kBF16;
  const int64_t rows_per_chunk = std::clamp<int64_t>(
      static_cast<int64_t>(kConvertChunkBytes) / (4 * g.K), 1, std::max(g.M, g.N));
  const int64_t mchunk = round_x ? std::min(rows_per_chunk, g.M) : g.M;
  const int64_t nchunk = std::min(rows_per_chunk, g.N);
  key.src = dt::f32;
  key.wei = dt::f32;
  key.ldw = g.K;
  for (int64_t m0 = 0; m0 < g.M; m0 += mchunk) {
    Arena::Scope mscope(arena);
    key.M = std::min(mchunk, g.M - m0);
    const float* x = g.x + m0 * g.ldx;
    key.ldx = key.M == 1 ? g.K : ldx;
    if (round_x) {
      auto* xr = static_cast<float*>(arena.alloc_bytes(size_t(key.M * g.K) * 4));
      rows_round_bf16(x, g.ldx, key.M, g.K, xr);
      x = xr;
      key.ldx = g.K;
    }
    for (int64_t n0 = 0; n0 < g.N; n0 += nchunk) {
      Arena::Scope nscope(arena);
      key.N = std::min(nchunk, g.N - n0);
      auto* wf = static_cast<float*>(arena.alloc_bytes(size_t(key.N * g.K) * 4));
      rows_to_f32(static_cast<const uint16_t*>(g.w) + n0 * g.ldw, g.wdt, g.ldw, key.N, g.K, wf);
      run_matmul(*matmuls_, arena, key, x, wf, g.bias ? g.bias + n0 : nullptr,
                 g.y + m0 * g.ldy + n0);
    }
  }
}

void CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                        float beta) {
  const char* op = "linear";
  check_f32(x, op, "x");
  check_float(w, op, "w");
  check_f32(y, op, "y");
  if (bias) check_float(*bias, op, "bias");
  const int64_t N = check_linear_shapes(x, w, bias, y), K = w.dim(1);

  Arena::Scope scope(scratch());
  Gemm g;
  g.N = N;
  g.K = K;
  g.w = w.raw();
  g.wdt = w.dtype();
  g.ldw = N > 1 ? w.stride(0) : K;
  g.bias = bias ? vector_f32(scratch(), *bias) : nullptr;
  g.beta = beta;
  if (x.numel() == 0 && y.numel() == 0) return;

  // Leading dims flatten into M where both x's and y's strides allow it; what cannot be merged
  // (e.g. a slice along T of a [B, T, K] buffer) becomes an outer loop of GEMMs.
  const StridedLoop L = make_loop({&x, &y}, /*skip_last=*/true);
  const size_t inner = static_cast<size_t>(L.rank - 1);
  const int64_t M = L.dims[inner];
  const int64_t ldx = L.strides[0][inner] / 4, ldy = L.strides[1][inner] / 4;
  FOLEY_CHECK(M <= 1 || ldx >= K, "linear: rows of x overlap (row stride %lld < K %lld)",
              static_cast<long long>(ldx), static_cast<long long>(K));
  FOLEY_CHECK(M <= 1 || ldy >= N, "linear: rows of y overlap (row stride %lld < N %lld)",
              static_cast<long long>(ldy), static_cast<long long>(N));
  g.M = M;
  g.ldx = M > 1 ? ldx : K;
  g.ldy = M > 1 ? ldy : N;
  const int64_t outer = L.numel() / std::max<int64_t>(M, 1);
  std::array<int64_t, StridedLoop::kMaxOps> off{};
  for (int64_t o = 0; o < outer; ++o) {
    L.offsets(o * M, off);
    g.x = reinterpret_cast<const float*>(L.base[0] + off[0]);
    g.y = reinterpret_cast<float*>(L.base[1] + off[1]);
    gemm(g);
  }
}

}  // namespace foley
