// The generation pipeline behind foley::Model / foley::Generator (include/foley/foley.h).
//
//   video ─decode (one pass, frames reduced on the fly to each encoder's input size)─►
//   SigLIP2 features [Tv, C] (8 fps) ─┐
//   Synchformer features [S·8, C] (25 fps) ─┼─► flow sampler (MMDiT, Euler, CFG) ─► latent
//   CLAP text [negative, prompt] ─┘                         [128, Ta] ─► DAC ─► Ta·960 samples
//
// Exactly the order and shapes of model-spec §1 and §3. Internal entry points below take decoded
// frames or ready features so that tests and warm-up can run without a video file.
//
// Threading: a Model is immutable after load except for one thing: WeightStore records which
// tensors a network took (for its strictness check), so network construction is serialised by
// the Model's mutex. After construction, Generators share only the mapped weights (read-only)
// and, on the CPU, the process-wide oneDNN primitive cache (locked internally) and OpenMP's
// thread team (each calling thread gets its own team). Everything a request writes (backend
// scratch, arenas, frame buffers, the DiT's per-request context) belongs to one Generator, so
// Generators can run concurrently in different threads. A Generator runs one request at a time,
// or with overlap_encoders one request's encoder stages beside another's denoising (its two
// lanes: docs/ARCHITECTURE.md, "Two lanes").
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "foley/foley.h"
#include "foley/media.h"
#include "models/clap_text.h"
#include "models/dac_decoder.h"
#include "models/flow_sampler.h"
#include "models/mmdit.h"
#include "models/siglip2_vision.h"
#include "models/synchformer.h"
#include "models/weight_store.h"
#include "text/bpe_tokenizer.h"

namespace foley::pipeline {

// The five networks a bundle must hold, by config/prefix name.
inline constexpr const char* kNetworks[] = {"dit", "dac", "clap", "siglip2", "synchformer"};

class ModelImpl final : public Model {
 public:
  ModelImpl(std::shared_ptr<WeightStore> store, ModelInfo info)
      : store_(std::move(store)), info_(std::move(info)) {}
  ModelInfo info() const override { return info_; }
  std::shared_ptr<const PreparedVideo> prepare_video(
      const std::string& video_path, const GenerationParams& params,
      const GeneratorOptions& options, const std::atomic<bool>* cancel) const override;
  const WeightStore& weights() const { return *store_; }
  // The store to build networks from for `backend`: the host store on the CPU; on CUDA a store
  // over the whole blob uploaded once to that device (first call per device, serialised) and
  // shared by every Generator there, so that networks use device views instead of copying each
  // tensor into their own arenas. The Model keeps only a weak reference: the device copy is
  // freed with the last Generator that uses it.
  std::shared_ptr<const WeightStore> weights_for(const Backend& backend, int device_index) const;
  // Held while networks are built from a store (see the threading note above).
  std::mutex& construction_mutex() const { return construction_; }

 private:
  std::shared_ptr<WeightStore> store_;
  ModelInfo info_;
  mutable std::mutex construction_;
  mutable std::mutex device_stores_mutex_;
  mutable std::map<int, std::weak_ptr<const WeightStore>> device_stores_;
};

// One clip's frames, already reduced to the encoders' input sizes: SigLIP2's PIL bilinear
// stretch to S×S and Synchformer's bicubic shorter-side resize + centre crop, both kept as U8.
// Running an encoder's own preprocessing again on these is the identity (a same-size resize has
// one tap of weight 1), so features equal those of the native-resolution frames; the pipeline
// test checks that bitwise.
struct ClipFrames {
  Tensor semantic;  // host U8 [Tv, S_siglip, S_siglip, 3]
  Tensor sync;      // host U8 [T25, S_sync, S_sync, 3]
  ClipTiming timing;
};

// One frame stream into a fixed buffer of frames reduced to size×size×3, whose slot 0 holds frame
// `base` of the clip.
struct FrameQueue {
  Tensor buffer;  // U8 [capacity, size, size, 3]
  int size = 0;
  int64_t capacity = 0, base = 0, filled = 0;
  size_t frame_bytes = 0;
  bool flushed = false;  // frames were consumed before the clip ended

