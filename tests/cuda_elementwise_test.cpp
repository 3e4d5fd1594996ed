// CUDA copy/fill and elementwise ops against the CPU oracle on fresh random inputs: contiguous
// (float4 path) and strided/broadcast (generic path) operands, BF16/F16 second operands, in-place
// use and odd sizes. Tolerances are max|cuda − cpu| / max|cpu|:
//   copy, fill: exact (bitwise, dtype conversions included);
//   add, mul, gated_residual, modulate: 1e-6 (same F32 roundings; kept loose of exact only
//   because the CPU compiler may contract a·b + c);
//   activations, swiglu, snake: 1e-6 (CUDA's expf/erff/sinf vs the CPU's polynomials).
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

constexpr double kArithTol = 1e-6;
constexpr double kTranscTol = 1e-6;

// The device view over `dev_base` that `host_view` is over `host_base` (same offset, strides).
Tensor mirror(const Tensor& dev_base, const Tensor& host_base, const Tensor& host_view) {
  const int64_t es = static_cast<int64_t>(dtype_size(host_base.dtype()));
  const int64_t off =
      (static_cast<char*>(host_view.raw()) - static_cast<char*>(host_base.raw())) / es;
  std::array<int64_t, kMaxRank> strides{};
  for (int d = 0; d < host_view.rank(); ++d) strides[size_t(d)] = host_view.stride(d);
  const Tensor flat(static_cast<char*>(dev_base.raw()) + off * es, host_view.dtype(),
                    {host_view.numel() ? 1 : 0}, DeviceKind::kCUDA);
  return flat.as_strided(host_view.shape(), strides);
}

bool bytes_equal(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

void report(const char* what, double err) {
  std::printf("[parity] %-40s max rel err %.3g\n", what, err);
}

TEST(CudaCopy, StridedConvertingAndBroadcastCopiesAreExact) {
  FOLEY_CUDA_OR_SKIP(be);
  const DType dts[] = {DType::kF32, DType::kBF16, DType::kF16};
  for (DType sdt : dts) {
    for (DType ddt : dts) {
      // Source: a transposed view; destination: a slice of a wider buffer.
      Tensor src = random_tensor({5, 7, 3}, sdt, 1, -8.f, 8.f);
      Tensor dst_base = Tensor::zeros({7, 5, 9}, ddt);
      const Tensor src_view = src.transpose(0, 1);      // [7, 5, 3]
      const Tensor dst_view = dst_base.slice(2, 2, 3);  // [7, 5, 3], row stride 9
      cpu_oracle().copy(dst_view, src_view);
      Tensor dsrc = upload(be, src), ddst = upload(be, Tensor::zeros({7, 5, 9}, ddt));
      be.copy(mirror(ddst, dst_base, dst_view), mirror(dsrc, src, src_view));
      EXPECT_TRUE(bytes_equal(download(be, ddst), dst_base))
          << dtype_name(sdt) << " -> " << dtype_name(ddt);
    }
  }
  // Broadcast source (stride 0 in two dims) into a rank-6 destination, with conversion.
  Tensor row = random_tensor({1, 3, 1, 1, 1, 5}, DType::kBF16, 2);
  const Shape s6{2, 3, 2, 1, 3, 5};
  Tensor want = Tensor::empty(s6, DType::kF32);
  cpu_oracle().copy(want, row.expand(s6));
  Tensor got = test::device_poisoned(be, s6);
  be.copy(got, upload(be, row).expand(s6));
  EXPECT_TRUE(bytes_equal(download(be, got), want));
  // Same-dtype integer copy through strides (element size 8).
  Tensor ints = Tensor::empty({4, 6}, DType::kI64);
  for (int i = 0; i < 24; ++i) ints.data<int64_t>()[i] = (int64_t{1} << 40) + i * 977;
  Tensor di = upload(be, ints), dt = upload(be, Tensor::zeros({6, 4}, DType::kI64));
  be.copy(dt, di.transpose(0, 1));
  Tensor back = download(be, dt);
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < 4; ++c)
      EXPECT_EQ(back.data<int64_t>()[r * 4 + c], ints.data<int64_t>()[c * 6 + r]);
  // A contiguous same-dtype copy (the memcpy path) and the refusals.
  Tensor a = random_tensor({3, 1000}, DType::kF32, 3);
  Tensor da = upload(be, a), db = test::device_poisoned(be, {3, 1000});
  be.copy(db, da);
  EXPECT_TRUE(bytes_equal(download(be, db), a));
  EXPECT_THROW(be.copy(da.slice(1, 0, 1).expand({3, 1000}), db), Error);  // broadcast dst
  EXPECT_THROW(be.copy(db, di.reshape({24}).slice(0, 0, 3).unsqueeze(1).expand({3, 1000})), Error);
  EXPECT_THROW(be.copy(db, a), Error);  // host source
}

