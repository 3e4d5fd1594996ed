// Pixel operations that do not need FFmpeg: picture orientation from a display matrix, and the
// BT.601 YUV -> RGB conversion the Y4M reader uses.
#pragma once

#include <cstdint>

namespace foley::media {

// An axis-aligned re-orientation: transpose the picture first (swap x and y), then mirror it
// left-right, then top-bottom. The eight combinations cover 0/90/180/270° with or without mirror.
struct Orientation {
  bool transpose = false;
  bool flip_h = false;
  bool flip_v = false;

  bool identity() const { return !transpose && !flip_h && !flip_v; }
  int out_width(int w, int h) const { return transpose ? h : w; }
  int out_height(int w, int h) const { return transpose ? w : h; }
  // As "rotate clockwise by rotation_cw(), then mirror left-right if mirrored()".
  int rotation_cw() const;
  bool mirrored() const;
};

// The orientation a player applies for an FFmpeg/ISO-BMFF display matrix (9 × int32, 16.16 fixed
// point for the 2×2 part). Matrices that are not a multiple of 90° give the identity.
Orientation orientation_from_display_matrix(const int32_t matrix[9]);

// Copies a packed RGB24 picture (w × h, `src_stride` bytes per row) to `dst`, re-oriented; dst
// is tightly packed with out_width × out_height pixels.
void orient_rgb24(const uint8_t* src, int w, int h, int src_stride, Orientation o, uint8_t* dst);

enum class ChromaLayout { k420, k422, k444, kGray };

// 8-bit planar YUV -> packed RGB24 with BT.601 coefficients (swscale's default table), limited
// range unless `full_range`, in swscale's fixed-point arithmetic. Chroma is replicated over its
// 2×2 (or 2×1) block, as swscale's unscaled yuv2rgb path does; gray is taken as full-range luma,
// as swscale treats GRAY8.
void yuv_to_rgb24(const uint8_t* y, const uint8_t* u, const uint8_t* v, int w, int h,
                  ChromaLayout layout, bool full_range, uint8_t* dst);

}  // namespace foley::media
