// CPU backend: data movement, elementwise ops, norms, softmax, RoPE and resampling against plain
// scalar references written here (double accumulation). Tolerances are max|err| / max|ref|:
// 1e-6 for exact-formula elementwise ops, 1e-5 for ops with reductions or transcendental
// functions.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/dtype.h"
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

// Calls fn(flat index, element offset) for each element of t in row-major order.
void for_each_index(const Tensor& t, const std::function<void(int64_t, int64_t)>& fn) {
  std::vector<int64_t> idx(size_t(t.rank()), 0);
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t off = 0;
    for (int d = 0; d < t.rank(); ++d) off += idx[size_t(d)] * t.stride(d);
    fn(i, off);
    for (int d = t.rank() - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < t.dim(d)) break;
      idx[size_t(d)] = 0;
    }
  }
}

// A view holding t's values with `pad` extra floats after every row of the last dim (the gaps
// hold a poison value so an op that reads them shows up).
Tensor padded_rows(const Tensor& t, int64_t pad) {
  Shape big = t.shape();
  big[t.rank() - 1] += pad;
  Tensor buf = Tensor::empty(big, DType::kF32);
  for (int64_t i = 0; i < buf.numel(); ++i) buf.data<float>()[i] = 1e30f;
  Tensor view = buf.slice(t.rank() - 1, 0, t.dim(-1));
  const Tensor src = to_f32(t);
  for_each_index(view,
                 [&](int64_t i, int64_t off) { view.data<float>()[off] = src.data<float>()[i]; });
  return view;
}

// out[i] = f(in0[i], in1[i], ...) in double over contiguous F32 copies of the inputs.
Tensor ref_map(const Shape& shape, const std::vector<Tensor>& ins,
               const std::function<double(const std::vector<double>&)>& f) {
  std::vector<Tensor> c;
  for (const Tensor& t : ins) c.push_back(to_f32(t));
  Tensor out = Tensor::empty(shape, DType::kF32);
  std::vector<double> args(ins.size());
  for (int64_t i = 0; i < out.numel(); ++i) {
    for (size_t k = 0; k < c.size(); ++k) args[k] = c[k].data<float>()[i];
    out.data<float>()[i] = static_cast<float>(f(args));
  }
  return out;
}

TEST(CpuCopy, ConvertsDtypesAndStrides) {
  Tensor src = random_tensor({3, 5, 7}, DType::kF32, 1, -4.f, 4.f);
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    Tensor dst = Tensor::zeros({7, 5, 3}, dt);
    // Transposed destination: strides (1, 3, 15) when viewed as [3, 5, 7].
    cpu().copy(dst.transpose(0, 2), src);
    Tensor back = Tensor::empty({3, 5, 7}, DType::kF32);
    cpu().copy(back, dst.transpose(0, 2));
    const double tol = dt == DType::kF32 ? 0.0 : dt == DType::kBF16 ? 4.0 / 256 : 4.0 / 2048;
    EXPECT_LE(max_abs_error(back, src), tol) << dtype_name(dt);
    // Conversion rounds exactly like core/dtype's scalar functions.
    for (int64_t i = 0; i < 3 * 5 * 7; i += 11) {
      const float v = src.data<float>()[i];
      const float expect = dt == DType::kBF16  ? bf16_to_f32(f32_to_bf16(v))
                           : dt == DType::kF16 ? f16_to_f32(f32_to_f16(v))
                                               : v;
      EXPECT_EQ(back.data<float>()[i], expect);
    }
  }
}

