// The reference pipeline's frame selection (model-spec §1.1), shared by the FFmpeg and Y4M
// decoders so that both pick exactly the same frames.
#pragma once

#include <cstdint>

namespace foley::media {

// The double nearest to num / den (ties to even), as Python's float(Fraction(num, den)) gives;
// PyAV's frame.time is float(pts * time_base). den must be positive.
double rational_to_double(__int128 num, __int128 den);
// Time in seconds of timestamp `pts` in time base tb_num / tb_den.
inline double frame_time(int64_t pts, int tb_num, int tb_den) {
  return rational_to_double(static_cast<__int128>(pts) * tb_num, tb_den);
}

// One output rate: a float64 clock accumulated with `+= 1.0 / fps` from 0, exactly as the
// reference accumulates it (not recomputed as k / fps: the rounding of the sum decides ties).
class RateClock {
 public:
  explicit RateClock(double fps) : step_(1.0 / fps) {}
  // How many pending targets a frame at time t fills (advances the clock past them).
  int take(double t) {
    int n = 0;
    while (t >= next_) {
      next_ += step_;
      ++n;
    }
    count_ += n;
    return n;
  }
  int count() const { return count_; }

 private:
  double step_;
  double next_ = 0.0;
  int count_ = 0;
};

// Both streams plus the reference's skip/stop rules.
class FrameSelector {
 public:
  struct Pick {
    bool stop = false;  // the frame is past end_sec: nothing more will be selected
    int semantic_first = 0, semantic_count = 0;
    int sync_first = 0, sync_count = 0;
    bool any() const { return semantic_count > 0 || sync_count > 0; }
  };

  FrameSelector(double semantic_fps, double sync_fps, double end_sec);
  Pick offer(double t);
  int semantic_count() const { return semantic_.count(); }
  int sync_count() const { return sync_.count(); }
  // Upper bounds on the stream lengths for this end_sec (to size buffers and check limits).
  int max_semantic() const { return max_semantic_; }
  int max_sync() const { return max_sync_; }

 private:
  RateClock semantic_, sync_;
  double end_sec_;
  int max_semantic_, max_sync_;
};

}  // namespace foley::media
