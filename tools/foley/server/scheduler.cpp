#include "scheduler.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "foley/media.h"
#include "http_errors.h"

namespace foley_server {

namespace fs = std::filesystem;
// Lock order: Scheduler::mutex_ before Job::mutex, never the reverse.

Scheduler::Scheduler(SchedulerOptions options, Metrics& metrics)
    : options_(std::move(options)), metrics_(metrics) {}

Scheduler::~Scheduler() {
  if (!workers_.empty() || janitor_.joinable()) drain(0);
}

void Scheduler::start(std::vector<std::unique_ptr<foley::Generator>> generators) {
  generators_ = std::move(generators);
  for (auto& g : generators_) workers_.emplace_back([this, gen = g.get()] { worker_loop(gen); });
  janitor_ = std::thread([this] { janitor_loop(); });
}

std::shared_ptr<Job> Scheduler::make_job(JobRequest request) {
  auto job = std::make_shared<Job>();
  job->id = new_random_id();
  job->request = std::move(request);
  return job;
}

SubmitResult Scheduler::submit(const std::shared_ptr<Job>& job) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (draining_) return SubmitResult::kDraining;
  if (queue_.size() >= options_.queue_size) return SubmitResult::kQueueFull;
  {
    std::lock_guard<std::mutex> job_lock(job->mutex);
    job->emit_locked("queued", {{"id", job->id}, {"position", queue_.size()}});
  }
  jobs_[job->id] = job;
  queue_.push_back(job);
  metrics_.jobs_submitted++;
  queue_changed_.notify_all();
  return SubmitResult::kAccepted;
}

std::shared_ptr<Job> Scheduler::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second;
}

void Scheduler::finish_cancelled_locked(Job& job, const std::string& message) {
  job.state = JobState::kCancelled;
  job.finished_at = Clock::now();
  job.error_code = "cancelled";
  job.error_message = message;
  job.error_status = 409;
  job.emit_locked("cancelled", {{"id", job.id}, {"error", {{"code", "cancelled"}, {"message", message}}}});
  metrics_.count_finished("cancelled");
}

void Scheduler::finish_failed_locked(Job& job, int status, const std::string& code,
                                     const std::string& message) {
  job.state = JobState::kFailed;
  job.finished_at = Clock::now();
  job.error_code = code;
  job.error_message = message;
  job.error_status = status;
  job.emit_locked("failed", {{"id", job.id}, {"error", {{"code", code}, {"message", message}}}});
  metrics_.count_finished("failed");
}

bool Scheduler::cancel(const std::shared_ptr<Job>& job, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::lock_guard<std::mutex> job_lock(job->mutex);
  if (is_terminal(job->state)) return false;
  if (!job->cancel) job->cancel_reason = reason;
  job->cancel = true;
  if (job->state == JobState::kQueued) {
    queue_.erase(std::remove(queue_.begin(), queue_.end(), job), queue_.end());
    finish_cancelled_locked(*job, reason);
    if (job->request.owns_video) std::remove(job->request.video_path.c_str());
  }
  return true;
}

void Scheduler::delete_files_locked(Job& job) {
  std::error_code ec;
  if (!job.audio_path.empty()) fs::remove(job.audio_path, ec);
  if (!job.video_path.empty()) fs::remove(job.video_path, ec);
  job.audio_path.clear();
  job.video_path.clear();
  job.result_bytes = 0;
}

void Scheduler::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  // Our own reference: erasing the map entry must not free the job while its lock is held.
  const std::shared_ptr<Job> job = it->second;
  {
    std::lock_guard<std::mutex> job_lock(job->mutex);
    if (!is_terminal(job->state)) return;
    delete_files_locked(*job);
  }
  jobs_.erase(it);
}

size_t Scheduler::queue_depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

std::map<std::string, size_t> Scheduler::jobs_by_state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<std::string, size_t> counts;
  for (const auto& [id, job] : jobs_) {
    std::lock_guard<std::mutex> job_lock(job->mutex);
    ++counts[state_name(job->state)];
  }
  return counts;
}

int Scheduler::retry_after_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  const double workers = std::max<size_t>(1, workers_.size());
  const double guess = mean_job_seconds_ * double(queue_.size()) / workers;
  return std::clamp(int(guess + 1), 1, 3600);
}

