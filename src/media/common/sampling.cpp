#include "media/common/sampling.h"

#include <cmath>

#include "core/check.h"
#include "foley/media.h"

namespace foley::media {
namespace {

using u128 = unsigned __int128;

int bit_length(u128 v) {
  int n = 0;
  while (v) {
    v >>= 1;
    ++n;
  }
  return n;
}

}  // namespace

double rational_to_double(__int128 num, __int128 den) {
  FOLEY_CHECK(den > 0, "rational_to_double: denominator must be positive");
  if (num == 0) return 0.0;
  const bool negative = num < 0;
  const u128 n = negative ? u128(-num) : u128(num);
  const u128 d = u128(den);
  // Both operands exact in a double: one IEEE division is correctly rounded by definition.
  constexpr u128 kExact = u128(1) << 53;
  if (n <= kExact && d <= kExact) {
    const double q = double(n) / double(d);
    return negative ? -q : q;
  }
  // Otherwise form a 55-56 bit integer quotient q = floor(n·2^k / d) plus a sticky bit for the
  // remainder, and round q to 53 bits by hand (nearest, ties to even). Operands stay below 2^127:
  // n < 2^126 and d < 2^126 for the int64 × int32 products used here.
  const int k = 55 - (bit_length(n) - bit_length(d));
  FOLEY_CHECK(bit_length(n) + (k > 0 ? k : 0) < 127 && bit_length(d) + (k < 0 ? -k : 0) < 127,
              "rational_to_double: operands too large");
  u128 q, r;
  if (k >= 0) {
    const u128 nn = n << k;
    q = nn / d;
    r = nn % d;
  } else {
    const u128 dd = d << -k;
    q = n / dd;
    r = n % dd;
  }
  const int shift = bit_length(q) - 53;  // 2 or 3
  const u128 low = q & ((u128(1) << shift) - 1);
  const u128 half = u128(1) << (shift - 1);
  u128 m = q >> shift;
  if (low > half || (low == half && (r != 0 || (m & 1)))) ++m;
  const double v = std::ldexp(double(static_cast<uint64_t>(m)), shift - k);
  return negative ? -v : v;
}

FrameSelector::FrameSelector(double semantic_fps, double sync_fps, double end_sec)
    : semantic_(semantic_fps), sync_(sync_fps), end_sec_(end_sec) {
  for (double fps : {semantic_fps, sync_fps}) {
    if (!(fps > 0 && fps <= 1000))
      throw make_error(ErrorKind::kInvalidInput, "frame rate %g is outside (0, 1000]", fps);
  }
  if (!(end_sec >= 0 && end_sec * std::max(semantic_fps, sync_fps) <= 1e6))
    throw make_error(ErrorKind::kInvalidInput, "end_sec %g is outside [0, 1e6 frames]", end_sec);
  // A frame at exactly end_sec is still used, so the longest possible stream is what one frame at
  // end_sec would fill on a fresh clock.
  max_semantic_ = RateClock(semantic_fps).take(end_sec);
  max_sync_ = RateClock(sync_fps).take(end_sec);
}

FrameSelector::Pick FrameSelector::offer(double t) {
  Pick p;
  if (t < 0) return p;  // reference: `if frame_time < 0: continue`
  if (t > end_sec_) {   // reference: `if frame_time > end_sec: break`
    p.stop = true;
    return p;
  }
  p.semantic_first = semantic_.count();
  p.semantic_count = semantic_.take(t);
  p.sync_first = sync_.count();
  p.sync_count = sync_.take(t);
  return p;
}

}  // namespace foley::media

namespace foley {

ClipTiming clip_timing(int t25) {
  constexpr int kSegment = 16, kStep = 8;
  if (t25 < kSegment)
    throw make_error(ErrorKind::kInvalidInput,
                     "clip too short: needs at least 0.64 s (16 frames at 25 fps), got %d frames",
                     t25);
  ClipTiming t;
  t.sync_frames = t25;
  t.audio_seconds = double(t25) / 25.0;
  // Reference: int(audio_len_in_s * audio_frame_rate) in float64; truncation makes it 2·T25 − 1
  // for some T25 (model-spec §1.1).
  t.latent_frames = static_cast<int>(t.audio_seconds * 50.0);
  t.sync_segments = (t25 - kSegment) / kStep + 1;
  t.audio_samples = int64_t{t.latent_frames} * 960;
  return t;
}

}  // namespace foley
