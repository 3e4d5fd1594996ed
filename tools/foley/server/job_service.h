// What the HTTP side needs from wherever jobs live: the local Scheduler (one process: its own
// workers, a SQLite journal) or the Redis front end (jobs in Redis, run by `foley worker`
// processes elsewhere). The handlers work on Job objects either way: a Redis job is a mirror
// kept current while anyone holds it, so SSE and synchronous waits need no second code path.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "job.h"

namespace foley_server {

enum class SubmitResult { kAccepted, kQueueFull, kDraining };

class JobService {
 public:
  virtual ~JobService() = default;

  std::shared_ptr<Job> make_job(JobRequest request) const {  // fresh random id, not yet queued
    auto job = std::make_shared<Job>();
    job->id = new_random_id();
    job->request = std::move(request);
    return job;
  }
  // Records the job durably, then queues it. Throws (JournalError, RedisError) when it cannot be
  // recorded: the job is then not accepted.
  virtual SubmitResult submit(const std::shared_ptr<Job>& job) = 0;
  virtual std::shared_ptr<Job> find(const std::string& id) = 0;
  // Queued: cancelled now. Running: asked to stop at its next check, and it then ends
  // "cancelled" whatever stage it was in. False when the job is already finished.
  virtual bool cancel(const std::shared_ptr<Job>& job, const std::string& reason) = 0;
  // Forgets a finished job and deletes its files.
  virtual void remove(const std::string& id) = 0;

  virtual size_t queue_depth() = 0;
  virtual std::map<std::string, size_t> jobs_by_state() = 0;
  virtual int retry_after_seconds() = 0;  // a guess at when a queue slot frees up
  // Prometheus lines of the service's own (fleet figures for Redis); "" if none.
  virtual std::string extra_metrics() { return ""; }
  // True when the service can take work (a front end: Redis answers).
  virtual bool healthy() { return true; }

  // Stops taking jobs and lets running ones finish within the budget (see Scheduler::drain).
  virtual bool drain(double budget_seconds, double cancel_grace_seconds) = 0;
};

}  // namespace foley_server