TEST(CudaCopy, FillStridedEveryFloatDtype) {
  FOLEY_CUDA_OR_SKIP(be);
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    Tensor host = random_tensor({4, 9, 5}, dt, 4);
    Tensor dev = upload(be, host);
    const Tensor view = host.slice(1, 3, 4).transpose(0, 2);  // strided, [5, 4, 4]
    cpu_oracle().fill(view, -2.75f);
    be.fill(mirror(dev, host, view), -2.75f);
    EXPECT_TRUE(bytes_equal(download(be, dev), host)) << dtype_name(dt);
  }
  Tensor big = test::device_poisoned(be, {1 << 20});
  be.fill(big, 0.5f);
  Tensor h = download(be, big);
  int64_t wrong = 0;
  for (int64_t i = 0; i < h.numel(); ++i) wrong += h.data<float>()[i] != 0.5f;
  EXPECT_EQ(wrong, 0);
}

struct ActCase {
  Activation act;
  const char* name;
};

TEST(CudaElementwise, ActivationsContiguousStridedBf16AndInPlace) {
  FOLEY_CUDA_OR_SKIP(be);
  const ActCase acts[] = {{Activation::kGeluTanh, "gelu_tanh"},
                          {Activation::kGeluErf, "gelu_erf"},
                          {Activation::kSilu, "silu"},
                          {Activation::kTanh, "tanh"}};
  for (const ActCase& a : acts) {
    // Odd total size (float4 body + tail), values well into both saturated ends.
    Tensor x = random_tensor({3, 1001}, DType::kF32, 5, -12.f, 12.f);
    Tensor want = Tensor::empty(x.shape(), DType::kF32);
    cpu_oracle().activation(a.act, x, want);
    Tensor dx = upload(be, x), dy = test::device_poisoned(be, x.shape());
    be.activation(a.act, dx, dy);
    report(a.name, expect_parity(download(be, dy), want, kTranscTol, a.name));
    be.activation(a.act, dx, dx);  // in place
    expect_parity(download(be, dx), want, kTranscTol, std::string(a.name) + " in place");
    // Strided BF16 input (transposed view) through the generic kernel.
    Tensor xb = random_tensor({33, 17}, DType::kBF16, 6, -6.f, 6.f);
    Tensor wantb = Tensor::empty({17, 33}, DType::kF32);
    cpu_oracle().activation(a.act, xb.transpose(0, 1), wantb);
    Tensor dyb = test::device_poisoned(be, {17, 33});
    be.activation(a.act, upload(be, xb).transpose(0, 1), dyb);
    expect_parity(download(be, dyb), wantb, kTranscTol, std::string(a.name) + " strided bf16");
  }
}