  explicit FrameQueue(Tensor frames);
  uint8_t* slot(int64_t i) { return buffer.data<uint8_t>() + size_t(i) * frame_bytes; }
  // Drops the first `n` frames, moving the rest to the front.
  void consume(int64_t n);
};

// Decodes a clip up to `end_sec` (decode-work limits scaled for clips beyond the model's 15 s)
// into `semantic` (SigLIP2's PIL bilinear stretch) and `sync` (Synchformer's bicubic
// shorter-side resize and centre crop). A full queue calls its flush, which must consume frames
// or throw. Throws as decode_video_frames does, and kInvalidInput for a clip too short.
SamplingResult decode_clip_frames(const std::string& video_path, double end_sec,
                                  FrameQueue& semantic, FrameQueue& sync,
                                  const std::function<void()>& flush_semantic,
                                  const std::function<void()>& flush_sync);

// What Model::prepare_video returns: a short clip's frames, as GeneratorImpl::decode_clip
// leaves them in its buffers, for the generators of `model` with `max_tv`/`max_t25` frames.
struct PreparedClip final : PreparedVideo {
  const ModelImpl* model = nullptr;
  int max_tv = 0, max_t25 = 0;
  double end_sec = 0;
  ClipFrames frames;
  double seconds = 0;
  double audio_seconds() const override { return frames.timing.audio_seconds; }
  double decode_seconds() const override { return seconds; }
};

// Host F32 conditioning for the sampler (FlowConditions) plus the clip's latent length.
struct ClipFeatures {
  FlowConditions cond;
  int audio_len = 0;  // Ta
  double audio_seconds = 0;
  int t25 = 0;  // frames at 25 fps (0: round(audio_seconds·25)); places the windows of a long clip
};

// A decoded clip: a short one (up to the generator's span) as frames, exactly as before; a longer
// one already encoded while it was decoded (its frames never all exist at once: the frame
// buffers hold one span and are encoded and emptied whenever they fill).
struct DecodedClip {
  bool long_clip = false;
  ClipFrames frames;                            // short clip
  ClipFeatures features;                        // long clip: visual and sync features (no text yet)
  double visual_seconds = 0, sync_seconds = 0;  // encoder time spent inside the decode
};

// The denoising windows of a clip longer than one span (GeneratorOptions::window_seconds): one
// starts every 200 frames at 25 fps (8 s), where the 8 fps frames (64 per 8 s), the Synchformer
// segments (25 per 8 s, 8 rows each) and the latent (400 per 8 s) all begin together, so each
// window's rows are exactly those of a clip cut at its start. Every window is `window_t25`
// frames long except the last, which runs to the end (at most `max_t25`, more than
// max_t25 - 200). The clip has `t25` frames, `audio_len` latent frames, `visual_rows` clip rows
// and `sync_rows` = S·rows_per_segment sync rows. kInvalidInput if the clip does not fit.
std::vector<FlowWindow> plan_windows(int t25, int64_t audio_len, int64_t visual_rows,
                                     int64_t sync_rows, int rows_per_segment, int window_t25,
                                     int max_t25, int max_tv);

struct ArenaStat {
  std::string name;
  size_t reserved = 0;
  size_t high_water = 0;
  bool frozen = false;
};

// What each stage needs of the Generator's shared stage arena, in bytes (arena offsets: block
// tails skipped while measuring count too). The arena holds the largest, not the sum.
struct StageArenaNeeds {
  size_t visual = 0;  // SigLIP2 on one chunk: workspace_bytes, or warm-up's peak if larger
  size_t sync = 0;    // Synchformer on one chunk, likewise
  size_t text = 0;    // CLAP's activations for 2 × its longest text (measured by reserve)
  size_t step = 0;    // one DiT forward at the sampler's limits (Mmdit::step_arena_bytes)
  size_t dac = 0;     // the DAC at the longest latent (measured by reserve)
  size_t largest() const;
  size_t sum() const;
};

// Who may use the stage arena's encoder region (GeneratorOptions::overlap_encoders): one
// request's encoder stages at a time, or the DAC, which needs the whole stage arena. A waiting DAC
// goes before the next request's encoders, so a finished denoising is never held back by more
// than the encoders already running.
class EncoderRegion {
 public:
  enum class Who { kEncoders, kDac };
  // Holds the region for the scope.
  class Hold {
   public:
    Hold(EncoderRegion& region, Who who);
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    EncoderRegion& region_;
  };

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool held_ = false;
  int dac_waiting_ = 0;
};

// FOLEY_SIDE_BY_SIDE_ENCODERS=1 (read when a Generator is made): with overlap_encoders, SigLIP2
// and Synchformer run at once on backends of their own, in parts of the encoder region side by
// side (XXL: 26 MB more stage arena, one more 32 MB GEMM workspace), same bits. Opt-in until a
// device run measures it.
bool side_by_side_encoders();

class GeneratorImpl final : public Generator {
 public:
  GeneratorImpl(std::shared_ptr<const ModelImpl> model, const GeneratorOptions& options,
                std::unique_ptr<Backend> backend);
  ~GeneratorImpl() override;

