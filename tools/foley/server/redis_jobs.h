// The jobs of a `foley serve --queue redis://...` front end: they live in Redis (redis_queue.h)
// and are run by `foley worker` processes. The front end keeps no state of its own: any front end
// answers for any job. A Job handed to the HTTP side is a mirror of the Redis record, refreshed
// (and its events replayed, for SSE and synchronous waits) while anyone holds it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "job_service.h"
#include "redis_queue.h"

namespace foley_server {

struct RedisJobsOptions {
  RedisUrl url;
  size_t queue_size = 16;           // queued + running entries before 429
  double result_ttl_seconds = 3600;
  double poll_seconds = 0.1;         // how often held mirrors look for new events
};

class RedisJobs : public JobService {
 public:
  explicit RedisJobs(RedisJobsOptions options);
  ~RedisJobs() override;

  SubmitResult submit(const std::shared_ptr<Job>& job) override;
  std::shared_ptr<Job> find(const std::string& id) override;
  bool cancel(const std::shared_ptr<Job>& job, const std::string& reason) override;
  void remove(const std::string& id) override;
  size_t queue_depth() override;
  std::map<std::string, size_t> jobs_by_state() override;
  int retry_after_seconds() override { return 5; }
  std::string extra_metrics() override;
  bool healthy() override;
  bool drain(double, double) override;  // nothing runs here: stops the poller and janitor

 private:
  struct Mirror {
    std::weak_ptr<Job> job;
    std::string last_event;  // stream id of the last event replayed into it
  };
  void poll_loop();     // replays new events into held mirrors
  void janitor_loop();  // deletes finished jobs past their TTL (any front end may do it)
  static void delete_files(const std::vector<std::string>& paths);

  RedisJobsOptions options_;
  RedisQueue queue_;
  std::mutex mutex_;
  std::map<std::string, Mirror> mirrors_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread poller_, janitor_;
};

}  // namespace foley_server