TEST(CudaElementwise, AddMulBroadcastDtypesAndInPlace) {
  FOLEY_CUDA_OR_SKIP(be);
  const Shape s{2, 9, 19};
  Tensor a = random_tensor(s, DType::kF32, 7, -2.f, 2.f);
  Tensor full = random_tensor(s, DType::kF32, 8);
  Tensor row = random_tensor({2, 1, 19}, DType::kF32, 9);
  Tensor col = random_tensor({2, 9, 1}, DType::kF32, 10);
  Tensor prm = random_tensor({19}, DType::kBF16, 11);
  Tensor dfull = upload(be, full), drow = upload(be, row), dcol = upload(be, col),
         dprm = upload(be, prm);
  struct B {
    Tensor host, dev;
    const char* name;
  };
  const B bs[] = {{full, dfull, "full"},
                  {row.expand(s), drow.expand(s), "row broadcast"},
                  {col.expand(s), dcol.expand(s), "per-row scalar"},
                  {prm.expand(s), dprm.expand(s), "bf16 vector broadcast"}};
  for (const B& b : bs) {
    for (int op = 0; op < 2; ++op) {
      const std::string what = std::string(op ? "mul " : "add ") + b.name;
      Tensor want = Tensor::empty(s, DType::kF32);
      if (op)
        cpu_oracle().mul(a, b.host, want);
      else
        cpu_oracle().add(a, b.host, want);
      Tensor da = upload(be, a);
      if (op)
        be.mul(da, b.dev, da);
      else
        be.add(da, b.dev, da);  // in place (y == a)
      report(what.c_str(), expect_parity(download(be, da), want, kArithTol, what));
    }
  }
  // Large contiguous operands whose views start off a 16-byte boundary (scalar fallback).
  Tensor big = random_tensor({1, 100003}, DType::kF32, 12),
         big2 = random_tensor({1, 100003}, DType::kF32, 13);
  Tensor want = Tensor::empty({1, 100002}, DType::kF32);
  cpu_oracle().add(big.slice(1, 1, 100002), big2.slice(1, 0, 100002), want);
  Tensor dy = test::device_poisoned(be, {1, 100002});
  be.add(upload(be, big).slice(1, 1, 100002), upload(be, big2).slice(1, 0, 100002), dy);
  expect_parity(download(be, dy), want, kArithTol, "add unaligned");
  EXPECT_THROW(be.add(dfull, drow, dfull.slice(1, 0, 1)), Error);  // shape mismatch
  EXPECT_THROW(be.add(dfull, full, dfull), Error);                 // host operand
}

TEST(CudaElementwise, GatedResidualModulateSwiglu) {
  FOLEY_CUDA_OR_SKIP(be);
  const Shape s{2, 37, 24};
  Tensor x = random_tensor(s, DType::kF32, 14), v = random_tensor(s, DType::kF32, 15);
  Tensor mod = random_tensor({2, 3 * 24}, DType::kF32, 16);  // [shift | scale | gate] per sample
  Tensor dmod = upload(be, mod);
  auto chunk = [&](const Tensor& m, int i) {
    return m.slice(1, i * 24, 24).unsqueeze(1).expand(s);
  };
  {
    Tensor host = Tensor::empty(s, DType::kF32);
    std::memcpy(host.raw(), x.raw(), x.nbytes());
    cpu_oracle().gated_residual(host, chunk(mod, 2), v);
    Tensor dx = upload(be, x);
    be.gated_residual(dx, chunk(dmod, 2), upload(be, v));
    report("gated_residual (broadcast gate)",
           expect_parity(download(be, dx), host, kArithTol, "gated_residual"));
  }
  {
    Tensor want = Tensor::empty(s, DType::kF32);
    cpu_oracle().modulate(x, chunk(mod, 0), chunk(mod, 1), want);
    Tensor dx = upload(be, x);
    be.modulate(dx, chunk(dmod, 0), chunk(dmod, 1), dx);  // in place
    report("modulate (broadcast, in place)",
           expect_parity(download(be, dx), want, kArithTol, "modulate"));
    // BF16 shift/scale rows broadcast over T.
    Tensor sh = random_tensor({2, 1, 24}, DType::kBF16, 17),
           sc = random_tensor({2, 1, 24}, DType::kBF16, 18);
    cpu_oracle().modulate(x, sh.expand(s), sc.expand(s), want);
    Tensor dy = test::device_poisoned(be, s);
    be.modulate(upload(be, x), upload(be, sh).expand(s), upload(be, sc).expand(s), dy);
    expect_parity(download(be, dy), want, kArithTol, "modulate bf16");
  }
  {
    Tensor a = random_tensor(s, DType::kF32, 19, -8.f, 8.f);
    Tensor want = Tensor::empty(s, DType::kF32);
    cpu_oracle().swiglu(a, v, want);
    Tensor da = upload(be, a), dv = upload(be, v);
    be.swiglu(da, dv, dv);  // in place on b
    report("swiglu (in place on b)", expect_parity(download(be, dv), want, kTranscTol, "swiglu"));
  }
}

