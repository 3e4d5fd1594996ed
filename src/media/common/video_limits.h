// Decode-work limits shared by the media variants: the up-front check of foley/media.h
// (check_video_limits) and the count kept while decoding.
#pragma once

#include <cstdint>

#include "foley/media.h"

namespace foley::media {

// Frames that decoding a stream up to end_sec takes, estimated from its frame rate, start and
// duration (the whole span to end_sec when the duration is unknown); 0 if the rate is unknown.
int64_t estimated_decoded_frames(const VideoInfo& info, double end_sec);

// width·height summed over the frames decoded so far; add() throws kInvalidInput once the sum
// passes MediaLimits::max_decode_pixels.
class DecodeWorkCounter {
 public:
  explicit DecodeWorkCounter(const MediaLimits& limits) : limit_(limits.max_decode_pixels) {}
  void add(int width, int height);

 private:
  int64_t limit_;
  int64_t pixels_ = 0;
  int64_t frames_ = 0;
};

}  // namespace foley::media
