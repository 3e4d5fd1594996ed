#include "redis_jobs.h"

#include <cstdio>
#include <filesystem>

namespace foley_server {

namespace fs = std::filesystem;

namespace {

// The record's fields (not its state or events) into a held mirror; the caller holds its lock.
void copy_record_locked(Job& mirror, const Job& record) {
  mirror.request = record.request;
  mirror.created_at = record.created_at;
  mirror.started_at = record.started_at;
  mirror.finished_at = record.finished_at;
  mirror.progress = record.progress;
  mirror.fraction = std::max(mirror.fraction, record.fraction);
  mirror.timings = record.timings;
  mirror.audio_path = record.audio_path;
  mirror.video_path = record.video_path;
  mirror.audio_seconds = record.audio_seconds;
  mirror.windows = record.windows;
  mirror.result_bytes = record.result_bytes;
  mirror.clipped_samples = record.clipped_samples;
  mirror.error_status = record.error_status;
  mirror.error_code = record.error_code;
  mirror.error_message = record.error_message;
  mirror.cancel_reason = record.cancel_reason;
}

}  // namespace

RedisJobs::RedisJobs(RedisJobsOptions options)
    : options_(std::move(options)), queue_(options_.url) {
  queue_.ensure_group();
  poller_ = std::thread([this] { poll_loop(); });
  janitor_ = std::thread([this] { janitor_loop(); });
}

RedisJobs::~RedisJobs() {
  drain(0, 0);
}

bool RedisJobs::drain(double, double) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) return true;
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (poller_.joinable()) poller_.join();
  if (janitor_.joinable()) janitor_.join();
  return true;
}

SubmitResult RedisJobs::submit(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) return SubmitResult::kDraining;
  }
  if (!queue_.submit(*job, options_.queue_size)) return SubmitResult::kQueueFull;
  std::lock_guard<std::mutex> lock(mutex_);
  mirrors_[job->id] = Mirror{job, queue_.last_event_id(job->id)};
  return SubmitResult::kAccepted;
}

std::shared_ptr<Job> RedisJobs::find(const std::string& id) {
  if (id.size() != 32 || id.find_first_not_of("0123456789abcdef") != std::string::npos)
    return nullptr;  // not one of our ids: no Redis round trip
  std::shared_ptr<Job> job;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = mirrors_.find(id);
    if (it != mirrors_.end()) job = it->second.job.lock();
  }
  const bool fresh = !job;
  if (fresh) job = std::make_shared<Job>();
  Job snapshot;
  if (!queue_.load(id, snapshot)) return nullptr;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    job->id = id;
    copy_record_locked(*job, snapshot);
    if (fresh || !is_terminal(job->state)) {
      const bool ended_now = !is_terminal(job->state) && is_terminal(snapshot.state);
      job->state = snapshot.state;
      if (fresh ? is_terminal(job->state) : ended_now) emit_terminal_locked(*job);
    }
  }
  if (fresh) {
    const std::string last = queue_.last_event_id(id);
    std::lock_guard<std::mutex> lock(mutex_);
    mirrors_[id] = Mirror{job, last};
  }
  return job;
}

bool RedisJobs::cancel(const std::shared_ptr<Job>& job, const std::string& reason) {
  const int r = queue_.cancel(job->id, reason);
  if (r == 1) {
    // Cancelled while queued: no worker will see its upload.
    bool owns = false;
    std::string path;
    {
      std::lock_guard<std::mutex> lock(job->mutex);
      owns = job->request.owns_video;
      path = job->request.video_path;
    }
    if (owns) delete_files({path});
    find(job->id);  // the mirror ends now, not at the next poll
  }
  return r == 1 || r == 2;
}

void RedisJobs::remove(const std::string& id) {
  if (const auto files = queue_.forget(id)) delete_files(*files);
  std::lock_guard<std::mutex> lock(mutex_);
  mirrors_.erase(id);
}

void RedisJobs::delete_files(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    std::error_code ec;
    if (!p.empty()) fs::remove(p, ec);
  }
}

size_t RedisJobs::queue_depth() {
  try {
    return queue_.stats().waiting;
  } catch (const std::exception&) {
    return 0;
  }
}