// Rows whose innermost run is a multiple of 4 take the four-at-a-time kernel; the same rows
// starting one element later (not 4-aligned) take the generic one. Both must match the oracle,
// with bf16 operands, a stride-0 broadcast and a row stride that is not the row width.
TEST(CudaElementwise, QuadRowsAndTheirMisalignedFallback) {
  FOLEY_CUDA_OR_SKIP(be);
  const Tensor a = random_tensor({3, 5, 72}, DType::kBF16, 50, -2.f, 2.f);
  const Tensor g = random_tensor({3, 1, 72}, DType::kBF16, 51);
  const Tensor da = upload(be, a), dg = upload(be, g);
  for (int64_t start : {int64_t{4}, int64_t{1}}) {
    const Shape s{3, 5, 64};
    const Tensor av = a.slice(2, start, 64), gv = g.slice(2, start, 64).expand(s);
    Tensor want = Tensor::empty(s, DType::kF32);
    cpu_oracle().mul(av, gv, want);
    Tensor dy = test::device_poisoned(be, s);
    be.mul(da.slice(2, start, 64), dg.slice(2, start, 64).expand(s), dy);
    const std::string what = "mul bf16 rows from column " + std::to_string(start);
    report(what.c_str(), expect_parity(download(be, dy), want, kArithTol, what));
  }
}

TEST(CudaElementwise, SnakeF32AndBf16Alpha) {
  FOLEY_CUDA_OR_SKIP(be);
  for (DType adt : {DType::kF32, DType::kBF16}) {
    Tensor x = random_tensor({2, 301, 10}, DType::kF32, 20, -3.f, 3.f);
    Tensor alpha = random_tensor({10}, adt, 21, 0.05f, 2.f);
    Tensor want = Tensor::empty(x.shape(), DType::kF32);
    cpu_oracle().snake(x, alpha, want);
    Tensor dx = upload(be, x);
    be.snake(dx, upload(be, alpha), dx);  // in place
    const std::string what = std::string("snake alpha ") + dtype_name(adt);
    report(what.c_str(), expect_parity(download(be, dx), want, kTranscTol, what));
  }
  // A strided window (the DAC writes snake(x) into a padded buffer).
  Tensor x = random_tensor({1, 64, 48}, DType::kF32, 22, -3.f, 3.f);
  Tensor alpha = random_tensor({48}, DType::kF32, 23, 0.05f, 2.f);
  Tensor want = Tensor::zeros({1, 70, 48}, DType::kF32);
  cpu_oracle().snake(x.slice(1, 2, 60), alpha, want.slice(1, 3, 60));
  Tensor dy = upload(be, Tensor::zeros({1, 70, 48}, DType::kF32));
  be.snake(upload(be, x).slice(1, 2, 60), upload(be, alpha), dy.slice(1, 3, 60));
  expect_parity(download(be, dy), want, kTranscTol, "snake window");
  EXPECT_THROW(be.snake(upload(be, x), upload(be, Tensor::zeros({47}, DType::kF32)), dy), Error);
}

}  // namespace
}  // namespace foley
