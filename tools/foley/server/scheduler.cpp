#include "scheduler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include "foley/media.h"
#include "http_errors.h"

namespace foley_server {

namespace fs = std::filesystem;
// Lock order: Scheduler::mutex_ before Job::mutex, never the reverse. The journal is written
// with neither held (each write waits for the disk).

namespace {
constexpr const char* kShutdownReason = "server shutting down";
constexpr int64_t kMaxAttempts = 3;

bool journaled(const Job& job) { return !job.request.synchronous; }
}  // namespace

Scheduler::Scheduler(SchedulerOptions options, Metrics& metrics)
    : options_(std::move(options)), metrics_(metrics) {}

Scheduler::~Scheduler() {
  if (!workers_.empty() || janitor_.joinable()) drain(0);
}

void Scheduler::start(foley::ModelRegistry& registry, int workers) {
  registry_ = &registry;
  for (int i = 0; i < std::max(1, workers); ++i) workers_.emplace_back([this] { worker_loop(); });
  janitor_ = std::thread([this] { janitor_loop(); });
  for (int i = 0; i < std::min(options_.decode_ahead, 4); ++i)
    decoders_.emplace_back([this] { decoder_loop(); });
}

SubmitResult Scheduler::submit(const std::shared_ptr<Job>& job) {
  const bool journal = options_.journal && journaled(*job);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (draining_) return SubmitResult::kDraining;
    if (queue_.size() + reserved_ >= options_.queue_size) return SubmitResult::kQueueFull;
    ++reserved_;
  }
  if (journal) {
    try {
      options_.journal->accept(job->id, request_to_json(job->request),
                               to_epoch_seconds(job->created_at));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      --reserved_;
      throw;
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  --reserved_;
  if (draining_) {
    if (journal) options_.journal->remove(job->id);
    return SubmitResult::kDraining;
  }
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

std::shared_ptr<Job> Scheduler::find(const std::string& id) {
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
  emit_terminal_locked(job);
  metrics_.count_finished("cancelled");
}

void Scheduler::finish_failed_locked(Job& job, int status, const std::string& code,
                                     const std::string& message) {
  job.state = JobState::kFailed;
  job.finished_at = Clock::now();
  job.error_code = code;
  job.error_message = message;
  job.error_status = status;
  emit_terminal_locked(job);
  metrics_.count_finished("failed");
}

bool Scheduler::cancel(const std::shared_ptr<Job>& job, const std::string& reason) {
  bool ended = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::lock_guard<std::mutex> job_lock(job->mutex);
    if (is_terminal(job->state)) return false;
    if (!job->cancel) job->cancel_reason = reason;
    job->cancel = true;
    if (job->state == JobState::kQueued) {
      queue_.erase(std::remove(queue_.begin(), queue_.end(), job), queue_.end());
      job->prepared.reset();
      finish_cancelled_locked(*job, reason);
      if (job->request.owns_video) std::remove(job->request.video_path.c_str());
      ended = true;
    }
  }
  if (ended) journal_end(job);
  return true;
}

void Scheduler::journal_end(const std::shared_ptr<Job>& job) {
  if (!options_.journal || !journaled(*job)) return;
  std::string state;
  double finished_at = 0;
  nlohmann::json result, error;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (!is_terminal(job->state)) return;
    if (job->state == JobState::kCancelled && job->cancel_reason == kShutdownReason) return;
    state = state_name(job->state);
    finished_at = to_epoch_seconds(job->finished_at);
    if (job->state == JobState::kSucceeded) result = result_json_locked(*job);
    else error = error_record_locked(*job);
  }
  try {
    options_.journal->finished(job->id, state, finished_at, result, error);
  } catch (const std::exception& e) {
    // The job's end is known in memory and served; only a restart would not see it.
    std::fprintf(stderr, "foley serve: job %s: cannot journal its end: %s\n", job->id.c_str(),
                 e.what());
  }
}

void Scheduler::journal_remove(const std::vector<std::string>& ids) {
  if (!options_.journal) return;
  for (const auto& id : ids) {
    try {
      options_.journal->remove(id);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "foley serve: job %s: cannot remove it from the journal: %s\n",
                   id.c_str(), e.what());
    }
  }
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
  std::unique_lock<std::mutex> lock(mutex_);
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
  lock.unlock();
  journal_remove({id});
}

