// Argument checks every backend shares: shapes, ranks, strides and the output geometry of the
// ops whose shape rules are not trivial. Device and dtype rules differ per backend and stay in
// each backend; what is checked here must be identical everywhere, because the CPU backend is the
// oracle the others are tested against and an argument one backend accepts the other must too.
// Included by .cu files: C++17.
#pragma once

#include <cstdint>

#include "core/quant.h"
#include "core/tensor.h"

namespace foley {

void check_shape(const Tensor& t, const Shape& shape, const char* op, const char* what);
void check_rank(const Tensor& t, int rank, const char* op, const char* what);
// The last dim has unit stride (or size <= 1).
void check_last_contiguous(const Tensor& t, const char* op, const char* what);
// A contiguous 1-D vector of length n (dtype and device are the caller's to check).
void check_vector_shape(const Tensor& t, int64_t n, const char* op, const char* what);

// linear: x [..., K], w [N, K] with unit-stride rows that do not overlap, y [..., N], bias [N]
// (shape only). Returns N.
int64_t check_linear_shapes(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);

// linear_quantized: check_linear_shapes, plus w contiguous [N, K] of 8-bit codes (F8E4M3 or I8)
// and w_scale a contiguous F32 vector [N]. Returns the format.
QuantFormat check_quantized_linear(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                   const Tensor* bias, const Tensor& y);

// conv3_quantized: x [B, T, K] and y [B, T, N] with unit-stride last dims, w [N, 3K] codes,
// w_scale [N] F32. Returns the format.
QuantFormat check_quantized_conv3(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                  const Tensor* bias, const Tensor& y);

// unfold3: x [B, T, C] with a unit-stride last dim, cols contiguous [B, T, 3C] of x's dtype.
void check_unfold3(const Tensor& x, const Tensor& cols);

// patch_embed as 3-D: a 2-D input is one frame with kt = 1. Like a strided PyTorch conv,
// trailing pixels that do not fill a patch are dropped.
struct PatchEmbedGeometry {
  int64_t B, C, D;     // batch, input channels, output features
  int64_t kt, kh, kw;  // kernel (= stride)
  int64_t st, sh, sw;  // x's strides along t (0 for 2-D), h and w
  int64_t Tp, Hp, Wp;  // patches along each axis
  int64_t N;           // patches per batch item = Tp·Hp·Wp
  int64_t Kd;          // im2col row length = C·kt·kh·kw, w's row layout (c, dt, dh, dw)
};
PatchEmbedGeometry check_patch_embed_shapes(const Tensor& x, const Tensor& w, const Tensor* bias,
                                            const Tensor& y);

}  // namespace foley
