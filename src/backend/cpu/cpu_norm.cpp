// Row-wise normalisations and softmax over the last dim. Statistics accumulate in double: the
// CPU backend is the oracle other backends are measured against, and these ops are a negligible
// share of the run time next to the GEMMs. Each row's statistics are taken before any output is
// written, so every op here also works in place (y == x).
#include <cmath>

#include "backend/cpu/cpu_internal.h"

namespace foley {
namespace cpu {
namespace {

struct Moments {
  float mean;
  float rstd;
};

Moments row_moments(const float* x, int64_t C, float eps) {
  double sum = 0;
  for (int64_t c = 0; c < C; ++c) sum += x[c];
  const double mean = sum / static_cast<double>(C);
  double sq = 0;  // two passes: no cancellation for rows with a large mean
  for (int64_t c = 0; c < C; ++c) {
    const double d = x[c] - mean;
    sq += d * d;
  }
  const double var = sq / static_cast<double>(C);
  return {static_cast<float>(mean), static_cast<float>(1.0 / std::sqrt(var + eps))};
}

int64_t row_grain(int64_t C) {
  return std::max<int64_t>(1, 8192 / std::max<int64_t>(C, 1));
}

void check_row_op(const Tensor& x, const Tensor& y, const char* op) {
  check_f32(x, op, "x");
  check_f32(y, op, "y");
  FOLEY_CHECK(x.rank() >= 1, "%s: x must have rank >= 1", op);
  check_shape(y, x.shape(), op, "y");
  check_last_contiguous(x, op, "x");
  check_last_contiguous(y, op, "y");
}

}  // namespace
}  // namespace cpu

using namespace cpu;

void CpuBackend::layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                            const Tensor& y) {
  const char* op = "layer_norm";
  check_row_op(x, y, op);
  const int64_t C = x.dim(-1);
  if (weight) check_vector(*weight, C, op, "weight");
  if (bias) check_vector(*bias, C, op, "bias");
  if (x.numel() == 0) return;
  Arena::Scope scope(scratch());
  const float* w = weight ? vector_f32(scratch(), *weight) : nullptr;
  const float* b = bias ? vector_f32(scratch(), *bias) : nullptr;
  const StridedLoop L = make_loop({&y, &x}, true);
  for_each_row(L, row_grain(C), [&](const auto& p) {
    float* yr = reinterpret_cast<float*>(p[0]);
    const float* xr = reinterpret_cast<const float*>(p[1]);
    const Moments m = row_moments(xr, C, eps);
    for (int64_t c = 0; c < C; ++c) {
      float v = (xr[c] - m.mean) * m.rstd;
      if (w) v *= w[c];
      if (b) v += b[c];
      yr[c] = v;
    }
  });
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor* weight, float eps, const Tensor& y) {
  const char* op = "rms_norm";
  check_row_op(x, y, op);
  const int64_t C = x.dim(-1);
  if (weight) check_vector(*weight, C, op, "weight");
  if (x.numel() == 0) return;
  Arena::Scope scope(scratch());
  const float* w = weight ? vector_f32(scratch(), *weight) : nullptr;
  const StridedLoop L = make_loop({&y, &x}, true);
  for_each_row(L, row_grain(C), [&](const auto& p) {
    float* yr = reinterpret_cast<float*>(p[0]);
    const float* xr = reinterpret_cast<const float*>(p[1]);
    double sq = 0;
    for (int64_t c = 0; c < C; ++c) sq += double(xr[c]) * xr[c];
    const float r = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(C) + eps));
    // (x·r)·w in this order, as the reference RMSNorm normalises first and scales after.
    if (w) {
      for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] * r) * w[c];
    } else {
      for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * r;
    }
  });
}

void CpuBackend::layer_norm_modulate(const Tensor& x, float eps, const Tensor& shift,
                                     const Tensor& scale, const Tensor& y) {
  const char* op = "layer_norm_modulate";
  check_row_op(x, y, op);
  check_float(shift, op, "shift");
  check_float(scale, op, "scale");
  check_shape(shift, x.shape(), op, "shift");
  check_shape(scale, x.shape(), op, "scale");
  check_last_contiguous(shift, op, "shift");
  check_last_contiguous(scale, op, "scale");
  const int64_t C = x.dim(-1);
  if (x.numel() == 0) return;
  Arena::Scope scope(scratch());
  const Tensor sh = as_f32(scratch(), shift);
  const Tensor sc = as_f32(scratch(), scale);
  const StridedLoop L = make_loop({&y, &x, &sh, &sc}, true);
  for_each_row(L, row_grain(C), [&](const auto& p) {
    float* yr = reinterpret_cast<float*>(p[0]);
    const float* xr = reinterpret_cast<const float*>(p[1]);
    const float* shr = reinterpret_cast<const float*>(p[2]);
    const float* scr = reinterpret_cast<const float*>(p[3]);
    const Moments m = row_moments(xr, C, eps);
    for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] - m.mean) * m.rstd * (1.0f + scr[c]) + shr[c];
  });
}

void CpuBackend::softmax(const Tensor& x, const Tensor& y) {
  const char* op = "softmax";
  check_row_op(x, y, op);
  const int64_t C = x.dim(-1);
  if (x.numel() == 0) return;
  const StridedLoop L = make_loop({&y, &x}, true);
  for_each_row(L, row_grain(C), [&](const auto& p) {
    float* yr = reinterpret_cast<float*>(p[0]);
    const float* xr = reinterpret_cast<const float*>(p[1]);
    float mx = -INFINITY;
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, xr[c]);
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) {
      yr[c] = std::exp(xr[c] - mx);
      sum += yr[c];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t c = 0; c < C; ++c) yr[c] *= inv;
  });
}

}  // namespace foley
