#include "backend/op_checks.h"

#include "core/check.h"

namespace foley {

void check_shape(const Tensor& t, const Shape& shape, const char* op, const char* what) {
  FOLEY_CHECK(t.shape() == shape, "%s: %s must have shape %s, got %s", op, what,
              shape.str().c_str(), t.describe().c_str());
}

void check_rank(const Tensor& t, int rank, const char* op, const char* what) {
  FOLEY_CHECK(t.rank() == rank, "%s: %s must have rank %d, got %s", op, what, rank,
              t.describe().c_str());
}

void check_last_contiguous(const Tensor& t, const char* op, const char* what) {
  FOLEY_CHECK(t.rank() >= 1, "%s: %s must have rank >= 1", op, what);
  FOLEY_CHECK(t.dim(-1) <= 1 || t.stride(-1) == 1,
              "%s: %s %s needs a contiguous last dim (stride %lld)", op, what, t.describe().c_str(),
              static_cast<long long>(t.stride(-1)));
}

void check_vector_shape(const Tensor& t, int64_t n, const char* op, const char* what) {
  FOLEY_CHECK(t.rank() == 1 && t.dim(0) == n, "%s: %s must be a vector [%lld], got %s", op, what,
              static_cast<long long>(n), t.describe().c_str());
  FOLEY_CHECK(n <= 1 || t.stride(0) == 1, "%s: %s must be contiguous", op, what);
}

int64_t check_linear_shapes(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  const char* op = "linear";
  check_rank(w, 2, op, "w");
  check_last_contiguous(x, op, "x");
  check_last_contiguous(y, op, "y");
  check_last_contiguous(w, op, "w");
  const int64_t N = w.dim(0), K = w.dim(1);
  FOLEY_CHECK(x.dim(-1) == K, "linear: x %s does not match w %s (K = %lld)", x.describe().c_str(),
              w.describe().c_str(), static_cast<long long>(K));
  Shape ys;
  for (int i = 0; i + 1 < x.rank(); ++i) ys.push_back(x.dim(i));
  ys.push_back(N);
  check_shape(y, ys, op, "y");
  FOLEY_CHECK(N <= 1 || w.stride(0) >= K, "linear: w rows overlap (stride %lld < K %lld)",
              static_cast<long long>(w.stride(0)), static_cast<long long>(K));
  if (bias) check_vector_shape(*bias, N, op, "bias");
  return N;
}

namespace {

// Both quantised ops' weights: 2-D contiguous codes of a known format, a contiguous F32 scale
// per row.
QuantFormat check_quantized_weight(const Tensor& w, const Tensor& w_scale, const char* op) {
  const std::optional<QuantFormat> f = w.defined() ? quant_format_of(w.dtype()) : std::nullopt;
  FOLEY_CHECK(f.has_value(), "%s: w must hold F8_E4M3 or I8 codes, got %s", op,
              w.describe().c_str());
  check_rank(w, 2, op, "w");
  FOLEY_CHECK(w.is_contiguous(), "%s: w must be contiguous", op);
  FOLEY_CHECK(w_scale.defined() && w_scale.dtype() == DType::kF32, "%s: w_scale must be F32", op);
  check_vector_shape(w_scale, w.dim(0), op, "w_scale");
  return *f;
}

}  // namespace

QuantFormat check_quantized_linear(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                   const Tensor* bias, const Tensor& y) {
  const QuantFormat f = check_quantized_weight(w, w_scale, "linear_quantized");
  check_linear_shapes(x, w, bias, y);
  return f;
}

QuantFormat check_quantized_conv3(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                  const Tensor* bias, const Tensor& y) {
  const char* op = "conv3_quantized";
  const QuantFormat f = check_quantized_weight(w, w_scale, op);
  check_rank(x, 3, op, "x");
  check_rank(y, 3, op, "y");
  const int64_t N = w.dim(0);
  FOLEY_CHECK(w.dim(1) == 3 * x.dim(2), "%s: w %s is not [N, 3·%lld] for x %s", op,
              w.describe().c_str(), static_cast<long long>(x.dim(2)), x.describe().c_str());
  check_shape(y, {x.dim(0), x.dim(1), N}, op, "y");
  check_last_contiguous(x, op, "x");
  check_last_contiguous(y, op, "y");
  if (bias) check_vector_shape(*bias, N, op, "bias");
  return f;
}

void check_unfold3(const Tensor& x, const Tensor& cols) {
  const char* op = "unfold3";
  check_rank(x, 3, op, "x");
  check_shape(cols, {x.dim(0), x.dim(1), 3 * x.dim(2)}, op, "cols");
  FOLEY_CHECK(cols.dtype() == x.dtype() && cols.is_contiguous(),
              "unfold3: cols %s must be contiguous, of x %s's dtype", cols.describe().c_str(),
              x.describe().c_str());
  check_last_contiguous(x, op, "x");
}

PatchEmbedGeometry check_patch_embed_shapes(const Tensor& x, const Tensor& w, const Tensor* bias,
                                            const Tensor& y) {
  const char* op = "patch_embed";
  FOLEY_CHECK((x.rank() == 4 && w.rank() == 4) || (x.rank() == 5 && w.rank() == 5),
              "patch_embed: expected x [B,C,H,W] with w [D,C,kh,kw] or x [B,C,T,H,W] with w "
              "[D,C,kt,kh,kw], got x %s, w %s",
              x.describe().c_str(), w.describe().c_str());
  FOLEY_CHECK(w.is_contiguous(), "patch_embed: w must be contiguous");
  const bool is3d = x.rank() == 5;
  PatchEmbedGeometry g;
  g.B = x.dim(0);
  g.C = x.dim(1);
  g.D = w.dim(0);
  const int64_t T = is3d ? x.dim(2) : 1, H = x.dim(-2), W = x.dim(-1);
  g.kt = is3d ? w.dim(2) : 1;
  g.kh = w.dim(-2);
  g.kw = w.dim(-1);
  g.st = is3d ? x.stride(2) : 0;
  g.sh = x.stride(-2);
  g.sw = x.stride(-1);
  FOLEY_CHECK(w.dim(1) == g.C, "patch_embed: w %s does not match x %s (channels)",
              w.describe().c_str(), x.describe().c_str());
  FOLEY_CHECK(g.kt >= 1 && g.kh >= 1 && g.kw >= 1, "patch_embed: empty kernel");
  g.Tp = T / g.kt;
  g.Hp = H / g.kh;
  g.Wp = W / g.kw;
  g.N = g.Tp * g.Hp * g.Wp;
  g.Kd = g.C * g.kt * g.kh * g.kw;
  check_shape(y, {g.B, g.N, g.D}, op, "y");
  check_last_contiguous(y, op, "y");
  if (bias) check_vector_shape(*bias, g.D, op, "bias");
  return g;
}

}  // namespace foley
