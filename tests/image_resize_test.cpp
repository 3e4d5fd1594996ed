// The PIL-compatible resizer against Pillow itself (Debian's python3-pil), over random images,
// up- and down-scaling, square and anisotropic.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "image/resize.h"
#include "test_util.h"

namespace foley {
namespace {

bool have_python_pil() {
  static const bool ok =
      test::run_command(std::string(FOLEY_PYTHON) + " -c 'import PIL' 2>/dev/null") == 0;
  return ok;
}

std::vector<uint8_t> pil_resize(const std::vector<uint8_t>& img, int h, int w, int oh, int ow) {
  const std::string dir = test::temp_dir();
  const std::string in = dir + "/in.raw", out = dir + "/out.raw";
  std::ofstream(in, std::ios::binary)
      .write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(img.size()));
  const std::string cmd = std::string(FOLEY_PYTHON) + " " +
                          test::source_path("tests/python/pil_resize.py") + " " + in + " " +
                          std::to_string(h) + " " + std::to_string(w) + " " + out + " " +
                          std::to_string(oh) + " " + std::to_string(ow);
  EXPECT_EQ(test::run_command(cmd), 0) << cmd;
  std::vector<uint8_t> res(static_cast<size_t>(oh) * static_cast<size_t>(ow) * 3);
  std::ifstream(out, std::ios::binary)
      .read(reinterpret_cast<char*>(res.data()), static_cast<std::streamsize>(res.size()));
  return res;
}

TEST(ImageResize, MatchesPillowBilinear) {
  if (!have_python_pil()) FOLEY_SKIP_MISSING("python3-pil not available");
  struct Case {
    int h, w, oh, ow;
  };
  // The production case (128x96 -> 512x512), pure up/down-scaling, mixed, odd factors.
  const Case cases[] = {{96, 128, 512, 512}, {37, 53, 512, 512},   {720, 1280, 512, 512},
                        {600, 333, 97, 211}, {512, 512, 512, 512}, {31, 700, 130, 45},
                        {1, 5, 3, 9}};
  std::mt19937 rng(7);
  size_t total = 0, exact = 0;
  int max_diff = 0;
  for (const Case& c : cases) {
    std::vector<uint8_t> img(static_cast<size_t>(c.h) * static_cast<size_t>(c.w) * 3);
    // Smooth gradients plus noise: realistic structure and every level exercised.
    for (int y = 0; y < c.h; ++y)
      for (int x = 0; x < c.w; ++x)
        for (int ch = 0; ch < 3; ++ch) {
          const int v = (x * 255 / c.w + y * 97 / c.h + ch * 40) % 256;
          const int n = static_cast<int>(rng() % 81) - 40;
          img[(static_cast<size_t>(y) * c.w + x) * 3 + ch] =
              static_cast<uint8_t>(std::clamp(v + n, 0, 255));
        }
    std::vector<uint8_t> ours(static_cast<size_t>(c.oh) * static_cast<size_t>(c.ow) * 3);
    resize_u8(img.data(), c.h, c.w, 3, c.w * 3, ours.data(), c.oh, c.ow, ResizeFilter::kBilinear);
    const std::vector<uint8_t> ref = pil_resize(img, c.h, c.w, c.oh, c.ow);
    size_t case_exact = 0;
    int case_max = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
      const int d = std::abs(int(ours[i]) - int(ref[i]));
      case_exact += d == 0;
      case_max = std::max(case_max, d);
    }
    std::printf("resize %dx%d -> %dx%d: %.4f%% exact, max level difference %d\n", c.h, c.w, c.oh,
                c.ow, 100.0 * case_exact / ours.size(), case_max);
    total += ours.size();
    exact += case_exact;
    max_diff = std::max(max_diff, case_max);
  }
  std::printf("resize overall: %zu of %zu values exact (%.4f%%), max level difference %d\n", exact,
              total, 100.0 * exact / total, max_diff);
  EXPECT_LE(max_diff, 1);
  EXPECT_GE(static_cast<double>(exact) / total, 0.999);
}

// At scale 1 both resizers have one tap of weight 1: the resize is a copy (rows of any stride).
// Decoding already brings frames to the encoders' sizes, so the preprocessors rely on this.
TEST(ImageResize, SameSizeIsACopy) {
  for (const auto& [h, w, pad] : std::vector<std::array<int, 3>>{{16, 16, 0}, {7, 13, 5}, {512, 512, 0}}) {
    std::vector<uint8_t> img(size_t(h) * size_t(w * 3 + pad));
    uint32_t r = 12345;
    for (auto& v : img) v = uint8_t((r = r * 1664525u + 1013904223u) >> 24);
    std::vector<uint8_t> out(size_t(h) * size_t(w) * 3, 0);
    for (int filter = 0; filter < 2; ++filter) {
      std::fill(out.begin(), out.end(), 0);
      if (filter == 0)
        resize_u8(img.data(), h, w, 3, w * 3 + pad, out.data(), h, w, ResizeFilter::kBilinear);
      else  // torch's antialiased bicubic (Synchformer's): its taps at 0, ±1, ±2 are 1, 0, 0
        resize_bicubic_aa_u8(img.data(), h, w, 3, w * 3 + pad, out.data(), h, w);
      for (int y = 0; y < h; ++y)
        ASSERT_EQ(std::memcmp(out.data() + size_t(y) * w * 3,
                              img.data() + size_t(y) * (w * 3 + pad), size_t(w) * 3),
                  0)
            << h << "x" << w << " row " << y << " filter " << filter;
    }
  }
}

TEST(ImageResize, Siglip2PreprocessRange) {
  // A constant frame stays constant; 0 and 255 map to exactly -1 and 1.
  for (const uint8_t level : {uint8_t{0}, uint8_t{255}}) {
    Tensor frame = Tensor::empty({6, 8, 3}, DType::kU8);
    std::fill_n(frame.data<uint8_t>(), frame.numel(), level);
    std::vector<float> out(3 * 16 * 16);
    siglip2_preprocess(frame, 16, out.data());
    for (float v : out) EXPECT_EQ(v, level ? 1.0f : -1.0f);
  }
}

}  // namespace
}  // namespace foley
