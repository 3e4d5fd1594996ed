#include "image/resize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"

namespace foley {
namespace {

// Pillow quantises its weights to this many fractional bits for 8-bit images (leaving headroom
// for 8-bit pixel values and sign in a 32-bit accumulator); matching it matters for exact output.
constexpr int kPrecisionBits = 32 - 8 - 2;

double triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// For one axis: each output index's first input index, tap count and fixed-point weights.
struct AxisTaps {
  int ksize = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;  // [out_size, ksize]
};

AxisTaps axis_taps(int in_size, int out_size, ResizeFilter filter) {
  FOLEY_CHECK(filter == ResizeFilter::kBilinear, "resize: unsupported filter");
  const double filter_support = 1.0;  // bilinear = triangle on [-1, 1]
  const double scale = static_cast<double>(in_size) / out_size;
  // Downscaling widens the filter by the scale (antialiasing); upscaling keeps it at 1 pixel.
  const double filterscale = std::max(scale, 1.0);
  const double support = filter_support * filterscale;
  AxisTaps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<size_t>(out_size));
  t.count.resize(static_cast<size_t>(out_size));
  t.weights.assign(static_cast<size_t>(out_size) * static_cast<size_t>(t.ksize), 0);
  std::vector<double> w(static_cast<size_t>(t.ksize));
  const double inv = 1.0 / filterscale;
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    // Truncating casts, as Pillow's C code does; both ends are then clipped to the image.
    int lo = static_cast<int>(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = static_cast<int>(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int n = std::min(hi - lo, t.ksize);
    double sum = 0;
    for (int i = 0; i < n; ++i) {
      w[static_cast<size_t>(i)] = triangle((i + lo - center + 0.5) * inv);
      sum += w[static_cast<size_t>(i)];
    }
    int32_t* q = &t.weights[static_cast<size_t>(o) * static_cast<size_t>(t.ksize)];
    for (int i = 0; i < n; ++i) {
      const double v = (sum != 0 ? w[static_cast<size_t>(i)] / sum : w[static_cast<size_t>(i)]) *
                       static_cast<double>(1 << kPrecisionBits);
      // Round half away from zero, then truncate (Pillow's normalisation of the weights).
      q[i] = static_cast<int32_t>(v < 0 ? v - 0.5 : v + 0.5);
    }
    t.first[static_cast<size_t>(o)] = lo;
    t.count[static_cast<size_t>(o)] = n;
  }
  return t;
}

// One output pixel of a horizontal pass over packed RGB: the three sums in one pass over the taps.
template <typename Clamp>
inline void rgb_taps(const uint8_t* p, int n, const int32_t* k, int32_t half, uint8_t* dst,
                     Clamp clamp) {
  int32_t r = half, g = half, b = half;
  for (int i = 0; i < n; ++i, p += 3) {
    r += p[0] * k[i];
    g += p[1] * k[i];
    b += p[2] * k[i];
  }
  dst[0] = clamp(r);
  dst[1] = clamp(g);
  dst[2] = clamp(b);
}

// The vertical pass over `tmp` (rows of `row` bytes, its first row being input row `row0`) into
// out_h output rows. Tap-major, a whole row at a time: the inner loop runs along the row and
// vectorises (integer sums: the same bits as the per-element order).
template <typename Taps, typename Clamp>
void vertical_pass(const Taps& vt, const uint8_t* tmp, int row0, size_t row, int32_t half,
                   uint8_t* out, int out_h, Clamp clamp) {
  std::vector<int32_t> acc(row);
  for (int y = 0; y < out_h; ++y) {
    const int lo = vt.first[static_cast<size_t>(y)] - row0, n = vt.count[static_cast<size_t>(y)];
    const int32_t* k = &vt.weights[static_cast<size_t>(y) * static_cast<size_t>(vt.ksize)];
    std::fill(acc.begin(), acc.end(), half);
    for (int i = 0; i < n; ++i) {
      const uint8_t* src = tmp + static_cast<size_t>(lo + i) * row;
      const int32_t w = k[i];
      for (size_t xc = 0; xc < row; ++xc) acc[xc] += src[xc] * w;
    }
    uint8_t* dst = out + static_cast<size_t>(y) * row;
    for (size_t xc = 0; xc < row; ++xc) dst[xc] = clamp(acc[xc]);
  }
}

// Rounds the fixed-point accumulator (which started at one half) to a clamped uint8.
inline uint8_t clamp8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;  // arithmetic shift: negative sums clamp to 0
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

}  // namespace

void resize_u8(const uint8_t* in, int in_h, int in_w, int channels, int64_t in_stride, uint8_t* out,
               int out_h, int out_w, ResizeFilter filter) {
  FOLEY_CHECK(in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0 && channels > 0 && channels <= 4,
              "resize: bad sizes %dx%dx%d -> %dx%d", in_h, in_w, channels, out_h, out_w);
  // At scale 1 the one tap weighs 1 (tests: SameSizeIsACopy); decoded frames arrive at the
  // encoders' sizes, so this is the common case and two full passes would be wasted.
  if (in_h == out_h && in_w == out_w) {
    const size_t row = static_cast<size_t>(out_w) * static_cast<size_t>(channels);
    for (int y = 0; y < out_h; ++y)
      std::memcpy(out + static_cast<size_t>(y) * row, in + static_cast<int64_t>(y) * in_stride, row);
    return;
  }
  const AxisTaps ht = axis_taps(in_w, out_w, filter);
  const AxisTaps vt = axis_taps(in_h, out_h, filter);
  const int32_t half = int32_t{1} << (kPrecisionBits - 1);
  // Only the input rows that some output row reads go through the horizontal pass.
  const int row0 = vt.first.front();
  const int row1 = vt.first.back() + vt.count.back();
  const size_t tmp_row = static_cast<size_t>(out_w) * static_cast<size_t>(channels);
  std::vector<uint8_t> tmp(static_cast<size_t>(row1 - row0) * tmp_row);
  for (int y = row0; y < row1; ++y) {
    const uint8_t* src = in + static_cast<int64_t>(y) * in_stride;
    uint8_t* dst = tmp.data() + static_cast<size_t>(y - row0) * tmp_row;
    for (int x = 0; x < out_w; ++x) {
      const int lo = ht.first[static_cast<size_t>(x)], n = ht.count[static_cast<size_t>(x)];
      const int32_t* k = &ht.weights[static_cast<size_t>(x) * static_cast<size_t>(ht.ksize)];
      if (channels == 3) {
        rgb_taps(src + lo * 3, n, k, half, dst + x * 3, clamp8);
        continue;
      }
      for (int c = 0; c < channels; ++c) {
        int32_t acc = half;
        for (int i = 0; i < n; ++i) acc += src[(lo + i) * channels + c] * k[i];
        dst[x * channels + c] = clamp8(acc);
      }
    }
  }
  vertical_pass(vt, tmp.data(), row0, tmp_row, half, out, out_h, clamp8);
}

void siglip2_preprocess(const Tensor& frame, int size, float* out) {
  FOLEY_CHECK(frame.device() == DeviceKind::kCPU && frame.dtype() == DType::kU8 &&
                  frame.rank() == 3 && frame.dim(2) == 3 && frame.stride(2) == 1 &&
                  frame.stride(1) == 3,
              "siglip2_preprocess: expected a host U8 [H, W, 3] frame with packed pixels, got %s",
              frame.describe().c_str());
  const int h = static_cast<int>(frame.dim(0)), w = static_cast<int>(frame.dim(1));
  std::vector<uint8_t> resized(static_cast<size_t>(size) * static_cast<size_t>(size) * 3);
  resize_u8(frame.data<uint8_t>(), h, w, 3, frame.stride(0), resized.data(), size, size,
            ResizeFilter::kBilinear);
  const size_t plane = static_cast<size_t>(size) * static_cast<size_t>(size);
  for (size_t p = 0; p < plane; ++p)
    for (size_t c = 0; c < 3; ++c) {
      // The same float32 steps as torchvision's ToTensor (/255) and Normalize(0.5, 0.5).
      const float v = static_cast<float>(resized[p * 3 + c]) / 255.0f;
      out[c * plane + p] = (v - 0.5f) / 0.5f;
    }
}

}  // namespace foley

