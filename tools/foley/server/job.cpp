#include "job.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <stdexcept>

namespace foley_server {

const char* state_name(JobState s) {
  switch (s) {
    case JobState::kQueued: return "queued";
    case JobState::kRunning: return "running";
    case JobState::kSucceeded: return "succeeded";
    case JobState::kFailed: return "failed";
    case JobState::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::string new_random_id() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("getrandom failed");
    got += size_t(n);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (size_t i = 0; i < sizeof bytes; ++i) {
    id[2 * i] = kHex[bytes[i] >> 4];
    id[2 * i + 1] = kHex[bytes[i] & 15];
  }
  return id;
}

namespace {
constexpr size_t kKeptEvents = 32;

bool is_terminal_name(const std::string& name) {
  return name == "done" || name == "failed" || name == "cancelled";
}
}  // namespace

void Job::emit_locked(const std::string& name, nlohmann::json data) {
  if (is_terminal_name(name)) events.clear();
  events.push_back({next_seq++, name, std::move(data)});
  while (events.size() > kKeptEvents) events.pop_front();
  changed.notify_all();
}

namespace {

nlohmann::json iso_time(Clock::time_point t) {
  if (t == Clock::time_point{}) return nullptr;
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = std::time_t(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms % 1000));
  return buf;
}

}  // namespace

double to_epoch_seconds(Clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

Clock::time_point from_epoch_seconds(double s) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s)));
}

std::pair<std::string, nlohmann::json> terminal_event_locked(const Job& job) {
  if (job.state == JobState::kSucceeded) return {"done", job_json_locked(job, "")};
  return {state_name(job.state),
          {{"id", job.id}, {"error", {{"code", job.error_code}, {"message", job.error_message}}}}};
}

void emit_terminal_locked(Job& job) {
  auto [name, data] = terminal_event_locked(job);
  job.emit_locked(name, std::move(data));
}

nlohmann::json error_record_locked(const Job& job) {
  return {{"status", job.error_status}, {"code", job.error_code}, {"message", job.error_message}};
}

nlohmann::json request_to_json(const JobRequest& r) {
  const auto& p = r.params;
  return {{"prompt", p.prompt},
          {"negative_prompt", p.negative_prompt},
          {"steps", p.steps},
          {"guidance", p.guidance},
          {"seed", p.seed},
          {"max_clip_seconds", p.max_clip_seconds},
          {"seconds", p.seconds},
          {"format", r.format == OutputFormat::kFlac ? "flac" : "wav"},
          {"sample_format", r.sample_format == SampleFormat::kS16 ? "s16" : "f32"},
          {"video_path", r.video_path},
          {"owns_video", r.owns_video},
          {"synchronous", r.synchronous},
          {"mux", r.mux},
          {"model", r.model},
          {"video_seconds", r.video_seconds}};
}

JobRequest request_from_json(const nlohmann::json& j) {
  try {
    JobRequest r;
    auto& p = r.params;
    p.prompt = j.at("prompt").get<std::string>();
    p.negative_prompt = j.at("negative_prompt").get<std::string>();
    p.steps = j.at("steps").get<int>();
    p.guidance = j.at("guidance").get<float>();
    p.seed = j.at("seed").get<uint64_t>();
    p.max_clip_seconds = j.at("max_clip_seconds").get<double>();
    p.seconds = j.value("seconds", 0.0);  // absent in records written before text-only jobs
    r.format = j.at("format").get<std::string>() == "flac" ? OutputFormat::kFlac : OutputFormat::kWav;
    r.sample_format =
        j.at("sample_format").get<std::string>() == "s16" ? SampleFormat::kS16 : SampleFormat::kF32;
    r.video_path = j.at("video_path").get<std::string>();
    r.owns_video = j.at("owns_video").get<bool>();
    r.synchronous = j.at("synchronous").get<bool>();
    r.mux = j.at("mux").get<bool>();
    r.model = j.value("model", "");  // absent in records written before models had names
    r.video_seconds = j.value("video_seconds", 0.0);  // absent before batching
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("malformed job record: ") + e.what());
  }
}

nlohmann::json result_json_locked(const Job& job) {
  nlohmann::json timings = nlohmann::json::array();
  for (const auto& t : job.timings) timings.push_back({t.stage, t.seconds});
  return {{"audio_path", job.audio_path},       {"video_path", job.video_path},
          {"audio_seconds", job.audio_seconds}, {"windows", job.windows},
          {"result_bytes", job.result_bytes}, {"clipped_samples", job.clipped_samples},
          {"batch_size", job.batch_size},       {"timings", timings}};
}

