// foley generate: video + prompt -> Foley audio (WAV/FLAC) and the video with it muxed in, or
// audio from the prompt alone (--seconds, text-only). One clip from flags, or many from a
// JSONL/CSV list (--batch) with the model loaded once.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "foley/foley.h"
#include "foley/media.h"

namespace foley_cli {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_cancel{false};
extern "C" void on_interrupt(int) { g_cancel = true; }

struct Options {
  std::string model, video, prompt, output, format, batch, output_dir, device = "cpu", precision = "exact";
  std::string sample_format = "f32";  // WAV: f32 (IEEE float) or s16 (16-bit PCM)
  std::string negative_prompt = foley::GenerationParams().negative_prompt;
  int steps = 50;
  float guidance = 4.5f;
  uint64_t seed = 0;
  double max_seconds = 600.0;  // video seconds used (longer clips run in windows)
  double seconds = 0;          // text-only: the audio's length (0: not given)
  bool seconds_given = false;
  bool verbose = false;
  int max_batch = 1;  // --batch lists: entries run together (Generator::generate_batch)
};

// The longest clip the library takes (GeneratorOptions::max_video_seconds' bound), and the
// shortest text-only audio (16 frames at 25 fps).
constexpr double kLongestSeconds = 7200.0;
constexpr double kShortestTextSeconds = 0.64;
// The span the networks see at once: the model's 15 s (less when no clip may be that long).
constexpr double kSpanSeconds = 15.0;

// One clip to generate: parameters plus where its outputs go (a path without extension).
struct Job {
  std::string where;  // "LIST:line" in batch mode, for messages
  std::string video;  // empty: text-only (params.seconds long)
  std::string output_base;
  std::string format;  // "wav", "flac", "mp4" or "" (the default pair)
  foley::GenerationParams params;
};

// ---- progress ----------------------------------------------------------------------------------

class Progress {
 public:
  explicit Progress(bool verbose) : tty_(isatty(STDERR_FILENO) == 1), verbose_(verbose) {}
  void operator()(const foley::GenerationProgress& p) {
    // A long clip's step runs every window once: "step 3/50 window 2/8" (windows finished in
    // the step now running), and the bar counts the windows too.
    const bool windows = p.total_windows > 1 && p.stage == "denoise";
    if (tty_) {
      std::string bar;
      if (p.total_steps > 0) {
        const int width = 30;
        double done_steps = p.step;
        if (windows)
          done_steps += double(std::clamp(p.window, 0, p.total_windows)) / p.total_windows;
        const int done = std::clamp(int(done_steps * width / p.total_steps), 0, width);
        bar = " [" + std::string(size_t(done), '#') + std::string(size_t(width - done), ' ') +
              "] " + (p.stage == "denoise" ? "step " : "") + std::to_string(p.step) + "/" +
              std::to_string(p.total_steps);
        if (windows)
          bar += " window " + std::to_string(p.window) + "/" + std::to_string(p.total_windows);
      }
      std::fprintf(stderr, "\r\033[K%-8s%s", p.stage.c_str(), bar.c_str());
      std::fflush(stderr);
      dirty_ = true;
    } else if (verbose_ && p.window == 0 &&
               (p.total_steps == 0 || p.step == 0 || p.step == p.total_steps ||
                p.step % std::max(1, p.total_steps / 10) == 0)) {
      // Lines only at step boundaries (window 0), once each.
      if (p.stage == last_stage_ && p.step == last_step_) return;
      last_stage_ = p.stage;
      last_step_ = p.step;
      if (p.total_steps > 0 && windows)
        std::fprintf(stderr, "foley: %s %d/%d (%d windows)\n", p.stage.c_str(), p.step,
                     p.total_steps, p.total_windows);
      else if (p.total_steps > 0)
        std::fprintf(stderr, "foley: %s %d/%d\n", p.stage.c_str(), p.step, p.total_steps);
      else
        std::fprintf(stderr, "foley: %s\n", p.stage.c_str());
    }
  }
  void finish() {
    if (dirty_) std::fprintf(stderr, "\r\033[K");
    dirty_ = false;
  }

