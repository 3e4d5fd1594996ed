// Decoding a clip into encoder-sized frames: the one sampling-and-resizing loop that a request's
// decode stage (GeneratorImpl::decode_clip, which may encode a long clip as it goes) and the
// decoding ahead of a request (Model::prepare_video, into buffers of its own) share.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/thread_pool.h"
#include "image/resize.h"
#include "media/common/sampling.h"
#include "pipeline/pipeline.h"

namespace foley {
namespace pipeline {
namespace {

// Synchformer's resize geometry (image/resize.cpp synchformer_preprocess): shorter side to
// `size`, the other truncated, then the centre crop offsets with Python's round().
struct SyncGeometry {
  int rh, rw, top, left;
};
SyncGeometry sync_geometry(int h, int w, int size) {
  SyncGeometry g{size, size, 0, 0};
  if (h <= w)
    g.rw = static_cast<int>(static_cast<int64_t>(size) * w / h);
  else
    g.rh = static_cast<int>(static_cast<int64_t>(size) * h / w);
  g.top = static_cast<int>(std::nearbyint((g.rh - size) / 2.0));
  g.left = static_cast<int>(std::nearbyint((g.rw - size) / 2.0));
  return g;
}

// A clip beyond the prepared buffers: Model::prepare_video leaves it to the request.
struct BeyondSpan {};

// One decoded frame waiting in a group (`frame` as sampled, its pixels copied into `rgb`), and its
// two resized versions (buffers reused).
struct GroupFrame {
  SampledFrame frame;
  std::vector<uint8_t> rgb, semantic, sync, uncropped;
};

// SigLIP2's square bilinear resize, and Synchformer's bicubic (antialiased) shorter-side resize
// and centre crop.
void resize_group_frame(GroupFrame& f, int ss, int sy) {
  const int h = f.frame.height, w = f.frame.width;
  const int64_t stride = int64_t{w} * 3;
  if (f.frame.semantic_count > 0) {
    f.semantic.resize(size_t(ss) * size_t(ss) * 3);
    resize_u8(f.rgb.data(), h, w, 3, stride, f.semantic.data(), ss, ss, ResizeFilter::kBilinear);
  }
  if (f.frame.sync_count > 0) {
    const SyncGeometry g = sync_geometry(h, w, sy);
    f.uncropped.resize(size_t(g.rh) * size_t(g.rw) * 3);
    resize_bicubic_aa_u8(f.rgb.data(), h, w, 3, stride, f.uncropped.data(), g.rh, g.rw);
    f.sync.resize(size_t(sy) * size_t(sy) * 3);
    for (int y = 0; y < sy; ++y)
      std::memcpy(f.sync.data() + size_t(y) * sy * 3,
                  &f.uncropped[(size_t(y + g.top) * size_t(g.rw) + size_t(g.left)) * 3],
                  size_t(sy) * 3);
  }
}

}  // namespace

FrameQueue::FrameQueue(Tensor frames)
    : buffer(std::move(frames)),
      size(static_cast<int>(buffer.dim(1))),
      capacity(buffer.dim(0)),
      frame_bytes(size_t(buffer.dim(1)) * size_t(buffer.dim(2)) * 3) {
  FOLEY_CHECK(buffer.rank() == 4 && buffer.dtype() == DType::kU8 && buffer.dim(1) == buffer.dim(2),
              "frame buffer %s", buffer.describe().c_str());
}

void FrameQueue::consume(int64_t n) {
  std::memmove(slot(0), slot(n), size_t(filled - n) * frame_bytes);
  filled -= n;
  base += n;
  flushed = true;
}

SamplingResult decode_clip_frames(const std::string& video_path, double end_sec,
                                  FrameQueue& sem, FrameQueue& syn,
                                  const std::function<void()>& flush_semantic,
                                  const std::function<void()>& flush_sync) {
  DecodeOptions opts;
  opts.end_sec = end_sec;
  // The decode-work limits are set for the model's 15 s; a longer clip may take proportionally
  // more (its wall-clock budget too).
  const double scale = std::max(1.0, end_sec / 15.0);
  opts.limits.max_decode_pixels =
      static_cast<int64_t>(double(opts.limits.max_decode_pixels) * scale);
  opts.limits.max_decoded_frames =
      static_cast<int64_t>(double(opts.limits.max_decoded_frames) * scale);
  opts.limits.max_wall_sec *= scale;
  const int ss = sem.size, sy = syn.size;
  // Resizing costs ~50x the decoding (a 10-s 320x240 Y4M: ~0.9 s of resizes against ~20 ms of
  // decoding on one core), so decoded frames are copied into a group, resized on the thread pool
  // and then committed in order (the flushes, which may run an encoder, see frames in order).
  const size_t group_frames = size_t(std::max(2, 2 * ThreadPool::global().size()));
  constexpr size_t kGroupSourceBytes = size_t{96} << 20;  // bounds the copies of 4K frames
  std::vector<GroupFrame> group(group_frames);
  size_t grouped = 0, grouped_bytes = 0;
  auto resize_and_commit = [&] {
    parallel_for(int64_t(grouped), 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) resize_group_frame(group[size_t(i)], ss, sy);
    });
    for (size_t k = 0; k < grouped; ++k) {
      const GroupFrame& g = group[k];
      const SampledFrame& f = g.frame;
      for (int i = 0; i < f.semantic_count; ++i) {
        FOLEY_CHECK(f.semantic_first + i == sem.base + sem.filled, "8 fps frames out of order");
        if (sem.filled == sem.capacity) flush_semantic();
        std::memcpy(sem.slot(sem.filled++), g.semantic.data(), sem.frame_bytes);
      }
      for (int i = 0; i < f.sync_count; ++i) {
        FOLEY_CHECK(f.sync_first + i == syn.base + syn.filled, "25 fps frames out of order");
        if (syn.filled == syn.capacity) flush_sync();
        std::memcpy(syn.slot(syn.filled++), g.sync.data(), syn.frame_bytes);
      }
    }
    grouped = grouped_bytes = 0;
  };
  auto sink = [&](const SampledFrame& f) {
    if (f.semantic_count == 0 && f.sync_count == 0) return;
    GroupFrame& g = group[grouped++];
    const size_t bytes = size_t(f.width) * size_t(f.height) * 3;
    g.rgb.assign(f.rgb, f.rgb + bytes);
    g.frame = f;
    g.frame.rgb = g.rgb.data();
    grouped_bytes += bytes;
    if (grouped == group.size() || grouped_bytes >= kGroupSourceBytes) resize_and_commit();
  };
  const SamplingResult r = decode_video_frames(video_path, opts, sink);
  resize_and_commit();
  clip_timing(r.sync_frames);  // "clip too short: ..."
  if (r.semantic_frames < 1)
    throw Error(ErrorKind::kInvalidInput, "video has no frame at 8 fps within the clip");
  return r;
}

