#include "backend/backend.h"

#include "backend/op_checks.h"

namespace foley {

void Backend::unfold3(const Tensor& x, const Tensor& cols) {
  check_unfold3(x, cols);
  const int64_t B = x.dim(0), T = x.dim(1), C = x.dim(2);
  if (cols.numel() == 0) return;
  const Tensor taps = cols.reshape({B, T, 3, C});
  auto tap = [&](int j, int64_t t0, int64_t n) { return taps.slice(1, t0, n).slice(2, j, 1); };
  auto rows = [&](int64_t t0, int64_t n) { return x.slice(1, t0, n).unsqueeze(2); };
  copy(tap(1, 0, T), rows(0, T));
  fill(tap(0, 0, 1), 0.0f);
  fill(tap(2, T - 1, 1), 0.0f);
  if (T > 1) {
    copy(tap(0, 1, T - 1), rows(0, T - 1));
    copy(tap(2, 0, T - 1), rows(1, T - 1));
  }
}

#ifndef FOLEY_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(int) { return nullptr; }
#endif

}  // namespace foley
