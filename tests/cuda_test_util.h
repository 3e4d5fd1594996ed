// Helpers for the CUDA backend's op tests: the shared device backend (tests skip without one),
// host <-> device tensors and the parity check against the CPU oracle.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/check.h"
#include "core/dtype.h"
#include "models/mmdit.h"
#include "test_util.h"

namespace foley::test {

// One CUDA backend for the whole test binary (null without a device or without CUDA support).
inline Backend* cuda_backend() {
  static std::unique_ptr<Backend> backend = make_cuda_backend();
  return backend.get();
}

inline CpuBackend& cpu_oracle() {
  static CpuBackend backend;
  return backend;
}

// Declares `Backend& name` bound to the CUDA backend, or skips the test when there is none.
#define FOLEY_CUDA_OR_SKIP(name)                                                  \
  if (::foley::test::cuda_backend() == nullptr) GTEST_SKIP() << "no CUDA device"; \
  ::foley::Backend& name = *::foley::test::cuda_backend()

// An uninitialised contiguous device tensor; the memory goes back when the last view is gone.
inline Tensor device_empty(Backend& be, const Shape& shape, DType dtype) {
  BlockAllocator alloc = be.block_allocator();
  const size_t bytes = std::max<size_t>(1, size_t(shape.numel()) * dtype_size(dtype));
  void* p = alloc.allocate(bytes);
  std::shared_ptr<void> owner(p, [alloc](void* q) { alloc.release(q); });
  return Tensor(p, dtype, shape, be.device(), owner);
}

// A device copy of a host tensor (made contiguous first; dtype kept).
inline Tensor upload(Backend& be, const Tensor& host) {
  Tensor src = host;
  if (!host.is_contiguous()) {
    FOLEY_CHECK(host.dtype() == DType::kF32, "upload: strided host tensors must be F32");
    src = to_f32(host);
  }
  Tensor d = device_empty(be, src.shape(), src.dtype());
  be.copy_from_host(d, src);
  return d;
}

// A host copy of a contiguous device tensor (synchronises).
inline Tensor download(Backend& be, const Tensor& dev) {
  Tensor host = Tensor::empty(dev.shape(), dev.dtype());
  be.copy_to_host(host, dev);
  return host;
}

// The device view matching `host_view`, a view into `host_parent`, inside `dev_parent` (an upload
// of host_parent): same offset, shape and strides. The view does not own memory: keep dev_parent
// alive while it is used (a temporary's memory goes back to the pool and the next upload reuses
// it).
inline Tensor mirror_view(const Tensor& host_parent, const Tensor& dev_parent,
                          const Tensor& host_view) {
  const size_t es = dtype_size(host_view.dtype());
  const int64_t off =
      (static_cast<const char*>(host_view.raw()) - static_cast<const char*>(host_parent.raw())) /
      int64_t(es);
  std::array<int64_t, kMaxRank> strides{};
  for (int d = 0; d < host_view.rank(); ++d) strides[size_t(d)] = host_view.stride(d);
  const Tensor base(static_cast<char*>(dev_parent.raw()) + off * int64_t(es), host_view.dtype(),
                    host_view.shape(), dev_parent.device());
  return base.as_strided(host_view.shape(), strides);
}

// A device F32 tensor full of NaN: outputs start poisoned so unwritten elements show up.
inline Tensor device_poisoned(Backend& be, const Shape& shape) {
  Tensor host = Tensor::empty(shape, DType::kF32);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t i = 0; i < host.numel(); ++i) host.data<float>()[i] = nan;
  return upload(be, host);
}

inline int64_t count_nonfinite(const Tensor& host) {
  const Tensor f = to_f32(host);
  int64_t n = 0;
  for (int64_t i = 0; i < f.numel(); ++i) n += std::isfinite(f.data<float>()[i]) ? 0 : 1;
  return n;
}

// Parity: every element finite and max|a − b| / max|b| <= tol. Returns the error for reports.
inline double expect_parity(const Tensor& actual, const Tensor& expected, double tol,
                            const std::string& what) {
  EXPECT_EQ(actual.shape(), expected.shape()) << what;
  if (actual.shape() != expected.shape()) return INFINITY;
  EXPECT_EQ(count_nonfinite(actual), 0) << what << ": non-finite outputs";
  const double err = max_rel_error(actual, expected);
  EXPECT_LE(err, tol) << what;
  return err;
}

// One forward of the tiny DiT (batch 2, Ta 40, Tv 7, 16 sync tokens, 9 text tokens) on `be`.
inline Tensor tiny_dit_forward(const Mmdit& model, Backend& be) {
  const MmditConfig& c = model.config();
  const int64_t B = 2, Ta = 40, Tv = 7, S8 = 16, L = 9;
  const Tensor clip = upload(be, random_tensor({B, Tv, c.clip_dim}, DType::kF32, 61));
  const Tensor sync = upload(be, random_tensor({B, S8, c.sync_dim}, DType::kF32, 62));
  const Tensor text = upload(be, random_tensor({B, L, c.text_dim}, DType::kF32, 63));
  const Tensor x = upload(be, random_tensor({B, c.latent_dim, Ta}, DType::kF32, 64));
  const float t[2] = {640.0f, 640.0f};
  const auto ctx = model.prepare(clip, sync, text, Ta);
  Arena arena(be.block_allocator(), model.step_arena_bytes(B, Ta, Tv));
  const Tensor v = device_poisoned(be, {B, c.latent_dim, Ta});
  model.forward(*ctx, x, t, v, arena);
  return download(be, v);
}

}  // namespace foley::test