std::shared_ptr<const PreparedVideo> ModelImpl::prepare_video(
    const std::string& video_path, const GenerationParams& params,
    const GeneratorOptions& options, const std::atomic<bool>* cancel) const {
  validate_params(params, options.max_video_seconds);
  if (cancel && cancel->load()) throw Error(ErrorKind::kCancelled, "generation cancelled");
  const auto t0 = std::chrono::steady_clock::now();
  auto out = std::make_shared<PreparedClip>();
  out->model = this;
  const media::FrameSelector span(8.0, 25.0, options.max_clip_seconds);
  out->max_tv = span.max_semantic();
  out->max_t25 = span.max_sync();
  out->end_sec = params.max_clip_seconds > 0 ? params.max_clip_seconds : options.max_video_seconds;
  // The encoders' input sizes, from their configs (the networks themselves are not needed).
  const int ss = Siglip2VisionConfig::from_json(store_->config("siglip2")).image_size;
  const int sy = SynchformerConfig::from_json(store_->config("synchformer")).image_size;
  // Pages of the buffers are committed as frames arrive: a short clip costs what it holds.
  FrameQueue sem(Tensor::empty({out->max_tv, ss, ss, 3}, DType::kU8));
  FrameQueue syn(Tensor::empty({out->max_t25, sy, sy, 3}, DType::kU8));
  const auto full = [cancel] {
    if (cancel && cancel->load()) throw Error(ErrorKind::kCancelled, "generation cancelled");
    throw BeyondSpan{};
  };
  SamplingResult r;
  try {
    r = decode_clip_frames(video_path, out->end_sec, sem, syn, full, full);
  } catch (const BeyondSpan&) {
    return nullptr;
  }
  out->frames.semantic = sem.buffer.slice(0, 0, r.semantic_frames);
  out->frames.sync = syn.buffer.slice(0, 0, r.sync_frames);
  out->frames.timing = clip_timing(r.sync_frames);
  out->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace pipeline
}  // namespace foley