size_t Scheduler::queue_depth() {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

std::map<std::string, size_t> Scheduler::jobs_by_state() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<std::string, size_t> counts;
  for (const auto& [id, job] : jobs_) {
    std::lock_guard<std::mutex> job_lock(job->mutex);
    ++counts[state_name(job->state)];
  }
  return counts;
}

int Scheduler::retry_after_seconds() {
  std::lock_guard<std::mutex> lock(mutex_);
  const double workers = std::max<size_t>(1, workers_.size());
  const double guess = mean_job_seconds_ * double(queue_.size()) / workers;
  return std::clamp(int(guess + 1), 1, 3600);
}

bool Scheduler::draining() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return draining_;
}

double Scheduler::span_clip_seconds(const Job& job) const {
  const JobRequest& r = job.request;
  double seconds = r.params.seconds;
  if (!r.text_only()) {
    if (r.video_seconds <= 0) return 0;  // unknown
    seconds = std::min(r.video_seconds, options_.max_clip_seconds);
    if (r.params.max_clip_seconds > 0) seconds = std::min(seconds, r.params.max_clip_seconds);
  }
  // A clip beyond the span is sampled in windows.
  return seconds > 0 && seconds <= options_.span_seconds ? seconds : 0;
}

std::string Scheduler::batch_key(const Job& job) const {
  if (options_.max_batch <= 1) return "";
  const double seconds = span_clip_seconds(job);
  if (seconds == 0) return "";  // unknown or windowed: it runs alone
  const std::string& m = job.request.model;
  const std::string model = m.empty() ? registry_->default_model() : m;
  // The generator groups by the exact lengths it decodes; jobs whose lengths turn out to differ
  // after all are denoised apart in the same call.
  return model + "\n" + std::to_string(std::llround(seconds * 25.0));
}

std::deque<std::shared_ptr<Job>>::iterator Scheduler::next_job_locked() {
  if (forming_.empty()) return queue_.begin();
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    const std::string key = batch_key(**it);
    if (key.empty() || !forming_.count(key)) return it;
  }
  return queue_.end();
}

void Scheduler::start_locked(Job& job) {
  ++running_;
  // Under both locks, so a concurrent cancel sees either queued (and removes it from the
  // queue) or running (and sets the flag).
  std::lock_guard<std::mutex> job_lock(job.mutex);
  job.state = JobState::kRunning;
  job.started_at = Clock::now();
  job.emit_locked("running", {{"id", job.id}});
}

void Scheduler::take_matching_locked(const std::string& key,
                                     std::vector<std::shared_ptr<Job>>& batch) {
  const size_t limit = size_t(std::max(1, options_.max_batch));
  for (auto it = queue_.begin(); it != queue_.end() && batch.size() < limit;) {
    if (batch_key(**it) != key) {
      ++it;
      continue;
    }
    batch.push_back(*it);
    start_locked(**it);
    it = queue_.erase(it);
  }
}

std::shared_ptr<Job> Scheduler::next_to_prepare_locked() {
  if (options_.decode_ahead <= 0 || draining_) return nullptr;
  int held = 0;  // queued jobs decoded or being decoded
  std::shared_ptr<Job> next;
  for (const auto& job : queue_) {
    if (job->prepared || job->preparing) ++held;
    else if (!next && !job->prepare_tried && !job->request.text_only() && span_clip_seconds(*job) > 0)
      next = job;
  }
  return held < options_.decode_ahead ? next : nullptr;
}

void Scheduler::decoder_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    std::shared_ptr<Job> job;
    queue_changed_.wait(lock, [&] { return stop_ || (job = next_to_prepare_locked()); });
    if (stop_) return;
    job->preparing = job->prepare_tried = true;
    const JobRequest& req = job->request;
    const std::string model = req.model.empty() ? registry_->default_model() : req.model;
    lock.unlock();
    std::shared_ptr<const foley::PreparedVideo> prepared;
    try {
      prepared = registry_->prepare_video(model, req.video_path, req.params, &job->cancel);
    } catch (const std::exception&) {
      // The job decodes its video again as it runs and fails there, with the usual mapping.
    }
    lock.lock();
    job->preparing = false;
    {
      std::lock_guard<std::mutex> job_lock(job->mutex);
      if (!is_terminal(job->state) && prepared) {
        job->prepared = std::move(prepared);
        metrics_.jobs_decoded_ahead++;
      }
    }
    prepared_changed_.notify_all();
    queue_changed_.notify_all();  // capacity for the next one, maybe
  }
}