 private:
  bool tty_, verbose_, dirty_ = false;
  std::string last_stage_;
  int last_step_ = -1;
};

// ---- outputs -----------------------------------------------------------------------------------

// The audio file format for an output path and --sample-format: WAV float or 16-bit PCM; FLAC
// 24-bit, or 16-bit with s16.
foley::AudioFormat audio_format(const std::string& path, const std::string& sample_format) {
  const foley::AudioFormat f = foley::audio_format_for_path(path);
  if (sample_format != "s16") return f;
  return f == foley::AudioFormat::kWavF32 ? foley::AudioFormat::kWavS16
                                          : foley::AudioFormat::kFlac16;
}

// The audio/video files for one result. `format` "" = WAV, plus MP4 when FFmpeg is built in and
// there is a video (skipped with a note if the input's video cannot be copied into MP4).
std::vector<std::string> write_outputs(const Job& job, const foley::GenerationResult& r,
                                       const std::string& format,
                                       const std::string& sample_format) {
  std::vector<std::string> written;
  const fs::path dir = fs::path(job.output_base).parent_path();
  std::error_code ec;
  if (!dir.empty()) fs::create_directories(dir, ec);
  if (ec)
    throw foley::Error(foley::ErrorKind::kInvalidInput,
                       "cannot create " + dir.string() + ": " + ec.message());
  const auto audio = [&](const std::string& ext) {
    const std::string path = job.output_base + ext;
    foley::AudioWriteOptions o;
    o.format = audio_format(path, sample_format);
    o.sample_rate = r.sample_rate;
    const foley::AudioWriteStats stats =
        foley::write_audio(path, r.audio.data(), r.audio.size(), o);
    if (stats.clipped > 0)
      std::fprintf(stderr, "foley: warning: %lld of %zu samples clipped to [-1, 1] in %s\n",
                   static_cast<long long>(stats.clipped), r.audio.size(), path.c_str());
    if (stats.non_finite > 0)
      std::fprintf(stderr, "foley: warning: %lld of %zu samples were NaN/inf, written as 0 in %s\n",
                   static_cast<long long>(stats.non_finite), r.audio.size(), path.c_str());
    written.push_back(path);
  };
  const auto video = [&](bool optional) {
    const std::string path = job.output_base + ".mp4";
    try {
      foley::mux_audio(job.video, r.audio.data(), r.audio.size(), r.sample_rate, path);
      written.push_back(path);
    } catch (const foley::Error& e) {
      if (!optional) throw;
      std::fprintf(stderr, "foley: note: no .mp4 for %s: %s\n", job.video.c_str(), e.what());
    }
  };
  if (format == "wav" || format.empty()) audio(".wav");
  if (format == "flac") audio(".flac");
  if (format == "mp4") video(false);
  if (format.empty() && foley::media_has_ffmpeg() && !job.video.empty()) video(true);
  return written;
}

// OUT may carry the format's extension ("-o out.flac"): it then picks the format.
void split_output(const std::string& output, std::string& base, std::string& format) {
  const std::string ext = fs::path(output).extension().string();
  base = output;
  for (const char* f : {"wav", "flac", "mp4"})
    if (ext == std::string(".") + f) {
      base = output.substr(0, output.size() - ext.size());
      if (format.empty()) format = f;
      if (format != f)
        throw foley::Error(foley::ErrorKind::kInvalidInput,
                           "-o " + output + " contradicts --format " + format);
    }
}

// ---- batch lists -------------------------------------------------------------------------------

// One CSV record (RFC 4180 quoting; no newlines inside fields).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else if (c != '\r') {
      out.back() += c;
    }
  }
  if (quoted) throw foley::Error(foley::ErrorKind::kInvalidInput, "unterminated quote");
  return out;
}

// Fields of one list entry as strings (JSON numbers kept in their JSON spelling).
using Fields = std::map<std::string, std::string>;

Fields json_fields(const std::string& line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw foley::Error(foley::ErrorKind::kInvalidInput, std::string("bad JSON: ") + e.what());
  }
  if (!j.is_object()) throw foley::Error(foley::ErrorKind::kInvalidInput, "not a JSON object");
  Fields f;
  for (const auto& [key, value] : j.items())
    f[key] = value.is_string() ? value.get<std::string>() : value.dump();
  return f;
}

