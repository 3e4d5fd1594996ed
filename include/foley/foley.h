// The public API of the foley library. Tools (CLI, server) include only headers under foley/.
//
// Two objects, as in whisper.cpp's model/state split:
// - Model: the immutable part. Maps one converted bundle (`foley convert`), validates it and keeps
//   the weights shared. Thread-safe; load once per process.
// - Generator: the per-worker part. Owns one compute backend (CPU or one CUDA device), the
//   networks bound to it and every arena a request needs, sized for the longest clip at creation
//   (and frozen by warm_up()). One Generator runs one request at a time, or one batch of
//   requests (generate_batch, up to GeneratorOptions::max_batch denoised together); with
//   GeneratorOptions::overlap_encoders, two callers at once (one encoding, one denoising). After
//   warm_up() the request path allocates no device memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "foley/error.h"
#include "foley/weights.h"

namespace foley {

const char* version();

enum class DeviceType { kCpu, kCuda };

struct ModelOptions {
  std::string bundle_path;  // the .safetensors bundle written by `foley convert`
};

// How the video encoders compute (GeneratorOptions::precision).
enum class Precision {
  // The reference's precision everywhere: SigLIP2 in F32, Synchformer as its bundle stores it
  // (F32, or F16 weights as the reference's fp16 autocast), the DiT bf16 as its autocast.
  kExact,
  // SigLIP2's and Synchformer's F32 products (linears, attention, patch embeddings) in TF32 on
  // CUDA: faster, not equal to the reference (BENCHMARKS.md, "Precision fast", gives the
  // distance). The text encoder, the DiT and the DAC are unchanged. The CPU has no faster F32
  // math: there kFast computes exactly what kExact does.
  kFast,
};

struct GeneratorOptions {
  DeviceType device = DeviceType::kCpu;
  int device_index = 0;
  // Longest span the networks see at once (seconds, at most the model's trained 15 s); every
  // arena is sized for it. A clip up to this long runs in one piece, exactly as the official
  // pipeline; a longer one in windows (window_seconds below).
  double max_clip_seconds = 15.0;
  // Longest clip accepted at all (seconds of video or of text-only audio). Memory does not grow
  // with it beyond the latent, the features and the output audio themselves.
  double max_video_seconds = 600.0;
  // Clips longer than max_clip_seconds are sampled in overlapping windows of this length that
  // start every 8 s (where the 8 fps, 25 fps and Synchformer-segment grids all meet, so each
  // window sees exactly the conditions of a clip cut there) and are fused at every denoising
  // step; the overlap is window_seconds - 8. In (8, max_clip_seconds]. 9 s (1 s of overlap) was
  // measured as seamless as 10 s and 1.2x cheaper (BENCHMARKS.md, "Long clips").
  double window_seconds = 9.0;
  // The most requests generate_batch denoises together (1..32): the sampler's memory and the
  // DiT's step activations are sized for CFG batch 2·max_batch at the longest clip, so memory
  // for the denoising grows with it (the encoders and the DAC run one request at a time and do
  // not). 1 (the default): no batching, the memory of one request.
  int max_batch = 1;
  Precision precision = Precision::kExact;
  // Two lanes on one Generator. The encoder stages (decode, SigLIP2, Synchformer, CLAP) run on a
  // backend of their own (on CUDA: a second stream), in a region of the stage arena beside the
  // DiT's step activations, so that one request's encoders run while another request's
  // denoising runs: call generate / generate_text / generate_batch from two threads at once (a
  // server leases such a generator twice). Takes effect with warm_up(); until then requests run
  // one after another. The DAC uses the whole stage arena, so it and the encoders take turns
  // (the DAC first). Each request's result is the same, bit for bit. Memory: the stage arena is
  // at least the step plus the largest encoder's work (XXL at 15 s: within the DAC's need, so no
  // more), and the second backend's GEMM workspace (32 MB on CUDA). FOLEY_SIDE_BY_SIDE_ENCODERS=1
  // also runs SigLIP2 and Synchformer at once (pipeline.h; opt-in, not yet measured on a GPU).
  bool overlap_encoders = false;
};

// What one request asks for. Every field is validated by Generator::generate (kInvalidInput with
// a message naming the field for nonsense values).
struct GenerationParams {
  std::string prompt;                            // may be empty
  std::string negative_prompt = "noisy, harsh";  // the official default
  int steps = 50;                                // 1..200
  float guidance = 4.5f;                         // 0..30; <= 1 disables CFG
  uint64_t seed = 0;
  // Video seconds used (end_sec), at most the generator's max_video_seconds; 0 (the default):
  // the whole clip, up to that limit. The official pipeline stops at 15 s.
  double max_clip_seconds = 0;
  // Text-only generation (Generator::generate_text): the length of the audio in seconds
  // (0.64 .. max_video_seconds). Ignored when a video is given.
  double seconds = 0;
};

// Progress of one request: stage names are "decode", "visual", "sync", "text", "denoise", "vae".
// During "denoise", step/total_steps count finished steps. A long clip is denoised in
// total_windows overlapping windows: each step runs every window once, and `window` counts the
// windows of the step now running that are done (0 for a short clip, and right after a step),
// so the denoising fraction is (step + window / total_windows) / total_steps. During "vae" of a
// long clip, step/total_steps count decoded chunks.
struct GenerationProgress {
  std::string stage;
  int step = 0;
  int total_steps = 0;
  int window = 0;
  int total_windows = 1;
};

struct GenerationCallbacks {
  std::function<void(const GenerationProgress&)> progress;
  // Checked between stages and between denoising steps; when set, generate throws
  // Error(kCancelled).
  const std::atomic<bool>* cancel = nullptr;
};

struct StageTiming {
  std::string stage;
  double seconds = 0;
};

struct GenerationResult {
  std::vector<float> audio;  // mono, `sample_rate` Hz, in [-1, 1]
  int sample_rate = 48000;
  double audio_seconds = 0;  // T25 / 25: the span of the video that was used
  int windows = 1;           // denoising windows (more than 1 for a clip beyond max_clip_seconds)
  // Requests denoised together with this one, itself included, when its denoising began
  // (generate_batch); 1 when it ran alone. Its "denoise" timing is the whole batch's.
  int batch_size = 1;
  std::vector<StageTiming> timings;
};

// A clip decoded ahead of its request (Model::prepare_video): its frames already reduced to the
// encoders' input sizes, in host memory of its own (about 10 MB per second of clip), so that a
// server decodes the next requests while a generator is busy with the current one. Immutable;
// any Generator of the model it was prepared for, created with the same GeneratorOptions, takes
// it (GenerationRequest::prepared).
class PreparedVideo {
 public:
  virtual ~PreparedVideo() = default;
  virtual double audio_seconds() const = 0;   // the span of the video that will be used
  virtual double decode_seconds() const = 0;  // how long the decoding took
};

// One request of Generator::generate_batch: a video (any container FFmpeg reads, or Y4M without
// FFmpeg), or none for sound from the prompt alone (generate_text; params.seconds long), with its
// own parameters (prompt, seed, steps, guidance) and callbacks (progress, cancel).
struct GenerationRequest {
  std::string video_path;  // empty: text only
  // Optional: video_path decoded ahead with these params (Model::prepare_video); the request
  // then skips its decoding, and its "decode" timing is the time the preparation took.
  std::shared_ptr<const PreparedVideo> prepared;
  GenerationParams params;
  GenerationCallbacks callbacks;
};

// What became of one request of a batch: its result, or the error it would have thrown alone
// (a foley::Error; kCancelled when its cancel flag stopped it). Rethrow with
// std::rethrow_exception to handle it as generate's.
struct BatchItemResult {
  std::optional<GenerationResult> result;
  std::exception_ptr error;
};

struct ModelInfo {
  std::string bundle_path;
  std::string dit_summary;  // e.g. "MMDiT hidden 1536, 18+36 blocks"
  int64_t parameters = 0;
  int64_t bundle_bytes = 0;
  bool is_tiny = false;  // a generated test model: its output is noise
};

class Model {
 public:
  // Throws Error(kNotFound / kInvalidInput / kUnsupported) for a missing, damaged or foreign file
  // or a bundle lacking one of the five networks.
  static std::shared_ptr<const Model> load(const ModelOptions& options);
  virtual ~Model() = default;
  virtual ModelInfo info() const = 0;