std::map<std::string, size_t> RedisJobs::jobs_by_state() {
  try {
    const auto s = queue_.stats();
    return {{"queued", s.waiting}, {"running", s.pending}};
  } catch (const std::exception&) {
    return {};
  }
}

std::string RedisJobs::extra_metrics() {
  RedisQueue::Stats s;
  try {
    s = queue_.stats();
  } catch (const std::exception&) {
    return "# foley_fleet_* unavailable: Redis does not answer\n";
  }
  auto line = [](const std::string& name, const std::string& help, const std::string& type,
                 const std::string& body) {
    return "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + body;
  };
  return line("foley_fleet_queue_depth", "Jobs in Redis no worker has taken yet.", "gauge",
              "foley_fleet_queue_depth " + std::to_string(s.waiting) + "\n") +
         line("foley_fleet_running", "Jobs taken by a worker and not finished.", "gauge",
              "foley_fleet_running " + std::to_string(s.pending) + "\n") +
         line("foley_fleet_oldest_waiting_seconds", "Age of the oldest job no worker has taken.",
              "gauge",
              "foley_fleet_oldest_waiting_seconds " + std::to_string(s.oldest_waiting_seconds) +
                  "\n") +
         line("foley_fleet_reclaimed_total",
              "Jobs taken over from a worker that stopped heartbeating.", "counter",
              "foley_fleet_reclaimed_total " + std::to_string(s.reclaimed) + "\n") +
         line("foley_fleet_workers", "Workers heartbeating, by whether they run a job.", "gauge",
              "foley_fleet_workers{state=\"busy\"} " + std::to_string(s.workers_busy) +
                  "\nfoley_fleet_workers{state=\"idle\"} " + std::to_string(s.workers_idle) + "\n");
}

bool RedisJobs::healthy() {
  try {
    auto c = queue_.pool().lease();
    return c->ping();
  } catch (const std::exception&) {
    return false;
  }
}

void RedisJobs::poll_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    stop_cv_.wait_for(lock, std::chrono::duration<double>(options_.poll_seconds));
    if (stop_) break;
    // Held mirrors of unfinished jobs; the others are dropped (nobody needs their events).
    std::vector<std::pair<std::string, std::shared_ptr<Job>>> held;
    for (auto it = mirrors_.begin(); it != mirrors_.end();) {
      auto job = it->second.job.lock();
      if (!job) {
        it = mirrors_.erase(it);
        continue;
      }
      held.emplace_back(it->first, std::move(job));
      ++it;
    }
    lock.unlock();
    for (auto& [id, job] : held) {
      std::string after;
      {
        std::lock_guard<std::mutex> l(mutex_);
        const auto it = mirrors_.find(id);
        if (it == mirrors_.end()) continue;
        after = it->second.last_event;
      }
      {
        std::lock_guard<std::mutex> l(job->mutex);
        if (is_terminal(job->state)) continue;
      }
      try {
        const auto events = queue_.events(id, after);
        if (events.empty()) continue;
        Job snapshot;
        const bool known = queue_.load(id, snapshot);
        {
          std::lock_guard<std::mutex> l(job->mutex);
          if (known) {
            copy_record_locked(*job, snapshot);
            job->state = snapshot.state;
          }
          for (const auto& e : events)
            if (e.name != "queued") job->emit_locked(e.name, e.data);
        }
        std::lock_guard<std::mutex> l(mutex_);
        const auto it = mirrors_.find(id);
        if (it != mirrors_.end()) it->second.last_event = events.back().stream_id;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "foley serve: job %s: cannot read its events: %s\n", id.c_str(),
                     e.what());
      }
    }
    lock.lock();
  }
}

void RedisJobs::janitor_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    stop_cv_.wait_for(lock, std::chrono::seconds(1));
    if (stop_) break;
    lock.unlock();
    try {
      const double before = to_epoch_seconds(Clock::now()) - options_.result_ttl_seconds;
      for (const auto& id : queue_.expired(before, 100)) remove(id);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "foley serve: result janitor: %s\n", e.what());
    }
    lock.lock();
  }
}

}  // namespace foley_server
