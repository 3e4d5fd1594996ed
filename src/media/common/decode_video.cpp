// decode_video_frames (the sampling loop over a variant's VideoSource) and decode_video, which
// collects the selected frames into two contiguous stacks.
#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "foley/media.h"
#include "media/common/sampling.h"
#include "media/common/variant.h"

namespace foley {
namespace {

void append(FrameStack& stack, const SampledFrame& f, int first, int count) {
  if (count == 0) return;
  FOLEY_CHECK(first == stack.count, "frame stack out of order (%d vs %d)", first, stack.count);
  const size_t bytes = stack.frame_bytes();
  // The reference appends the same ndarray several times when one frame fills several targets.
  // insert() copies straight in (resize() would zero the gigabytes first).
  for (int i = 0; i < count; ++i) stack.rgb.insert(stack.rgb.end(), f.rgb, f.rgb + bytes);
  stack.source_time.insert(stack.source_time.end(), size_t(count), f.time);
  stack.source_index.insert(stack.source_index.end(), size_t(count), f.source_index);
  stack.count += count;
}

// Frames a stream will probably hold: the whole capped span if the duration is unknown.
int expected_frames(const VideoInfo& info, double fps, double end_sec, int max) {
  if (!(info.duration_sec > 0)) return max;
  const double span = std::min(info.duration_sec + info.start_sec, end_sec);
  return std::clamp(static_cast<int>(std::ceil(span * fps)) + 1, 1, max);
}

SamplingResult run_sampling(media::VideoSource& source, const DecodeOptions& options,
                            const std::function<void(const SampledFrame&)>& sink,
                            media::FrameSelector& selector) {
  SamplingResult r;
  int64_t pts = 0, first_pts = 0;
  int tb_num = 0, tb_den = 1;
  bool have_first = false;
  while (source.next(&pts, &tb_num, &tb_den)) {
    const int64_t index = r.decoded_frames++;
    if (r.decoded_frames > options.limits.max_decoded_frames)
      throw make_error(ErrorKind::kUnsupported,
                       "more than %lld video frames decoded before %g s (frame limit)",
                       static_cast<long long>(options.limits.max_decoded_frames), options.end_sec);
    if (!have_first) {
      first_pts = pts;
      have_first = true;
    }
    const __int128 rel = options.rebase_to_first_frame ? __int128(pts) - first_pts : pts;
    const double t = media::rational_to_double(rel * tb_num, tb_den);
    const media::FrameSelector::Pick pick = selector.offer(t);
    if (pick.stop) break;
    if (!pick.any()) continue;  // no colour conversion for frames nobody uses
    SampledFrame f;
    f.rgb = source.rgb(&f.width, &f.height);
    f.time = t;
    f.source_index = index;
    f.semantic_first = pick.semantic_first;
    f.semantic_count = pick.semantic_count;
    f.sync_first = pick.sync_first;
    f.sync_count = pick.sync_count;
    sink(f);
  }
  r.info = source.info();  // after decoding: rotation may come from the first frame
  r.semantic_frames = selector.semantic_count();
  r.sync_frames = selector.sync_count();
  // With end_sec = 15: T25 <= 376 and Tv <= 121 (model-spec §1.1).
  FOLEY_CHECK(r.sync_frames <= selector.max_sync() && r.semantic_frames <= selector.max_semantic(),
              "sampled past end_sec");
  return r;
}

}  // namespace

SamplingResult decode_video_frames(const std::string& path, const DecodeOptions& options,
                                   const std::function<void(const SampledFrame&)>& sink) {
  media::FrameSelector selector(options.semantic_fps, options.sync_fps, options.end_sec);
  std::unique_ptr<media::VideoSource> source = media::open_video_source(path, options);
  return run_sampling(*source, options, sink, selector);
}

DecodedVideo decode_video(const std::string& path, const DecodeOptions& options) {
  media::FrameSelector selector(options.semantic_fps, options.sync_fps, options.end_sec);
  std::unique_ptr<media::VideoSource> source = media::open_video_source(path, options);
  const VideoInfo& info = source->info();
  const int64_t limit = options.limits.max_output_bytes;
  DecodedVideo out;
  auto sink = [&](const SampledFrame& f) {
    if (out.sync.width == 0) {
      for (FrameStack* s : {&out.semantic, &out.sync}) {
        s->width = f.width;
        s->height = f.height;
      }
      // Reserve for the expected lengths so that gigabyte stacks rarely reallocate.
      const int64_t bytes = int64_t(out.sync.frame_bytes());
      const int64_t sem =
          expected_frames(info, options.semantic_fps, options.end_sec, selector.max_semantic());
      const int64_t syn =
          expected_frames(info, options.sync_fps, options.end_sec, selector.max_sync());
      if ((sem + syn) * bytes <= limit) {
        out.semantic.rgb.reserve(size_t(sem * bytes));
        out.sync.rgb.reserve(size_t(syn * bytes));
      }
    }
    FOLEY_CHECK(f.width == out.sync.width && f.height == out.sync.height, "frame size changed");
    const int64_t frames =
        int64_t(out.semantic.count) + f.semantic_count + out.sync.count + f.sync_count;
    if (frames * int64_t(out.sync.frame_bytes()) > limit)
      throw make_error(ErrorKind::kUnsupported,
                       "decoded frames need more than the %lld MiB memory limit (%dx%d, %lld "
                       "frames)",
                       static_cast<long long>(limit >> 20), f.width, f.height,
                       static_cast<long long>(frames));
    append(out.semantic, f, f.semantic_first, f.semantic_count);
    append(out.sync, f, f.sync_first, f.sync_count);
  };
  const SamplingResult r = run_sampling(*source, options, sink, selector);
  out.info = r.info;
  out.decoded_frames = r.decoded_frames;
  FOLEY_CHECK(out.semantic.count == r.semantic_frames && out.sync.count == r.sync_frames,
              "frame counts disagree");
  out.timing = clip_timing(out.sync.count);
  return out;
}

}  // namespace foley
