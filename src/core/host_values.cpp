#include "core/host_values.h"

#include <array>

#include "core/check.h"

namespace foley {
namespace {

// Calls fn(i, offset) for every element in row-major order.
template <typename Fn>
void for_each_offset(const Tensor& t, Fn&& fn) {
  FOLEY_CHECK(t.device() == DeviceKind::kCPU, "host read of a device tensor %s",
              t.describe().c_str());
  const int r = t.rank();
  std::array<int64_t, kMaxRank> idx{};
  const int64_t n = t.numel();
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    fn(i, off);
    for (int d = r - 1; d >= 0; --d) {
      const size_t du = static_cast<size_t>(d);
      off += t.stride(d);
      if (++idx[du] < t.dim(d)) break;
      off -= idx[du] * t.stride(d);
      idx[du] = 0;
    }
  }
}

}  // namespace

double host_element(const Tensor& t, int64_t offset) {
  switch (t.dtype()) {
    case DType::kF32:
      return t.data<float>()[offset];
    case DType::kF64:
      return t.data<double>()[offset];
    case DType::kBF16:
      return bf16_to_f32(t.data<uint16_t>()[offset]);
    case DType::kF16:
      return f16_to_f32(t.data<uint16_t>()[offset]);
    case DType::kI64:
      return static_cast<double>(t.data<int64_t>()[offset]);
    case DType::kI32:
      return t.data<int32_t>()[offset];
    case DType::kI16:
      return t.data<int16_t>()[offset];
    case DType::kI8:
      return t.data<int8_t>()[offset];
    case DType::kU8:
    case DType::kBool:
      return t.data<uint8_t>()[offset];
    case DType::kF8E4M3:
      return e4m3_to_f32(t.data<uint8_t>()[offset]);
    case DType::kF8E5M2:
      return e5m2_to_f32(t.data<uint8_t>()[offset]);
    default:
      throw Error(ErrorKind::kUnsupported,
                  std::string("cannot read ") + dtype_name(t.dtype()) + " elements on the host");
  }
}

std::vector<double> host_values(const Tensor& t) {
  std::vector<double> out(static_cast<size_t>(t.numel()));
  for_each_offset(
      t, [&](int64_t i, int64_t off) { out[static_cast<size_t>(i)] = host_element(t, off); });
  return out;
}

std::vector<float> host_values_f32(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  for_each_offset(t, [&](int64_t i, int64_t off) {
    out[static_cast<size_t>(i)] = static_cast<float>(host_element(t, off));
  });
  return out;
}

}  // namespace foley