template <typename T>
T parse_number(const Fields& f, const std::string& key, T fallback) {
  const auto it = f.find(key);
  if (it == f.end() || it->second.empty()) return fallback;
  std::istringstream in(it->second);
  T v{};
  in >> v;
  if (in.fail() || !in.eof())
    throw foley::Error(foley::ErrorKind::kInvalidInput,
                       key + " is not a valid number: " + it->second);
  return v;
}

// A list's "output" names a file inside --output-dir: a relative path whose lexically normal
// form neither is absolute nor climbs out with "..". (A symlink placed inside the directory is
// the directory owner's choice and is followed.)
fs::path confined_output(const std::string& out) {
  const fs::path p = fs::path(out).lexically_normal();
  const bool escapes = !p.empty() && *p.begin() == "..";
  if (p.has_root_path() || escapes || p.empty() || p == "." || !p.has_filename())
    throw foley::Error(foley::ErrorKind::kInvalidInput,
                       "output \"" + out + "\" is not a file name inside --output-dir (absolute "
                       "paths and \"..\" are refused)");
  return p;
}

// A text-only job has no video to mux: --format mp4 (or an .mp4 output) is an error.
void check_text_only_format(const Job& job) {
  if (job.format == "mp4")
    throw foley::Error(foley::ErrorKind::kInvalidInput,
                       "MP4 output needs a video: text-only generation (seconds) writes audio "
                       "only (wav or flac)");
}

// The seconds of a text-only job: a number in [0.64, 7200].
double text_seconds(double s, const std::string& name) {
  if (!std::isfinite(s) || s < kShortestTextSeconds || s > kLongestSeconds) {
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "%s must be a number from %g to %g (seconds of text-only audio), got %g",
                  name.c_str(), kShortestTextSeconds, kLongestSeconds, s);
    throw foley::Error(foley::ErrorKind::kInvalidInput, buf);
  }
  return s;
}

Job job_from_fields(const Fields& f, const Options& o, const fs::path& list_dir,
                    const std::string& where, int line) {
  static const std::set<std::string> known = {"video", "seconds",  "prompt", "negative_prompt",
                                              "steps", "guidance", "seed",   "output"};
  for (const auto& [key, value] : f)
    if (!known.count(key))
      throw foley::Error(foley::ErrorKind::kInvalidInput, "unknown field \"" + key + "\"");
  const auto video = f.find("video");
  const bool has_video = video != f.end() && !video->second.empty();
  const bool has_seconds = f.count("seconds") && !f.at("seconds").empty();
  if (!has_video && !has_seconds)
    throw foley::Error(foley::ErrorKind::kInvalidInput,
                       "missing \"video\" (or \"seconds\" for text-only audio)");
  if (has_video && has_seconds)
    throw foley::Error(foley::ErrorKind::kInvalidInput,
                       "\"seconds\" is for text-only audio; it cannot come with \"video\"");
  Job job;
  job.where = where;
  if (has_video) {
    fs::path v(video->second);
    job.video = (v.is_relative() ? list_dir / v : v).string();
    job.params.max_clip_seconds = o.max_seconds;
  } else {
    job.params.seconds = text_seconds(parse_number<double>(f, "seconds", 0), "seconds");
    job.params.max_clip_seconds = job.params.seconds;
  }
  job.params.prompt = f.count("prompt") ? f.at("prompt") : "";
  job.params.negative_prompt = f.count("negative_prompt") ? f.at("negative_prompt")
                                                          : o.negative_prompt;
  job.params.steps = parse_number<int>(f, "steps", o.steps);
  job.params.guidance = parse_number<float>(f, "guidance", o.guidance);
  job.params.seed = parse_number<uint64_t>(f, "seed", o.seed);
  const std::string out = f.count("output") && !f.at("output").empty() ? f.at("output")
                          : has_video ? fs::path(video->second).stem().string()
                                      : "text_" + std::to_string(line);
  std::string base, format = o.format;
  split_output((fs::path(o.output_dir) / confined_output(out)).string(), base, format);
  job.output_base = base;
  job.format = format;
  if (!has_video) check_text_only_format(job);
  return job;
}

