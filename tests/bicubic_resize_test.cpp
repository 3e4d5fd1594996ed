// The torch-style antialiased bicubic resizer (Synchformer preprocessing) against torch's float
// antialiased bicubic interpolate, run per axis with torch's uint8 rounding in between. Ours
// reproduces torch's uint8 path, whose int16 fixed-point weights differ from the float
// computation by at most one level; the exact share is printed. (The golden case, made by the
// real uint8 kernel, checks the exact path end to end.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "image/resize.h"
#include "test_util.h"

namespace foley {
namespace {

bool have_python_torch() {
  static const bool ok =
      test::run_command(std::string(FOLEY_PYTHON) + " -c 'import torch' 2>/dev/null") == 0;
  return ok;
}

std::vector<uint8_t> torch_resize(const std::vector<uint8_t>& img, int h, int w, int oh, int ow) {
  const std::string dir = test::temp_dir();
  const std::string in = dir + "/in.raw", out = dir + "/out.raw";
  std::ofstream(in, std::ios::binary)
      .write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(img.size()));
  const std::string cmd = std::string(FOLEY_PYTHON) + " " +
                          test::source_path("tests/python/torch_bicubic_resize.py") + " " + in +
                          " " + std::to_string(h) + " " + std::to_string(w) + " " + out + " " +
                          std::to_string(oh) + " " + std::to_string(ow);
  EXPECT_EQ(test::run_command(cmd), 0) << cmd;
  std::vector<uint8_t> res(static_cast<size_t>(oh) * static_cast<size_t>(ow) * 3);
  std::ifstream(out, std::ios::binary)
      .read(reinterpret_cast<char*>(res.data()), static_cast<std::streamsize>(res.size()));
  return res;
}

TEST(BicubicResize, MatchesTorchUint8Path) {
  if (!have_python_torch()) FOLEY_SKIP_MISSING("python3-torch not available");
  struct Case {
    int h, w, oh, ow;
  };
  // The production shapes (96x128 -> 224x298, 720x1280 -> 224x398), downscaling, mixed, and a
  // 1080p frame (wide filters: the int32 sums stay far from overflow at any scale, see resize.cpp).
  const Case cases[] = {{96, 128, 224, 298},
                        {720, 1280, 224, 398},
                        {300, 200, 224, 149},
                        {50, 61, 97, 23},
                        {1080, 1920, 224, 398}};
  std::mt19937 rng(11);
  size_t total = 0, exact = 0;
  int max_diff = 0;
  for (const Case& c : cases) {
    std::vector<uint8_t> img(static_cast<size_t>(c.h) * static_cast<size_t>(c.w) * 3);
    for (int y = 0; y < c.h; ++y)
      for (int x = 0; x < c.w; ++x)
        for (int ch = 0; ch < 3; ++ch) {
          const int v = (x * 255 / c.w + y * 97 / c.h + ch * 40) % 256;
          const int n = static_cast<int>(rng() % 81) - 40;
          img[(static_cast<size_t>(y) * c.w + x) * 3 + ch] =
              static_cast<uint8_t>(std::clamp(v + n, 0, 255));
        }
    std::vector<uint8_t> ours(static_cast<size_t>(c.oh) * static_cast<size_t>(c.ow) * 3);
    resize_bicubic_aa_u8(img.data(), c.h, c.w, 3, c.w * 3, ours.data(), c.oh, c.ow);
    const std::vector<uint8_t> ref = torch_resize(img, c.h, c.w, c.oh, c.ow);
    size_t case_exact = 0;
    int case_max = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
      const int d = std::abs(int(ours[i]) - int(ref[i]));
      case_exact += d == 0;
      case_max = std::max(case_max, d);
    }
    std::printf("bicubic %dx%d -> %dx%d: %.4f%% exact, max level difference %d\n", c.h, c.w, c.oh,
                c.ow, 100.0 * case_exact / ours.size(), case_max);
    total += ours.size();
    exact += case_exact;
    max_diff = std::max(max_diff, case_max);
  }
  std::printf("bicubic overall: %zu of %zu values exact (%.4f%%), max level difference %d\n", exact,
              total, 100.0 * exact / total, max_diff);
  // A one-level difference after the first pass can grow to two through the second pass's
  // weights (whose absolute values sum to more than one); such values are rare.
  EXPECT_LE(max_diff, 2);
  EXPECT_GE(static_cast<double>(exact) / total, 0.99);
}

TEST(BicubicResize, SynchformerPreprocessShapeAndRange) {
  // A constant frame stays constant through resize and crop; 0 and 255 map to -1 and 1.
  for (const uint8_t level : {uint8_t{0}, uint8_t{255}}) {
    Tensor frame = Tensor::empty({12, 20, 3}, DType::kU8);
    std::fill_n(frame.data<uint8_t>(), frame.numel(), level);
    std::vector<float> out(3 * 16 * 16);
    synchformer_preprocess(frame, 16, out.data());
    for (float v : out) EXPECT_EQ(v, level ? 1.0f : -1.0f);
  }
}

}  // namespace
}  // namespace foley
