// CPU attention against a double-precision softmax(q·kᵀ·scale)·v reference, on every kernel
// path the machine supports (AVX-512, AVX2, baseline), with strided views, RoPE, Lq != Lk,
// Dv != D and sizes that do not fill the tiles. Tolerance: max|err| / max|ref| <= 1e-5.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_simd.h"
#include "foley/error.h"
#include "test_util.h"

namespace foley {
namespace {

using test::max_abs_error;
using test::max_rel_error;
using test::random_tensor;
using test::to_f32;

CpuBackend& cpu() {
  static CpuBackend backend;
  return backend;
}

// Restores the kernel set when a test ends, even on failure.
struct IsaCap {
  explicit IsaCap(cpu::Isa isa) { cpu::set_isa_cap(isa); }
  ~IsaCap() { cpu::set_isa_cap(cpu::Isa::kAvx512); }
};

std::vector<cpu::Isa> supported_isas() {
  std::vector<cpu::Isa> out;
  for (cpu::Isa i : {cpu::Isa::kGeneric, cpu::Isa::kAvx2, cpu::Isa::kAvx512})
    if (i <= cpu::detected_isa()) out.push_back(i);
  return out;
}

// x [B, L, H, D] with adjacent-pair RoPE from row l of the table (double).
std::vector<double> rotated(const Tensor& x, const RopeTable* rope) {
  const Tensor c = to_f32(x);
  const int64_t B = x.dim(0), L = x.dim(1), H = x.dim(2), D = x.dim(3);
  std::vector<double> out(c.data<float>(), c.data<float>() + c.numel());
  if (!rope) return out;
  const Tensor cs = to_f32(rope->cos), sn = to_f32(rope->sin);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t l = 0; l < L; ++l)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < D / 2; ++i) {
          const size_t o = size_t(((b * L + l) * H + h) * D + 2 * i);
          const double x0 = out[o], x1 = out[o + 1];
          const double co = cs.data<float>()[l * D / 2 + i], si = sn.data<float>()[l * D / 2 + i];
          out[o] = x0 * co - x1 * si;
          out[o + 1] = x1 * co + x0 * si;
        }
  return out;
}

Tensor ref_attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                     const RopeTable* rq, const RopeTable* rk) {
  const int64_t B = q.dim(0), Lq = q.dim(1), H = q.dim(2), D = q.dim(3), Lk = k.dim(1),
                Dv = v.dim(3);
  const std::vector<double> qd = rotated(q, rq), kd = rotated(k, rk);
  const Tensor vc = to_f32(v);
  Tensor out = Tensor::empty({B, Lq, H, Dv}, DType::kF32);
  std::vector<double> s(static_cast<size_t>(Lk));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Lq; ++i) {
        double m = -1e300, sum = 0;
        for (int64_t j = 0; j < Lk; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += qd[size_t(((b * Lq + i) * H + h) * D + d)] *
                   kd[size_t(((b * Lk + j) * H + h) * D + d)];
          s[size_t(j)] = dot * scale;
          m = std::max(m, s[size_t(j)]);
        }
        for (int64_t j = 0; j < Lk; ++j) sum += (s[size_t(j)] = std::exp(s[size_t(j)] - m));
        for (int64_t c = 0; c < Dv; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < Lk; ++j)
            acc += s[size_t(j)] * vc.data<float>()[((b * Lk + j) * H + h) * Dv + c];
          out.data<float>()[((b * Lq + i) * H + h) * Dv + c] = float(acc / sum);
        }
      }
  return out;
}

RopeTable random_rope(int64_t L, int64_t D, uint64_t seed) {
  // Real rotation tables (cos² + sin² = 1) at random angles.
  Tensor ang = random_tensor({L, D / 2}, DType::kF32, seed, -3.f, 3.f);
  Tensor c = Tensor::empty({L, D / 2}, DType::kF32), s = Tensor::empty({L, D / 2}, DType::kF32);
  for (int64_t i = 0; i < ang.numel(); ++i) {
    c.data<float>()[i] = std::cos(ang.data<float>()[i]);
    s.data<float>()[i] = std::sin(ang.data<float>()[i]);
  }
  return {c, s};
}

struct AttnCase {
  int64_t B, Lq, Lk, H, D, Dv;
  float spread;  // input range: large values make the max subtraction matter
};