// Reads the list; entries that cannot be parsed are reported and counted as failures.
std::vector<Job> read_batch(const Options& o, int& failures) {
  std::ifstream in(o.batch);
  if (!in)
    throw foley::Error(foley::ErrorKind::kNotFound, "batch list not found: " + o.batch);
  const bool csv = fs::path(o.batch).extension() == ".csv";
  const fs::path list_dir = fs::absolute(o.batch).parent_path();
  std::vector<Job> jobs;
  std::vector<std::string> header;
  std::set<std::string> outputs;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const std::string where = o.batch + ":" + std::to_string(n);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      if (csv && header.empty()) {
        header = csv_fields(line);
        continue;
      }
      Fields f;
      if (csv) {
        const auto values = csv_fields(line);
        if (values.size() != header.size())
          throw foley::Error(foley::ErrorKind::kInvalidInput,
                             std::to_string(values.size()) + " fields, the header has " +
                                 std::to_string(header.size()));
        for (size_t i = 0; i < values.size(); ++i) f[header[i]] = values[i];
      } else {
        f = json_fields(line);
      }
      Job job = job_from_fields(f, o, list_dir, where, n);
      if (!outputs.insert(job.output_base).second)
        throw foley::Error(foley::ErrorKind::kInvalidInput,
                           "output " + job.output_base + " is already used by an earlier line");
      jobs.push_back(std::move(job));
    } catch (const foley::Error& e) {
      std::fprintf(stderr, "foley: %s: skipped: %s\n", where.c_str(), e.what());
      ++failures;
    }
  }
  return jobs;
}

// ---- running -----------------------------------------------------------------------------------

void print_timings(const foley::GenerationResult& r, double total) {
  std::string line;
  for (const auto& t : r.timings) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s%s %.3f s", line.empty() ? "" : ", ", t.stage.c_str(),
                  t.seconds);
    line += buf;
  }
  std::fprintf(stderr, "foley: timings: %s; total %.3f s\n", line.c_str(), total);
}

