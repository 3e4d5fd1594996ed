// Image resizing that reproduces Pillow's results, for the encoders' preprocessing.
//
// The official pipeline resizes frames with PIL (through torchvision on PIL images), and small
// differences in the resized uint8 pixels move the features, so this is a behavioural
// reproduction of Pillow's separable "convolution" resampler for 8-bit images: per output pixel a
// filter window of support·max(scale, 1) input pixels (antialiasing on downscale), weights
// normalised to sum 1 and then quantised to fixed point with 22 fractional bits, a horizontal pass
// into a rounded and clamped uint8 image and then a vertical pass over that.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace foley {

enum class ResizeFilter { kBilinear };

// Resizes an interleaved 8-bit image [in_h, in_w, channels] (rows contiguous with `in_stride`
// bytes between rows; pixels packed) to [out_h, out_w, channels] written contiguously to `out`.
// Matches PIL's Image.resize((out_w, out_h), filter) with the default box and no reducing_gap.
void resize_u8(const uint8_t* in, int in_h, int in_w, int channels, int64_t in_stride, uint8_t* out,
               int out_h, int out_w, ResizeFilter filter);

// SigLIP2 preprocessing of one RGB frame (model-spec §1.2): PIL bilinear stretch to size×size,
// /255, (x − 0.5)/0.5, written channel-first to `out` [3, size, size] (F32, contiguous host
// memory). `frame` is a host U8 tensor [H, W, 3] (rows may be strided, pixels packed).
void siglip2_preprocess(const Tensor& frame, int size, float* out);

// torch's antialiased bicubic resize (a = −0.5, align_corners=False) of an interleaved 8-bit image,
// reproducing its uint8 CPU path (what torchvision's v2.Resize runs on uint8 tensors): per-axis
// weights computed in double and normalised, quantised to int16 with the largest precision that
// keeps the largest weight below 2^15, a horizontal pass into a rounded and clamped uint8 image,
// then a vertical pass. Same layout conventions as resize_u8.
void resize_bicubic_aa_u8(const uint8_t* in, int in_h, int in_w, int channels, int64_t in_stride,
                          uint8_t* out, int out_h, int out_w);

// Synchformer preprocessing of one RGB frame (model-spec §1.3, §6 item 2): the shorter side
// bicubic-resized to `size` (the longer to int(size·long/short), truncated), centre crop
// size×size (torchvision's offsets: round((H − size)/2)), /255, (x − 0.5)/0.5, written
// channel-first to `out` [3, size, size]. `frame` as in siglip2_preprocess.
void synchformer_preprocess(const Tensor& frame, int size, float* out);

}  // namespace foley