  // Decodes `video_path` for a later request with `params` on a Generator of this model created
  // with `options` (its span and video limit): what generate's "decode" stage does, into
  // buffers of the result's own. Thread-safe and independent of every Generator (it uses no
  // device), so it may run while generators are busy. Throws as that stage does (kInvalidInput
  // for a bad file or parameters, kCancelled when `cancel` is set). Returns null for a clip
  // longer than options.max_clip_seconds: such a clip is encoded in windows while it decodes,
  // which needs the generator, so its request decodes it as it runs.
  virtual std::shared_ptr<const PreparedVideo> prepare_video(
      const std::string& video_path, const GenerationParams& params,
      const GeneratorOptions& options, const std::atomic<bool>* cancel = nullptr) const = 0;
};

class Generator {
 public:
  // Builds the networks on the chosen device (weights uploaded once) and sizes every arena.
  // Throws kUnsupported when the device is not available in this build or machine.
  static std::unique_ptr<Generator> create(std::shared_ptr<const Model> model,
                                           const GeneratorOptions& options = {});
  virtual ~Generator() = default;

  // One full generation at the largest shape (a synthetic clip of max_clip_seconds, CFG on, one
  // denoising step: every step has the same shapes), then arenas are frozen: later requests
  // allocate no arena memory. Call before reporting ready.
  virtual void warm_up() = 0;

