// The job store and its workers: a bounded FIFO of queued jobs, a fixed number of worker threads
// (so at most that many jobs run at once) that each take the next job and lease a generator of
// the job's model from the ModelRegistry (loading the model first if it is not loaded; the job
// waits, running, with progress stage "loading_model"), finished results kept for a TTL and
// within a disk budget by a janitor thread, and the drain that SIGTERM starts.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "foley/foley.h"
#include "foley/registry.h"
#include "job.h"
#include "job_journal.h"
#include "job_runner.h"
#include "job_service.h"
#include "metrics.h"

namespace foley_server {

struct SchedulerOptions {
  size_t queue_size = 16;
  std::string results_dir;
  double result_ttl_seconds = 3600;
  int64_t disk_budget_bytes = int64_t{1} << 30;
  // When set, every accepted job is journaled before it is acknowledged and every change of
  // state after that, so a restart on the same data dir picks the jobs up (restore()).
  JobJournal* journal = nullptr;
  // Cross-request batching (--max-batch, --batch-window-ms): a worker that takes a job waits up
  // to batch_window_ms for queued jobs of the same model whose clips are as long (the probed
  // video duration, or a text-only job's seconds, to the 25 fps frame; at most span_seconds),
  // takes up to max_batch of them and runs them as one Generator::generate_batch. 1: each job
  // alone, as before.
  int max_batch = 1;
  double batch_window_ms = 0;
  // Decoding ahead (--decode-ahead N): while the workers run jobs, up to N queued video jobs of
  // a loaded model, whose clips fit the span, are decoded by up to 4 decoder threads
  // (ModelRegistry::prepare_video), so that a worker taking one starts at its encoders and the
  // device does not wait for FFmpeg. Host memory: up to N clips' frames (~10 MB per second).
  // 0: off (each job decodes as it runs).
  int decode_ahead = 0;
  double span_seconds = 15;       // the generators' span: longer clips run in windows, alone
  double max_clip_seconds = 600;  // the video seconds a job uses without max_seconds
};

// What restore() did with the journal's rows.
struct RestoreSummary {
  size_t requeued = 0, finished = 0, given_up = 0, forgotten = 0;
  std::vector<std::string> files;  // uploads and results the restored jobs still refer to
};

class Scheduler : public JobService {
 public:
  Scheduler(SchedulerOptions options, Metrics& metrics);
  ~Scheduler() override;

  // Starts `workers` worker threads, which run jobs on generators leased from `registry` (it
  // must outlive the scheduler's threads), and the janitor.
  void start(foley::ModelRegistry& registry, int workers);

  // Journals (when a journal is set) and queues the job. Throws JournalError when the journal
  // cannot record it: the job is then not accepted.
  SubmitResult submit(const std::shared_ptr<Job>& job) override;
  // Before start(): the jobs of an earlier run, in acceptance order. Queued ones (and those it
  // was running) are queued again, past the queue limit; finished ones are kept with their
  // results until their TTL; a job that was running in 3 runs that died is given up (failed).
  RestoreSummary restore(const std::vector<JobJournal::Row>& rows);
  std::shared_ptr<Job> find(const std::string& id) override;
  // Queued: removed from the queue and cancelled now. Running: asked to stop at its next check;
  // it then ends "cancelled" whatever stage it was in (its end is decided under the job's lock,
  // after the cancel flag is read). Returns false when the job is already finished.
  bool cancel(const std::shared_ptr<Job>& job, const std::string& reason) override;
  // Forgets a finished job and deletes its files.
  void remove(const std::string& id) override;

  size_t queue_depth() override;
  std::map<std::string, size_t> jobs_by_state() override;
  int retry_after_seconds() override;
  bool draining() const;

  // Stops taking jobs, cancels queued ones, lets running jobs finish within `budget_seconds`,
  // then cancels what is still running and waits `cancel_grace_seconds` more for it to stop.
  // Returns true when every thread was joined; false when a job was still running (its worker
  // is detached: the process must exit without destroying the scheduler's generators).
  bool drain(double budget_seconds, double cancel_grace_seconds = 2.0) override;

 private:
  void worker_loop();
  // Runs `batch` (one job, or more of one key taken together) on a generator of its model;
  // `key` is the batch key of its first job ("" when it is not batched) and `taken` when that
  // job left the queue (the batch window counts from there).
  void run_batch(std::vector<std::shared_ptr<Job>>& batch, const std::string& key,
                 std::chrono::steady_clock::time_point taken);
  // A job's end once its generation is over (or could not start): state, events, metrics.
  void finish_job(const std::shared_ptr<Job>& job, GenerationOutcome& outcome, double load_seconds);
  // The jobs that may be denoised together share a key: model and clip length in 25 fps frames.
  // "" for a job that is never batched (batching off, unknown duration, beyond the span).
  std::string batch_key(const Job& job) const;
  // The seconds of video (or text-only audio) a job uses, when known and within the span; 0
  // otherwise (unknown duration, or a clip sampled in windows).
  double span_clip_seconds(const Job& job) const;
  // The next job a free worker takes: the first queued one that is not of a batch another
  // worker is gathering. queue_.end() if none.
  std::deque<std::shared_ptr<Job>>::iterator next_job_locked();
  // Marks a job taken from the queue as running.
  void start_locked(Job& job);
  // Moves queued jobs of `key` into `batch` (up to max_batch), marking them running.
  void take_matching_locked(const std::string& key, std::vector<std::shared_ptr<Job>>& batch);
  void journal_running(const Job& job);
  void janitor_loop();
  // Decodes queued jobs ahead (options_.decode_ahead), one at a time per decoder thread.
  void decoder_loop();
  // The next queued job to decode ahead, or null (none, or N already decoded or decoding).
  std::shared_ptr<Job> next_to_prepare_locked();
  // Waits until no decoder holds a job of `batch` (the worker then uses what it decoded).
  void wait_prepared(const std::vector<std::shared_ptr<Job>>& batch);
  void finish_cancelled_locked(Job& job, const std::string& message);
  void finish_failed_locked(Job& job, int status, const std::string& code,
                            const std::string& message);
  void delete_files_locked(Job& job);
  std::string cancel_message_locked(const Job& job) const;
  // Journals a finished job's end (outside every lock: the journal syncs to disk). Jobs stopped
  // by the shutdown are left as they were, so the next start runs them again.
  void journal_end(const std::shared_ptr<Job>& job);
  void journal_remove(const std::vector<std::string>& ids);

  SchedulerOptions options_;
  Metrics& metrics_;
  foley::ModelRegistry* registry_ = nullptr;
  std::vector<std::thread> workers_;
  std::thread janitor_;
  std::vector<std::thread> decoders_;
  std::condition_variable prepared_changed_;  // a decoder finished a job

  mutable std::mutex mutex_;
  std::condition_variable queue_changed_;  // workers and the janitor wait on it
  std::condition_variable running_changed_;  // drain waits on it
  std::deque<std::shared_ptr<Job>> queue_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  size_t running_ = 0;
  std::multiset<std::string> forming_;  // keys of the batches workers are gathering
  size_t reserved_ = 0;  // queue slots held by submissions being journaled
  double mean_job_seconds_ = 0;
  bool draining_ = false;
  bool stop_ = false;
};

}  // namespace foley_server
