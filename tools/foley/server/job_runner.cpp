#include "job_runner.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "foley/media.h"
#include "http_errors.h"

namespace foley_server {

namespace fs = std::filesystem;

namespace {

WrittenResult write_results(const std::string& dir, const std::string& stem, const Job& job,
                            const foley::GenerationResult& result, double* mux_seconds) {
  const JobRequest& req = job.request;
  WrittenResult out;
  const bool flac = req.format == OutputFormat::kFlac;
  out.audio = dir + "/" + stem + (flac ? ".flac" : ".wav");
  foley::AudioWriteOptions wopts;
  wopts.format = flac                                      ? foley::AudioFormat::kFlac24
                 : req.sample_format == SampleFormat::kS16 ? foley::AudioFormat::kWavS16
                                                           : foley::AudioFormat::kWavF32;
  wopts.sample_rate = result.sample_rate;
  try {
    out.clipped =
        foley::write_audio(out.audio, result.audio.data(), result.audio.size(), wopts).clipped;
  } catch (const foley::Error&) {
    if (auto e = storage_state_error(dir, "the result")) throw *e;
    throw;
  }
  if (req.mux && !req.text_only()) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string mp4 = dir + "/" + stem + ".mp4";
    try {
      foley::mux_audio(req.video_path, result.audio.data(), result.audio.size(), result.sample_rate,
                       mp4);
      out.video = mp4;
      *mux_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } catch (const foley::Error& e) {
      // The audio is the product; a clip the MP4 muxer cannot hold only loses the video.
      std::fprintf(stderr, "foley: job %s: no muxed video: %s\n", job.id.c_str(), e.what());
    }
  }
  std::error_code ec;
  out.bytes = int64_t(fs::file_size(out.audio, ec));
  if (!out.video.empty()) out.bytes += int64_t(fs::file_size(out.video, ec));
  return out;
}

// The callbacks that report a job's progress into its events and read its cancel flag.
foley::GenerationCallbacks job_callbacks(Job& job, const std::function<void()>& on_progress) {
  foley::GenerationCallbacks callbacks;
  callbacks.cancel = &job.cancel;
  callbacks.progress = [&job, on_progress](const foley::GenerationProgress& p) {
    {
      std::lock_guard<std::mutex> lock(job.mutex);
      job.progress = p;
      job.fraction = std::max(job.fraction, overall_fraction(p));
      job.emit_locked("progress", progress_json_locked(job));
    }
    if (on_progress) on_progress();
  };
  return callbacks;
}

// Runs `generate` (which returns the result or throws) and writes the result files: the outcome,
// errors mapped as the HTTP side answers them.
template <typename F>
GenerationOutcome outcome_of(Job& job, const std::string& results_dir, const std::string& stem,
                             F&& generate) {
  GenerationOutcome out;
  try {
    foley::GenerationResult result = generate();
    double mux_seconds = -1;
    out.written = write_results(results_dir, stem, job, result, &mux_seconds);
    if (mux_seconds >= 0) result.timings.push_back({"mux", mux_seconds});
    out.result = std::move(result);
  } catch (const HttpError& e) {
    out.error_status = e.status;
    out.error_code = e.code;
    out.error_message = e.what();
  } catch (const foley::Error& e) {
    if (e.kind() == foley::ErrorKind::kCancelled) {
      out.cancelled = true;
    } else {
      const MappedError m = map_error(e);
      out.error_status = m.status;
      out.error_code = m.code;
      out.error_message = m.message;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "foley: job %s: internal error: %s\n", job.id.c_str(), e.what());
    out.error_status = 500;
    out.error_code = "internal";
    out.error_message = "internal error (see the server log)";
  }
  return out;
}

// The jobs as one Generator::generate_batch (one job is the same as generate / generate_text,
// with its video decoded ahead when the scheduler did that), each one's outcome its own.
std::vector<GenerationOutcome> run_jobs(foley::Generator& generator, const std::vector<Job*>& jobs,
                                        const std::string& results_dir,
                                        const std::vector<std::string>& stems,
                                        const std::function<void()>& on_progress) {
  std::vector<foley::GenerationRequest> requests;
  for (Job* job : jobs) {
    foley::GenerationRequest r;
    r.video_path = job->request.video_path;  // empty for a text-only job
    r.prepared = job->prepared;
    r.params = job->request.params;
    r.callbacks = job_callbacks(*job, on_progress);
    requests.push_back(std::move(r));
  }
  std::vector<foley::BatchItemResult> results;
  std::exception_ptr failed;
  try {
    results = generator.generate_batch(requests);
  } catch (...) {
    failed = std::current_exception();  // the whole call: every job fails with it
  }
  std::vector<GenerationOutcome> out;
  for (size_t i = 0; i < jobs.size(); ++i) {
    Job& job = *jobs[i];
    out.push_back(outcome_of(job, results_dir, stems[i], [&]() -> foley::GenerationResult {
      if (failed) std::rethrow_exception(failed);
      foley::BatchItemResult& r = results[i];
      if (r.error) std::rethrow_exception(r.error);
      return std::move(*r.result);
    }));
  }
  return out;
}

}  // namespace

GenerationOutcome generate_and_write(foley::Generator& generator, Job& job,
                                     const std::string& results_dir, const std::string& stem,
                                     const std::function<void()>& on_progress) {
  return std::move(run_jobs(generator, {&job}, results_dir, {stem}, on_progress)[0]);
}

std::vector<GenerationOutcome> generate_batch_and_write(foley::Generator& generator,
                                                        const std::vector<Job*>& jobs,
                                                        const std::string& results_dir,
                                                        const std::vector<std::string>& stems,
                                                        const std::function<void()>& on_progress) {
  if (!stems.empty()) return run_jobs(generator, jobs, results_dir, stems, on_progress);
  std::vector<std::string> ids;
  for (const Job* job : jobs) ids.push_back(job->id);
  return run_jobs(generator, jobs, results_dir, ids, on_progress);
}

void record_success_locked(Job& job, const GenerationOutcome& outcome) {
  job.state = JobState::kSucceeded;
  job.finished_at = Clock::now();
  job.timings = outcome.result->timings;
  job.audio_path = outcome.written.audio;
  job.video_path = outcome.written.video;
  job.audio_seconds = outcome.result->audio_seconds;
  job.windows = outcome.result->windows;
  job.batch_size = outcome.result->batch_size;
  job.result_bytes = outcome.written.bytes;
  job.clipped_samples = outcome.written.clipped;
}

void delete_written(const WrittenResult& w) {
  std::error_code ec;
  if (!w.audio.empty()) fs::remove(w.audio, ec);
  if (!w.video.empty()) fs::remove(w.video, ec);
}

}  // namespace foley_server
