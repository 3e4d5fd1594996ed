// Element types. Storage types cover what checkpoints contain; compute uses F32, BF16 and F16.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace foley {

enum class DType : uint8_t {
  kF32,
  kBF16,
  kF16,
  kF64,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool,
  kF8E4M3,  // OCP E4M3 "fn": no infinities, max 448 (quantised weights and activations)
  kF8E5M2,  // OCP E5M2: IEEE-like, max 57344 (read from community checkpoints)
};

size_t dtype_size(DType t);
// The safetensors spelling ("F32", "BF16", ...), also used in foley's own files and messages.
const char* dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);
inline bool is_float_compute(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16;
}

// bf16 is the top half of an f32; rounding to nearest even, NaN kept quiet.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);

// 8-bit floats (OCP FP8), rounding to nearest even as torch's casts and the CUDA intrinsics do.
// Out of range: `saturate` gives the largest finite value of that sign (what a quantiser wants);
// otherwise E4M3 gives NaN (it has no infinity) and E5M2 infinity, as a plain cast does.
constexpr float kE4M3Max = 448.0f;
constexpr float kE5M2Max = 57344.0f;
uint8_t f32_to_e4m3(float f, bool saturate = true);
uint8_t f32_to_e5m2(float f, bool saturate = true);
float e4m3_to_f32(uint8_t v);
float e5m2_to_f32(uint8_t v);
// Symmetric int8 as the quantised GEMMs use it: round half to even, clamped to [-127, 127].
int8_t f32_to_i8(float f);

}  // namespace foley