void Scheduler::wait_prepared(const std::vector<std::shared_ptr<Job>>& batch) {
  std::unique_lock<std::mutex> lock(mutex_);
  prepared_changed_.wait(lock, [&] {
    return std::none_of(batch.begin(), batch.end(), [](const auto& j) { return j->preparing; });
  });
}

void Scheduler::journal_running(const Job& job) {
  if (!options_.journal || !journaled(job)) return;
  try {
    options_.journal->running(job.id, to_epoch_seconds(job.started_at));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "foley serve: job %s: cannot journal its start: %s\n", job.id.c_str(),
                 e.what());
  }
}

void Scheduler::worker_loop() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> batch;
    std::string key;
    std::chrono::steady_clock::time_point taken;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      auto next = queue_.end();
      queue_changed_.wait(lock,
                          [&] { return stop_ || (next = next_job_locked()) != queue_.end(); });
      if (stop_) return;
      taken = std::chrono::steady_clock::now();
      batch.push_back(*next);
      queue_.erase(next);
      start_locked(*batch[0]);
      // Other workers leave this key's jobs to this one while it gathers them.
      key = batch_key(*batch[0]);
      if (!key.empty()) forming_.insert(key);
      queue_changed_.notify_all();  // a decoder may take the next job now
    }
    journal_running(*batch[0]);
    run_batch(batch, key, taken);
    for (const auto& job : batch) journal_end(job);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_ -= batch.size();
    }
    running_changed_.notify_all();
  }
}

void Scheduler::run_batch(std::vector<std::shared_ptr<Job>>& batch, const std::string& key,
                          std::chrono::steady_clock::time_point taken) {
  const std::shared_ptr<Job> first = batch[0];
  const JobRequest& req = first->request;
  GenerationOutcome outcome;
  // A generator of the job's model; acquiring it loads the model if it is not loaded (evicting
  // idle ones to stay within the budget), which the job reports as its stage "loading_model".
  std::optional<foley::ModelRegistry::Lease> lease;
  const auto t_wait = std::chrono::steady_clock::now();
  bool loading = false;
  const std::string model = req.model.empty() ? registry_->default_model() : req.model;
  try {
    lease.emplace(registry_->acquire(model, &first->cancel, [&] {
      loading = true;
      std::lock_guard<std::mutex> lock(first->mutex);
      first->progress = foley::GenerationProgress{};
      first->progress.stage = "loading_model";
      nlohmann::json data = progress_json_locked(*first);
      data["model"] = model;
      first->emit_locked("progress", std::move(data));
    }));
  } catch (const foley::Error& e) {
    switch (e.kind()) {
      case foley::ErrorKind::kCancelled:
        outcome.cancelled = true;
        break;
      case foley::ErrorKind::kUnsupported:  // the model alone is larger than --vram-budget
        outcome.error_status = 507;
        outcome.error_code = "model_too_large";
        outcome.error_message = "model larger than the budget: " + scrub_paths(e.what());
        break;
      case foley::ErrorKind::kNotFound:  // a job of an earlier run, for a model no longer served
        outcome.error_status = 404;
        outcome.error_code = "not_found";
        outcome.error_message = scrub_paths(e.what());
        break;
      default:
        std::fprintf(stderr, "foley serve: job %s: %s\n", first->id.c_str(), e.what());
        outcome.error_status = 500;
        outcome.error_code = "internal";
        outcome.error_message =
            "the model \"" + model + "\" could not be loaded (see the server log)";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "foley serve: job %s: internal error: %s\n", first->id.c_str(), e.what());
    outcome.error_status = 500;
    outcome.error_code = "internal";
    outcome.error_message = "internal error (see the server log)";
  }
  const double load_seconds =
      loading ? std::chrono::duration<double>(std::chrono::steady_clock::now() - t_wait).count()
              : -1;
  if (!key.empty()) {
    // The batch: queued jobs of the same key, waiting up to the window (from when the first job
    // was taken) for more while there is room.
    std::unique_lock<std::mutex> lock(mutex_);
    if (lease) {
      const auto deadline =
          taken + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double, std::milli>(options_.batch_window_ms));
      for (;;) {
        take_matching_locked(key, batch);
        if (batch.size() >= size_t(options_.max_batch) || stop_ || draining_) break;
        if (queue_changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
          take_matching_locked(key, batch);
          break;
        }
      }
    }
    forming_.erase(forming_.find(key));
    queue_changed_.notify_all();  // what is left of this key is free for other workers
  }
  for (size_t i = 1; i < batch.size(); ++i) journal_running(*batch[i]);
  std::vector<GenerationOutcome> outcomes;
  if (lease) {
    wait_prepared(batch);
    if (batch.size() == 1) {
      outcomes.push_back(
          generate_and_write(lease->generator(), *first, options_.results_dir, first->id));
    } else {
      std::vector<Job*> jobs;
      for (const auto& job : batch) jobs.push_back(job.get());
      std::printf("foley serve: %zu jobs of model %s run as one batch\n", batch.size(),
                  model.c_str());
      std::fflush(stdout);
      outcomes = generate_batch_and_write(lease->generator(), jobs, options_.results_dir);
    }
    // The generator is free again before the jobs' ends are visible: a client that saw a job
    // finish finds its model idle (unloadable).
    lease.reset();
  } else {
    outcomes.push_back(std::move(outcome));
  }
  for (size_t i = 0; i < batch.size(); ++i)
    finish_job(batch[i], outcomes[i], i == 0 ? load_seconds : -1);
}