void apply_result_locked(Job& job, const nlohmann::json& result) {
  job.audio_path = result.value("audio_path", "");
  job.video_path = result.value("video_path", "");
  job.audio_seconds = result.value("audio_seconds", 0.0);
  job.windows = result.value("windows", 1);
  job.batch_size = result.value("batch_size", 1);
  job.result_bytes = result.value("result_bytes", int64_t{0});
  job.clipped_samples = result.value("clipped_samples", int64_t{0});
  job.timings.clear();
  if (result.contains("timings") && result["timings"].is_array())
    for (const auto& t : result["timings"])
      if (t.is_array() && t.size() == 2 && t[0].is_string() && t[1].is_number())
        job.timings.push_back({t[0].get<std::string>(), t[1].get<double>()});
}

double overall_fraction(const foley::GenerationProgress& p) {
  // Stage order and a rough share of a CPU run each; denoising dominates.
  struct Share {
    const char* stage;
    double weight;
  };
  static const Share kShares[] = {{"decode", 0.05}, {"visual", 0.1}, {"sync", 0.1},
                                  {"text", 0.05},   {"denoise", 0.6}, {"vae", 0.1}};
  double before = 0;
  for (const auto& s : kShares) {
    if (p.stage == s.stage) {
      double within = 0;
      if (p.total_steps > 0) {
        // A long clip's step runs every window once: count the windows finished in it.
        const double window =
            p.total_windows > 1 ? double(std::clamp(p.window, 0, p.total_windows)) / p.total_windows
                                : 0.0;
        within = std::min(1.0, (double(p.step) + window) / double(p.total_steps));
      }
      return std::min(1.0, before + s.weight * within);
    }
    before += s.weight;
  }
  return 0;
}

nlohmann::json progress_json_locked(const Job& job) {
  return {{"stage", job.progress.stage.empty() ? nlohmann::json(nullptr)
                                                : nlohmann::json(job.progress.stage)},
          {"step", job.progress.step},
          {"total_steps", job.progress.total_steps},
          {"window", job.progress.window},
          {"total_windows", job.progress.total_windows},
          {"fraction", job.state == JobState::kSucceeded ? 1.0 : job.fraction}};
}

nlohmann::json job_json_locked(const Job& job, const std::string& url_prefix) {
  const std::string base = url_prefix + "/v1/generations/" + job.id;
  nlohmann::json timings = nlohmann::json::object();
  for (const auto& t : job.timings) timings[t.stage] = t.seconds;
  const auto& p = job.request.params;
  nlohmann::json j = {
      {"id", job.id},
      {"state", state_name(job.state)},
      {"progress", progress_json_locked(job)},
      {"timings", timings},
      {"created_at", iso_time(job.created_at)},
      {"started_at", iso_time(job.started_at)},
      {"finished_at", iso_time(job.finished_at)},
      {"status_url", base},
      {"events_url", base + "/events"},
      {"audio_url", base + "/audio"},
      {"params",
       {{"prompt", p.prompt},
        {"negative_prompt", p.negative_prompt},
        {"steps", p.steps},
        {"guidance", p.guidance},
        {"seed", p.seed},
        {"model", job.request.model.empty() ? nlohmann::json(nullptr)
                                            : nlohmann::json(job.request.model)},
        {"format", job.request.format == OutputFormat::kFlac ? "flac" : "wav"},
        {"sample_format", job.request.format == OutputFormat::kFlac
                              ? "s24"
                              : job.request.sample_format == SampleFormat::kS16 ? "s16" : "f32"}}},
  };
  // A text-only job says how long its audio is; a video job how much of the video it uses.
  if (job.request.text_only()) j["params"]["seconds"] = p.seconds;
  else j["params"]["max_seconds"] = p.max_clip_seconds;
  j["text_only"] = job.request.text_only();
  if (job.state == JobState::kSucceeded) {
    j["audio_seconds"] = job.audio_seconds;
    j["windows"] = job.windows;
    j["batch_size"] = job.batch_size;
    // Integer samples clamp what the model put outside [-1, 1]; say how much.
    if (job.request.sample_format == SampleFormat::kS16 || job.request.format == OutputFormat::kFlac)
      j["clipped_samples"] = job.clipped_samples;
  }
  // The muxed clip is announced only once it exists (it needs FFmpeg and a muxable input); a
  // text-only job never has one.
  if (!job.video_path.empty() || (job.request.mux && !is_terminal(job.state))) j["video_url"] = base + "/video";
  if (job.state == JobState::kFailed || job.state == JobState::kCancelled)
    j["error"] = {{"code", job.error_code}, {"message", job.error_message}};
  return j;
}

}  // namespace foley_server