  void warm_up() override;
  GenerationResult generate(const std::string& video_path, const GenerationParams& params,
                            const GenerationCallbacks& callbacks = {}) override;
  GenerationResult generate_text(const GenerationParams& params,
                                 const GenerationCallbacks& callbacks = {}) override;
  std::vector<BatchItemResult> generate_batch(
      const std::vector<GenerationRequest>& requests) override;
  std::string device_name() const override;
  int64_t device_bytes() const override;
  Memory memory() const override;

  // ---- internal entry points (tests, warm-up) -----------------------------------------------
  // Everything after decoding. `frames` may be views of this generator's frame buffers.
  GenerationResult generate_frames(const ClipFrames& frames, const GenerationParams& params,
                                   const GenerationCallbacks& callbacks = {});
  // Only the "denoise" and "vae" stages; `noise` [1, 128, Ta] or nullptr (drawn from the seed).
  GenerationResult generate_features(const ClipFeatures& features, const GenerationParams& params,
                                     const GenerationCallbacks& callbacks = {},
                                     const Tensor* noise = nullptr);
  // The "visual", "sync" and "text" stages on decoded frames: a request's conditions (to
  // compare precisions, say).
  ClipFeatures features_of(const ClipFrames& frames, const GenerationParams& params);
  // Decodes a file into this generator's frame buffers (valid until the next decode); a clip
  // longer than the buffers is refused (decode_clip takes those).
  ClipFrames decode(const std::string& video_path, double max_clip_seconds);
  // Decodes a clip of any length up to max_video_seconds: a short one into the frame buffers, a
  // long one encoded as its frames arrive (see DecodedClip).
  DecodedClip decode_clip(const std::string& video_path, double max_clip_seconds,
                          const std::atomic<bool>* cancel = nullptr);
  // The conditions of a text-only request of `t25` frames at 25 fps: the learned empty visual
  // and sync features at that clip's lengths (text not yet encoded).
  ClipFeatures empty_video_features(int t25) const;
  // The DAC on a latent [1, 128, Ta] of any length (in overlapping chunks beyond one span):
  // Ta·960 samples.
  std::vector<float> decode_latent(const Tensor& latent, const GenerationCallbacks& callbacks = {});
  // The windows a clip with these features is denoised in (one for a short clip).
  std::vector<FlowWindow> windows_for(const ClipFeatures& features) const;
  // A deterministic synthetic clip of `t25` frames at 25 fps and `tv` at 8 fps (own buffers).
  ClipFrames synthetic_clip(int tv, int t25) const;

  std::vector<ArenaStat> arena_stats() const;
  const StageArenaNeeds& stage_arena_needs() const { return stage_needs_; }
  // How long the parts of the last warm_up() took, in order: "encoders" (one chunk of each),
  // "text", "freeze" (the stage arena), "denoise" (2 steps at the largest shape: the first
  // eager, the second recorded as a graph), "vae", "batches" (with max_batch > 1: the DiT in
  // batches of requests, see warm_up_batches) and "total" (the whole warm-up, so the rest is the
  // difference).
  const std::vector<StageTiming>& warm_up_timings() const { return warm_up_timings_; }
  int max_semantic_frames() const { return max_tv_; }
  int max_sync_frames() const { return max_t25_; }
  int max_latent_frames() const { return max_ta_; }
  // The largest sampler request: CFG batch 2·max_batch at the longest latent, visual, text and
  // sync lengths.
  FlowLimits flow_limits() const;
  int max_batch() const { return options_.max_batch; }
  const FlowWorkspace& flow_workspace() const { return *flow_; }
  const Siglip2Vision& siglip() const { return *siglip_; }
  const Synchformer& synchformer() const { return *sync_; }
  const Mmdit& dit() const { return *dit_; }
  const DacDecoder& dac() const { return *dac_; }
  const ClapTextModel& clap() const { return *clap_; }
  const BpeTokenizer& tokenizer() const { return *tokenizer_; }
  Backend& backend() const { return *backend_; }
  // SigLIP2's and CLAP's backend, and Synchformer's: with overlap_encoders one more for all
  // three (two more with side_by_side_encoders(): Synchformer's own), else backend().
  Backend& encoder_backend() const { return *encoder_be_; }
  Backend& sync_backend() const { return *sync_be_; }
  // True once warm_up() has set the encoders up to run beside the denoising.
  bool lanes_open() const { return lanes_open_.load(); }