bool Scheduler::draining() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return draining_;
}

void Scheduler::worker_loop(foley::Generator* generator) {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      queue_changed_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = queue_.front();
      queue_.pop_front();
      ++running_;
      // Under both locks, so a concurrent cancel sees either queued (and removes it from the
      // queue) or running (and sets the flag).
      std::lock_guard<std::mutex> job_lock(job->mutex);
      job->state = JobState::kRunning;
      job->started_at = Clock::now();
      job->emit_locked("running", {{"id", job->id}});
    }
    run_job(generator, job);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --running_;
    }
    running_changed_.notify_all();
  }
}

namespace {

// The result files of a job, written into the results folder; a write that fails because the
// disk is full or read-only says so (507 / 503) instead of "internal error".
struct WrittenResult {
  std::string audio, video;
  int64_t bytes = 0;
  int64_t clipped = 0;
};

WrittenResult write_results(const std::string& dir, const Job& job,
                            const foley::GenerationResult& result, double* mux_seconds) {
  const JobRequest& req = job.request;
  WrittenResult out;
  const bool flac = req.format == OutputFormat::kFlac;
  out.audio = dir + "/" + job.id + (flac ? ".flac" : ".wav");
  foley::AudioWriteOptions wopts;
  wopts.format = flac ? foley::AudioFormat::kFlac24
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
  if (req.mux) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string mp4 = dir + "/" + job.id + ".mp4";
    try {
      foley::mux_audio(req.video_path, result.audio.data(), result.audio.size(),
                       result.sample_rate, mp4);
      out.video = mp4;
      *mux_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } catch (const foley::Error& e) {
      // The audio is the product; a clip the MP4 muxer cannot hold only loses the video.
      std::fprintf(stderr, "foley serve: job %s: no muxed video: %s\n", job.id.c_str(),
                   e.what());
    }
  }
  std::error_code ec;
  out.bytes = int64_t(fs::file_size(out.audio, ec));
  if (!out.video.empty()) out.bytes += int64_t(fs::file_size(out.video, ec));
  return out;
}

void delete_written(const WrittenResult& w) {
  std::error_code ec;
  if (!w.audio.empty()) fs::remove(w.audio, ec);
  if (!w.video.empty()) fs::remove(w.video, ec);
}

}  // namespace

void Scheduler::run_job(foley::Generator* generator, const std::shared_ptr<Job>& job) {
  const JobRequest& req = job->request;
  foley::GenerationCallbacks callbacks;
  callbacks.cancel = &job->cancel;
  callbacks.progress = [&job](const foley::GenerationProgress& p) {
    std::lock_guard<std::mutex> lock(job->mutex);
    job->progress = p;
    job->fraction = std::max(job->fraction, overall_fraction(p));
    job->emit_locked("progress", progress_json_locked(*job));
  };

  int error_status = 0;
  std::string error_code, error_message;
  try {
    foley::GenerationResult result = generator->generate(req.video_path, req.params, callbacks);
    double mux_seconds = -1;
    const WrittenResult written = write_results(options_.results_dir, *job, result, &mux_seconds);
    if (mux_seconds >= 0) result.timings.push_back({"mux", mux_seconds});
    for (const auto& t : result.timings) metrics_.observe_stage(t.stage, t.seconds);
    std::lock_guard<std::mutex> lock(job->mutex);
    // Decided under the lock that cancel() takes: a DELETE answered "cancelled" before this
    // point is honoured even though the work is done.
    if (job->cancel) {
      delete_written(written);
      finish_cancelled_locked(*job, cancel_message_locked(*job));
    } else {
      job->state = JobState::kSucceeded;
      job->finished_at = Clock::now();
      job->timings = result.timings;
      job->audio_path = written.audio;
      job->video_path = written.video;
      job->audio_seconds = result.audio_seconds;
      job->result_bytes = written.bytes;
      job->clipped_samples = written.clipped;
      job->emit_locked("done", job_json_locked(*job, ""));
      metrics_.count_finished("succeeded");
    }
  } catch (const HttpError& e) {
    error_status = e.status;
    error_code = e.code;
    error_message = e.what();
  } catch (const foley::Error& e) {
    if (e.kind() != foley::ErrorKind::kCancelled) {
      const MappedError m = map_error(e);
      error_status = m.status;
      error_code = m.code;
      error_message = m.message;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "foley serve: job %s: internal error: %s\n", job->id.c_str(), e.what());
    error_status = 500;
    error_code = "internal";
    error_message = "internal error (see the server log)";
  }
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (!is_terminal(job->state)) {
      if (job->cancel) finish_cancelled_locked(*job, cancel_message_locked(*job));
      else finish_failed_locked(*job, error_status ? error_status : 500,
                                error_code.empty() ? "internal" : error_code,
                                error_message.empty() ? "internal error" : error_message);
    }
  }
  if (req.owns_video) std::remove(req.video_path.c_str());
  double seconds = 0;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    seconds = std::chrono::duration<double>(job->finished_at - job->created_at).count();
  }
  metrics_.observe_request(seconds);
  std::lock_guard<std::mutex> lock(mutex_);
  mean_job_seconds_ = mean_job_seconds_ == 0 ? seconds : 0.8 * mean_job_seconds_ + 0.2 * seconds;
}

