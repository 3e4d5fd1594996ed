#include "core/dtype.h"

#include <array>
#include <cmath>

namespace foley {
namespace {

struct DTypeInfo {
  DType type;
  const char* name;
  size_t size;
};

constexpr std::array<DTypeInfo, 12> kInfos = {{
    {DType::kF32, "F32", 4},
    {DType::kBF16, "BF16", 2},
    {DType::kF16, "F16", 2},
    {DType::kF64, "F64", 8},
    {DType::kI64, "I64", 8},
    {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},
    {DType::kI8, "I8", 1},
    {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
    {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kF8E5M2, "F8_E5M2", 1},
}};

}  // namespace

size_t dtype_size(DType t) {
  return kInfos[static_cast<size_t>(t)].size;
}
const char* dtype_name(DType t) {
  return kInfos[static_cast<size_t>(t)].name;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& info : kInfos)
    if (name == info.name) return info.type;
  return std::nullopt;
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow to inf
  if (abs < 0x38800000u) {  // subnormal or zero in f16: round the shifted mantissa to even
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // 14 + (112 - exp) ... chosen so the result is in f16 units
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t h = ((abs - 0x38000000u) >> 13);
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {  // subnormal: normalise
      exp = 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      x = sign | ((exp + 112) << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

namespace {

// A small float with `mbits` mantissa bits and exponent bias `bias`; `ieee_top` says whether the
// top exponent is reserved for inf/NaN (E5M2) or holds numbers up to S.1111.110 (E4M3 "fn").
struct SmallFloat {
  int mbits, bias;
  bool ieee_top;
  float max;
  uint8_t nan, inf;  // inf == nan for formats without infinity
};
constexpr SmallFloat kE4M3{3, 7, false, kE4M3Max, 0x7f, 0x7f};
constexpr SmallFloat kE5M2{2, 15, true, kE5M2Max, 0x7e, 0x7c};

uint8_t encode(const SmallFloat& fmt, float f, bool saturate) {
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  if (std::isnan(f)) return static_cast<uint8_t>(sign | fmt.nan);
  const double a = std::fabs(static_cast<double>(f));
  if (std::isinf(a))
    return static_cast<uint8_t>(sign | (saturate ? (fmt.ieee_top ? 0x7b : 0x7e) : fmt.inf));
  const int min_exp = 1 - fmt.bias;  // exponent of the smallest normal number
  // The quantum at a's binade (subnormals share the smallest normal one); exact in double.
  int e = a > 0 ? std::ilogb(a) : min_exp;
  if (e < min_exp) e = min_exp;
  const double quantum = std::ldexp(1.0, e - fmt.mbits);
  const double q = std::nearbyint(a / quantum) * quantum;  // ties to even (default rounding)
  if (q > fmt.max) {
    if (saturate) return static_cast<uint8_t>(sign | (fmt.ieee_top ? 0x7b : 0x7e));
    return static_cast<uint8_t>(sign | fmt.inf);
  }
  if (q == 0) return sign;
  int qe = std::ilogb(q);
  if (qe < min_exp) {  // subnormal: exponent field 0
    const int mant = static_cast<int>(q / std::ldexp(1.0, min_exp - fmt.mbits));
    return static_cast<uint8_t>(sign | mant);
  }
  const int mant = static_cast<int>((q / std::ldexp(1.0, qe) - 1.0) * (1 << fmt.mbits));
  return static_cast<uint8_t>(sign | ((qe + fmt.bias) << fmt.mbits) | mant);
}

float decode(const SmallFloat& fmt, uint8_t v) {
  const bool neg = v & 0x80;
  const int ebits = 7 - fmt.mbits;
  const int exp = (v >> fmt.mbits) & ((1 << ebits) - 1);
  const int mant = v & ((1 << fmt.mbits) - 1);
  float out;
  if (fmt.ieee_top && exp == (1 << ebits) - 1) {
    out = mant ? NAN : INFINITY;
  } else if (!fmt.ieee_top && exp == (1 << ebits) - 1 && mant == (1 << fmt.mbits) - 1) {
    out = NAN;
  } else if (exp == 0) {
    out = std::ldexp(static_cast<float>(mant), 1 - fmt.bias - fmt.mbits);
  } else {
    out = std::ldexp(1.0f + static_cast<float>(mant) / (1 << fmt.mbits), exp - fmt.bias);
  }
  return neg ? -out : out;
}

}  // namespace

uint8_t f32_to_e4m3(float f, bool saturate) {
  return encode(kE4M3, f, saturate);
}
uint8_t f32_to_e5m2(float f, bool saturate) {
  return encode(kE5M2, f, saturate);
}
float e4m3_to_f32(uint8_t v) {
  return decode(kE4M3, v);
}
float e5m2_to_f32(uint8_t v) {
  return decode(kE5M2, v);
}

int8_t f32_to_i8(float f) {
  if (std::isnan(f)) return 0;
  const float r = std::nearbyint(f);
  return static_cast<int8_t>(r > 127.0f ? 127 : (r < -127.0f ? -127 : r));
}

}  // namespace foley
