// The FP8 / int8 codec of src/core/dtype.h against an independent numpy reference written from the
// OCP FP8 definition (tests/python/fp8_reference.py): all 256 codes of both formats both ways, and
// ~7500 float32 values (random over the whole exponent range, every tie between neighbouring fp8
// values and the float32 values next to it, subnormals of both sides, overflow, +-0, NaN, +-inf)
// encoded in saturating and plain-cast mode, plus the int8 quantiser on the same values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "test_util.h"

namespace foley {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%02x", v);
  return buf;
}

std::string describe(float f) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g (bits 0x%08x)", static_cast<double>(f), bits(f));
  return buf;
}

// What fp8_reference.py --cases writes (see write_cases there).
struct Cases {
  std::vector<float> x;
  std::vector<uint8_t> e4m3_sat, e4m3_cast, e5m2_sat, e5m2_cast;
  std::vector<int8_t> i8;
  std::vector<float> e4m3_values, e5m2_values;  // of codes 0..255
};

class Fp8Codec : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = test::temp_dir() + "/fp8_cases.bin";
    std::string out;
    const std::string cmd = std::string(FOLEY_PYTHON) + " " +
                            test::source_path("tests/python/fp8_reference.py") + " --cases " +
                            path + " 2>&1";
    const int rc = test::run_command(cmd, &out);
    if (rc != 0) {
      // No interpreter or no numpy is a missing tool (skipped, or a failure in CI); anything else
      // is the reference's own failure.
      missing_ = rc == 127 || out.find("No module named") != std::string::npos;
      error_ = new std::string(cmd + "\n" + out);
      return;
    }
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), {});
    size_t at = 0;
    auto take = [&](void* dst, size_t n) {
      if (at + n > bytes.size()) return false;
      std::memcpy(dst, bytes.data() + at, n);
      at += n;
      return true;
    };
    auto c = std::make_unique<Cases>();
    uint32_t n = 0;
    bool ok = take(&n, 4);
    c->x.resize(n);
    for (auto* v : {&c->e4m3_sat, &c->e4m3_cast, &c->e5m2_sat, &c->e5m2_cast}) v->resize(n);
    c->i8.resize(n);
    c->e4m3_values.resize(256);
    c->e5m2_values.resize(256);
    ok = ok && take(c->x.data(), 4 * n);
    for (auto* v : {&c->e4m3_sat, &c->e4m3_cast, &c->e5m2_sat, &c->e5m2_cast})
      ok = ok && take(v->data(), n);
    ok = ok && take(c->i8.data(), n) && take(c->e4m3_values.data(), 256 * 4) &&
         take(c->e5m2_values.data(), 256 * 4) && at == bytes.size();
    if (!ok || n < 1000) {
      error_ = new std::string(path + ": not the layout fp8_reference.py writes");
      return;
    }
    cases_ = c.release();
  }
  static void TearDownTestSuite() {
    delete cases_;
    cases_ = nullptr;
    delete error_;
    error_ = nullptr;
  }
  void SetUp() override {
    // (Not have_python_torch(): importing torch would cost each of these processes a second.)
    if (missing_) FOLEY_SKIP_MISSING("needs " FOLEY_PYTHON " with numpy");
    ASSERT_EQ(error_, nullptr) << *error_;
  }

  static Cases* cases_;
  static std::string* error_;
  static bool missing_;
};
Cases* Fp8Codec::cases_ = nullptr;
std::string* Fp8Codec::error_ = nullptr;
bool Fp8Codec::missing_ = false;

// Same value, or both NaN; +0 and -0 are told apart.
bool same_float(float a, float b) {
  return std::isnan(a) ? std::isnan(b) : bits(a) == bits(b);
}

TEST_F(Fp8Codec, EveryCodeDecodesLikeTheReference) {
  for (unsigned code = 0; code < 256; ++code) {
    const auto c = static_cast<uint8_t>(code);
    EXPECT_TRUE(same_float(e4m3_to_f32(c), cases_->e4m3_values[code]))
        << "e4m3 " << hex(code) << ": " << describe(e4m3_to_f32(c)) << ", reference "
        << describe(cases_->e4m3_values[code]);
    EXPECT_TRUE(same_float(e5m2_to_f32(c), cases_->e5m2_values[code]))
        << "e5m2 " << hex(code) << ": " << describe(e5m2_to_f32(c)) << ", reference "
        << describe(cases_->e5m2_values[code]);
  }
  // The definition's landmarks, so a reference that drifted would show here too.
  EXPECT_EQ(e4m3_to_f32(0x7e), kE4M3Max);
  EXPECT_EQ(e5m2_to_f32(0x7b), kE5M2Max);
  EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(e5m2_to_f32(0x01), std::ldexp(1.0f, -16));
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0xff)));
  EXPECT_EQ(e5m2_to_f32(0xfc), -INFINITY);
}