void Scheduler::finish_job(const std::shared_ptr<Job>& job, GenerationOutcome& outcome,
                           double load_seconds) {
  const JobRequest& req = job->request;
  if (outcome.result && load_seconds >= 0)
    outcome.result->timings.insert(outcome.result->timings.begin(), {"load_model", load_seconds});
  if (outcome.result) {
    for (const auto& t : outcome.result->timings) metrics_.observe_stage(t.stage, t.seconds);
    std::lock_guard<std::mutex> lock(job->mutex);
    // Decided under the lock that cancel() takes: a DELETE answered "cancelled" before this
    // point is honoured even though the work is done.
    if (job->cancel) {
      delete_written(outcome.written);
      finish_cancelled_locked(*job, cancel_message_locked(*job));
    } else {
      record_success_locked(*job, outcome);
      emit_terminal_locked(*job);
      metrics_.count_finished("succeeded");
      metrics_.observe_batch(outcome.result->batch_size);
    }
  }
  const int error_status = outcome.error_status;
  const std::string& error_code = outcome.error_code;
  const std::string& error_message = outcome.error_message;
  bool rerun_after_restart = false;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (!is_terminal(job->state)) {
      if (job->cancel) finish_cancelled_locked(*job, cancel_message_locked(*job));
      else finish_failed_locked(*job, error_status ? error_status : 500,
                                error_code.empty() ? "internal" : error_code,
                                error_message.empty() ? "internal error" : error_message);
    }
    rerun_after_restart = job->state == JobState::kCancelled &&
                          job->cancel_reason == kShutdownReason && options_.journal &&
                          journaled(*job);
  }
  if (req.owns_video && !rerun_after_restart) std::remove(req.video_path.c_str());
  double seconds = 0;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    seconds = std::chrono::duration<double>(job->finished_at - job->created_at).count();
  }
  metrics_.observe_request(seconds);
  std::lock_guard<std::mutex> lock(mutex_);
  job->prepared.reset();  // its frames: the result is all that is kept
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
    std::vector<std::string> removed;
    for (const auto& [when, job] : finished) {
      if (now - when < ttl && bytes <= options_.disk_budget_bytes) break;
      {
        // `job` is our own reference: the erase below cannot free it under its lock.
        std::lock_guard<std::mutex> job_lock(job->mutex);
        bytes -= job->result_bytes;
        delete_files_locked(*job);
      }
      jobs_.erase(job->id);
      removed.push_back(job->id);
    }
    if (!removed.empty()) {
      // Files first, then the journal rows: on a full disk the row removal may fail, and a row
      // whose files are gone is forgotten at the next start anyway.
      lock.unlock();
      journal_remove(removed);
      lock.lock();
    }
  }
}

