#include "media/common/image.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace foley::media {

int Orientation::rotation_cw() const {
  // Decompose into "rotate clockwise, then mirror left-right" (see the table in mirrored()).
  if (!transpose) return flip_v ? 180 : 0;
  if (flip_h != flip_v) return flip_h ? 90 : 270;
  return flip_h ? 270 : 90;
}

bool Orientation::mirrored() const {
  // Without transpose: none = 0°, h+v = 180°, v = 180° + mirror, h = mirror.
  // With transpose: +h = 90°, +v = 270°, none = 90° + mirror, h+v = 270° + mirror.
  return transpose ? flip_h == flip_v : flip_h != flip_v;
}

Orientation orientation_from_display_matrix(const int32_t m[9]) {
  // The 2×2 part [a b; c d] (matrix[0], [1], [3], [4]) maps a source pixel (x, y) to
  // (a·x + c·y, b·x + d·y) on screen (libavutil/display.h). A counter-clockwise rotation by θ
  // (av_display_rotation_get() = θ) has a = d = cos θ, b = −sin θ, c = sin θ; with y pointing
  // down in pixel coordinates that is what `ffmpeg`'s autorotation shows (checked against the
  // CLI in the tests). Only signs matter for right angles; other angles are left unrotated.
  const double a = m[0] / 65536.0, b = m[1] / 65536.0, c = m[3] / 65536.0, d = m[4] / 65536.0;
  const double scale = std::max({std::fabs(a), std::fabs(b), std::fabs(c), std::fabs(d)});
  Orientation o;
  if (!(scale > 0)) return o;
  auto zero = [&](double v) { return std::fabs(v) < 1e-3 * scale; };
  if (zero(b) && zero(c) && !zero(a) && !zero(d)) {
    o.flip_h = a < 0;
    o.flip_v = d < 0;
  } else if (zero(a) && zero(d) && !zero(b) && !zero(c)) {
    o.transpose = true;  // screen x comes from source y (via c), screen y from source x (via b)
    o.flip_h = c < 0;
    o.flip_v = b < 0;
  }
  return o;
}

void orient_rgb24(const uint8_t* src, int w, int h, int src_stride, Orientation o, uint8_t* dst) {
  const int ow = o.out_width(w, h), oh = o.out_height(w, h);
  if (!o.transpose) {
    for (int oy = 0; oy < oh; ++oy) {
      const uint8_t* row = src + size_t(o.flip_v ? h - 1 - oy : oy) * size_t(src_stride);
      uint8_t* out = dst + size_t(oy) * size_t(ow) * 3;
      if (!o.flip_h) {
        std::memcpy(out, row, size_t(w) * 3);
      } else {
        for (int ox = 0; ox < ow; ++ox) std::memcpy(out + ox * 3, row + (w - 1 - ox) * 3, 3);
      }
    }
    return;
  }
  // Transposed: output row oy reads source column x = oy (or its mirror), top to bottom (or up).
  for (int oy = 0; oy < oh; ++oy) {
    const int sx = o.flip_v ? w - 1 - oy : oy;
    uint8_t* out = dst + size_t(oy) * size_t(ow) * 3;
    for (int ox = 0; ox < ow; ++ox) {
      const int sy = o.flip_h ? h - 1 - ox : ox;
      std::memcpy(out + ox * 3, src + size_t(sy) * size_t(src_stride) + size_t(sx) * 3, 3);
    }
  }
}

namespace {

// swscale's roundToInt16: a 16.16 product back to a rounded 16-bit integer.
int32_t round_to_int16(int64_t f) {
  return int32_t(std::clamp<int64_t>((f + (1 << 15)) >> 16, -32768, 32767));
}

}  // namespace

void yuv_to_rgb24(const uint8_t* y, const uint8_t* u, const uint8_t* v, int w, int h,
                  ChromaLayout layout, bool full_range, uint8_t* dst) {
  // swscale's SWS_CS_DEFAULT (ITU-R BT.601) table entries in 16.16, adjusted for the range as
  // swscale does. Two arithmetic models, matching the two swscale paths FFmpeg takes:
  //  - 4:2:0 / 4:2:2: the x86 unscaled yuv2rgb (SSSE3) path: entries rounded to 3.13, inputs
  //    scaled by 8, products floored (pmulhw), saturating sums; bit-exact with
  //    `ffmpeg -pix_fmt rgb24` on x86-64.
  //  - 4:4:4: the generic scaler's full-chroma output, high precision: rounded real arithmetic,
  //    within one level of it.
  int64_t cy = 1 << 16, oy = 0;
  int64_t crv = 104597, cbu = 132201, cgu = -25675, cgv = -53279;
  if (full_range) {
    crv = crv * 224 / 255;
    cbu = cbu * 224 / 255;
    cgu = cgu * 224 / 255;
    cgv = cgv * 224 / 255;
  } else {
    cy = cy * 255 / 219;
    oy = int64_t(16) << 16;
  }
  const int32_t y_coeff = round_to_int16(cy * 8192), y_offset = round_to_int16(oy * 8);
  const int32_t vr = round_to_int16(crv * 8192), ub = round_to_int16(cbu * 8192),
                ug = round_to_int16(cgu * 8192), vg = round_to_int16(cgv * 8192);
  auto mulhi = [](int32_t a, int32_t b) { return (a * b) >> 16; };  // floor, like pmulhw
  auto sat = [](int32_t x) { return uint8_t(std::clamp(x, 0, 255)); };
  const int cw = layout == ChromaLayout::k444 ? w : (w + 1) / 2;
  for (int j = 0; j < h; ++j) {
    uint8_t* out = dst + size_t(j) * size_t(w) * 3;
    const uint8_t* yr = y + size_t(j) * size_t(w);
    if (layout == ChromaLayout::kGray) {
      for (int i = 0; i < w; ++i) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = yr[i];
      continue;
    }
    const int cj = layout == ChromaLayout::k420 ? j / 2 : j;
    const uint8_t* ur = u + size_t(cj) * size_t(cw);
    const uint8_t* vr_row = v + size_t(cj) * size_t(cw);
    if (layout == ChromaLayout::k444) {
      const double fy = cy / 65536.0, fo = double(oy) / 65536.0;
      const double fvr = crv / 65536.0, fub = cbu / 65536.0, fug = cgu / 65536.0,
                   fvg = cgv / 65536.0;
      auto sat_d = [](double x) { return uint8_t(std::clamp(std::lround(x), 0L, 255L)); };
      for (int i = 0; i < w; ++i) {
        const double ys = fy * (yr[i] - fo), us = ur[i] - 128.0, vs = vr_row[i] - 128.0;
        out[3 * i] = sat_d(ys + fvr * vs);
        out[3 * i + 1] = sat_d(ys + fug * us + fvg * vs);
        out[3 * i + 2] = sat_d(ys + fub * us);
      }
      continue;
    }
    for (int i = 0; i < w; ++i) {
      const int ci = i / 2;
      const int32_t ys = mulhi(yr[i] * 8 - y_offset, y_coeff);
      const int32_t us = ur[ci] * 8 - 1024, vs = vr_row[ci] * 8 - 1024;
      out[3 * i] = sat(ys + mulhi(vs, vr));
      out[3 * i + 1] = sat(ys + mulhi(us, ug) + mulhi(vs, vg));
      out[3 * i + 2] = sat(ys + mulhi(us, ub));
    }
  }
}

}  // namespace foley::media