  // video file (any container FFmpeg reads, or Y4M without FFmpeg) -> audio. Bad video or
  // parameters throw Error(kInvalidInput); cancellation throws Error(kCancelled). Calls on one
  // Generator are serialised; different Generators (even of one Model) run concurrently.
  virtual GenerationResult generate(const std::string& video_path, const GenerationParams& params,
                                    const GenerationCallbacks& callbacks = {}) = 0;

  // Sound from the prompt alone, params.seconds long: the visual and sync conditions are the
  // model's learned empty features in both CFG branches (the model was trained with the video
  // dropped this way), at the lengths a clip of that duration would have.
  virtual GenerationResult generate_text(const GenerationParams& params,
                                         const GenerationCallbacks& callbacks = {}) = 0;

  // Several requests at once, one result per request in order. Their videos (those not
  // prepared ahead, GenerationRequest::prepared) are decoded several at once on helper threads
  // (so a request's progress callback may run on one of them), then each is encoded on its own;
  // those whose clips have equal lengths (latent, 8 fps and Synchformer frames: clips
  // of one duration, or text-only requests of one `seconds`) are then denoised together, up to
  // GeneratorOptions::max_batch at a time: one DiT evaluation per step over all their CFG rows,
  // each with its own conditions, prompt (lengths may differ), seed, guidance and step count.
  // Each request's audio equals what generate / generate_text gives it alone (bit for bit on
  // the CPU; tests/batch_test.cpp). Requests of other lengths, and clips longer than
  // max_clip_seconds (windowed sampling), are denoised alone. A request whose cancel flag is set
  // leaves at the next check (between stages, before every denoising step) without changing the
  // others; an error in one request (a bad video, say) fails only that one. Progress is each
  // request's own. Errors of the whole call (the device failing) are thrown.
  virtual std::vector<BatchItemResult> generate_batch(
      const std::vector<GenerationRequest>& requests) = 0;

  virtual std::string device_name() const = 0;
  // Bytes this generator holds on its device (weights it uploaded + arenas); 0 on the CPU.
  virtual int64_t device_bytes() const = 0;
  // Its memory wherever it lives: the weights (shared by every generator of one model on one
  // device: the mapped bundle on the CPU, the uploaded blob on CUDA) and this generator's own
  // work memory (arenas reserved). For budgets across models (ModelRegistry).
  struct Memory {
    int64_t weights_bytes = 0;
    int64_t work_bytes = 0;
    bool on_device = false;
  };
  virtual Memory memory() const = 0;
};

}  // namespace foley
