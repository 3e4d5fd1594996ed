// CUDA backend: attention against the CPU oracle on fresh random inputs (output poisoned with NaN
// first): fused-QKV strided views, cross attention (Lq != Lk, Dv != D), RoPE on q and/or k, head
// dims from tiny odd ones to 256, and Synchformer-like many small groups. Both backends compute
// in F32 (FP32 GEMMs, f32 softmax), so the tolerance is max|cuda − cpu| / max|cpu| <= 1e-5.
// The opt-in fused bf16 kernel (FOLEY_CUDA_ATTENTION=flash, head dims 64 and 128) rounds q, k, v
// and the probabilities to bf16: held to 2e-2. Its key-split variant (FOLEY_CUDA_FLASH_SPLIT=1)
// is held to the same against the oracle and to kSplitTol against the single-group kernel.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "cuda_test_util.h"

namespace foley {
namespace {

using test::ScopedEnv;

using test::cpu_oracle;
using test::download;
using test::expect_parity;
using test::mirror_view;
using test::random_tensor;
using test::to_f32;
using test::upload;

constexpr double kTol = 1e-5;
constexpr double kFlashTol = 2e-2;
// Split against single-group fused kernel: both see the same bf16 panels (q and k rotated, then
// rounded) and compute each tile's scores identically, so what differs is only where P is rounded
// to bf16 (relative to a group's running max instead of the global one: 2^-9 of each probability,
// mostly cancelling over the keys) and the order of the final sums, plus for bf16 outputs up to
// one bf16 ulp (2^-8 of a value) where the two f32 results round apart. 1e-2 leaves room for
// that ulp; a merge that dropped or misapplied a group's 2^(m_g − m) factor is off by O(1).
constexpr double kSplitTol = 1e-2;

struct AttnCase {
  int64_t B, Lq, Lk, H, D, Dv;
  bool fused;  // q, k, v are slices of one [B, L, 3, H, D] buffer (needs Lq == Lk, Dv == D)
  bool rope_q, rope_k;
};

uint64_t g_seed = 5000;

RopeTable make_rope(int64_t rows, int64_t half, uint64_t seed) {
  const Tensor angle = random_tensor({rows, half}, DType::kF32, seed, -3.f, 3.f);
  RopeTable t{Tensor::empty({rows, half}, DType::kF32), Tensor::empty({rows, half}, DType::kF32)};
  for (int64_t i = 0; i < angle.numel(); ++i) {
    t.cos.data<float>()[i] = std::cos(angle.data<float>()[i]);
    t.sin.data<float>()[i] = std::sin(angle.data<float>()[i]);
  }
  return t;
}

void run_case(Backend& gpu, const AttnCase& c, double tol = kTol) {
  const uint64_t seed = g_seed += 11;
  Tensor qh, kh, vh;                  // host views
  Tensor qd, kd, vd;                  // device views
  Tensor parents[3], dev_parents[3];  // keep the buffers alive
  if (c.fused) {
    parents[0] = random_tensor({c.B, c.Lq, 3, c.H, c.D}, DType::kF32, seed, -2.f, 2.f);
    dev_parents[0] = upload(gpu, parents[0]);
    qh = parents[0].select(2, 0), kh = parents[0].select(2, 1), vh = parents[0].select(2, 2);
    qd = mirror_view(parents[0], dev_parents[0], qh);
    kd = mirror_view(parents[0], dev_parents[0], kh);
    vd = mirror_view(parents[0], dev_parents[0], vh);
  } else {
    parents[0] = random_tensor({c.B, c.Lq, c.H, c.D}, DType::kF32, seed, -2.f, 2.f);
    parents[1] = random_tensor({c.B, c.Lk, c.H, c.D}, DType::kF32, seed + 1, -2.f, 2.f);
    parents[2] = random_tensor({c.B, c.Lk, c.H, c.Dv}, DType::kF32, seed + 2);
    for (int i = 0; i < 3; ++i) dev_parents[i] = upload(gpu, parents[i]);
    qh = parents[0], kh = parents[1], vh = parents[2];
    qd = dev_parents[0], kd = dev_parents[1], vd = dev_parents[2];
  }
  const RopeTable rq = make_rope(c.Lq + 3, c.D / 2, seed + 3);
  const RopeTable rk = make_rope(c.Lk + 1, c.D / 2, seed + 4);
  const RopeTable rq_dev{upload(gpu, rq.cos), upload(gpu, rq.sin)};
  const RopeTable rk_dev{upload(gpu, rk.cos), upload(gpu, rk.sin)};
  const float scale = 1.0f / std::sqrt(float(c.D));

  Tensor want = Tensor::empty({c.B, c.Lq, c.H, c.Dv}, DType::kF32);
  cpu_oracle().attention(qh, kh, vh, scale, want, c.rope_q ? &rq : nullptr,
                         c.rope_k ? &rk : nullptr);
  const Tensor out = test::device_poisoned(gpu, want.shape());
  gpu.attention(qd, kd, vd, scale, out, c.rope_q ? &rq_dev : nullptr, c.rope_k ? &rk_dev : nullptr);
  char what[160];
  std::snprintf(what, sizeof what, "attention B=%lld Lq=%lld Lk=%lld H=%lld D=%lld Dv=%lld %s%s%s",
                static_cast<long long>(c.B), static_cast<long long>(c.Lq),
                static_cast<long long>(c.Lk), static_cast<long long>(c.H),
                static_cast<long long>(c.D), static_cast<long long>(c.Dv), c.fused ? "fused " : "",
                c.rope_q ? "rope_q " : "", c.rope_k ? "rope_k" : "");
  const double err = expect_parity(download(gpu, out), want, tol, what);
  std::printf("  %-80s rel err %.2e\n", what, err);
}

TEST(CudaAttention, MatchesCpu) {
  FOLEY_CUDA_OR_SKIP(gpu);
  const AttnCase cases[] = {
      {1, 1, 1, 1, 8, 8, false, false, false},
      {2, 5, 5, 3, 8, 8, true, true, true},
      {2, 17, 17, 2, 16, 16, true, true, true},
      {1, 33, 77, 4, 32, 32, false, false, false},  // text cross-attention shape
      {2, 40, 23, 2, 64, 48, false, true, false},
      {1, 130, 130, 2, 64, 64, true, true, true},
      {1, 96, 150, 2, 128, 128, false, true, true},
      {2, 70, 70, 1, 256, 256, true, false, false},
      {1, 9, 9, 2, 5, 5, false, false, false},  // odd head dim, no RoPE
      {1, 3, 4, 1, 3, 7, false, false, false},
      {300, 9, 9, 2, 16, 16, true, false, false},  // Synchformer-like divided attention groups
      {1, 300, 300, 2, 128, 128, true, true, true},
  };
  for (const AttnCase& c : cases) run_case(gpu, c);
}

TEST(CudaAttention, FlashKernelMatchesCpu) {
  FOLEY_CUDA_OR_SKIP(gpu);
  ScopedEnv flash("FOLEY_CUDA_ATTENTION", "flash");
  const AttnCase cases[] = {
      {1, 1, 1, 1, 64, 64, false, false, false},
      {2, 17, 17, 2, 64, 64, true, true, true},     // partial query and key tiles
      {1, 33, 77, 3, 64, 64, false, false, false},  // cross-attention, Lk not a tile multiple
      {2, 130, 130, 2, 128, 128, true, true, true},
      {1, 200, 64, 2, 128, 128, false, true, false},
      {1, 300, 300, 2, 128, 128, true, true, true},
      {300, 9, 9, 2, 64, 64, true, false, false},  // many small groups
      {1, 40, 40, 2, 32, 32, true, true, true},    // unsupported head dim: the F32 path
  };
  for (const AttnCase& c : cases) run_case(gpu, c, c.D == 32 ? kTol : kFlashTol);
}

// The fused kernel's two variants on bf16 inputs (its default use), forced with
// FOLEY_CUDA_FLASH_SPLIT: key counts of one tile or less (the split kernel's second group gets no
// tile), one key past a tile, the text cross-attention's 77, an odd tile count and the DiT's 500
// with a partial last tile; query counts off the 64-row tiles; RoPE on q and k; both outputs.
TEST(CudaAttention, FlashSplitKernelMatchesCpuAndSingleGroup) {
  FOLEY_CUDA_OR_SKIP(gpu);
  ScopedEnv flash("FOLEY_CUDA_ATTENTION", "flash");
  struct Case {
    int64_t B, Lq, Lk, H, D;
    bool rope_k;
  };
  const Case cases[] = {
      {1, 70, 1, 2, 64, true},     {2, 33, 64, 2, 128, true},  {1, 100, 65, 3, 64, true},
      {1, 100, 65, 2, 128, true},  {2, 97, 77, 2, 128, false}, {2, 64, 150, 2, 64, true},
      {1, 130, 500, 2, 128, true}, {2, 200, 500, 1, 64, true}, {1, 500, 500, 3, 128, true},
  };
  for (const Case& c : cases) {
    const uint64_t seed = g_seed += 11;
    const Shape qs{c.B, c.Lq, c.H, c.D}, ks{c.B, c.Lk, c.H, c.D};
    const Tensor q = random_tensor(qs, DType::kBF16, seed, -2.f, 2.f);
    const Tensor k = random_tensor(ks, DType::kBF16, seed + 1, -2.f, 2.f);
    const Tensor v = random_tensor(ks, DType::kBF16, seed + 2);
    const RopeTable rq = make_rope(c.Lq, c.D / 2, seed + 3);
    const RopeTable rk = make_rope(c.Lk, c.D / 2, seed + 4);
    const float scale = 1.0f / std::sqrt(float(c.D));
    Tensor want = Tensor::empty(qs, DType::kF32);
    cpu_oracle().attention(to_f32(q), to_f32(k), to_f32(v), scale, want, &rq,
                           c.rope_k ? &rk : nullptr);
    const Tensor qd = upload(gpu, q), kd = upload(gpu, k), vd = upload(gpu, v);
    const RopeTable rq_dev{upload(gpu, rq.cos), upload(gpu, rq.sin)};
    const RopeTable rk_dev{upload(gpu, rk.cos), upload(gpu, rk.sin)};
    for (const DType out_dt : {DType::kF32, DType::kBF16}) {
      char what[160];
      Tensor got[2];
      for (int split = 0; split < 2; ++split) {
        ScopedEnv env("FOLEY_CUDA_FLASH_SPLIT", split ? "1" : "0");
        const Tensor out = test::device_empty(gpu, qs, out_dt);
        gpu.fill(out, std::numeric_limits<float>::quiet_NaN());
        gpu.attention(qd, kd, vd, scale, out, &rq_dev, c.rope_k ? &rk_dev : nullptr);
        got[split] = to_f32(download(gpu, out));
        std::snprintf(what, sizeof what,
                      "flash split=%d B=%lld Lq=%lld Lk=%lld H=%lld D=%lld -> %s%s", split,
                      static_cast<long long>(c.B), static_cast<long long>(c.Lq),
                      static_cast<long long>(c.Lk), static_cast<long long>(c.H),
                      static_cast<long long>(c.D), dtype_name(out_dt), c.rope_k ? " rope_k" : "");
        const double err = expect_parity(got[split], want, kFlashTol, what);
        std::printf("  %-72s rel err %.2e\n", what, err);
      }
      std::snprintf(what, sizeof what, "flash split vs single group Lq=%lld Lk=%lld D=%lld -> %s",
                    static_cast<long long>(c.Lq), static_cast<long long>(c.Lk),
                    static_cast<long long>(c.D), dtype_name(out_dt));
      const double diff = expect_parity(got[1], got[0], kSplitTol, what);
      std::printf("  %-72s rel diff %.2e\n", what, diff);
    }
  }
}

}  // namespace
}  // namespace foley