TEST(CpuCopy, BroadcastSourceAndSameDtypeBytes) {
  Tensor row = random_tensor({1, 6}, DType::kBF16, 2);
  Tensor dst = Tensor::empty({4, 6}, DType::kF32);
  cpu().copy(dst, row.expand({4, 6}));
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 6; ++c)
      EXPECT_EQ(dst.data<float>()[r * 6 + c], bf16_to_f32(row.data<uint16_t>()[c]));
  Tensor ints = Tensor::empty({5}, DType::kI64);
  for (int i = 0; i < 5; ++i) ints.data<int64_t>()[i] = int64_t(1) << (40 + i);
  Tensor ints2 = Tensor::zeros({5}, DType::kI64);
  cpu().copy(ints2, ints);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(ints2.data<int64_t>()[i], ints.data<int64_t>()[i]);
  EXPECT_THROW(cpu().copy(Tensor::zeros({5}, DType::kF32), ints), Error);
  EXPECT_THROW(cpu().copy(dst, Tensor::zeros({4, 5}, DType::kF32)), Error);
  EXPECT_THROW(cpu().copy(row.expand({4, 6}), dst), Error);  // broadcast destination
}

TEST(CpuCopy, FillAndHostTransfers) {
  Tensor t = Tensor::zeros({3, 8}, DType::kF32);
  cpu().fill(t.slice(1, 2, 3), 2.5f);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 8; ++c)
      EXPECT_EQ(t.data<float>()[r * 8 + c], (c >= 2 && c < 5) ? 2.5f : 0.f);
  Tensor h = Tensor::zeros({4}, DType::kBF16);
  cpu().fill(h, -1.5f);
  EXPECT_EQ(h.data<uint16_t>()[3], f32_to_bf16(-1.5f));
  Tensor a = random_tensor({2, 3}, DType::kF32, 3), b = Tensor::zeros({2, 3}, DType::kF32);
  cpu().copy_from_host(b, a);
  EXPECT_EQ(max_abs_error(a, b), 0.0);
  EXPECT_THROW(cpu().copy_to_host(b, a.transpose(0, 1).reshape({2, 3})), Error);
}

struct Act {
  Activation kind;
  std::function<double(double)> ref;
};

TEST(CpuElementwise, ActivationsMatchFormulas) {
  const std::vector<Act> acts = {
      {Activation::kGeluTanh,
       [](double x) {
         return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
       }},
      {Activation::kGeluErf, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }},
      {Activation::kSilu, [](double x) { return x / (1 + std::exp(-x)); }},
      {Activation::kTanh, [](double x) { return std::tanh(x); }},
  };
  Tensor x = random_tensor({3, 17, 33}, DType::kF32, 4, -6.f, 6.f);
  for (const Act& a : acts) {
    Tensor ref = ref_map(x.shape(), {x}, [&](const auto& v) { return a.ref(v[0]); });
    Tensor y = Tensor::empty(x.shape(), DType::kF32);
    cpu().activation(a.kind, x, y);
    EXPECT_LE(max_rel_error(y, ref), 1e-6) << int(a.kind);
    // In place on a strided view.
    Tensor xs = padded_rows(x, 5);
    cpu().activation(a.kind, xs, xs);
    EXPECT_LE(max_rel_error(xs, ref), 1e-6) << int(a.kind);
  }
}

TEST(CpuElementwise, BinaryOpsBroadcastAndRunInPlace) {
  const Shape s{2, 9, 19};
  Tensor a = random_tensor(s, DType::kF32, 5, -2.f, 2.f);
  Tensor row = random_tensor({2, 1, 19}, DType::kF32, 6);
  Tensor bcast = row.expand(s);  // per-sample vector broadcast over T (stride 0)
  Tensor scal = random_tensor({2, 9, 1}, DType::kF32, 7).expand(s);  // per-row scalar
  for (const Tensor& b : {random_tensor(s, DType::kF32, 8), bcast, scal}) {
    Tensor y = Tensor::empty(s, DType::kF32);
    cpu().add(a, b, y);
    EXPECT_LE(max_rel_error(y, ref_map(s, {a, b}, [](const auto& v) { return v[0] + v[1]; })),
              1e-6);
    cpu().mul(a, b, y);
    EXPECT_LE(max_rel_error(y, ref_map(s, {a, b}, [](const auto& v) { return v[0] * v[1]; })),
              1e-6);
    Tensor ai = padded_rows(a, 3);  // in place, strided
    cpu().add(ai, b, ai);
    EXPECT_LE(max_rel_error(ai, ref_map(s, {a, b}, [](const auto& v) { return v[0] + v[1]; })),
              1e-6);
  }
  // A BF16 broadcast operand (a parameter) is read through its broadcast structure.
  Tensor pb = random_tensor({1, 1, 19}, DType::kBF16, 9);
  Tensor y = Tensor::empty(s, DType::kF32);
  cpu().add(a, pb.expand(s), y);
  EXPECT_LE(
      max_rel_error(y, ref_map(s, {a, pb.expand(s)}, [](const auto& v) { return v[0] + v[1]; })),
      1e-6);
  // Missing leading dims are the caller's job.
  EXPECT_THROW(cpu().add(a, Tensor::zeros({9, 19}, DType::kF32), y), Error);
  EXPECT_THROW(cpu().add(a, Tensor::zeros({2, 9, 18}, DType::kF32), y), Error);
}