std::string Scheduler::cancel_message_locked(const Job& job) const {
  return job.cancel_reason.empty() ? "cancelled" : job.cancel_reason;
}

void Scheduler::janitor_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    queue_changed_.wait_for(lock, std::chrono::seconds(1));
    if (stop_) break;
    const auto now = Clock::now();
    const auto ttl = std::chrono::duration<double>(options_.result_ttl_seconds);
    // Finished jobs, oldest first; drop expired ones, then the oldest until within budget.
    std::vector<std::pair<Clock::time_point, std::shared_ptr<Job>>> finished;
    int64_t bytes = 0;
    for (const auto& [id, job] : jobs_) {
      std::lock_guard<std::mutex> job_lock(job->mutex);
      if (!is_terminal(job->state) || job->request.synchronous) continue;
      finished.emplace_back(job->finished_at, job);
      bytes += job->result_bytes;
    }
    std::sort(finished.begin(), finished.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [when, job] : finished) {
      if (now - when < ttl && bytes <= options_.disk_budget_bytes) break;
      {
        // `job` is our own reference: the erase below cannot free it under its lock.
        std::lock_guard<std::mutex> job_lock(job->mutex);
        bytes -= job->result_bytes;
        delete_files_locked(*job);
      }
      jobs_.erase(job->id);
    }
  }
}

bool Scheduler::drain(double budget_seconds, double cancel_grace_seconds) {
  std::unique_lock<std::mutex> lock(mutex_);
  draining_ = true;
  for (auto& job : queue_) {
    std::lock_guard<std::mutex> job_lock(job->mutex);
    finish_cancelled_locked(*job, "server shutting down");
    if (job->request.owns_video) std::remove(job->request.video_path.c_str());
  }
  queue_.clear();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                             std::chrono::duration<double>(budget_seconds));
  running_changed_.wait_until(lock, deadline, [&] { return running_ == 0; });
  if (running_ > 0) {
    for (auto& [id, job] : jobs_) {
      std::lock_guard<std::mutex> job_lock(job->mutex);
      if (is_terminal(job->state)) continue;
      if (!job->cancel) job->cancel_reason = "server shutting down";
      job->cancel = true;  // each stops at its next step
    }
    running_changed_.wait_for(lock, std::chrono::duration<double>(cancel_grace_seconds),
                              [&] { return running_ == 0; });
  }
  const bool all_stopped = running_ == 0;
  stop_ = true;
  queue_changed_.notify_all();
  lock.unlock();
  if (!all_stopped) {
    // A stage between cancel checks (a long decode, say) must not hold the exit beyond the
    // budget: its worker is left to the process exit.
    for (auto& w : workers_) w.detach();
    workers_.clear();
    if (janitor_.joinable()) janitor_.join();
    return false;
  }
  for (auto& w : workers_) w.join();
  workers_.clear();
  if (janitor_.joinable()) janitor_.join();
  return true;
}

}  // namespace foley_server