TEST(CpuAttention, MatchesReferenceOnEveryKernelPath) {
  const std::vector<AttnCase> cases = {
      {1, 1, 1, 1, 2, 2, 1.f},      {2, 5, 7, 3, 8, 8, 1.f},        {1, 70, 45, 2, 64, 64, 1.f},
      {2, 130, 67, 2, 32, 48, 2.f}, {1, 9, 9, 12, 64, 64, 1.f},     {1, 1, 200, 2, 128, 128, 1.f},
      {1, 33, 100, 1, 16, 3, 4.f},  {1, 150, 161, 1, 128, 128, 1.f}};
  for (cpu::Isa isa : supported_isas()) {
    IsaCap cap(isa);
    for (const AttnCase& c : cases) {
      SCOPED_TRACE(std::string(cpu::isa_name(isa)) + " B=" + std::to_string(c.B) +
                   " Lq=" + std::to_string(c.Lq) + " Lk=" + std::to_string(c.Lk) +
                   " H=" + std::to_string(c.H) + " D=" + std::to_string(c.D) +
                   " Dv=" + std::to_string(c.Dv));
      Tensor q = random_tensor({c.B, c.Lq, c.H, c.D}, DType::kF32, 10 + c.Lq, -c.spread, c.spread);
      Tensor k = random_tensor({c.B, c.Lk, c.H, c.D}, DType::kF32, 20 + c.Lk, -c.spread, c.spread);
      Tensor v = random_tensor({c.B, c.Lk, c.H, c.Dv}, DType::kF32, 30 + c.Dv);
      const float scale = 1.0f / std::sqrt(float(c.D));
      Tensor out = Tensor::empty({c.B, c.Lq, c.H, c.Dv}, DType::kF32);
      cpu().attention(q, k, v, scale, out, nullptr, nullptr);
      EXPECT_LE(max_rel_error(out, ref_attention(q, k, v, scale, nullptr, nullptr)), 1e-5);
    }
  }
}

TEST(CpuAttention, FusedQkvViewsWithRopeLeaveInputsUntouched) {
  const int64_t B = 2, L = 77, H = 3, D = 32, Lk = 50;
  for (cpu::Isa isa : supported_isas()) {
    IsaCap cap(isa);
    SCOPED_TRACE(cpu::isa_name(isa));
    // A fused qkv buffer [B, L, (3 H D)] in the "(K H D)" layout: q, k, v are strided views.
    Tensor qkv = random_tensor({B, L, 3 * H * D}, DType::kF32, 40, -2.f, 2.f);
    auto part = [&](int i, int64_t len) {
      return qkv.slice(2, i * H * D, H * D)
          .as_strided({B, len, H, D}, {L * 3 * H * D, 3 * H * D, D, 1});
    };
    Tensor q = part(0, L), k = part(1, Lk), v = part(2, Lk);
    const Tensor before = to_f32(qkv);
    RopeTable rq = random_rope(L + 4, D, 41), rk = random_rope(Lk, D, 42);
    Tensor big = Tensor::zeros({B, L, H, D + 16}, DType::kF32);  // strided output rows
    Tensor out = big.slice(3, 8, D);
    cpu().attention(q, k, v, 0.3f, out, &rq, &rk);
    EXPECT_LE(max_rel_error(out, ref_attention(q, k, v, 0.3f, &rq, &rk)), 1e-5);
    EXPECT_EQ(max_abs_error(qkv, before), 0.0);
    EXPECT_EQ(big.data<float>()[0], 0.0f);
    // RoPE on q only, matching a separately rotated q.
    Tensor qr = Tensor::empty({B, L, H, D}, DType::kF32);
    cpu().rope(q, rq, qr);
    Tensor o1 = Tensor::empty({B, L, H, D}, DType::kF32),
           o2 = Tensor::empty({B, L, H, D}, DType::kF32);
    cpu().attention(q, k, v, 0.3f, o1, &rq, nullptr);
    cpu().attention(qr, k, v, 0.3f, o2, nullptr, nullptr);
    EXPECT_LE(max_rel_error(o1, o2), 1e-6);
  }
}

TEST(CpuAttention, ManyPairsSpanSeveralPackingGroups) {
  // 2.4 MB of packed keys per pair: 16 pairs do not fit the 32 MB packing budget at once.
  const int64_t B = 8, H = 2, Lq = 3, Lk = 2048, D = 256, Dv = 16;
  Tensor q = random_tensor({B, Lq, H, D}, DType::kF32, 50);
  Tensor k = random_tensor({B, Lk, H, D}, DType::kF32, 51);
  Tensor v = random_tensor({B, Lk, H, Dv}, DType::kF32, 52);
  Tensor out = Tensor::empty({B, Lq, H, Dv}, DType::kF32);
  cpu().attention(q, k, v, 0.0625f, out, nullptr, nullptr);
  EXPECT_LE(max_rel_error(out, ref_attention(q, k, v, 0.0625f, nullptr, nullptr)), 1e-5);
}

TEST(CpuAttention, RejectsBadArguments) {
  Tensor q = random_tensor({1, 4, 2, 8}, DType::kF32, 1);
  Tensor k = random_tensor({1, 5, 2, 8}, DType::kF32, 2);
  Tensor v = random_tensor({1, 5, 2, 6}, DType::kF32, 3);
  Tensor out = Tensor::empty({1, 4, 2, 6}, DType::kF32);
  EXPECT_NO_THROW(cpu().attention(q, k, v, 1.f, out, nullptr, nullptr));
  EXPECT_THROW(
      cpu().attention(q, k, v, 1.f, Tensor::empty({1, 4, 2, 8}, DType::kF32), nullptr, nullptr),
      Error);
  EXPECT_THROW(cpu().attention(q, random_tensor({1, 5, 2, 7}, DType::kF32, 4), v, 1.f, out, nullptr,
                               nullptr),
               Error);
  RopeTable short_table = random_rope(3, 8, 5);
  EXPECT_THROW(cpu().attention(q, k, v, 1.f, out, &short_table, nullptr), Error);
  EXPECT_THROW(cpu().attention(q.transpose(1, 3), k, v, 1.f, out, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace foley