TEST(CpuElementwise, GatedResidualModulateSwiglu) {
  const Shape s{2, 13, 24};
  Tensor x = random_tensor(s, DType::kF32, 10);
  Tensor v = random_tensor(s, DType::kF32, 11);
  Tensor mod = random_tensor({2, 3 * 24}, DType::kF32, 12);  // [shift | scale | gate] chunks
  auto chunk = [&](int i) { return mod.slice(1, i * 24, 24).unsqueeze(1).expand(s); };
  Tensor shift = chunk(0), scale = chunk(1), gate = chunk(2);

  Tensor xr = padded_rows(x, 2);
  cpu().gated_residual(xr, gate, v);
  EXPECT_LE(
      max_rel_error(xr, ref_map(s, {x, gate, v}, [](const auto& a) { return a[0] + a[1] * a[2]; })),
      1e-6);

  Tensor y = Tensor::empty(s, DType::kF32);
  const auto mod_ref =
      ref_map(s, {x, shift, scale}, [](const auto& a) { return a[0] * (1 + a[2]) + a[1]; });
  cpu().modulate(x, shift, scale, y);
  EXPECT_LE(max_rel_error(y, mod_ref), 1e-6);
  Tensor xm = padded_rows(x, 1);
  cpu().modulate(xm, shift, scale, xm);
  EXPECT_LE(max_rel_error(xm, mod_ref), 1e-6);

  const auto sw_ref =
      ref_map(s, {x, v}, [](const auto& a) { return a[0] / (1 + std::exp(-a[0])) * a[1]; });
  cpu().swiglu(x, v, y);
  EXPECT_LE(max_rel_error(y, sw_ref), 1e-6);
  Tensor vb = padded_rows(v, 4);
  cpu().swiglu(x, vb, vb);  // in place on b
  EXPECT_LE(max_rel_error(vb, sw_ref), 1e-6);
}

TEST(CpuElementwise, SnakeWithEpsilon) {
  for (DType adt : {DType::kF32, DType::kBF16}) {
    Tensor x = random_tensor({2, 31, 10}, DType::kF32, 13, -3.f, 3.f);
    Tensor alpha = random_tensor({10}, adt, 14, 0.05f, 2.f);
    const Tensor af = to_f32(alpha);
    af.data<float>()[3] = 0.0f;  // alpha = 0 relies on the +1e-9: the term is exactly 0
    cpu().copy(alpha, af);
    Tensor ref = Tensor::empty(x.shape(), DType::kF32);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double a = af.data<float>()[i % 10], v = x.data<float>()[i];
      const double s = std::sin(a * v);
      ref.data<float>()[i] = float(v + 1.0 / (a + 1e-9) * s * s);
    }
    Tensor y = padded_rows(x, 3);
    cpu().snake(y, alpha, y);
    EXPECT_LE(max_rel_error(y, ref), 1e-6) << dtype_name(adt);
  }
}

