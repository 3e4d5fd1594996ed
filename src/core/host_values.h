// Reading host tensors element by element, whatever their dtype and strides. For converters,
// golden comparisons and tests: code paths that touch each weight once, not the hot loops
// (those live in the backends).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace foley {

// The element at `offset` (in elements from t.raw()) as a double. Floating dtypes (F32, F64,
// BF16, F16, F8_E4M3, F8_E5M2: all exact), integers, U8 and BOOL.
double host_element(const Tensor& t, int64_t offset);

// Every element in logical row-major order (any strides, broadcast views included).
std::vector<double> host_values(const Tensor& t);
std::vector<float> host_values_f32(const Tensor& t);

}  // namespace foley
