// Clips longer than one span: the window plan, decoding with the encoders run as the frame
// buffers fill, text-only conditions, and the DAC over a long latent in overlapping chunks.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "media/common/sampling.h"
#include "pipeline/pipeline.h"

namespace foley {
namespace pipeline {
namespace {

// Every 8 s the three grids meet: 200 frames at 25 fps = 25 Synchformer segments (stride 8),
// 64 frames at 8 fps, 400 latent frames at 50 Hz.
constexpr int kHop25 = 200, kHopSegments = 25, kHopVisual = 64, kHopLatent = 400;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Host F32 [rows, n] with every row equal to the device or host vector `row` [n].
Tensor tiled_rows(Backend& be, const Tensor& row, int64_t rows) {
  const int64_t n = row.numel();
  Tensor one = Tensor::empty({n}, DType::kF32);
  be.copy_to_host(one, row);
  be.synchronize();
  Tensor out = Tensor::empty({rows, n}, DType::kF32);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out.data<float>() + r * n, one.data<float>(), size_t(n) * sizeof(float));
  return out;
}

// Host F32 [rows, dim] from features appended row by row.
Tensor rows_tensor(const std::vector<float>& values, int64_t dim) {
  const int64_t rows = static_cast<int64_t>(values.size()) / dim;
  Tensor out = Tensor::empty({rows, dim}, DType::kF32);
  std::memcpy(out.data<float>(), values.data(), values.size() * sizeof(float));
  return out;
}

void append_rows(std::vector<float>& dst, const Tensor& features) {
  FOLEY_CHECK(features.is_contiguous() && features.dtype() == DType::kF32 &&
                  features.device() == DeviceKind::kCPU,
              "encoder features %s", features.describe().c_str());
  dst.insert(dst.end(), features.data<float>(), features.data<float>() + features.numel());
}

}  // namespace

std::vector<FlowWindow> plan_windows(int t25, int64_t audio_len, int64_t visual_rows,
                                     int64_t sync_rows, int rows_per_segment, int window_t25,
                                     int max_t25, int max_tv) {
  const int64_t max_ta = clip_timing(max_t25).latent_frames;
  if (t25 <= max_t25 && audio_len <= max_ta && visual_rows <= max_tv)
    return {FlowWindow{0, audio_len, 0, visual_rows, 0, sync_rows}};
  if (window_t25 <= kHop25 || window_t25 > max_t25 || max_t25 - kHop25 < 25)
    throw make_error(ErrorKind::kInvalidInput,
                     "a clip of %.2f s is longer than this generator's %.2f s span, and windows "
                     "(every 8 s, %.2f s long) need a span of at least 9 s and a window in "
                     "(8 s, span]",
                     t25 / 25.0, max_t25 / 25.0, window_t25 / 25.0);
  int n = 2;
  while (t25 - int64_t{kHop25} * (n - 1) > max_t25 ||
         audio_len - int64_t{kHopLatent} * (n - 1) > max_ta ||
         visual_rows - int64_t{kHopVisual} * (n - 1) > max_tv)
    ++n;
  std::vector<FlowWindow> windows(static_cast<size_t>(n));
  for (int k = 0; k < n; ++k) {
    const bool last = k == n - 1;
    const int64_t len25 = last ? t25 - int64_t{kHop25} * k : window_t25;
    FlowWindow& w = windows[size_t(k)];
    w.audio_begin = int64_t{kHopLatent} * k;
    w.visual_begin = int64_t{kHopVisual} * k;
    w.sync_begin = int64_t{kHopSegments} * rows_per_segment * k;
    if (last) {
      w.audio_len = audio_len - w.audio_begin;
      w.visual_len = visual_rows - w.visual_begin;
      w.sync_len = sync_rows - w.sync_begin;
    } else {
      const ClipTiming t = clip_timing(static_cast<int>(len25));
      w.audio_len = t.latent_frames;
      w.visual_len = std::min<int64_t>(
          {(len25 - 1) * 8 / 25 + 1, visual_rows - w.visual_begin, int64_t{max_tv}});
      w.sync_len = int64_t{t.sync_segments} * rows_per_segment;
    }
    if (len25 < 16 || w.visual_len < 1 || w.sync_len < rows_per_segment ||
        w.sync_begin + w.sync_len > sync_rows)
      throw make_error(ErrorKind::kInvalidInput,
                       "window %d of %d (from %.2f s) has no usable frames: the video's 8 fps "
                       "and 25 fps streams end at different times (%lld and %d frames)",
                       k + 1, n, w.audio_begin / 50.0, static_cast<long long>(visual_rows), t25);
  }
  return windows;
}

int GeneratorImpl::max_video_t25() const {
  return std::max(max_t25_, media::FrameSelector(8.0, 25.0, options_.max_video_seconds).max_sync());
}

std::vector<FlowWindow> GeneratorImpl::windows_for(const ClipFeatures& f) const {
  const int t25 = f.t25 > 0 ? f.t25 : static_cast<int>(std::lround(f.audio_seconds * 25.0));
  return plan_windows(t25, f.audio_len, f.cond.clip.dim(0), f.cond.sync.dim(0),
                      static_cast<int>(sync_->config().num_frames),
                      static_cast<int>(std::lround(options_.window_seconds * 25.0)), max_t25_,
                      max_tv_);
}

ClipFeatures GeneratorImpl::empty_video_features(int t25) const {
  const ClipTiming t = clip_timing(t25);
  ClipFeatures f;
  f.t25 = t25;
  f.audio_len = t.latent_frames;
  f.audio_seconds = t.audio_seconds;
  // The lengths a 25 fps clip of t25 frames has: its last frame at (t25 − 1)/25 s gives
  // floor(that·8) + 1 frames at 8 fps.
  const int64_t tv = int64_t{t25 - 1} * 8 / 25 + 1;
  f.cond.clip = tiled_rows(*backend_, dit_->empty_clip_feat(), tv);
  f.cond.sync = tiled_rows(*backend_, dit_->empty_sync_feat(),
                           int64_t{t.sync_segments} * sync_->config().num_frames);
  return f;
}

DecodedClip GeneratorImpl::decode_clip(const std::string& video_path, double max_clip_seconds,
                                       const std::atomic<bool>* cancel) {
  FrameQueue sem(semantic_buffer_), syn(sync_buffer_);
  DecodedClip out;
  std::vector<float> clip_rows, sync_rows;
  const int64_t seg = sync_->config().num_frames;  // rows per segment
  // Encodes whole encoder chunks from the front of a full buffer: SigLIP2's frames in multiples
  // of its chunk, Synchformer's segments (16 frames, stride 8) in multiples of its chunk, so the
  // forwards are the ones a single call over the whole clip would run.
  auto flush_semantic = [&] {
    if (cancel && cancel->load()) throw Error(ErrorKind::kCancelled, "generation cancelled");
    const int64_t n = sem.filled - sem.filled % Siglip2Vision::kDefaultChunk;
    ClipFrames part;
    part.semantic = sem.buffer.slice(0, 0, n);
    const auto t0 = std::chrono::steady_clock::now();
    append_rows(clip_rows, encode_visual(part));
    out.visual_seconds += seconds_since(t0);
    sem.consume(n);
  };
  auto flush_sync = [&] {
    if (cancel && cancel->load()) throw Error(ErrorKind::kCancelled, "generation cancelled");
    int64_t segments = (syn.filled - 16) / 8 + 1;
    segments -= segments % Synchformer::kDefaultChunk;
    ClipFrames part;
    part.sync = syn.buffer.slice(0, 0, 8 * (segments - 1) + 16);
    const auto t0 = std::chrono::steady_clock::now();
    append_rows(sync_rows, encode_sync(part));
    out.sync_seconds += seconds_since(t0);
    syn.consume(8 * segments);
  };
  const SamplingResult r =
      decode_clip_frames(video_path, max_clip_seconds, sem, syn, flush_semantic, flush_sync);
  const ClipTiming timing = clip_timing(r.sync_frames);
  if (!sem.flushed && !syn.flushed) {
    out.frames.semantic = semantic_buffer_.slice(0, 0, r.semantic_frames);
    out.frames.sync = sync_buffer_.slice(0, 0, r.sync_frames);
    out.frames.timing = timing;
    return out;
  }
  // The rest of a long clip: every remaining 8 fps frame, and the segments that still fit.
  out.long_clip = true;
  if (sem.filled > 0) {
    ClipFrames part;
    part.semantic = sem.buffer.slice(0, 0, sem.filled);
    const auto t0 = std::chrono::steady_clock::now();
    append_rows(clip_rows, encode_visual(part));
    out.visual_seconds += seconds_since(t0);
  }
  if (syn.filled >= 16) {
    const int64_t segments = (syn.filled - 16) / 8 + 1;
    ClipFrames part;
    part.sync = syn.buffer.slice(0, 0, 8 * (segments - 1) + 16);
    const auto t0 = std::chrono::steady_clock::now();
    append_rows(sync_rows, encode_sync(part));
    out.sync_seconds += seconds_since(t0);
  }
  const int64_t clip_dim = dit_->config().clip_dim, sync_dim = dit_->config().sync_dim;
  FOLEY_CHECK(int64_t(clip_rows.size()) == int64_t{r.semantic_frames} * clip_dim &&
                  int64_t(sync_rows.size()) == int64_t{timing.sync_segments} * seg * sync_dim,
              "long clip: %zu clip and %zu sync feature values for %d and %d frames",
              clip_rows.size(), sync_rows.size(), r.semantic_frames, r.sync_frames);
  ClipFeatures& f = out.features;
  f.t25 = r.sync_frames;
  f.audio_len = timing.latent_frames;
  f.audio_seconds = timing.audio_seconds;
  f.cond.clip = rows_tensor(clip_rows, clip_dim);
  f.cond.sync = rows_tensor(sync_rows, sync_dim);
  return out;
}

ClipFrames GeneratorImpl::decode(const std::string& video_path, double max_clip_seconds) {
  DecodedClip c = decode_clip(video_path, max_clip_seconds, nullptr);
  if (c.long_clip)
    throw make_error(ErrorKind::kInvalidInput,
                     "clip longer than this generator's frame buffers (%.2f s); generate() takes "
                     "it in windows",
                     max_t25_ / 25.0);
  return c.frames;
}

std::vector<float> GeneratorImpl::decode_latent(const Tensor& latent,
                                                const GenerationCallbacks& callbacks) {
  std::lock_guard<std::mutex> lock(busy_);
  return decode_audio(latent, static_cast<int>(latent.dim(2)), callbacks);
}

std::vector<float> GeneratorImpl::decode_audio(const Tensor& latent, int audio_len,
                                               const GenerationCallbacks& callbacks) {
  const int64_t ta = latent.dim(2), hop = dac_->config().hop();
  FOLEY_CHECK(latent.rank() == 3 && ta == audio_len && latent.is_contiguous(),
              "latent %s for Ta %d", latent.describe().c_str(), audio_len);
  std::vector<float> out(static_cast<size_t>(ta * hop));
  // The DAC's work memory is the whole stage arena, the encoders' region included.
  const EncoderRegion::Hold region(region_, EncoderRegion::Who::kDac);
  if (ta <= max_ta_) {
    decode_audio_span(latent, 0, ta, out.data());
  } else {
    // Chunks of one span: each decodes `halo` frames of context on either side of the frames
    // it keeps, so every kept sample sees all it depends on, as in one long decode.
    const int64_t halo = dac_->halo_frames() + 1, keep = max_ta_ - 2 * halo;
    FOLEY_CHECK(keep >= 1, "a span of %d latent frames is too short for the DAC's halo %lld",
                max_ta_, static_cast<long long>(halo));
    const int chunks = static_cast<int>((ta + keep - 1) / keep);
    std::vector<float> piece(static_cast<size_t>(max_ta_ * hop));
    for (int c = 0; c < chunks; ++c) {
      if (callbacks.cancel && callbacks.cancel->load())
        throw Error(ErrorKind::kCancelled, "generation cancelled");
      const int64_t begin = c * keep, end = std::min(ta, begin + keep);
      const int64_t in_begin = std::max<int64_t>(0, begin - halo);
      const int64_t in_end = std::min(ta, end + halo);
      decode_audio_span(latent, in_begin, in_end - in_begin, piece.data());
      std::memcpy(out.data() + begin * hop, piece.data() + (begin - in_begin) * hop,
                  size_t((end - begin) * hop) * sizeof(float));
      if (callbacks.progress) callbacks.progress(GenerationProgress{"vae", c + 1, chunks});
    }
  }
  // Ta·960 samples at 48 kHz (model-spec §1.7: the reference's trim is a no-op).
  out.resize(static_cast<size_t>(std::min<int64_t>(ta * hop, int64_t{audio_len} * 960)));
  for (float v : out)
    if (!std::isfinite(v) || std::fabs(v) > 1.0f)
      throw Error(ErrorKind::kInternal, "the decoder produced samples outside [-1, 1]");
  return out;
}

void GeneratorImpl::decode_audio_span(const Tensor& latent, int64_t begin, int64_t count,
                                      float* out) {
  // The sampler's latent is channel-first [1, 128, Ta]; the DAC takes channel-last [1, T, 128].
  const int64_t c = latent.dim(1), ta = latent.dim(2), hop = dac_->config().hop();
  Tensor host = Tensor::empty({1, count, c}, DType::kF32);
  const float* src = latent.data<float>();
  float* dst = host.data<float>();
  for (int64_t t = 0; t < count; ++t)
    for (int64_t k = 0; k < c; ++k) dst[t * c + k] = src[k * ta + begin + t];
  Arena::Scope scope(*io_arena_);
  const Tensor lat = io_arena_->alloc({1, count, c}, DType::kF32);
  const Tensor audio = io_arena_->alloc({1, count * hop}, DType::kF32);
  backend_->copy_from_host(lat, host);
  dac_->decode(lat, audio, stage_arena());
  backend_->copy_to_host(Tensor(out, DType::kF32, {1, count * hop}, DeviceKind::kCPU), audio);
  backend_->synchronize();
}

}  // namespace pipeline
}  // namespace foley