// LayerNorm / RMSNorm references in double.
Tensor ref_norm(const Tensor& x, const Tensor* w, const Tensor* b, double eps, bool rms) {
  const Tensor xc = to_f32(x);
  const int64_t C = x.dim(-1), rows = x.numel() / C;
  Tensor wf = w ? to_f32(*w) : Tensor(), bf = b ? to_f32(*b) : Tensor();
  Tensor out = Tensor::empty(x.shape(), DType::kF32);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = xc.data<float>() + r * C;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += xr[c];
    mean = rms ? 0.0 : mean / C;
    for (int64_t c = 0; c < C; ++c) var += (xr[c] - mean) * (xr[c] - mean);
    const double rstd = 1.0 / std::sqrt(var / C + eps);
    for (int64_t c = 0; c < C; ++c) {
      double v = (xr[c] - mean) * rstd;
      if (w) v *= wf.data<float>()[c];
      if (b) v += bf.data<float>()[c];
      out.data<float>()[r * C + c] = float(v);
    }
  }
  return out;
}

TEST(CpuNorm, LayerNormVariants) {
  for (int64_t C : {1, 7, 64, 257}) {
    Tensor x = random_tensor({3, 11, C}, DType::kF32, 20 + C, -3.f, 5.f);  // non-zero mean
    Tensor w = random_tensor({C}, DType::kBF16, 21);
    Tensor b = random_tensor({C}, DType::kF32, 22);
    Tensor y = Tensor::empty(x.shape(), DType::kF32);
    cpu().layer_norm(x, &w, &b, 1e-6f, y);
    EXPECT_LE(max_rel_error(y, ref_norm(x, &w, &b, 1e-6, false)), 1e-5) << C;
    Tensor xs = padded_rows(x, 3);  // no affine, eps 1e-5, in place on a strided view
    cpu().layer_norm(xs, nullptr, nullptr, 1e-5f, xs);
    if (C > 1) {  // a single-element row normalises to exactly 0 either way
      EXPECT_LE(max_rel_error(xs, ref_norm(x, nullptr, nullptr, 1e-5, false)), 1e-5) << C;
    }
  }
  Tensor x = random_tensor({2, 4}, DType::kF32, 23);
  Tensor w = random_tensor({5}, DType::kF32, 24);
  EXPECT_THROW(cpu().layer_norm(x, &w, nullptr, 1e-6f, x), Error);
}

TEST(CpuNorm, RmsNormInPlaceAndEps) {
  // Head-dim rows that sit apart in memory (like q inside a fused qkv buffer), in place.
  Tensor base = random_tensor({2, 9, 4, 32}, DType::kF32, 31);
  Tensor w = random_tensor({32}, DType::kBF16, 32);
  for (float eps : {1e-6f, 1.1920929e-07f}) {
    Tensor y = padded_rows(base, 64);
    cpu().rms_norm(y, &w, eps, y);
    EXPECT_LE(max_rel_error(y, ref_norm(base, &w, nullptr, eps, true)), 1e-5);
  }
  // A near-zero row: eps dominates, so the eps value must be applied exactly.
  Tensor tiny = Tensor::zeros({1, 8}, DType::kF32);
  tiny.data<float>()[0] = 1e-4f;
  Tensor out = Tensor::empty({1, 8}, DType::kF32);
  cpu().rms_norm(tiny, nullptr, 1e-6f, out);
  EXPECT_NEAR(out.data<float>()[0], 1e-4 / std::sqrt(1e-8 / 8 + 1e-6), 1e-6);
}

TEST(CpuNorm, LayerNormModulateBroadcast) {
  const int64_t B = 2, T = 21, C = 48;
  Tensor x = random_tensor({B, T, C}, DType::kF32, 40, -2.f, 3.f);
  Tensor mod = random_tensor({B, 2 * C}, DType::kF32, 41);
  Tensor tok = random_tensor({B, T, 2 * C}, DType::kF32, 42);
  const Tensor ln = ref_norm(x, nullptr, nullptr, 1e-6, false);
  // Per-sample (stride-0 T) and per-token (strided chunk) modulation.
  const std::vector<std::pair<Tensor, Tensor>> cases = {
      {mod.slice(1, 0, C).unsqueeze(1).expand({B, T, C}),
       mod.slice(1, C, C).unsqueeze(1).expand({B, T, C})},
      {tok.slice(2, 0, C), tok.slice(2, C, C)}};
  for (const auto& [shift, scale] : cases) {
    Tensor ref = ref_map(x.shape(), {ln, shift, scale},
                         [](const auto& a) { return a[0] * (1 + a[2]) + a[1]; });
    Tensor y = Tensor::empty(x.shape(), DType::kF32);
    cpu().layer_norm_modulate(x, 1e-6f, shift, scale, y);
    EXPECT_LE(max_rel_error(y, ref), 1e-5);
  }
}

