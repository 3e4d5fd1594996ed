// CUDA backend with 16-bit (BF16) activations, the DiT's bf16 path: every op that takes or
// produces them against the CPU oracle run in F32 on the same bf16-rounded inputs. Outputs
// rounded to bf16 carry at most half a bf16 ulp (2⁻⁹ relative) on top of the F32 result, so
// those are held to 4e-3 of the output's max; F32 outputs of bf16 inputs keep the F32 bounds.
// Attention through the fused bf16 kernel also rounds the probabilities: 2e-2, as its F32 test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>

#include "cuda_test_util.h"
#include "dit_fixture.h"
#include "models/mmdit.h"
#include "models/weight_store.h"

namespace foley {
namespace {

using test::ScopedEnv;

using test::download;
using test::expect_parity;
using test::mirror_view;
using test::random_tensor;
using test::tiny_dit_forward;
using test::to_f32;
using test::upload;

// The CPU backend through its interface (where the ops' default arguments live).
Backend& oracle() {
  return test::cpu_oracle();
}

constexpr double kBf16Out = 4e-3;
constexpr double kF32Out = 1e-4;
constexpr double kFlash = 2e-2;

// A device tensor of `dtype` filled with NaN, so unwritten elements show up.
Tensor poisoned(Backend& be, const Shape& shape, DType dtype) {
  Tensor t = test::device_empty(be, shape, dtype);
  be.fill(t, std::numeric_limits<float>::quiet_NaN());
  return t;
}

// Host bf16 random values and the same values as F32 (the oracle's input).
struct Bf16Input {
  Tensor bf16, f32;
};
Bf16Input bf16_input(const Shape& shape, uint64_t seed, float lo = -2.f, float hi = 2.f) {
  Bf16Input in;
  in.bf16 = random_tensor(shape, DType::kBF16, seed, lo, hi);
  in.f32 = to_f32(in.bf16);
  return in;
}

TEST(CudaHalf, LinearBf16InputsWithBf16AndF32Outputs) {
  FOLEY_CUDA_OR_SKIP(be);
  for (const auto& [M, N, K] :
       {std::tuple{1, 7, 16}, std::tuple{37, 96, 64}, std::tuple{130, 48, 200},
        std::tuple{1, 1003, 1536}, std::tuple{2, 77, 40}}) {  // the last two: the GEMV path
    const Bf16Input x = bf16_input({2, M, K}, 100 + M);
    const Tensor w = random_tensor({N, K}, DType::kBF16, 200 + N);
    const Tensor bias = random_tensor({N}, DType::kF32, 300 + K);
    Tensor expect = Tensor::empty({2, M, N}, DType::kF32);
    oracle().linear(x.f32, w, &bias, expect);
    const Tensor wd = upload(be, w), bd = upload(be, bias), xd = upload(be, x.bf16);
    for (DType out : {DType::kBF16, DType::kF32}) {
      const Tensor y = poisoned(be, {2, M, N}, out);
      be.linear(xd, wd, &bd, y);
      expect_parity(to_f32(download(be, y)), expect, out == DType::kBF16 ? kBf16Out : kF32Out,
                    std::string("linear to ") + dtype_name(out));
    }
    // F32 activations straight to a bf16 output (the DiT's first layers).
    const Tensor y = poisoned(be, {2, M, N}, DType::kBF16);
    be.linear(upload(be, x.f32), wd, &bd, y);
    expect_parity(to_f32(download(be, y)), expect, kBf16Out, "linear f32 -> bf16");
  }
}

TEST(CudaHalf, RefusesMismatchedActivationAndWeightDtypes) {
  FOLEY_CUDA_OR_SKIP(be);
  const Tensor x = upload(be, random_tensor({4, 8}, DType::kBF16, 1));
  const Tensor w32 = upload(be, random_tensor({3, 8}, DType::kF32, 2));
  const Tensor w16 = upload(be, random_tensor({3, 8}, DType::kF16, 3));
  const Tensor y16 = test::device_empty(be, {4, 3}, DType::kBF16);
  const Tensor y32 = test::device_empty(be, {4, 3}, DType::kF32);
  EXPECT_THROW(be.linear(x, w32, nullptr, y32), Error);  // bf16 x, F32 weights
  EXPECT_THROW(be.linear(x, w16, nullptr, y32), Error);  // bf16 x, F16 weights
  EXPECT_THROW(be.linear(upload(be, random_tensor({4, 8}, DType::kF32, 4)), w32, nullptr, y16),
               Error);  // F32 GEMM to a bf16 output
  const Tensor q = upload(be, random_tensor({1, 64, 2, 64}, DType::kBF16, 5));
  const Tensor k32 = upload(be, random_tensor({1, 64, 2, 64}, DType::kF32, 6));
  const Tensor out = test::device_empty(be, {1, 64, 2, 64}, DType::kBF16);
  EXPECT_THROW(be.attention(q, k32, k32, 0.125f, out), Error);
}

TEST(CudaHalf, NormsAndRopeReadAndWriteBf16) {
  FOLEY_CUDA_OR_SKIP(be);
  const int64_t B = 2, T = 33, C = 384;
  // layer_norm_modulate: F32 residual in, bf16 out; per-sample shift/scale given as bf16.
  const Tensor x = random_tensor({B, T, C}, DType::kF32, 11, -3.f, 3.f);
  const Bf16Input mod = bf16_input({B, 2 * C}, 12, -0.5f, 0.5f);
  auto chunk = [&](const Tensor& m, int k) {
    return m.slice(1, k * C, C).unsqueeze(1).expand({B, T, C});
  };
  Tensor expect = Tensor::empty({B, T, C}, DType::kF32);
  oracle().layer_norm_modulate(x, 1e-6f, chunk(mod.f32, 0), chunk(mod.f32, 1), expect);
  const Tensor md = upload(be, mod.bf16), xd = upload(be, x);
  Tensor y = poisoned(be, {B, T, C}, DType::kBF16);
  be.layer_norm_modulate(xd, 1e-6f, chunk(md, 0), chunk(md, 1), y);
  expect_parity(to_f32(download(be, y)), expect, kBf16Out, "layer_norm_modulate -> bf16");
  oracle().layer_norm(x, nullptr, nullptr, 1e-6f, expect);
  y = poisoned(be, {B, T, C}, DType::kBF16);
  be.layer_norm(xd, nullptr, nullptr, 1e-6f, y);
  expect_parity(to_f32(download(be, y)), expect, kBf16Out, "layer_norm -> bf16");

  // rms_norm and rope in place on the q columns of a bf16 fused-QKV buffer.
  const int64_t H = 3, D = 64;
  const Bf16Input qkv = bf16_input({B, T, 3 * H * D}, 13);
  const Tensor weight = random_tensor({D}, DType::kF32, 14, 0.5f, 1.5f);
  auto heads = [&](const Tensor& t) {
    return t.slice(2, 0, H * D).as_strided({B, T, H, D}, {t.stride(0), t.stride(1), D, 1});
  };
  Tensor qf = to_f32(qkv.bf16.slice(2, 0, H * D)).reshape({B, T, H, D});
  Tensor qf_copy = Tensor::empty(qf.shape(), DType::kF32);
  std::memcpy(qf_copy.raw(), qf.raw(), qf.nbytes());
  const Tensor table_angle = random_tensor({T, D / 2}, DType::kF32, 15, -3.f, 3.f);
  RopeTable rope{Tensor::empty({T, D / 2}, DType::kF32), Tensor::empty({T, D / 2}, DType::kF32)};
  for (int64_t i = 0; i < table_angle.numel(); ++i) {
    rope.cos.data<float>()[i] = std::cos(table_angle.data<float>()[i]);
    rope.sin.data<float>()[i] = std::sin(table_angle.data<float>()[i]);
  }
  oracle().rms_norm(qf_copy, &weight, 1e-6f, qf_copy);
  const Tensor qkv_d = upload(be, qkv.bf16);
  const Tensor qd = mirror_view(qkv.bf16, qkv_d, heads(qkv.bf16));
  const Tensor wd = upload(be, weight);
  be.rms_norm(qd, &wd, 1e-6f, qd);
  Tensor got = to_f32(download(be, qkv_d).slice(2, 0, H * D)).reshape({B, T, H, D});
  expect_parity(got, qf_copy, kBf16Out, "rms_norm bf16 in place");
  // RoPE of the normed (bf16-rounded) values.
  Tensor normed = Tensor::empty(qf.shape(), DType::kF32);
  std::memcpy(normed.raw(), got.raw(), got.nbytes());
  oracle().rope(normed, rope, normed);
  RopeTable rope_d{upload(be, rope.cos), upload(be, rope.sin)};
  be.rope(qd, rope_d, qd);
  got = to_f32(download(be, qkv_d).slice(2, 0, H * D)).reshape({B, T, H, D});
  expect_parity(got, normed, kBf16Out, "rope bf16 in place");
}

TEST(CudaHalf, ElementwiseBf16OutputsAndF32Residual) {
  FOLEY_CUDA_OR_SKIP(be);
  const Shape s{2, 17, 96};
  const Bf16Input a = bf16_input(s, 21), b = bf16_input(s, 22);
  // GELU(tanh) in place on bf16.
  Tensor expect = Tensor::empty(s, DType::kF32);
  oracle().activation(Activation::kGeluTanh, a.f32, expect);
  Tensor ad = upload(be, a.bf16);
  be.activation(Activation::kGeluTanh, ad, ad);
  expect_parity(to_f32(download(be, ad)), expect, kBf16Out, "gelu bf16 in place");
  // SwiGLU of F32 convolution outputs into a bf16 buffer.
  oracle().swiglu(a.f32, b.f32, expect);
  Tensor g = poisoned(be, s, DType::kBF16);
  be.swiglu(upload(be, a.f32), upload(be, b.f32), g);
  expect_parity(to_f32(download(be, g)), expect, kBf16Out, "swiglu -> bf16");
  // x (F32 residual) += gate(bf16, broadcast over T) ⊙ y(bf16).
  const Tensor x = random_tensor(s, DType::kF32, 23);
  const Bf16Input gate = bf16_input({2, 96}, 24);
  Tensor xe = Tensor::empty(s, DType::kF32);
  std::memcpy(xe.raw(), x.raw(), x.nbytes());
  oracle().gated_residual(xe, gate.f32.unsqueeze(1).expand(s), b.f32);
  const Tensor xd = upload(be, x);
  be.gated_residual(xd, upload(be, gate.bf16).unsqueeze(1).expand(s), upload(be, b.bf16));
  expect_parity(download(be, xd), xe, 1e-6, "gated_residual f32 += bf16");
  EXPECT_THROW(be.gated_residual(upload(be, a.bf16), upload(be, gate.bf16).unsqueeze(1).expand(s),
                                 upload(be, b.bf16)),
               Error);  // the residual itself must stay F32
}

TEST(CudaHalf, AttentionBf16FusedAndExact) {
  FOLEY_CUDA_OR_SKIP(be);
  struct Case {
    int64_t B, Lq, Lk, H, D;
    bool self;  // q, k, v from one fused [B, L, 3·H·D] buffer, RoPE on both
  };
  uint64_t seed = 40;
  for (const Case& c : {Case{2, 130, 130, 3, 128, true}, Case{2, 97, 77, 2, 128, false},
                        Case{1, 70, 70, 4, 64, true}, Case{1, 33, 50, 2, 48, false}}) {
    const int64_t HD = c.H * c.D;
    const Bf16Input qkv = bf16_input({c.B, c.Lq, 3 * HD}, ++seed);
    const Bf16Input kv = bf16_input({c.B, c.Lk, 2 * HD}, ++seed);
    auto view = [&](const Tensor& t, int64_t off) {
      return t.slice(2, off, HD)
          .as_strided({t.dim(0), t.dim(1), c.H, c.D}, {t.stride(0), t.stride(1), c.D, 1});
    };
    const Tensor& kvs = c.self ? qkv.f32 : kv.f32;
    const Tensor& kvs16 = c.self ? qkv.bf16 : kv.bf16;
    const int64_t koff = c.self ? HD : 0, voff = c.self ? 2 * HD : HD;
    const Tensor angle = random_tensor({std::max(c.Lq, c.Lk), c.D / 2}, DType::kF32, ++seed);
    RopeTable rope{Tensor::empty(angle.shape(), DType::kF32),
                   Tensor::empty(angle.shape(), DType::kF32)};
    for (int64_t i = 0; i < angle.numel(); ++i) {
      rope.cos.data<float>()[i] = std::cos(3 * angle.data<float>()[i]);
      rope.sin.data<float>()[i] = std::sin(3 * angle.data<float>()[i]);
    }
    const float scale = 1.0f / std::sqrt(float(c.D));
    Tensor expect = Tensor::empty({c.B, c.Lq, c.H, c.D}, DType::kF32);
    oracle().attention(view(qkv.f32, 0), view(kvs, koff), view(kvs, voff), scale, expect, &rope,
                       c.self ? &rope : nullptr);
    const Tensor qkv_d = upload(be, qkv.bf16), kv_d = upload(be, kv.bf16);
    const Tensor& kvs_d = c.self ? qkv_d : kv_d;
    const RopeTable rope_d{upload(be, rope.cos), upload(be, rope.sin)};
    const bool fused_kernel = c.D == 64 || c.D == 128;
    for (const char* mode : {"default", "exact"}) {
      ScopedEnv env("FOLEY_CUDA_ATTENTION", mode);
      for (DType out_dt : {DType::kBF16, DType::kF32}) {
        const Tensor out = poisoned(be, {c.B, c.Lq, c.H, c.D}, out_dt);
        be.attention(mirror_view(qkv.bf16, qkv_d, view(qkv.bf16, 0)),
                     mirror_view(kvs16, kvs_d, view(kvs16, koff)),
                     mirror_view(kvs16, kvs_d, view(kvs16, voff)), scale, out, &rope_d,
                     c.self ? &rope_d : nullptr);
        // RoPE'd q and k are rounded to bf16 on every path (as the reference's bf16 tensors).
        const double tol = fused_kernel && std::string(mode) == "default" ? kFlash : 1e-2;
        expect_parity(to_f32(download(be, out)), expect, tol,
                      std::string("attention ") + mode + " D=" + std::to_string(c.D) + " -> " +
                          dtype_name(out_dt));
      }
    }
  }
}

TEST(CudaHalf, Conv1dBf16InputF32Output) {
  FOLEY_CUDA_OR_SKIP(be);
  const Bf16Input x = bf16_input({2, 45, 64}, 51);
  const Tensor w = random_tensor({3, 80, 64}, DType::kBF16, 52);
  const Tensor bias = random_tensor({80}, DType::kF32, 53);
  Tensor expect = Tensor::empty({2, 45, 80}, DType::kF32);
  oracle().conv1d(x.f32, w, &bias, 1, 1, expect);
  const Tensor y = poisoned(be, {2, 45, 80}, DType::kF32);
  const Tensor bd = upload(be, bias);
  be.conv1d(upload(be, x.bf16), upload(be, w), &bd, 1, 1, y);
  expect_parity(download(be, y), expect, kF32Out, "conv1d bf16 x");
}

// The tiny DiT with bf16 weights: bf16 activations on CUDA against F32 activations on CUDA
// (FOLEY_DIT_F32_ACTIVATIONS=1). Rounding every activation to bf16, as the reference's autocast
// does, moves this random-weight model's velocity by ~1e-2 of its max; 5e-2 would catch a wrong
// dtype or a missed op.
TEST(CudaHalf, DitBf16ActivationsNearF32Activations) {
  FOLEY_CUDA_OR_SKIP(be);
  const test::TinyDit* m = test::TinyDit::get();
  ASSERT_NE(m, nullptr);
  const auto store = WeightStore::open(m->bundle(DType::kBF16));
  EXPECT_EQ(Mmdit(*store, oracle()).activation_dtype(), DType::kF32);
  Tensor v16, v32;
  for (const bool f32 : {false, true}) {
    ScopedEnv env("FOLEY_DIT_F32_ACTIVATIONS", f32 ? "1" : "0");
    const Mmdit model(*store, be);
    EXPECT_EQ(model.activation_dtype(), f32 ? DType::kF32 : DType::kBF16);
    (f32 ? v32 : v16) = tiny_dit_forward(model, be);
  }
  const double err = test::max_rel_error(v16, v32);
  std::printf("tiny DiT, bf16 vs F32 activations on CUDA: %.3e\n", err);
  EXPECT_EQ(test::count_nonfinite(v16), 0);
  EXPECT_LE(err, 5e-2);
  EXPECT_GT(err, 0.0);  // the bf16 path really ran
}

}  // namespace
}  // namespace foley