 private:
  struct Run;  // one request's timings, callbacks and cancellation (below)
  // Held by a request's encoder stages: the encoder region, and the denoise lane (busy_) too
  // while the lanes are not open. Lock order: busy_, then the region.
  class EncoderLane {
   public:
    explicit EncoderLane(GeneratorImpl& g);
    ~EncoderLane();
    EncoderLane(const EncoderLane&) = delete;
    EncoderLane& operator=(const EncoderLane&) = delete;

   private:
    std::unique_lock<std::mutex> denoise_;
    EncoderRegion::Hold region_;
  };

  // The stages before denoising, for a video (decode, visual, sync, text) or a text-only
  // request (text): the request's conditions, checked. A video decoded ahead (`prepared`, from
  // Model::prepare_video; may be null) skips the decoding.
  ClipFeatures request_features(Run& run, const std::string& video_path,
                                const GenerationParams& params, bool text_only,
                                const PreparedVideo* prepared = nullptr);
  ClipFeatures frame_features(Run& run, const ClipFrames& frames, const GenerationParams& params);
  // One request through both lanes: `encode()` (its conditions) in the encoder lane, then
  // run_features in the denoise lane.
  template <typename Encode>
  GenerationResult in_lanes(Run& run, const GenerationParams& params, Encode&& encode);
  // With the lanes open and side_by_side_encoders(): SigLIP2 and Synchformer at once (two
  // threads, two backends), into f.
  void encode_side_by_side(Run& run, const ClipFrames& frames, ClipFeatures& f);
  void check_latent_length(const ClipFeatures& features) const;
  // Decodes the videos of `members` (indices of `requests`) on a few threads into
  // prepared[i] (null for a clip beyond the span); a failure becomes out[i].error (batch.cpp).
  void decode_ahead(const std::vector<size_t>& members, std::vector<Run>& runs,
                    const std::vector<GenerationRequest>& requests,
                    std::vector<std::shared_ptr<const PreparedVideo>>& prepared,
                    std::vector<BatchItemResult>& out);
  // Denoises requests of equal lengths together (flow_sample_batch) and decodes each one's
  // audio; `members` index `runs`, `features`, `params` and `out` (batch.cpp).
  void run_batch(const std::vector<size_t>& members, std::vector<Run>& runs,
                 const std::vector<ClipFeatures>& features,
                 const std::vector<GenerationRequest>& requests, std::vector<BatchItemResult>& out);
  // Runs the DiT at the largest shape in batches of 2..max_batch requests, `steps` steps each
  // (warm-up: sizes the backend's scratch and records each batch size's step).
  void warm_up_batches(const ClipFeatures& f, int steps);
  GenerationResult run_features(Run& run, const ClipFeatures& features,
                                const GenerationParams& params, const Tensor* noise);
  Tensor encode_visual(const ClipFrames& frames);
  Tensor encode_sync(const ClipFrames& frames);
  void encode_text(const GenerationParams& params, Tensor& text, Tensor& uncond_text);
  Tensor denoise(Run& run, const ClipFeatures& features, const GenerationParams& params,
                 const Tensor* noise, const std::vector<FlowWindow>& windows);
  // Frames at 25 fps of the longest clip accepted (max_video_seconds).
  int max_video_t25() const;
  std::vector<float> decode_audio(const Tensor& latent, int audio_len,
                                  const GenerationCallbacks& callbacks);
  // decode_audio of latent frames [begin, begin + count) into out[begin·hop ...), count at most
  // one span.
  void decode_audio_span(const Tensor& latent, int64_t begin, int64_t count, float* out);
  // The stage arena for the next stage: checked empty (the stages never overlap).
  Arena& stage_arena();
  // Where the encoder stages work: the encoder region once the lanes are open, else
  // stage_arena(). SigLIP2 and Synchformer each have a part of it of their own (they run side
  // by side there); CLAP takes the whole region after them.
  Arena& encoder_arena();
  Arena& visual_arena();
  Arena& sync_arena();
  // With overlap_encoders, after warm-up froze the stage arena: the encoder region's arena over
  // its bytes past the step's, and the lanes open.
  void open_lanes();
  // With the lanes open, after sampling (the stage arena's peak restarted before it): throws if
  // the step reached into the encoder region, which would have raced the encoders.
  void check_step_region() const;
  // The stage arena's size: the largest stage, or with overlap_encoders the encoder region's
  // end beyond the step if that is more.
  size_t stage_arena_bytes() const;
  // The encoder region: the largest encoder's need, or with side_by_side_encoders() SigLIP2's
  // and Synchformer's side by side (or CLAP's, if larger).
  size_t encoder_region_bytes() const;
  // Freezes the stage arena at the largest need (or its high-water mark, if more) before the
  // sampler first runs: its recorded steps point into it (warm-up, or a first request).
  void freeze_stage_arena();

