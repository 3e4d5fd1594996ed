// Jobs on Redis, as front ends (`foley serve --queue`) and workers (`foley worker`) both see them.
//
//   foley:q          stream of accepted job ids; consumer group "workers". An entry stays until
//                    its job ends: one a worker died with is still pending, and another worker
//                    takes it over (XAUTOCLAIM) once it has been idle for the visibility timeout.
//                    A running worker keeps its entry's idle time low (XCLAIM ... JUSTID).
//   foley:job:ID     hash: state, request (JSON), created_at, started_at, finished_at, progress
//                    (JSON), fraction, result (JSON), error (JSON), cancel, cancel_reason, worker,
//                    attempts, entry
//   foley:ev:ID      the job's events (name, data), the last 64, for SSE from any front end
//   foley:done       finished ids by finished_at: the TTL janitor's list
//   foley:worker:N   a worker's heartbeat (busy, job, seen), expiring when it stops
//   foley:stats      fleet counters (reclaimed)
// State changes are Lua scripts, so each is atomic: a job ends once, and only by the worker that
// owns it (a worker that lost its job to a reclaim finds out when it tries to finish it).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "job.h"
#include "redis_client.h"

namespace foley_server {

// Connections for many threads: each call borrows one.
class RedisPool {
 public:
  explicit RedisPool(RedisUrl url) : url_(std::move(url)) {}
  class Lease {
   public:
    Lease(RedisPool& pool, std::unique_ptr<RedisClient> c) : pool_(pool), client_(std::move(c)) {}
    ~Lease() { pool_.give_back(std::move(client_)); }
    RedisClient* operator->() { return client_.get(); }
    RedisClient& operator*() { return *client_; }

   private:
    RedisPool& pool_;
    std::unique_ptr<RedisClient> client_;
  };
  Lease lease();
  const RedisUrl& url() const { return url_; }

 private:
  void give_back(std::unique_ptr<RedisClient> c);
  RedisUrl url_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<RedisClient>> idle_;
};

struct RedisEvent {
  std::string stream_id, name;
  nlohmann::json data;
};

struct QueueClaim {
  std::string entry, id;
  bool reclaimed = false;  // taken over from a worker that stopped heartbeating
};

class RedisQueue {
 public:
  static constexpr const char* kGroup = "workers";
  static constexpr int kMaxAttempts = 3;

  explicit RedisQueue(RedisUrl url);
  RedisPool& pool() { return pool_; }
  void ensure_group();  // the stream and its consumer group (idempotent)

  // ---- front ends
  // Records and queues the job unless `max_queued` entries (queued + running) are waiting;
  // false when full.
  bool submit(const Job& job, size_t max_queued);
  // Fills `job` from its hash (not its events); false when the job is unknown (expired).
  bool load(const std::string& id, Job& job);
  // Events after `after` (a stream id; "0" for all), oldest first.
  std::vector<RedisEvent> events(const std::string& id, const std::string& after);
  std::string last_event_id(const std::string& id);
  // 1: a queued job is cancelled now; 2: a running job is asked to stop; 0: already finished;
  // -1: unknown.
  int cancel(const std::string& id, const std::string& reason);
  // Deletes a finished job's keys; returns its file paths (for the caller to delete) or nothing
  // when it is not finished.
  std::optional<std::vector<std::string>> forget(const std::string& id);
  // Finished ids whose finished_at is before `before` (epoch seconds).
  std::vector<std::string> expired(double before, size_t limit);
  struct Stats {
    size_t waiting = 0, pending = 0;  // undelivered entries; delivered but not acknowledged
    double oldest_waiting_seconds = 0;
    int64_t reclaimed = 0;
    size_t workers_busy = 0, workers_idle = 0;
  };
  Stats stats();

  // ---- workers (one RedisClient each: `c`)
  // The next entry for `worker`: one a dead worker left (idle for visibility_ms) first, else a
  // new one, waiting up to block_ms for it; block_ms 0 returns at once (only entries that are
  // already waiting: no other worker was blocked on the stream when they arrived).
  std::optional<QueueClaim> claim(RedisClient& c, const std::string& worker,
                                  int64_t visibility_ms, int block_ms);
  // The claim's job goes running under this worker: its attempt number; 0 when the job is
  // already finished (cancelled while queued) or unknown: acknowledge and drop the entry.
  int64_t start(RedisClient& c, const QueueClaim& claim, const std::string& worker);
  void progress(RedisClient& c, const Job& job, const std::string& worker);
  // Keeps the entry's idle time low and reports whether a cancel was asked for.
  bool heartbeat(RedisClient& c, const QueueClaim& claim, const std::string& worker,
                 bool busy, double ttl_seconds);
  // Ends the job with `job`'s state (succeeded, failed, cancelled) if this worker still owns it.
  // 1: done; 0: another worker owns it now (the caller deletes its own result files); 2: it
  // asked to succeed but a cancel was asked for meanwhile (the caller finishes it cancelled).
  int finish(RedisClient& c, const Job& job, const std::string& worker);
  void acknowledge(RedisClient& c, const QueueClaim& claim);
  void idle(RedisClient& c, const std::string& worker, double ttl_seconds);

 private:
  RedisPool pool_;
};

}  // namespace foley_server