TEST(CpuNorm, SoftmaxRows) {
  Tensor x = random_tensor({3, 5, 77}, DType::kF32, 50, -20.f, 20.f);
  x.data<float>()[3] = 1000.f;  // max subtraction keeps this finite
  Tensor ref = Tensor::empty(x.shape(), DType::kF32);
  for (int64_t r = 0; r < 15; ++r) {
    const float* xr = x.data<float>() + r * 77;
    double m = -1e300, s = 0;
    for (int c = 0; c < 77; ++c) m = std::max(m, double(xr[c]));
    for (int c = 0; c < 77; ++c) s += std::exp(xr[c] - m);
    for (int c = 0; c < 77; ++c) ref.data<float>()[r * 77 + c] = float(std::exp(xr[c] - m) / s);
  }
  Tensor y = padded_rows(x, 3);
  cpu().softmax(y, y);
  EXPECT_LE(max_rel_error(y, ref), 1e-5);
  EXPECT_FALSE(std::isnan(to_f32(y).data<float>()[3]));
}

TEST(CpuRope, AdjacentPairsInPlaceOnStridedView) {
  const int64_t B = 2, L = 7, H = 3, D = 8;
  Tensor x = random_tensor({B, L, H, D}, DType::kF32, 60);
  Tensor cos = random_tensor({L + 3, D / 2}, DType::kF32, 61);
  Tensor sin = random_tensor({L + 3, D / 2}, DType::kF32, 62);
  Tensor ref = Tensor::empty(x.shape(), DType::kF32);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t l = 0; l < L; ++l)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < D / 2; ++i) {
          const int64_t o = ((b * L + l) * H + h) * D + 2 * i;
          const double x0 = x.data<float>()[o], x1 = x.data<float>()[o + 1];
          const double c = cos.data<float>()[l * D / 2 + i], s = sin.data<float>()[l * D / 2 + i];
          ref.data<float>()[o] = float(x0 * c - x1 * s);
          ref.data<float>()[o + 1] = float(x1 * c + x0 * s);
        }
  Tensor y = Tensor::empty(x.shape(), DType::kF32);
  cpu().rope(x, {cos, sin}, y);
  EXPECT_LE(max_rel_error(y, ref), 1e-6);
  Tensor xs = padded_rows(x, 8);
  cpu().rope(xs, {cos, sin}, xs);
  EXPECT_LE(max_rel_error(xs, ref), 1e-6);
  EXPECT_THROW(cpu().rope(x, {cos.slice(0, 0, L - 1), sin.slice(0, 0, L - 1)}, y), Error);
}

TEST(CpuResample, NearestExactFloatScaleRule) {
  // The latent-length pairs of the sync path: S·8 tokens to Ta steps.
  for (auto [T, To] : std::vector<std::pair<int64_t, int64_t>>{
           {112, 250}, {240, 499}, {368, 752}, {7, 3}, {5, 5}, {1, 4}}) {
    Tensor x = random_tensor({2, T, 3}, DType::kF32, 70 + T);
    Tensor y = Tensor::empty({2, To, 3}, DType::kF32);
    cpu().resample_nearest_exact(x, y);
    const float scale = float(T) / float(To);
    int mismatches = 0;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < To; ++i) {
        const int64_t src =
            std::min<int64_t>(int64_t(std::floor((float(i) + 0.5f) * scale)), T - 1);
        for (int c = 0; c < 3; ++c)
          mismatches +=
              y.data<float>()[(b * To + i) * 3 + c] != x.data<float>()[(b * T + src) * 3 + c];
      }
    EXPECT_EQ(mismatches, 0) << T << " -> " << To;
  }
}

}  // namespace
}  // namespace foley