int run(const Options& o) {
  const int inputs = int(!o.video.empty()) + int(!o.batch.empty()) + int(o.seconds_given);
  if (inputs == 0)
    throw foley::Error(foley::ErrorKind::kInvalidInput,
                       "give --video, --seconds (audio from the prompt alone) or --batch");
  if (!o.video.empty() && o.seconds_given)
    throw foley::Error(foley::ErrorKind::kInvalidInput,
                       "--seconds sets the length of text-only audio and cannot be combined with "
                       "--video (--max-seconds limits the video seconds used)");
  if (inputs > 1)
    throw foley::Error(foley::ErrorKind::kInvalidInput,
                       "--batch cannot be combined with --video or --seconds (a list's lines "
                       "carry their own video or seconds)");
  if (!std::isfinite(o.max_seconds) || o.max_seconds <= 0 || o.max_seconds > kLongestSeconds)
    throw foley::Error(foley::ErrorKind::kInvalidInput,
                       "--max-seconds must be above 0 and at most 7200");
  if (!o.batch.empty() && o.output_dir.empty())
    throw foley::Error(foley::ErrorKind::kInvalidInput, "--batch needs --output-dir");
  if (o.format == "flac" && !foley::media_has_ffmpeg())
    throw foley::Error(foley::ErrorKind::kUnsupported, "FLAC output needs FFmpeg (not built in)");
  if (o.format == "mp4" && !foley::media_has_ffmpeg())
    throw foley::Error(foley::ErrorKind::kUnsupported, "MP4 output needs FFmpeg (not built in)");

  int failures = 0;
  std::vector<Job> jobs;
  if (!o.batch.empty()) {
    jobs = read_batch(o, failures);
    std::error_code ec;
    fs::create_directories(o.output_dir, ec);
    if (ec)
      throw foley::Error(foley::ErrorKind::kInvalidInput,
                         "cannot create --output-dir " + o.output_dir + ": " + ec.message());
  } else {
    Job job;
    job.where = o.video.empty() ? "text-only audio" : o.video;
    job.video = o.video;
    job.params.prompt = o.prompt;
    job.params.negative_prompt = o.negative_prompt;
    job.params.steps = o.steps;
    job.params.guidance = o.guidance;
    job.params.seed = o.seed;
    job.params.max_clip_seconds = o.max_seconds;
    if (o.seconds_given) {
      job.params.seconds = text_seconds(o.seconds, "--seconds");
      job.params.max_clip_seconds = job.params.seconds;  // no video: bounds nothing
    }
    job.format = o.format;
    const std::string default_output =
        o.video.empty() ? "foley_text" : fs::path(o.video).stem().string() + "_foley";
    split_output(o.output.empty() ? default_output : o.output, job.output_base, job.format);
    if (o.video.empty()) check_text_only_format(job);
    jobs.push_back(job);
  }

  const auto model = foley::Model::load({o.model});
  const foley::ModelInfo info = model->info();
  if (info.is_tiny)
    std::fprintf(stderr, "foley: note: %s is a tiny test model: its output is noise\n",
                 o.model.c_str());
  foley::GeneratorOptions go;
  go.device = o.device == "cuda" ? foley::DeviceType::kCuda : foley::DeviceType::kCpu;
  go.precision = precision_of(o.precision);
  // The longest clip of these jobs (video seconds used, or text-only audio); the networks' span
  // is the model's 15 s, less when no job is that long (the arenas are sized for the span).
  double longest = 0;
  for (const Job& job : jobs)
    longest = std::max(longest, job.video.empty() ? job.params.seconds : o.max_seconds);
  if (longest <= 0) longest = o.max_seconds;  // no job: nothing runs
  go.max_video_seconds = longest;
  go.max_clip_seconds = std::min(kSpanSeconds, longest);
  go.max_batch = o.batch.empty() ? 1 : o.max_batch;
  const auto generator = foley::Generator::create(model, go);

  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  int worst = 0;
  // One entry's end: its files written and reported, or its failure counted (batch mode; a
  // single clip's error is thrown). 130 when it was cancelled: the run stops.
  auto finish = [&](const Job& job, const std::function<foley::GenerationResult()>& result,
                    std::chrono::steady_clock::time_point t0) {
    try {
      const foley::GenerationResult r = result();
      const auto files = write_outputs(job, r, job.format, o.sample_format);
      const double total =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const std::string windows =
          r.windows > 1 ? ", " + std::to_string(r.windows) + " denoising windows" : "";
      const std::string batch =
          r.batch_size > 1 ? ", denoised in a batch of " + std::to_string(r.batch_size) : "";
      for (const auto& f : files)
        std::printf("wrote %s (%.2f s of audio%s%s)\n", f.c_str(), r.audio_seconds,
                    windows.c_str(), batch.c_str());
      std::fflush(stdout);
      if (o.verbose) print_timings(r, total);
    } catch (const foley::Error& e) {
      if (e.kind() == foley::ErrorKind::kCancelled) {
        std::fprintf(stderr, "foley: cancelled; nothing written for %s\n", job.where.c_str());
        return 130;
      }
      if (o.batch.empty()) throw;
      std::fprintf(stderr, "foley: %s: failed: %s\n", job.where.c_str(), e.what());
      ++failures;
      worst = std::max(worst, e.kind() == foley::ErrorKind::kInternal ? 3 : 2);
    }
    return 0;
  };
  const size_t per_call = size_t(std::max(1, o.max_batch));
  for (size_t first = 0; first < jobs.size(); first += per_call) {
    const size_t n = std::min(per_call, jobs.size() - first);
    Progress progress(o.verbose);
    foley::GenerationCallbacks cb;
    cb.cancel = &g_cancel;
    cb.progress = [&](const foley::GenerationProgress& p) { progress(p); };
    const auto t0 = std::chrono::steady_clock::now();
    if (n == 1) {
      const Job& job = jobs[first];
      const int rc = finish(
          job,
          [&] {
            struct Clear {  // the progress line, before any message about this entry
              Progress& p;
              ~Clear() { p.finish(); }
            } clear{progress};
            return job.video.empty() ? generator->generate_text(job.params, cb)
                                     : generator->generate(job.video, job.params, cb);
          },
          t0);
      if (rc) return rc;
      continue;
    }
    // Several entries at once: the progress shown is the first one's (they denoise together).
    std::vector<foley::GenerationRequest> requests(n);
    for (size_t i = 0; i < n; ++i) {
      requests[i].video_path = jobs[first + i].video;
      requests[i].params = jobs[first + i].params;
      requests[i].callbacks.cancel = &g_cancel;
    }
    requests[0].callbacks = cb;
    std::vector<foley::BatchItemResult> results = generator->generate_batch(requests);
    progress.finish();
    for (size_t i = 0; i < n; ++i) {
      const int rc = finish(
          jobs[first + i],
          [&]() -> foley::GenerationResult {
            if (results[i].error) std::rethrow_exception(results[i].error);
            return std::move(*results[i].result);
          },
          t0);
      if (rc) return rc;
    }
  }
  if (failures) {
    std::fprintf(stderr, "foley: %d entr%s failed or skipped\n", failures,
                 failures == 1 ? "y" : "ies");
    return std::max(worst, 2);
  }
  return 0;
}

}  // namespace