bool Scheduler::drain(double budget_seconds, double cancel_grace_seconds) {
  std::unique_lock<std::mutex> lock(mutex_);
  draining_ = true;
  for (auto& job : queue_) {
    std::lock_guard<std::mutex> job_lock(job->mutex);
    job->cancel_reason = kShutdownReason;
    job->cancel = true;  // a decoder working on it stops
    finish_cancelled_locked(*job, kShutdownReason);
    // A journaled job stays queued on disk (with its upload) and runs after a restart.
    const bool kept = options_.journal && journaled(*job);
    if (job->request.owns_video && !kept) std::remove(job->request.video_path.c_str());
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
      if (!job->cancel) job->cancel_reason = kShutdownReason;
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
    for (auto& d : decoders_) d.detach();
    decoders_.clear();
    if (janitor_.joinable()) janitor_.join();
    return false;
  }
  for (auto& w : workers_) w.join();
  workers_.clear();
  // A decoder stops at its next frame: every job it could hold was cancelled above.
  for (auto& d : decoders_) d.join();
  decoders_.clear();
  if (janitor_.joinable()) janitor_.join();
  return true;
}

RestoreSummary Scheduler::restore(const std::vector<JobJournal::Row>& rows) {
  RestoreSummary summary;
  std::vector<std::shared_ptr<Job>> ended;  // journaled as finished once the locks are released
  std::vector<std::string> forget;
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& row : rows) {
    auto job = std::make_shared<Job>();
    job->id = row.id;
    try {
      job->request = request_from_json(row.request);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "foley serve: job %s: unreadable journal record, forgotten: %s\n",
                   row.id.c_str(), e.what());
      forget.push_back(row.id);
      ++summary.forgotten;
      continue;
    }
    job->created_at = from_epoch_seconds(row.created_at);
    std::lock_guard<std::mutex> job_lock(job->mutex);
    if (row.state == "queued" || row.state == "running") {
      const bool upload_lost =
          job->request.owns_video && !fs::exists(job->request.video_path);
      if (row.attempts >= kMaxAttempts || upload_lost) {
        finish_failed_locked(*job, 500, "internal",
                             upload_lost ? "the uploaded video was lost in a server restart"
                                         : "the server stopped while running this job " +
                                               std::to_string(row.attempts) +
                                               " times; it is not run again");
        ended.push_back(job);
        ++summary.given_up;
      } else {
        job->emit_locked("queued", {{"id", job->id}, {"position", queue_.size()}});
        queue_.push_back(job);
        ++summary.requeued;
      }
      if (job->request.owns_video && !upload_lost && is_terminal(job->state))
        std::remove(job->request.video_path.c_str());
      else if (job->request.owns_video && !upload_lost)
        summary.files.push_back(job->request.video_path);
    } else {
      job->finished_at = from_epoch_seconds(row.finished_at.value_or(row.created_at));
      job->started_at = from_epoch_seconds(row.started_at.value_or(row.created_at));
      if (row.state == "succeeded") {
        apply_result_locked(*job, row.result);
        if (job->audio_path.empty() || !fs::exists(job->audio_path)) {
          forget.push_back(row.id);  // its result is gone: as if it had expired
          ++summary.forgotten;
          continue;
        }
        if (!job->video_path.empty() && !fs::exists(job->video_path)) job->video_path.clear();
        job->state = JobState::kSucceeded;
        emit_terminal_locked(*job);
        summary.files.push_back(job->audio_path);
        if (!job->video_path.empty()) summary.files.push_back(job->video_path);
      } else {
        job->state = row.state == "cancelled" ? JobState::kCancelled : JobState::kFailed;
        job->error_status = row.error.value("status", 500);
        job->error_code = row.error.value("code", "internal");
        job->error_message = row.error.value("message", "");
        emit_terminal_locked(*job);
      }
      ++summary.finished;
    }
    jobs_[job->id] = job;
  }
  // Journal writes wait for the disk; nothing else runs yet (start() comes after), so holding
  // the scheduler's lock here delays nobody.
  for (const auto& job : ended) {
    std::string state;
    double finished_at;
    nlohmann::json error;
    {
      std::lock_guard<std::mutex> job_lock(job->mutex);
      state = state_name(job->state);
      finished_at = to_epoch_seconds(job->finished_at);
      error = error_record_locked(*job);
    }
    options_.journal->finished(job->id, state, finished_at, nullptr, error);
  }
  for (const auto& id : forget) options_.journal->remove(id);
  return summary;
}

}  // namespace foley_server
