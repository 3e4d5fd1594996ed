// One generation request as the server tracks it: parameters, state, progress, the event log that
// SSE clients replay, and the result files. Every mutable field is guarded by `mutex`; `changed`
// wakes SSE streams and synchronous waiters.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "foley/foley.h"

namespace foley_server {

enum class JobState { kQueued, kRunning, kSucceeded, kFailed, kCancelled };
const char* state_name(JobState s);
inline bool is_terminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}

enum class OutputFormat { kWav, kFlac };
enum class SampleFormat { kF32, kS16 };  // WAV sample encoding

// 128 bits from the OS (getrandom), as 32 hex digits: job ids are the only secret protecting a
// job's results when the server runs without --token.
std::string new_random_id();

struct JobRequest {
  foley::GenerationParams params;  // params.seconds: the length of text-only audio
  OutputFormat format = OutputFormat::kWav;
  SampleFormat sample_format = SampleFormat::kF32;
  std::string video_path;      // an upload in the data dir, or a file under --media-root;
                               // empty for a text-only job (Generator::generate_text)
  bool owns_video = false;     // delete video_path when the job is finished
  bool synchronous = false;    // POST /generate: no mux, removed once answered
  bool mux = false;            // also write the clip with the audio muxed in
  // The model that runs it, by its registry name; empty: the server's default model (records
  // written before models had names; on a queue front end, whatever model the workers serve).
  std::string model;
  // The video's duration as probed at submission (0: unknown or text-only): jobs whose clips
  // have equal lengths may be denoised together (--max-batch).
  double video_seconds = 0;
  // Sound from the prompt alone, params.seconds long: audio only, never a muxed video.
  bool text_only() const { return video_path.empty(); }
};

struct JobEvent {
  uint64_t seq = 0;  // 0, 1, 2, ... over the job's life
  std::string name;  // queued, running, progress (stage loading_model while its model loads),
                     // done, failed, cancelled
  nlohmann::json data;
};

using Clock = std::chrono::system_clock;

struct Job {
  std::string id;
  JobRequest request;

  std::mutex mutex;
  std::condition_variable changed;
  JobState state = JobState::kQueued;
  foley::GenerationProgress progress;
  double fraction = 0;  // of the whole job, for progress bars
  std::vector<foley::StageTiming> timings;
  std::string error_code, error_message;  // when failed or cancelled
  int error_status = 0;                   // the HTTP status POST /generate answers with
  Clock::time_point created_at = Clock::now(), started_at{}, finished_at{};
  std::string audio_path;  // set when succeeded
  std::string video_path;  // muxed clip, when muxing worked
  double audio_seconds = 0;
  int windows = 1;     // denoising windows (more than 1 for a clip beyond the generator's span)
  int batch_size = 1;  // jobs denoised together with this one, itself included (--max-batch)
  int64_t result_bytes = 0;
  int64_t clipped_samples = 0;  // s16 output: samples clamped to [-1, 1]
  // The latest events for SSE streams (a stream that falls further behind skips to the oldest
  // kept; only progress is ever skipped). A finished job keeps only its terminal event, so a
  // kept result costs a few hundred bytes, not its whole history.
  std::deque<JobEvent> events;
  uint64_t next_seq = 0;

  std::atomic<bool> cancel{false};
  std::string cancel_reason;  // why `cancel` was set (the job's error message once cancelled)

  // Decoding ahead (Scheduler, --decode-ahead), guarded by the scheduler's mutex: the video
  // decoded while the job was queued (dropped when it ends), whether a decoder has it now, and
  // whether one tried (a job is decoded ahead at most once).
  std::shared_ptr<const foley::PreparedVideo> prepared;
  bool preparing = false, prepare_tried = false;

  // Appends an event and wakes waiters; the caller holds `mutex`.
  void emit_locked(const std::string& name, nlohmann::json data);
};

// What the journal stores of a request (every field a rerun needs), and back. from_json throws
// std::runtime_error on a malformed record.
nlohmann::json request_to_json(const JobRequest& r);
JobRequest request_from_json(const nlohmann::json& j);
// A succeeded job's result record (files, sizes, timings), and applying one to a job.
nlohmann::json result_json_locked(const Job& job);
void apply_result_locked(Job& job, const nlohmann::json& result);

double to_epoch_seconds(Clock::time_point t);
Clock::time_point from_epoch_seconds(double s);

// A finished job's terminal event as SSE sends it: "done" with the job, or "failed"/"cancelled"
// with its error; emit_terminal_locked appends it. The caller holds job.mutex.
std::pair<std::string, nlohmann::json> terminal_event_locked(const Job& job);
void emit_terminal_locked(Job& job);
// A failed or cancelled job's error as the journal and Redis store it: {status, code, message}.
nlohmann::json error_record_locked(const Job& job);

// The public JSON of a job (GET /v1/generations/{id}); the caller holds job.mutex.
nlohmann::json job_json_locked(const Job& job, const std::string& url_prefix);

// Overall completion in [0, 1] for a progress report (stage weights are rough CPU shares; within
// "denoise" the share done is (step + window / total_windows) / total_steps).
double overall_fraction(const foley::GenerationProgress& p);

nlohmann::json progress_json_locked(const Job& job);

}  // namespace foley_server