Command add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "generate", "Generate Foley audio for a video and a prompt, or for a prompt alone");
  auto o = std::make_shared<Options>();
  cmd->add_option("--model", o->model, "model bundle (.safetensors from `foley convert`)")
      ->required();
  cmd->add_option("--video", o->video, "input video");
  auto* seconds = cmd->add_option(
      "--seconds", o->seconds,
      "text-only: make this many seconds of audio from the prompt alone, without a video "
      "(0.64..7200; writes audio only)");
  cmd->add_option("--prompt", o->prompt, "what the audio should sound like");
  cmd->add_option("--negative-prompt", o->negative_prompt, "what to avoid (default: \"noisy, harsh\")");
  cmd->add_option("--steps", o->steps, "denoising steps, 1..200 (default 50)");
  cmd->add_option("--guidance", o->guidance, "CFG scale, 0..30; <= 1 disables CFG (default 4.5)");
  cmd->add_option("--seed", o->seed, "noise seed (default 0)");
  cmd->add_option("--max-seconds", o->max_seconds,
                  "video seconds used, from the start (default 600); clips longer than the "
                  "model's 15 s are generated in overlapping windows");
  cmd->add_option("--device", o->device, "cpu (default) or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  add_precision_option(cmd, &o->precision);
  cmd->add_option("-o,--output", o->output,
                  "output path without extension (default: VIDEO-NAME_foley, or foley_text "
                  "for text-only audio); an extension "
                  ".wav/.flac/.mp4 picks the format");
  cmd->add_option("--format", o->format,
                  "wav, flac or mp4 (default: .wav, plus .mp4 when FFmpeg is built in)")
      ->check(CLI::IsMember({"wav", "flac", "mp4"}));
  cmd->add_option("--sample-format", o->sample_format,
                  "audio samples: f32 (default; float WAV, exactly what the model produced) or "
                  "s16 (16-bit PCM WAV that every tool reads, e.g. Python's wave; FLAC 16-bit); "
                  "clipped samples are counted in a warning")
      ->check(CLI::IsMember({"f32", "s16"}));
  cmd->add_flag("--verbose", o->verbose, "progress lines and per-stage timings on stderr");
  cmd->add_option("--batch", o->batch,
                  "JSONL (objects) or CSV (header row) list: video (or seconds, for text-only "
                  "audio), prompt, and optionally negative_prompt, steps, guidance, seed, "
                  "output; relative video paths are taken from the list's folder");
  cmd->add_option("--output-dir", o->output_dir, "where --batch writes its outputs");
  cmd->add_option("--max-batch", o->max_batch,
                  "with --batch: entries run together, up to this many at a time (their videos "
                  "decoded at once; those of one clip length denoised as one DiT batch, each "
                  "with its own prompt and seed and the audio it would get alone); the "
                  "denoising memory grows with it")
      ->capture_default_str()
      ->check(CLI::Range(1, 32));
  return {cmd, [o, seconds]() {
            o->seconds_given = seconds->count() > 0;
            return run(*o);
          }};
}

}  // namespace foley_cli