namespace foley {
namespace {

// torch's bicubic kernel with a = −0.5 (its antialiasing filter; plain bicubic uses −0.75).
double bicubic_aa(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

struct Int16Taps {
  int ksize = 0;
  int precision = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // [out_size, ksize], int16 values
};

Int16Taps bicubic_taps(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double support = 2.0 * std::max(scale, 1.0);  // interp size 4, widened on downscale
  const double inv = scale >= 1.0 ? 1.0 / scale : 1.0;
  Int16Taps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<size_t>(out_size));
  t.count.resize(static_cast<size_t>(out_size));
  std::vector<double> w(static_cast<size_t>(out_size) * static_cast<size_t>(t.ksize), 0.0);
  double w_max = 0.0;
  for (int o = 0; o < out_size; ++o) {
    const double center = scale * (o + 0.5);
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int n = std::min(static_cast<int>(center + support + 0.5), in_size) - lo;
    double* wo = &w[static_cast<size_t>(o) * static_cast<size_t>(t.ksize)];
    double total = 0.0;
    for (int j = 0; j < n; ++j) {
      wo[j] = bicubic_aa((j + lo - center + 0.5) * inv);
      total += wo[j];
    }
    if (total != 0.0)
      for (int j = 0; j < n; ++j) {
        wo[j] /= total;
        w_max = std::max(w_max, wo[j]);
      }
    t.first[static_cast<size_t>(o)] = lo;
    t.count[static_cast<size_t>(o)] = n;
  }
  // torch picks the most fractional bits for which the largest weight still fits int16.
  for (t.precision = 0; t.precision < 22; ++t.precision)
    if (static_cast<int>(0.5 + w_max * (1 << (t.precision + 1))) >= (1 << 15)) break;
  t.weights.resize(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const double v = w[i] * (1 << t.precision);
    t.weights[i] =
        static_cast<int16_t>(v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
  }
  return t;
}

// Sums fit int32 as in torch's and Pillow's uint8 paths: the int16 weights of one output sum to
// 2^precision <= 2^22 (their absolute values to ~1.17x that: the a = -0.5 kernel's negative lobes),
// so |sum| < 255 * 1.25 * 2^22 < 2^31.
inline uint8_t clamp_shift(int32_t acc, int precision) {
  const int32_t v = acc >> precision;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

}  // namespace

void resize_bicubic_aa_u8(const uint8_t* in, int in_h, int in_w, int channels, int64_t in_stride,
                          uint8_t* out, int out_h, int out_w) {
  FOLEY_CHECK(in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0 && channels > 0 && channels <= 4,
              "resize: bad sizes %dx%dx%d -> %dx%d", in_h, in_w, channels, out_h, out_w);
  // torch skips an axis whose size does not change (no pass, no rounding).
  const bool horiz = in_w != out_w, vert = in_h != out_h;
  const size_t tmp_row = static_cast<size_t>(out_w) * static_cast<size_t>(channels);
  std::vector<uint8_t> tmp(static_cast<size_t>(in_h) * tmp_row);
  if (horiz) {
    const Int16Taps ht = bicubic_taps(in_w, out_w);
    const int32_t half = int32_t{1} << (ht.precision - 1);
    for (int y = 0; y < in_h; ++y) {
      const uint8_t* src = in + static_cast<int64_t>(y) * in_stride;
      uint8_t* dst = tmp.data() + static_cast<size_t>(y) * tmp_row;
      for (int x = 0; x < out_w; ++x) {
        const int lo = ht.first[static_cast<size_t>(x)], n = ht.count[static_cast<size_t>(x)];
        const int32_t* k = &ht.weights[static_cast<size_t>(x) * static_cast<size_t>(ht.ksize)];
        if (channels == 3) {
          rgb_taps(src + lo * 3, n, k, half, dst + x * 3,
                   [&](int32_t acc) { return clamp_shift(acc, ht.precision); });
          continue;
        }
        for (int c = 0; c < channels; ++c) {
          int32_t acc = half;
          for (int i = 0; i < n; ++i) acc += src[(lo + i) * channels + c] * k[i];
          dst[x * channels + c] = clamp_shift(acc, ht.precision);
        }
      }
    }
  } else {
    for (int y = 0; y < in_h; ++y)
      std::copy_n(in + static_cast<int64_t>(y) * in_stride, tmp_row,
                  tmp.data() + static_cast<size_t>(y) * tmp_row);
  }
  if (!vert) {
    std::copy(tmp.begin(), tmp.end(), out);
    return;
  }
  const Int16Taps vt = bicubic_taps(in_h, out_h);
  const int32_t half = int32_t{1} << (vt.precision - 1);
  vertical_pass(vt, tmp.data(), 0, tmp_row, half, out, out_h,
                [&](int32_t acc) { return clamp_shift(acc, vt.precision); });
}

void synchformer_preprocess(const Tensor& frame, int size, float* out) {
  FOLEY_CHECK(frame.device() == DeviceKind::kCPU && frame.dtype() == DType::kU8 &&
                  frame.rank() == 3 && frame.dim(2) == 3 && frame.stride(2) == 1 &&
                  frame.stride(1) == 3,
              "synchformer_preprocess: expected a host U8 [H, W, 3] frame with packed pixels, "
              "got %s",
              frame.describe().c_str());
  const int h = static_cast<int>(frame.dim(0)), w = static_cast<int>(frame.dim(1));
  // torchvision's Resize(int): shorter side to `size`, the other scaled and truncated.
  int rh = size, rw = size;
  if (h <= w)
    rw = static_cast<int>(static_cast<int64_t>(size) * w / h);
  else
    rh = static_cast<int>(static_cast<int64_t>(size) * h / w);
  std::vector<uint8_t> resized(static_cast<size_t>(rh) * static_cast<size_t>(rw) * 3);
  resize_bicubic_aa_u8(frame.data<uint8_t>(), h, w, 3, frame.stride(0), resized.data(), rh, rw);
  // Python's round() (half to even), as CenterCrop computes its offsets.
  const int top = static_cast<int>(std::nearbyint((rh - size) / 2.0));
  const int left = static_cast<int>(std::nearbyint((rw - size) / 2.0));
  const size_t plane = static_cast<size_t>(size) * static_cast<size_t>(size);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const uint8_t* px = &resized[(static_cast<size_t>(y + top) * rw + (x + left)) * 3];
      const size_t p = static_cast<size_t>(y) * size + x;
      for (size_t c = 0; c < 3; ++c) {
        const float v = static_cast<float>(px[c]) / 255.0f;  // ToDtype(scale=True), Normalize
        out[c * plane + p] = (v - 0.5f) / 0.5f;
      }
    }
}

}  // namespace foley
