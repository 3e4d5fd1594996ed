// The public API of the foley library. Tools (CLI, server) include only headers under foley/.
//
// Two objects, as in whisper.cpp's model/state split:
// - Model: the immutable part. Maps one converted bundle (`foley convert`), validates it and keeps
//   the weights shared. Thread-safe; load once per process.
// - Generator: the per-worker part. Owns one compute backend (CPU or one CUDA device), the
//   networks bound to it and every arena a request needs, sized for the longest clip at creation
//   (and frozen by warm_up()). One Generator runs one request at a time; a server makes one per
//   concurrent job slot. After warm_up() the request path allocates no device memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
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

struct GeneratorOptions {
  DeviceType device = DeviceType::kCpu;
  int device_index = 0;
  // Longest clip (seconds of video used) this generator accepts; arenas are sized for it. The
  // official pipeline caps clips at 15 s.
  double max_clip_seconds = 15.0;
};

// What one request asks for. Every field is validated by Generator::generate (kInvalidInput with
// a message naming the field for nonsense values).
struct GenerationParams {
  std::string prompt;                          // may be empty
  std::string negative_prompt = "noisy, harsh";  // the official default
  int steps = 50;                              // 1..200
  float guidance = 4.5f;                       // 0..30; <= 1 disables CFG
  uint64_t seed = 0;
  double max_clip_seconds = 15.0;  // video seconds used (end_sec), <= the generator's limit
};

// Progress of one request: stage names are "decode", "visual", "sync", "text", "denoise", "vae".
// During "denoise", step/total_steps count finished steps.
struct GenerationProgress {
  std::string stage;
  int step = 0;
  int total_steps = 0;
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
  std::vector<StageTiming> timings;
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

  virtual std::string device_name() const = 0;
  // Bytes this generator holds on its device (weights it uploaded + arenas); 0 on the CPU.
  virtual int64_t device_bytes() const = 0;
};

}  // namespace foley
