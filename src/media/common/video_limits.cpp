#include "media/common/video_limits.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace foley::media {

int64_t estimated_decoded_frames(const VideoInfo& info, double end_sec) {
  if (!(info.frame_rate > 0) || !std::isfinite(info.frame_rate)) return 0;
  // Frames from the stream's start (those before 0 s are decoded and skipped) to the end of the
  // stream or end_sec, whichever comes first, plus the one past end_sec that stops the sampling.
  const double start = std::isfinite(info.start_sec) ? info.start_sec : 0.0;
  double stop = end_sec;
  if (info.duration_sec > 0 && std::isfinite(info.duration_sec))
    stop = std::min(stop, start + info.duration_sec);
  const double frames = std::max(0.0, stop - std::min(start, stop)) * info.frame_rate;
  return int64_t(std::min(std::ceil(frames), 1e15)) + 1;
}

void DecodeWorkCounter::add(int width, int height) {
  pixels_ += int64_t(width) * height;
  ++frames_;
  if (pixels_ > limit_)
    throw make_error(ErrorKind::kInvalidInput,
                     "video too expensive to decode: %lld frames of %dx%d add up to more than the "
                     "%.2f gigapixel decode budget; use a smaller or shorter clip",
                     static_cast<long long>(frames_), width, height, double(limit_) * 1e-9);
}

}  // namespace foley::media

namespace foley {

void check_video_limits(const VideoInfo& info, double end_sec, const MediaLimits& limits) {
  const int w = info.width, h = info.height;
  if (w <= 0 || h <= 0) return;  // not known before decoding: the decoder's checks apply
  if (w > limits.max_width || h > limits.max_height)
    throw make_error(ErrorKind::kUnsupported, "resolution %dx%d exceeds the %dx%d limit", w, h,
                     limits.max_width, limits.max_height);
  const int64_t pixels = int64_t(w) * h;
  if (pixels > limits.max_frame_pixels)
    throw make_error(ErrorKind::kInvalidInput,
                     "video frame %dx%d is %.1f megapixels, over the %.1f megapixel limit", w, h,
                     double(pixels) * 1e-6, double(limits.max_frame_pixels) * 1e-6);
  const int64_t frames = media::estimated_decoded_frames(info, end_sec);
  if (frames > 0 && double(pixels) * double(frames) > double(limits.max_decode_pixels))
    throw make_error(
        ErrorKind::kInvalidInput,
        "video too expensive to decode: %dx%d at %.3g fps for %.3g s is about %lld "
        "frames, %.2f gigapixels, over the %.2f gigapixel decode budget; use a smaller "
        "or shorter clip",
        w, h, info.frame_rate, double(frames - 1) / info.frame_rate, static_cast<long long>(frames),
        double(pixels) * double(frames) * 1e-9, double(limits.max_decode_pixels) * 1e-9);
}

}  // namespace foley
