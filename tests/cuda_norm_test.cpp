// CUDA layer_norm, rms_norm, layer_norm_modulate, softmax and rope against the CPU oracle on
// fresh random inputs: every option, odd row widths, rows wider than a thread block, strided
// rows, broadcast modulation, in-place use. Tolerances (max|cuda − cpu| / max|cpu|):
//   norms and softmax: 2e-6 (both accumulate in double; only the summation order differs, and
//   CUDA's expf is not the CPU's std::exp);
//   rope: 1e-6 (the same four F32 products and two sums; nothing to differ but contraction).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "cuda_test_util.h"

namespace foley {
namespace {

using test::cpu_oracle;
using test::download;
using test::expect_parity;
using test::random_tensor;
using test::upload;

constexpr double kNormTol = 2e-6;
constexpr double kRopeTol = 1e-6;

void report(const std::string& what, double err) {
  std::printf("[parity] %-40s max rel err %.3g\n", what.c_str(), err);
}

Tensor host_clone(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype());
  std::memcpy(c.raw(), t.raw(), t.nbytes());
  return c;
}

// Widths: one element, odd, one warp, odd above a block's threads, several blocks' worth.
const int64_t kWidths[] = {1, 7, 64, 129, 1000, 3001};

TEST(CudaNorm, LayerNormEveryOptionAndWidth) {
  FOLEY_CUDA_OR_SKIP(be);
  for (int64_t C : kWidths) {
    Tensor x = random_tensor({3, 5, C}, DType::kF32, 30 + C, -3.f, 5.f);  // non-zero mean
    Tensor w = random_tensor({C}, DType::kBF16, 31);
    Tensor b = random_tensor({C}, DType::kF32, 32);
    Tensor dx = upload(be, x), dw = upload(be, w), db = upload(be, b);
    for (int opt = 0; opt < 4; ++opt) {
      const bool hw = opt & 1, hb = opt & 2;
      Tensor want = Tensor::empty(x.shape(), DType::kF32);
      cpu_oracle().layer_norm(x, hw ? &w : nullptr, hb ? &b : nullptr, 1e-5f, want);
      Tensor dy = test::device_poisoned(be, x.shape());
      be.layer_norm(dx, hw ? &dw : nullptr, hb ? &db : nullptr, 1e-5f, dy);
      const std::string what =
          "layer_norm C=" + std::to_string(C) + (hw ? " +w" : "") + (hb ? " +b" : "");
      const double err = expect_parity(download(be, dy), want, kNormTol, what);
      if (opt == 3) report(what, err);
    }
  }
  // Strided rows (a column slice of a wider buffer), in place.
  Tensor base = random_tensor({4, 6, 300}, DType::kF32, 33, -2.f, 2.f);
  const Tensor view = base.slice(2, 40, 200);
  Tensor want = host_clone(base);
  cpu_oracle().layer_norm(view, nullptr, nullptr, 1e-6f, want.slice(2, 40, 200));
  Tensor dbase = upload(be, base);
  const Tensor dview = dbase.slice(2, 40, 200);
  be.layer_norm(dview, nullptr, nullptr, 1e-6f, dview);
  report("layer_norm strided in place",
         expect_parity(download(be, dbase), want, kNormTol, "layer_norm strided in place"));
}

TEST(CudaNorm, RmsNormHeadsViewInPlace) {
  FOLEY_CUDA_OR_SKIP(be);
  // The k part of a fused [B, L, 3·H·D] buffer viewed as [B, L, H, D]; in place, as the DiT does.
  const int64_t B = 2, L = 9, H = 4, D = 32;
  Tensor base = random_tensor({B, L, 3 * H * D}, DType::kF32, 34);
  Tensor w = random_tensor({D}, DType::kF32, 35);
  auto kview = [&](const Tensor& t) {
    std::array<int64_t, kMaxRank> st{L * 3 * H * D, 3 * H * D, D, 1};
    return t.slice(2, H * D, H * D).as_strided({B, L, H, D}, st);
  };
  for (int opt = 0; opt < 2; ++opt) {
    Tensor want = host_clone(base);
    cpu_oracle().rms_norm(kview(want), opt ? &w : nullptr, 1e-6f, kview(want));
    Tensor d = upload(be, base);
    Tensor dw = upload(be, w);
    be.rms_norm(kview(d), opt ? &dw : nullptr, 1e-6f, kview(d));
    const std::string what = std::string("rms_norm heads in place") + (opt ? " +w" : "");
    report(what, expect_parity(download(be, d), want, kNormTol, what));
  }
  for (int64_t C : kWidths) {
    Tensor x = random_tensor({7, C}, DType::kF32, 36 + C, -4.f, 4.f);
    Tensor w2 = random_tensor({C}, DType::kBF16, 37);
    Tensor want = Tensor::empty(x.shape(), DType::kF32);
    cpu_oracle().rms_norm(x, &w2, 1.1920928955078125e-07f, want);
    Tensor dy = test::device_poisoned(be, x.shape());
    const Tensor dw2 = upload(be, w2);
    be.rms_norm(upload(be, x), &dw2, 1.1920928955078125e-07f, dy);
    expect_parity(download(be, dy), want, kNormTol, "rms_norm C=" + std::to_string(C));
  }
}

TEST(CudaNorm, LayerNormModulateBroadcastAndPerToken) {
  FOLEY_CUDA_OR_SKIP(be);
  for (int64_t C : {int64_t{24}, int64_t{129}, int64_t{1536}}) {
    const Shape s{2, 11, C};
    Tensor x = random_tensor(s, DType::kF32, 40 + C, -3.f, 4.f);
    // Per-sample modulation: rows of a [B, 6C] projection, broadcast over T (stride 0).
    Tensor mod = random_tensor({2, 6 * C}, DType::kF32, 41);
    auto chunk = [&](const Tensor& m, int i) {
      return m.slice(1, i * C, C).unsqueeze(1).expand(s);
    };
    Tensor want = Tensor::empty(s, DType::kF32);
    cpu_oracle().layer_norm_modulate(x, 1e-6f, chunk(mod, 0), chunk(mod, 1), want);
    Tensor dx = upload(be, x), dmod = upload(be, mod);
    be.layer_norm_modulate(dx, 1e-6f, chunk(dmod, 0), chunk(dmod, 1), dx);  // in place
    const std::string what = "layer_norm_modulate bcast C=" + std::to_string(C);
    report(what, expect_parity(download(be, dx), want, kNormTol, what));
    // Per-token BF16 shift/scale.
    Tensor sh = random_tensor(s, DType::kBF16, 42), sc = random_tensor(s, DType::kBF16, 43);
    cpu_oracle().layer_norm_modulate(x, 1e-5f, sh, sc, want);
    Tensor dy = test::device_poisoned(be, s);
    be.layer_norm_modulate(upload(be, x), 1e-5f, upload(be, sh), upload(be, sc), dy);
    expect_parity(download(be, dy), want, kNormTol, what + " per-token bf16");
  }
}

TEST(CudaNorm, SoftmaxWidthsStridedInPlace) {
  FOLEY_CUDA_OR_SKIP(be);
  for (int64_t C : kWidths) {
    Tensor x = random_tensor({6, C}, DType::kF32, 50 + C, -30.f, 30.f);  // wide logit range
    Tensor want = Tensor::empty(x.shape(), DType::kF32);
    cpu_oracle().softmax(x, want);
    Tensor dx = upload(be, x);
    be.softmax(dx, dx);
    const std::string what = "softmax C=" + std::to_string(C);
    const double err = expect_parity(download(be, dx), want, kNormTol, what);
    if (C == 3001) report(what, err);
  }
  Tensor base = random_tensor({3, 4, 50}, DType::kF32, 51, -5.f, 5.f);
  Tensor want = host_clone(base);
  cpu_oracle().softmax(base.transpose(0, 1).slice(2, 3, 41), want.transpose(0, 1).slice(2, 3, 41));
  Tensor d = upload(be, base);
  be.softmax(d.transpose(0, 1).slice(2, 3, 41), d.transpose(0, 1).slice(2, 3, 41));
  expect_parity(download(be, d), want, kNormTol, "softmax strided rows");
}

TEST(CudaNorm, RopeStridedQkvViewAndTallTable) {
  FOLEY_CUDA_OR_SKIP(be);
  const int64_t B = 2, L = 13, H = 3, D = 16, Lt = 20;
  Tensor qkv = random_tensor({B, L, 3 * H, D}, DType::kF32, 60, -2.f, 2.f);
  // The table has more rows than L, and its rows are strided (a slice of a wider buffer).
  Tensor cs = random_tensor({Lt, D}, DType::kF32, 61), sn = random_tensor({Lt, D}, DType::kF32, 62);
  RopeTable t{cs.slice(1, 0, D / 2), sn.slice(1, 0, D / 2)};
  Tensor dcs = upload(be, cs), dsn = upload(be, sn);
  RopeTable dt{dcs.slice(1, 0, D / 2), dsn.slice(1, 0, D / 2)};
  // In place on the k slice of the fused buffer.
  Tensor want = host_clone(qkv);
  cpu_oracle().rope(want.slice(2, H, H), t, want.slice(2, H, H));
  Tensor d = upload(be, qkv);
  be.rope(d.slice(2, H, H), dt, d.slice(2, H, H));
  report("rope in place on a qkv slice",
         expect_parity(download(be, d), want, kRopeTol, "rope in place"));
  // Out of place into a contiguous tensor.
  Tensor want2 = Tensor::empty({B, L, H, D}, DType::kF32);
  cpu_oracle().rope(qkv.slice(2, 0, H), t, want2);
  Tensor dy = test::device_poisoned(be, {B, L, H, D});
  be.rope(upload(be, qkv).slice(2, 0, H), dt, dy);
  expect_parity(download(be, dy), want2, kRopeTol, "rope out of place");
  RopeTable short_table{dcs.slice(0, 0, L - 1).slice(1, 0, D / 2),
                        dsn.slice(0, 0, L - 1).slice(1, 0, D / 2)};
  EXPECT_THROW(be.rope(dy, short_table, dy), Error);
}

}  // namespace
}  // namespace foley
