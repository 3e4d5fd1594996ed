// Symmetric 8-bit quantisation, one scale per row: the converter quantises each weight's output
// channels with it, the backends each activation row (token) at run time. A row is stored as
// codes c with x ≈ value(c)·scale, scale = amax / max code (1 for an all-zero row), so the
// largest magnitude maps onto the largest code and nothing saturates.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/dtype.h"

namespace foley {

enum class QuantFormat : uint8_t {
  kE4M3,  // FP8 E4M3 (sm_89+: Ada, Hopper)
  kI8,    // int8, codes in [-127, 127] (sm_80+)
};

// The bundle's spelling ("fp8_e4m3", "int8") and the storage dtype of the codes.
const char* quant_format_name(QuantFormat f);
std::optional<QuantFormat> quant_format_from_name(const std::string& name);
DType quant_storage_dtype(QuantFormat f);
std::optional<QuantFormat> quant_format_of(DType codes);
float quant_max_code(QuantFormat f);

// Quantises x[0..n) into codes (1 byte each); returns the row's scale.
float quantize_row(const float* x, int64_t n, QuantFormat f, uint8_t* codes);
// The number a code stands for, before the scale.
float quant_code_value(QuantFormat f, uint8_t code);

}  // namespace foley
