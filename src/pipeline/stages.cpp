// The request path: decode -> SigLIP2 -> Synchformer -> CLAP text -> flow sampler -> DAC, with
// per-stage timings, progress and cancellation (model-spec §1, §3).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>
#include <utility>

#include "core/check.h"
#include "models/text_features.h"
#include "pipeline/pipeline.h"

namespace foley {
namespace pipeline {
namespace {

// The rows of host F32 `src` [n, C] repeated in order up to [rows, C].
Tensor tile_rows(const Tensor& src, int64_t rows) {
  const int64_t n = src.dim(0), c = src.dim(1);
  FOLEY_CHECK(src.rank() == 2 && n > 0 && src.is_contiguous(), "tile_rows of %s",
              src.describe().c_str());
  Tensor out = Tensor::empty({rows, c}, DType::kF32);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out.data<float>() + r * c, src.data<float>() + (r % n) * c,
                size_t(c) * sizeof(float));
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

template <typename Encode>
GenerationResult GeneratorImpl::in_lanes(Run& run, const GenerationParams& params,
                                         Encode&& encode) {
  ClipFeatures f;
  {
    const EncoderLane lane(*this);
    f = encode();
  }
  std::lock_guard<std::mutex> lock(busy_);
  return run_features(run, f, params, nullptr);
}

GenerationResult GeneratorImpl::generate(const std::string& video_path,
                                         const GenerationParams& params,
                                         const GenerationCallbacks& callbacks) {
  Run run{callbacks, {}};
  return in_lanes(run, params, [&] { return request_features(run, video_path, params, false); });
}

GenerationResult GeneratorImpl::generate_text(const GenerationParams& params,
                                              const GenerationCallbacks& callbacks) {
  Run run{callbacks, {}};
  return in_lanes(run, params, [&] { return request_features(run, "", params, true); });
}

ClipFeatures GeneratorImpl::request_features(Run& run, const std::string& video_path,
                                             const GenerationParams& params, bool text_only,
                                             const PreparedVideo* prepared) {
  validate_params(params, options_.max_video_seconds);
  if (text_only) {
    if (!std::isfinite(params.seconds) || params.seconds < 0.64 ||
        params.seconds > options_.max_video_seconds)
      throw make_error(ErrorKind::kInvalidInput, "seconds must be in [0.64, %g], got %g",
                       options_.max_video_seconds, params.seconds);
    ClipFeatures f = empty_video_features(static_cast<int>(std::lround(params.seconds * 25.0)));
    run.stage("text", [&] {
      encode_text(params, f.cond.text, f.cond.uncond_text);
      return 0;
    });
    return f;
  }
  run.check_cancel();
  const double end_sec =
      params.max_clip_seconds > 0 ? params.max_clip_seconds : options_.max_video_seconds;
  // A video decoded ahead reported its "decode" then, if at all.
  if (prepared) {
    const auto* clip = dynamic_cast<const PreparedClip*>(prepared);
    if (!clip || clip->model != model_.get() || clip->max_tv != max_tv_ ||
        clip->max_t25 != max_t25_ || clip->end_sec != end_sec)
      throw Error(ErrorKind::kInvalidInput,
                  "the prepared video was decoded for another model, generator options or "
                  "max_clip_seconds");
    run.timings.push_back({"decode", clip->seconds});
    return frame_features(run, clip->frames, params);
  }
  run.report("decode");
  const auto t0 = std::chrono::steady_clock::now();
  DecodedClip clip = decode_clip(video_path, end_sec, run.callbacks.cancel);
  const double decode_seconds = seconds_since(t0);
  if (!clip.long_clip) {
    run.timings.push_back({"decode", decode_seconds});
    return frame_features(run, clip.frames, params);
  }
  // A long clip was encoded while it decoded: the encoders' share is reported as their stages.
  run.timings.push_back({"decode", decode_seconds - clip.visual_seconds - clip.sync_seconds});
  run.timings.push_back({"visual", clip.visual_seconds});
  run.timings.push_back({"sync", clip.sync_seconds});
  ClipFeatures& f = clip.features;
  run.stage("text", [&] {
    encode_text(params, f.cond.text, f.cond.uncond_text);
    return 0;
  });
  return std::move(f);
}

GenerationResult GeneratorImpl::generate_frames(const ClipFrames& frames,
                                                const GenerationParams& params,
                                                const GenerationCallbacks& callbacks) {
  validate_params(params, options_.max_video_seconds);
  Run run{callbacks, {}};
  return in_lanes(run, params, [&] { return frame_features(run, frames, params); });
}

ClipFeatures GeneratorImpl::features_of(const ClipFrames& frames, const GenerationParams& params) {
  const EncoderLane lane(*this);
  validate_params(params, options_.max_video_seconds);
  const GenerationCallbacks none;
  Run run{none, {}};
  return frame_features(run, frames, params);
}

GenerationResult GeneratorImpl::generate_features(const ClipFeatures& features,
                                                  const GenerationParams& params,
                                                  const GenerationCallbacks& callbacks,
                                                  const Tensor* noise) {
  std::lock_guard<std::mutex> lock(busy_);
  validate_params(params, options_.max_video_seconds);
  Run run{callbacks, {}};
  return run_features(run, features, params, noise);
}

ClipFeatures GeneratorImpl::frame_features(Run& run, const ClipFrames& frames,
                                           const GenerationParams& params) {
  if (frames.semantic.dim(0) > max_tv_ || frames.sync.dim(0) > max_t25_ ||
      frames.timing.sync_frames != frames.sync.dim(0))
    throw make_error(ErrorKind::kInvalidInput,
                     "clip of %lld/%lld frames does not fit this generator (at most %d/%d)",
                     static_cast<long long>(frames.semantic.dim(0)),
                     static_cast<long long>(frames.sync.dim(0)), max_tv_, max_t25_);
  ClipFeatures f;
  f.audio_len = frames.timing.latent_frames;
  f.audio_seconds = frames.timing.audio_seconds;
  if (lanes_open_ && side_by_side_) {
    encode_side_by_side(run, frames, f);
  } else {
    f.cond.clip = run.stage("visual", [&] { return encode_visual(frames); });
    f.cond.sync = run.stage("sync", [&] { return encode_sync(frames); });
  }
  run.stage("text", [&] {
    encode_text(params, f.cond.text, f.cond.uncond_text);
    return 0;
  });
  return f;
}

void GeneratorImpl::encode_side_by_side(Run& run, const ClipFrames& frames, ClipFeatures& f) {
  // Each on its own backend (stream) and part of the encoder region; the stages' times
  // overlap, so they add up to more than the wall time.
  run.check_cancel();
  run.report("visual");
  run.report("sync");
  double sync_seconds = 0;
  std::exception_ptr sync_error;
  std::thread sync_thread([&] {
    try {
      const auto t0 = std::chrono::steady_clock::now();
      f.cond.sync = encode_sync(frames);
      sync_seconds = seconds_since(t0);
    } catch (...) {
      sync_error = std::current_exception();
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  std::exception_ptr visual_error;
  try {
    f.cond.clip = encode_visual(frames);
  } catch (...) {
    visual_error = std::current_exception();
  }
  const double visual_seconds = seconds_since(t0);
  sync_thread.join();
  if (visual_error) std::rethrow_exception(visual_error);
  if (sync_error) std::rethrow_exception(sync_error);
  run.timings.push_back({"visual", visual_seconds});
  run.timings.push_back({"sync", sync_seconds});
}

void GeneratorImpl::check_latent_length(const ClipFeatures& features) const {
  const int max_latent = clip_timing(max_video_t25()).latent_frames;
  if (features.audio_len < 1 || features.audio_len > max_latent)
    throw make_error(ErrorKind::kInvalidInput, "latent length %d is outside 1..%d",
                     features.audio_len, max_latent);
}

GenerationResult GeneratorImpl::run_features(Run& run, const ClipFeatures& features,
                                             const GenerationParams& params, const Tensor* noise) {
  check_latent_length(features);
  const std::vector<FlowWindow> windows = windows_for(features);
  const Tensor latent = run.stage(
      "denoise", [&] { return denoise(run, features, params, noise, windows); }, params.steps,
      static_cast<int>(windows.size()));
  std::vector<float> audio =
      run.stage("vae", [&] { return decode_audio(latent, features.audio_len, run.callbacks); });
  GenerationResult r;
  r.windows = static_cast<int>(windows.size());
  r.audio = std::move(audio);
  r.sample_rate = dac_->config().sample_rate;
  r.audio_seconds = features.audio_seconds;
  r.timings = std::move(run.timings);
  return r;
}

// The backend's fast F32 math on for one video-encoder call when the generator runs
// Precision::kFast (and back as it was after).
class EncoderPrecision {
 public:
  EncoderPrecision(Backend& be, Precision p) : be_(be), was_(be.fast_f32_matmul()) {
    if (p == Precision::kFast) be_.set_fast_f32_matmul(true);
  }
  ~EncoderPrecision() { be_.set_fast_f32_matmul(was_); }
  EncoderPrecision(const EncoderPrecision&) = delete;
  EncoderPrecision& operator=(const EncoderPrecision&) = delete;

 private:
  Backend& be_;
  bool was_;
};

Tensor GeneratorImpl::encode_visual(const ClipFrames& frames) {
  const EncoderPrecision precision(*encoder_be_, options_.precision);
  const Tensor out = siglip_->encode_frames(frames.semantic, visual_arena());
  return out.reshape({out.dim(1), out.dim(2)});
}

Tensor GeneratorImpl::encode_sync(const ClipFrames& frames) {
  const EncoderPrecision precision(*sync_be_, options_.precision);
  const Tensor out = sync_->encode_frames(frames.sync, sync_arena());
  return out.reshape({out.dim(1), out.dim(2)});
}

void GeneratorImpl::encode_text(const GenerationParams& params, Tensor& text, Tensor& uncond_text) {
  // The text tower has a fixed position table; a longer batch is refused up front (the
  // reference has no truncation either, model-spec §1.4).
  const int64_t length = tokenizer_->encode_batch({params.negative_prompt, params.prompt}).length;
  const int max_length = clap_->config().max_length();
  if (length > max_length)
    throw make_error(ErrorKind::kInvalidInput,
                     "prompt is too long: %lld tokens with the negative prompt's padding, the "
                     "text encoder takes at most %d",
                     static_cast<long long>(length), max_length);
  Arena::Scope scope(*text_out_arena_);
  const TextFeatures f =
      encode_text_features(*tokenizer_, *clap_, params.prompt, params.negative_prompt,
                           *text_out_arena_, encoder_arena());
  Tensor hidden = Tensor::empty(f.hidden.shape(), DType::kF32);
  encoder_be_->copy_to_host(hidden, f.hidden);
  encoder_be_->synchronize();
  // text_feat = hidden[1:, :77], uncond_text_feat = hidden[:1, :77], as contiguous [keep, H].
  const int64_t keep = f.cond.dim(1), h = hidden.dim(2), l = hidden.dim(1);
  text = Tensor::empty({keep, h}, DType::kF32);
  uncond_text = Tensor::empty({keep, h}, DType::kF32);
  std::memcpy(uncond_text.data<float>(), hidden.data<float>(), size_t(keep * h) * sizeof(float));
  std::memcpy(text.data<float>(), hidden.data<float>() + l * h, size_t(keep * h) * sizeof(float));
}

Tensor GeneratorImpl::denoise(Run& run, const ClipFeatures& features,
                              const GenerationParams& params, const Tensor* noise,
                              const std::vector<FlowWindow>& windows) {
  FlowSampleParams sp;
  sp.steps = params.steps;
  sp.guidance = params.guidance;
  sp.seed = params.seed;
  FlowCallbacks fc;
  fc.cancel = run.callbacks.cancel;
  fc.progress = [&](int done, int total) { run.report("denoise", done, total); };
  freeze_stage_arena();  // normally done by warm-up already
  stage_arena_->restart_peak();
  Tensor latent;
  if (windows.size() == 1) {
    latent = flow_sample(*dit_, features.cond, sp, features.audio_len, noise, *flow_, fc);
  } else {
    const int n = static_cast<int>(windows.size());
    fc.progress = [&](int done, int total) { run.report("denoise", done, total, 0, n); };
    fc.window_progress = [&](int step, int total, int window, int) {
      if (window < n) run.report("denoise", step - 1, total, window, n);
    };
    latent = flow_sample_windows(*dit_, features.cond, sp, features.audio_len, windows, noise,
                                 *flow_, fc);
  }
  check_step_region();
  return latent;
}

void GeneratorImpl::warm_up() {
  std::lock_guard<std::mutex> lock(busy_);
  const auto start = std::chrono::steady_clock::now();
  std::vector<StageTiming> parts;
  auto timed = [&](const char* name, auto&& body) {
    const auto t0 = std::chrono::steady_clock::now();
    body();
    parts.push_back({name, seconds_since(t0)});
  };
  const GenerationCallbacks none;
  Run run{none, {}};
  GenerationParams p;
  p.steps = 2;        // the first step of a shape runs eagerly, the second records its graph
  p.guidance = 4.5f;  // CFG on: the batch of 2 is the larger one
  p.max_clip_seconds = options_.max_clip_seconds;
  // The encoders run fixed-size chunks, so one full chunk each sizes their workspaces for any
  // clip length: a short clip of SigLIP2's chunk of frames and Synchformer's chunk of segments.
  // Each one's peak in the stage arena is its need (if more than its estimate, the arena grew).
  const SynchformerConfig& sc = sync_->config();
  const int t25 = std::min(max_t25_, sc.segment + (Synchformer::kDefaultChunk - 1) * sc.stride);
  const int tv = std::min(max_tv_, Siglip2Vision::kDefaultChunk);
  Tensor clip, sync;
  ClipFeatures f;
  {
    // busy_ keeps other requests out until the lanes open; a second warm-up needs the region.
    const EncoderRegion::Hold region(region_, EncoderRegion::Who::kEncoders);
    Arena& visual_work = lanes_open_ ? *visual_arena_ : *stage_arena_;
    Arena& sync_work = lanes_open_ ? *sync_arena_ : *stage_arena_;
    Arena& text_work = lanes_open_ ? *encoder_arena_ : *stage_arena_;
    timed("encoders", [&] {
      const ClipFrames frames = synthetic_clip(tv, t25);
      visual_work.restart_peak();
      clip = encode_visual(frames);
      stage_needs_.visual = std::max(stage_needs_.visual, visual_work.peak());
      sync_work.restart_peak();
      sync = encode_sync(frames);
      stage_needs_.sync = std::max(stage_needs_.sync, sync_work.peak());
    });
    timed("text", [&] {
      text_work.restart_peak();
      encode_text(p, f.cond.text, f.cond.uncond_text);
      stage_needs_.text = std::max(stage_needs_.text, text_work.peak());
    });
    // The warm-up prompt is short; the text output arena is reserved for the longest text,
    // which is taken once here so that its high-water mark is final too.
    const ClapTextConfig& cc = clap_->config();
    Arena::Scope scope(*text_out_arena_);
    text_out_arena_->alloc({2, cc.max_length(), cc.hidden_size}, DType::kF32);
  }
  // Before the sampler first runs: its recorded step points into the stage arena.
  timed("freeze", [&] { freeze_stage_arena(); });
  // The DiT, the sampler and the DAC at the largest shape: the short clip's features repeated
  // to the longest clip's lengths (real features keep the networks in their usual range).
  const ClipTiming longest = clip_timing(max_t25_);
  const int64_t sync_per_segment = sync.dim(0) / clip_timing(t25).sync_segments;
  f.audio_len = longest.latent_frames;
  f.audio_seconds = longest.audio_seconds;
  f.cond.clip = tile_rows(clip, max_tv_);
  f.cond.sync = tile_rows(sync, longest.sync_segments * sync_per_segment);
  // And the longest text the DiT takes, so the sampler's graph is recorded at the largest shape.
  const int64_t text_len = flow_limits().text_len;
  f.cond.text = tile_rows(f.cond.text, text_len);
  f.cond.uncond_text = tile_rows(f.cond.uncond_text, text_len);
  FOLEY_CHECK(f.audio_len == max_ta_, "warm-up latent length %d, expected %d", f.audio_len,
              max_ta_);
  const GenerationResult r = run_features(run, f, p, nullptr);
  for (const StageTiming& t : r.timings) parts.push_back(t);  // "denoise", "vae"
  // The default schedule's timestep rows, so that the first request computes none.
  timed("schedule", [&] { flow_->precompute_schedule(GenerationParams{}.steps); });
  // Batches of requests at the largest shape (GeneratorOptions::max_batch).
  if (options_.max_batch > 1) timed("batches", [&] { warm_up_batches(f, p.steps); });
  // From here on one request's encoders may run beside another's denoising.
  if (options_.overlap_encoders && !lanes_open_) open_lanes();
  parts.push_back({"total", seconds_since(start)});
  warm_up_timings_ = std::move(parts);
}

}  // namespace pipeline
}  // namespace foley
