#include "core/quant.h"

#include <cmath>
#include <string>

namespace foley {

const char* quant_format_name(QuantFormat f) {
  return f == QuantFormat::kE4M3 ? "fp8_e4m3" : "int8";
}

std::optional<QuantFormat> quant_format_from_name(const std::string& name) {
  if (name == "fp8_e4m3") return QuantFormat::kE4M3;
  if (name == "int8") return QuantFormat::kI8;
  return std::nullopt;
}

DType quant_storage_dtype(QuantFormat f) {
  return f == QuantFormat::kE4M3 ? DType::kF8E4M3 : DType::kI8;
}

std::optional<QuantFormat> quant_format_of(DType codes) {
  if (codes == DType::kF8E4M3) return QuantFormat::kE4M3;
  if (codes == DType::kI8) return QuantFormat::kI8;
  return std::nullopt;
}

float quant_max_code(QuantFormat f) {
  return f == QuantFormat::kE4M3 ? kE4M3Max : 127.0f;
}

float quantize_row(const float* x, int64_t n, QuantFormat f, uint8_t* codes) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  const float qmax = quant_max_code(f);
  // The same two F32 operations the CUDA kernel does, so both backends pick the same codes.
  const float inv = amax > 0.0f ? qmax / amax : 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i] * inv;
    codes[i] = f == QuantFormat::kE4M3 ? f32_to_e4m3(v) : static_cast<uint8_t>(f32_to_i8(v));
  }
  return amax > 0.0f ? amax / qmax : 1.0f;
}

float quant_code_value(QuantFormat f, uint8_t code) {
  return f == QuantFormat::kE4M3 ? e4m3_to_f32(code)
                                 : static_cast<float>(static_cast<int8_t>(code));
}

}  // namespace foley