// Every value a code decodes to encodes back to that code (NaN codes: to the one canonical NaN;
// E5M2's infinities when saturating: to the largest finite value), in both modes; and every fp8
// value is exactly a bf16 value, which is what lets the converter store decoded fp8 weights in bf16
// without a second rounding.
TEST_F(Fp8Codec, EveryCodeRoundTrips) {
  for (unsigned code = 0; code < 256; ++code) {
    const auto c = static_cast<uint8_t>(code);
    for (bool saturate : {true, false}) {
      const float a = e4m3_to_f32(c), b = e5m2_to_f32(c);
      const unsigned sign = code & 0x80;
      // NaN codes encode to the canonical NaN; E5M2's infinities saturate to the largest finite
      // value of their sign.
      const unsigned want_a = std::isnan(a) ? sign | 0x7f : code;
      const unsigned want_b =
          std::isnan(b) ? sign | 0x7e : (std::isinf(b) && saturate ? sign | 0x7b : code);
      EXPECT_EQ(f32_to_e4m3(a, saturate), want_a) << hex(code) << " saturate " << saturate;
      EXPECT_EQ(f32_to_e5m2(b, saturate), want_b) << hex(code) << " saturate " << saturate;
      EXPECT_TRUE(same_float(bf16_to_f32(f32_to_bf16(a)), a)) << hex(code);
      EXPECT_TRUE(same_float(bf16_to_f32(f32_to_bf16(b)), b)) << hex(code);
    }
  }
}

TEST_F(Fp8Codec, EncodingMatchesTheReference) {
  struct Mode {
    const char* name;
    uint8_t (*fn)(float, bool);
    bool saturate;
    const std::vector<uint8_t>* expected;
  };
  const Mode modes[] = {
      {"e4m3 saturate", f32_to_e4m3, true, &cases_->e4m3_sat},
      {"e4m3 plain cast", f32_to_e4m3, false, &cases_->e4m3_cast},
      {"e5m2 saturate", f32_to_e5m2, true, &cases_->e5m2_sat},
      {"e5m2 plain cast", f32_to_e5m2, false, &cases_->e5m2_cast},
  };
  for (const Mode& m : modes) {
    size_t wrong = 0;
    for (size_t i = 0; i < cases_->x.size(); ++i) {
      const float x = cases_->x[i];
      const uint8_t got = m.fn(x, m.saturate), want = (*m.expected)[i];
      if (got == want) continue;
      if (++wrong <= 10)
        ADD_FAILURE() << m.name << " of " << describe(x) << ": " << hex(got) << ", reference "
                      << hex(want);
    }
    EXPECT_EQ(wrong, 0u) << m.name << ": " << wrong << " of " << cases_->x.size() << " differ";
  }
  // Spot checks of the rules the brief spells out (also in the reference's self-check).
  EXPECT_EQ(f32_to_e4m3(464.0f, false), 0x7e);    // the tie above 448 goes to even 448
  EXPECT_EQ(f32_to_e4m3(465.0f, false), 0x7f);    // past it: NaN
  EXPECT_EQ(f32_to_e4m3(-1e9f, true), 0xfe);      // saturated: -448
  EXPECT_EQ(f32_to_e5m2(61440.0f, false), 0x7c);  // the tie above 57344 goes to inf
  EXPECT_EQ(f32_to_e5m2(-INFINITY, true), 0xfb);  // saturated: -57344
  EXPECT_EQ(f32_to_e4m3(-0.0f), 0x80);
}

TEST_F(Fp8Codec, Int8MatchesTheReference) {
  size_t wrong = 0;
  for (size_t i = 0; i < cases_->x.size(); ++i) {
    const float x = cases_->x[i];
    if (f32_to_i8(x) == cases_->i8[i]) continue;
    if (++wrong <= 10)
      ADD_FAILURE() << "int8 of " << describe(x) << ": " << int(f32_to_i8(x)) << ", reference "
                    << int(cases_->i8[i]);
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(f32_to_i8(2.5f), 2);
  EXPECT_EQ(f32_to_i8(-3.5f), -4);
  EXPECT_EQ(f32_to_i8(-1000.0f), -127);
  EXPECT_EQ(f32_to_i8(NAN), 0);
}

}  // namespace
}  // namespace foley
