#include "models/rope.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace foley {

int64_t nearest_exact_source(int64_t i, int64_t n_in, int64_t n_out) {
  const float scale = static_cast<float>(n_in) / static_cast<float>(n_out);
  // (i + 0.5)·scale is exact in double; torch rounds it to F32 (floorf's argument) before the
  // floor, on CPU and CUDA alike, so do the same.
  const float x = static_cast<float>((static_cast<double>(i) + 0.5) * static_cast<double>(scale));
  return std::min<int64_t>(static_cast<int64_t>(std::floor(x)), n_in - 1);
}

std::vector<float> joint_self_positions(int64_t tv, int64_t ta) {
  std::vector<float> pos(static_cast<size_t>(tv + ta));
  for (int64_t j = 0; j < tv; ++j) {
    // Downsampling Ta -> Tv picks upsampled slot up(j); that slot holds the visual token the
    // Tv -> Ta upsampling put there, which is j itself for every size the spec checked
    // (Ta in [32,760), Tv in [4,130)); the rotation it got is that of position 2·up(j)+1.
    const int64_t up = nearest_exact_source(j, ta, tv);
    // Outside that range the official model would swap visual tokens; refuse instead.
    if (nearest_exact_source(up, tv, ta) != j)
      throw make_error(ErrorKind::kUnsupported,
                       "interleaved RoPE: visual length %lld does not round-trip through audio "
                       "length %lld",
                       (long long)tv, (long long)ta);
    pos[static_cast<size_t>(j)] = static_cast<float>(2 * up + 1);
  }
  for (int64_t i = 0; i < ta; ++i) pos[static_cast<size_t>(tv + i)] = static_cast<float>(2 * i);
  return pos;
}

std::vector<float> joint_cross_positions(int64_t tv, int64_t ta) {
  std::vector<float> pos;
  pos.reserve(static_cast<size_t>(tv + ta));
  for (int64_t j = 0; j < tv; ++j) pos.push_back(static_cast<float>(j));
  for (int64_t i = 0; i < ta; ++i) pos.push_back(static_cast<float>(i));
  return pos;
}

std::vector<float> linear_positions(int64_t n) {
  std::vector<float> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = static_cast<float>(i);
  return pos;
}

HostRope rope_table_host(const std::vector<float>& positions, int64_t head_dim) {
  FOLEY_CHECK(head_dim % 2 == 0, "RoPE head_dim %lld is odd", (long long)head_dim);
  const int64_t half = head_dim / 2;
  const int64_t n = static_cast<int64_t>(positions.size());
  HostRope t{Tensor::empty({n, half}, DType::kF32), Tensor::empty({n, half}, DType::kF32)};
  std::vector<float> freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    // torch.pow(theta, -(idx / dim)) on F32 tensors: the exponent is an F32 quotient.
    const float expo = -(static_cast<float>(2 * i) / static_cast<float>(head_dim));
    freq[static_cast<size_t>(i)] = std::pow(10000.0f, expo);
  }
  for (int64_t p = 0; p < n; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = positions[static_cast<size_t>(p)] * freq[static_cast<size_t>(i)];
      t.cos.data<float>()[p * half + i] = std::cos(angle);
      t.sin.data<float>()[p * half + i] = std::sin(angle);
    }
  }
  return t;
}

}  // namespace foley
