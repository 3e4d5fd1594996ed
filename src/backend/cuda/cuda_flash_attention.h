// The fused attention kernel (cuda_flash_attention.cu), used by CudaBackend::attention.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace foley {
namespace cuda {

// q [pairs, Lq, D], k and v [pairs, Lk, D]: contiguous bf16 panels of pairs p0 .. p0 + pairs − 1
// (pair = b·H + h). out is the f32 or bf16 [B, Lq, H, D] view given by its element strides.
struct FlashArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t Lq = 0, Lk = 0, D = 0;
  float scale = 1.0f;
  int64_t p0 = 0, pairs = 0, H = 1;
  void* out = nullptr;  // f32, or bf16 when out_bf16
  bool out_bf16 = false;
  int64_t osb = 0, osl = 0, osh = 0;
};

bool flash_supports(int64_t D, int64_t Dv);
void flash_attention(const FlashArgs& a, cudaStream_t stream);

}  // namespace cuda
}  // namespace foley