  std::shared_ptr<const ModelImpl> model_;
  GeneratorOptions options_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Backend> own_encoder_backend_, own_sync_backend_;  // with overlap_encoders
  Backend* encoder_be_ = nullptr;                                    // SigLIP2's and CLAP's backend
  Backend* sync_be_ = nullptr;                                       // Synchformer's
  std::shared_ptr<const WeightStore> weights_;  // the networks' store: host, or on the device
  std::unique_ptr<Siglip2Vision> siglip_;
  std::unique_ptr<Synchformer> sync_;
  std::unique_ptr<ClapTextModel> clap_;
  std::unique_ptr<BpeTokenizer> tokenizer_;
  std::unique_ptr<Mmdit> dit_;
  std::unique_ptr<DacDecoder> dac_;

  int max_tv_ = 0, max_t25_ = 0, max_ta_ = 0;
  // The work memory of the stages, which run one after another and never overlap: SigLIP2,
  // Synchformer, CLAP's activations, the DiT's step activations (the FlowWorkspace borrows it)
  // and the DAC. One block of the largest need, in growth mode until warm-up (or the first
  // sampling) freezes it. What outlives a stage, or lives beside one, has its own arena:
  // text_out (CLAP's output), io (the DAC's latent and audio), the sampler's inputs and context.
  std::unique_ptr<Arena> stage_arena_;
  StageArenaNeeds stage_needs_;
  // overlap_encoders: the encoders' part of the stage arena, past what a denoising step uses
  // (a view: it owns no memory), its offset, and the turns the encoders and the DAC take on it.
  std::unique_ptr<Arena> encoder_arena_, visual_arena_, sync_arena_;
  bool side_by_side_ = false;  // overlap_encoders and FOLEY_SIDE_BY_SIDE_ENCODERS=1
  EncoderRegion region_;
  std::atomic<bool> lanes_open_{false};
  std::unique_ptr<Arena> text_out_arena_, io_arena_;
  // The sampler's device memory (inputs, DiT context; the step in stage_arena_) for CFG batch 2
  // at the longest lengths, and its recorded denoising steps; declared after the backend, the
  // DiT and the stage arena, which its graphs refer to, so it is destroyed first.
  std::unique_ptr<FlowWorkspace> flow_;
  std::vector<StageTiming> warm_up_timings_;
  // Host frame buffers for the longest clip: [max_tv, S, S, 3] and [max_t25, S', S', 3].
  Tensor semantic_buffer_, sync_buffer_;
  // The denoise lane: one request's denoising and DAC at a time (and everything of a request
  // until the lanes are open).
  std::mutex busy_;
};

// One request's timings, callbacks and cancellation checks as its stages run.
struct GeneratorImpl::Run {
  const GenerationCallbacks& callbacks;
  std::vector<StageTiming> timings;

  void check_cancel() const {
    if (callbacks.cancel && callbacks.cancel->load())
      throw Error(ErrorKind::kCancelled, "generation cancelled");
  }
  void report(const char* stage, int step = 0, int total = 0, int window = 0,
              int windows = 1) const {
    if (callbacks.progress)
      callbacks.progress(GenerationProgress{stage, step, total, window, windows});
  }
  // Runs one stage: cancellation check, progress, timing.
  template <typename F>
  auto stage(const char* name, F&& body, int total_steps = 0, int windows = 1) {
    check_cancel();
    report(name, 0, total_steps, 0, windows);
    const auto t0 = std::chrono::steady_clock::now();
    auto result = body();
    timings.push_back(
        {name, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()});
    return result;
  }
};

// Parameter checks shared by generate and the CLI's batch mode: Error(kInvalidInput) naming the
// field. `generator_max_seconds` bounds max_clip_seconds.
void validate_params(const GenerationParams& params, double generator_max_seconds);
// How much a long clip's audio stands out where windows start or end: for each of those places,
// the mean squared first difference in ±5 ms around it over the median of the same at 25, 50,
// ..., 250 ms either side (its own neighbourhood, so louder passages elsewhere do not count),
// averaged over the places. About 1 without seams; a click or a broken tone at a join raises it.
// `hop` is audio samples per latent frame. 1 when there is only one window.
double seam_ratio(const std::vector<float>& audio, const std::vector<FlowWindow>& windows,
                  int hop = 960, int sample_rate = 48000);
// True if `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool valid_utf8(const std::string& s);

}  // namespace foley::pipeline
