// foley worker: runs the jobs of a Redis queue (the distributed mode of `foley serve --queue`).
// One process per GPU: it loads and warms its model, then takes jobs from the stream's consumer
// group (one at a time, or with --max-batch N up to N that arrive within --batch-window-ms,
// denoised together where their lengths match, as `foley serve --max-batch` does), heartbeats
// each from the moment it takes it (so a worker that dies has its jobs taken over by another
// after --visibility-timeout), writes the result into the shared --data-dir, and ends the job in
// Redis only if it still owns it (so a job ends once, with one result). While a batch runs it
// takes up to --decode-ahead jobs that are already waiting and decodes their videos, so the next
// batch starts at its encoders.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "foley/foley.h"
#include "stop_signals.h"

#ifdef FOLEY_HAVE_HTTP
#include <httplib.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iterator>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "server/http_errors.h"
#include "server/job_runner.h"
#include "server/model_specs.h"
#include "server/redis_queue.h"
#endif

namespace foley_cli {

#ifdef FOLEY_HAVE_HTTP
namespace {

namespace fs = std::filesystem;
using namespace foley_server;

struct WorkerOptions {
  std::string queue, model, device = "cpu", precision = "exact", data_dir, name, host = "127.0.0.1";
  std::string model_name;  // from --model NAME=BUNDLE (or the bundle's stem)
  int port = -1;  // health and metrics; -1: none
  double visibility_seconds = 30;
  double max_clip_seconds = 600;  // the longest clip (GeneratorOptions::max_video_seconds)
  double drain_seconds = 30;
  int max_batch = 1;           // jobs run as one Generator::generate_batch
  double batch_window_ms = 50;  // how long the first job waits for others to join
  int decode_ahead = -1;        // jobs taken and decoded while a batch runs; -1: max_batch
  std::string overlap_encoders;  // "on", "off"; empty: on for cuda
};

std::atomic<bool> g_stop{false};

// Keeps the claim alive and watches for a cancel while the job runs.
class Heartbeat {
 public:
  Heartbeat(RedisQueue& queue, const RedisUrl& url, QueueClaim claim, std::string worker, Job& job,
            double interval)
      : queue_(queue),
        client_(url),
        claim_(std::move(claim)),
        worker_(std::move(worker)),
        job_(job),
        interval_(interval) {
    thread_ = std::thread([this] { run(); });
  }
  ~Heartbeat() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      lock.unlock();
      try {
        if (queue_.heartbeat(client_, claim_, worker_, true, interval_ * 3)) {
          if (!job_.cancel) {
            std::lock_guard<std::mutex> jl(job_.mutex);
            job_.cancel_reason = "cancelled by request";
          }
          job_.cancel = true;
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "foley worker: heartbeat: %s\n", e.what());
      }
      lock.lock();
      cv_.wait_for(lock, std::chrono::duration<double>(std::min(interval_, 0.25)));
    }
  }

  RedisQueue& queue_;
  RedisClient client_;
  QueueClaim claim_;
  std::string worker_;
  Job& job_;
  double interval_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Marks the local copy of the job finished from the outcome (as the Scheduler does).
void settle(Job& job, const GenerationOutcome& outcome) {
  std::lock_guard<std::mutex> lock(job.mutex);
  job.finished_at = Clock::now();
  if (outcome.result && !job.cancel) {
    record_success_locked(job, outcome);
  } else if (outcome.cancelled || job.cancel) {
    job.state = JobState::kCancelled;
    job.error_status = 409;
    job.error_code = "cancelled";
    job.error_message = job.cancel_reason.empty() ? "cancelled" : job.cancel_reason;
  } else {
    job.state = JobState::kFailed;
    job.error_status = outcome.error_status ? outcome.error_status : 500;
    job.error_code = outcome.error_code.empty() ? "internal" : outcome.error_code;
    job.error_message = outcome.error_message.empty() ? "internal error" : outcome.error_message;
  }
}

// Redis calls that must not be lost to a brief outage (Redis restarting) are retried.
template <typename F>
auto with_retry(const char* what, F&& f) -> decltype(f()) {
  for (int attempt = 0;; ++attempt) {
    try {
      return f();
    } catch (const RedisError& e) {
      if (!e.connection() || attempt >= 120 || g_stop) throw;
      if (attempt == 0) std::fprintf(stderr, "foley worker: %s: %s (retrying)\n", what, e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }
}

struct Counters {
  std::atomic<uint64_t> succeeded{0}, failed{0}, cancelled{0}, lost{0};
  std::atomic<uint64_t> batches{0}, batched_jobs{0};  // generate_batch calls, the jobs they ran
  std::atomic<uint64_t> decoded_ahead{0};             // videos decoded while an earlier batch ran
  std::atomic<int> busy{0};  // batches running now (two with overlapped encoders)
  std::atomic<bool> ready{false};
};

// A claimed job between start and finish: runnable (heartbeating from the start, however long
// it waits in this worker), or already decided (`outcome`).
struct ClaimedJob {
  QueueClaim claim;
  int64_t attempt = 0;
  std::shared_ptr<Job> job;
  bool runnable = false;
  GenerationOutcome outcome;
  std::unique_ptr<Heartbeat> heartbeat;
};

void acknowledge(RedisQueue& queue, RedisClient& c, const QueueClaim& claim) {
  with_retry("ack", [&] {
    queue.acknowledge(c, claim);
    return 0;
  });
}

// Marks the claimed job running and loads it; nullopt when there is nothing to run (it finished
// meanwhile, cancelled while queued, or expired: acknowledged here).
std::optional<ClaimedJob> begin_job(RedisQueue& queue, RedisClient& c, const WorkerOptions& o,
                                    const QueueClaim& claim) {
  const int64_t attempt = with_retry("start", [&] { return queue.start(c, claim, o.name); });
  if (attempt == 0) {
    acknowledge(queue, c, claim);
    return std::nullopt;
  }
  auto job = std::make_shared<Job>();
  if (!with_retry("load", [&] { return queue.load(claim.id, *job); })) {
    acknowledge(queue, c, claim);
    return std::nullopt;
  }
  job->state = JobState::kRunning;
  // A front end whose --max-clip-seconds is above this worker's: the job uses what this worker
  // takes (the library refuses a longer span; the front end has already refused clips beyond its
  // own limit that did not send max_seconds).
  foley::GenerationParams& params = job->request.params;
  if (params.max_clip_seconds > o.max_clip_seconds) {
    if (!job->request.text_only())
      std::fprintf(stderr,
                   "foley worker %s: job %s may use %g s of video, this worker's "
                   "--max-clip-seconds is %g: it uses at most that\n",
                   o.name.c_str(), claim.id.c_str(), params.max_clip_seconds, o.max_clip_seconds);
    params.max_clip_seconds = o.max_clip_seconds;
  }
  std::printf("foley worker %s: job %s (attempt %lld%s)\n", o.name.c_str(), claim.id.c_str(),
              (long long)attempt, claim.reclaimed ? ", taken over" : "");
  std::fflush(stdout);
  ClaimedJob cj{claim, attempt, job, false, {}, nullptr};
  GenerationOutcome& outcome = cj.outcome;
  const std::string& wanted = job->request.model;
  if (attempt > RedisQueue::kMaxAttempts) {
    outcome.error_status = 500;
    outcome.error_code = "internal";
    outcome.error_message =
        "the job stopped " + std::to_string(attempt - 1) + " workers; it is not run again";
  } else if (!wanted.empty() && wanted != o.model_name) {
    // A worker serves one model; a queue's workers are meant to serve the same one.
    outcome.error_status = 404;
    outcome.error_code = "not_found";
    outcome.error_message = "model \"" + wanted + "\" is not served by this queue's workers (the "
                            "worker that took the job serves \"" + o.model_name + "\")";
  } else {
    cj.runnable = true;
    cj.heartbeat = std::make_unique<Heartbeat>(queue, queue.pool().url(), claim, o.name, *job,
                                               std::max(0.2, o.visibility_seconds / 3));
  }
  return cj;
}

void end_job(RedisQueue& queue, RedisClient& c, const WorkerOptions& o, ClaimedJob& cj,
             Counters& counters);

// --decode-ahead: while the current batch runs, takes jobs that are already waiting (never by
// blocking on the stream, so a job that arrives while another worker is idle goes to that worker)
// and decodes their videos with Model::prepare_video, which uses no device. The jobs it took are
// the next batch.
class DecodeAhead {
 public:
  DecodeAhead(RedisQueue& queue, RedisClient& c, const WorkerOptions& o, const foley::Model& model,
              const foley::GeneratorOptions& go, Counters& counters)
      : queue_(queue), c_(c), o_(o), model_(model), go_(go), counters_(counters) {}
  ~DecodeAhead() { finish(); }

  // Starts taking up to `limit` jobs (none when limit <= 0).
  void start(int limit) {
    if (limit <= 0) return;
    stop_ = false;
    thread_ = std::thread([this, limit] { run(limit); });
  }
  // Stops taking more (one in decoding is finished first) and hands over what was taken.
  std::vector<ClaimedJob> finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return std::exchange(taken_, {});
  }

 private:
  void run(int limit) {
    const int64_t visibility_ms = int64_t(o_.visibility_seconds * 1000);
    while (!stop_ && !g_stop && int(taken_.size()) < limit) {
      std::optional<QueueClaim> claim;
      try {
        claim = queue_.claim(c_, o_.name, visibility_ms, 0);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "foley worker: decode ahead: %s\n", e.what());
        return;  // the main loop takes the next jobs itself
      }
      if (!claim) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      std::optional<ClaimedJob> cj;
      try {
        cj = begin_job(queue_, c_, o_, *claim);
      } catch (const std::exception& e) {
        // Redis stayed away through with_retry: the entry stays pending and is taken over.
        std::fprintf(stderr, "foley worker: decode ahead: %s\n", e.what());
        return;
      }
      if (!cj) continue;
      if (!cj->runnable) {  // decided already (another model, too many attempts): ended now
        end_job(queue_, c_, o_, *cj, counters_);
        continue;
      }
      Job& job = *cj->job;
      if (!job.request.text_only()) {
        try {
          job.prepared =
              model_.prepare_video(job.request.video_path, job.request.params, go_, &job.cancel);
          if (job.prepared) {
            ++counters_.decoded_ahead;
            std::printf("foley worker %s: job %s decoded ahead (%.2f s)\n", o_.name.c_str(),
                        job.id.c_str(), job.prepared->decode_seconds());
            std::fflush(stdout);
          }
        } catch (const std::exception&) {
          // Left to the job's own run, which reports the same error as its result.
        }
      }
      taken_.push_back(std::move(*cj));
    }
  }

  RedisQueue& queue_;
  RedisClient& c_;  // this object's own connection: used only by its thread
  const WorkerOptions& o_;
  const foley::Model& model_;
  const foley::GeneratorOptions& go_;
  Counters& counters_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<ClaimedJob> taken_;
};

// Runs the runnable jobs as one generate_batch (one job: the same as generate), each with its
// own heartbeat, progress, cancel and result files.
void run_jobs_of(RedisQueue& queue, RedisClient& c, const WorkerOptions& o,
                 foley::Generator& gen, std::vector<ClaimedJob>& claimed, Counters& counters) {
  std::vector<ClaimedJob*> run;
  for (ClaimedJob& cj : claimed)
    if (cj.runnable) run.push_back(&cj);
  if (run.empty()) return;
  ++counters.busy;
  std::vector<Job*> jobs;
  std::vector<std::string> stems;
  for (ClaimedJob* cj : run) {
    jobs.push_back(cj->job.get());
    stems.push_back(cj->claim.id + "-" + std::to_string(cj->attempt));
  }
  if (run.size() > 1) {
    std::printf("foley worker %s: %zu jobs run as one batch\n", o.name.c_str(), run.size());
    std::fflush(stdout);
  }
  auto last = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  std::vector<GenerationOutcome> outcomes =
      generate_batch_and_write(gen, jobs, o.data_dir + "/results", stems, [&] {
        // At most ten progress writes a second reach Redis (every job of the batch each time).
        const auto now = std::chrono::steady_clock::now();
        if (now - last < std::chrono::milliseconds(100)) return;
        last = now;
        for (Job* job : jobs) {
          try {
            queue.progress(c, *job, o.name);
          } catch (const std::exception& e) {
            std::fprintf(stderr, "foley worker: progress: %s\n", e.what());
          }
        }
      });
  for (size_t i = 0; i < run.size(); ++i) run[i]->outcome = std::move(outcomes[i]);
  ++counters.batches;
  counters.batched_jobs += run.size();
  --counters.busy;
}

// Settles the job from its outcome and ends it in Redis, if this worker still owns it.
void end_job(RedisQueue& queue, RedisClient& c, const WorkerOptions& o, ClaimedJob& cj,
             Counters& counters) {
  const QueueClaim& claim = cj.claim;
  const std::shared_ptr<Job>& job = cj.job;
  GenerationOutcome& outcome = cj.outcome;
  cj.heartbeat.reset();  // (a cancel it saw is in job->cancel)
  settle(*job, outcome);
  int ended = with_retry("finish", [&] { return queue.finish(c, *job, o.name); });
  if (ended == 2) {  // a cancel arrived after the work was done: it wins, as DELETE promised
    delete_written(outcome.written);
    outcome.result.reset();
    job->cancel = true;
    settle(*job, outcome);
    ended = with_retry("finish", [&] { return queue.finish(c, *job, o.name); });
  }
  if (ended != 1) {
    // Another worker owns the job now (this one was too slow to heartbeat): its result counts.
    delete_written(outcome.written);
    ++counters.lost;
    return;
  }
  if (job->request.owns_video) {
    std::error_code ec;
    fs::remove(job->request.video_path, ec);
  }
  switch (job->state) {
    case JobState::kSucceeded:
      ++counters.succeeded;
      break;
    case JobState::kCancelled:
      ++counters.cancelled;
      break;
    default:
      ++counters.failed;
      break;
  }
  acknowledge(queue, c, claim);
}

// Takes jobs from the queue and runs them on `generator` until a stop, then runs the jobs it
// already took. Each loop has its own Redis connections and decoding ahead.
void serve_jobs(const RedisUrl& url, RedisQueue& queue, const WorkerOptions& o,
                const foley::Model& model, const foley::GeneratorOptions& go,
                foley::Generator& generator, Counters& counters) {
  RedisClient c(url), ahead_client(url);
  DecodeAhead ahead(queue, ahead_client, o, model, go, counters);
  const int ahead_limit = o.decode_ahead >= 0 ? o.decode_ahead : o.max_batch;
  const int64_t visibility_ms = int64_t(o.visibility_seconds * 1000);
  std::vector<ClaimedJob> ahead_taken;  // taken ahead while the last batches ran, oldest first
  // A stop runs the jobs already taken (they are this worker's; another would take them over
  // only after the visibility timeout) and takes no more.
  while (!g_stop || !ahead_taken.empty()) {
    std::vector<ClaimedJob> claimed;  // the next batch
    const size_t from_ahead = std::min(ahead_taken.size(), size_t(o.max_batch));
    std::move(ahead_taken.begin(), ahead_taken.begin() + from_ahead, std::back_inserter(claimed));
    ahead_taken.erase(ahead_taken.begin(), ahead_taken.begin() + from_ahead);
    if (claimed.empty()) {
      std::optional<QueueClaim> claim;
      try {
        claim = queue.claim(c, o.name, visibility_ms, 500);
        if (!claim) {
          queue.idle(c, o.name, std::max(1.0, o.visibility_seconds));
          continue;
        }
      } catch (const RedisError& e) {
        if (!e.connection()) throw;
        std::fprintf(stderr, "foley worker: %s (retrying)\n", e.what());
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        continue;
      }
      if (auto cj = begin_job(queue, c, o, *claim)) claimed.push_back(std::move(*cj));
      if (claimed.empty()) continue;  // nothing to run (it finished meanwhile)
    }
    // --max-batch: more jobs that arrive within the window join the first.
    // (At most a third of the visibility timeout, so that a batch is not held back long.)
    const double window_ms = std::min(o.batch_window_ms, o.visibility_seconds * 1000 / 3);
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::microseconds(int64_t(window_ms * 1000));
    while (int(claimed.size()) < o.max_batch && !claimed.empty() && !g_stop) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      std::optional<QueueClaim> more;
      try {
        more = queue.claim(c, o.name, visibility_ms, std::max<int64_t>(1, left.count()));
      } catch (const RedisError& e) {
        if (!e.connection()) throw;
        break;  // run what was claimed; the loop above retries the connection
      }
      if (!more) break;
      if (auto cj = begin_job(queue, c, o, *more)) claimed.push_back(std::move(*cj));
    }
    if (!g_stop) ahead.start(ahead_limit - int(ahead_taken.size()));
    run_jobs_of(queue, c, o, generator, claimed, counters);
    for (ClaimedJob& cj : claimed) end_job(queue, c, o, cj, counters);
    for (ClaimedJob& cj : ahead.finish()) ahead_taken.push_back(std::move(cj));
  }
}

int run_worker(WorkerOptions o) {
  if (o.name.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    o.name = std::string(host) + "-" + std::to_string(::getpid());
  }
  sigset_t signals = block_stop_signals();
  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    g_stop = true;
  });
  signal_waiter.detach();

  Counters counters;
  std::unique_ptr<httplib::Server> health;
  std::thread health_thread;
  if (o.port >= 0) {
    // Health and metrics only, for the orchestrator on the worker's own pod.
    health = std::make_unique<httplib::Server>();
    health->Get("/health/live", [](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, {{"status", "live"}});
    });
    health->Get("/health/ready", [&](const httplib::Request&, httplib::Response& res) {
      if (counters.ready && !g_stop)
        send_json(res, 200, {{"status", "ready"}});
      else
        send_json(res, 503, {{"status", g_stop ? "draining" : "loading"}});
    });
    health->Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
      std::string t = "# TYPE foley_worker_busy gauge\nfoley_worker_busy " +
                      std::to_string(counters.busy.load()) +
                      "\n# TYPE foley_worker_jobs_total counter\n";
      t += "foley_worker_jobs_total{state=\"succeeded\"} " + std::to_string(counters.succeeded) +
           "\n";
      t += "foley_worker_jobs_total{state=\"failed\"} " + std::to_string(counters.failed) + "\n";
      t += "foley_worker_jobs_total{state=\"cancelled\"} " + std::to_string(counters.cancelled) +
           "\n";
      t += "foley_worker_jobs_total{state=\"taken_over\"} " + std::to_string(counters.lost) + "\n";
      t += "# TYPE foley_worker_batches_total counter\nfoley_worker_batches_total " +
           std::to_string(counters.batches) + "\n";
      t += "# TYPE foley_worker_batched_jobs_total counter\nfoley_worker_batched_jobs_total " +
           std::to_string(counters.batched_jobs) + "\n";
      t += "# TYPE foley_worker_decoded_ahead_total counter\nfoley_worker_decoded_ahead_total " +
           std::to_string(counters.decoded_ahead) + "\n";
      res.set_content(t, "text/plain; version=0.0.4");
    });
    const int port = o.port == 0 ? health->bind_to_any_port(o.host)
                                 : (health->bind_to_port(o.host, o.port) ? o.port : -1);
    if (port < 0)
      throw foley::Error(foley::ErrorKind::kInvalidInput,
                         "cannot listen on " + o.host + ":" + std::to_string(o.port));
    std::printf("foley worker %s: health on http://%s:%d\n", o.name.c_str(), o.host.c_str(), port);
    health_thread = std::thread([&] { health->listen_after_bind(); });
  }
  auto stop_health = [&] {
    if (health) health->stop();
    if (health_thread.joinable()) health_thread.join();
  };

  try {
    const RedisUrl url = parse_redis_url(o.queue);
    RedisQueue queue(url);
    with_retry("connect", [&] {
      queue.ensure_group();
      return 0;
    });
    std::error_code ec;
    fs::create_directories(o.data_dir + "/results", ec);

    foley::ModelOptions mo;
    const foley::RegistryModel spec = parse_model_spec(o.model);
    o.model_name = spec.name;
    mo.bundle_path = spec.bundle_path;
    const auto model = foley::Model::load(mo);
    foley::GeneratorOptions go;
    go.device = o.device == "cuda" ? foley::DeviceType::kCuda : foley::DeviceType::kCpu;
    go.precision = precision_of(o.precision);
    go.max_video_seconds = o.max_clip_seconds;
    go.max_clip_seconds = std::min(15.0, o.max_clip_seconds);  // the span: at most the model's
    go.overlap_encoders = o.overlap_encoders.empty() ? go.device == foley::DeviceType::kCuda
                                                     : o.overlap_encoders == "on";
    auto generator = foley::Generator::create(model, go);
    generator->warm_up();
    counters.ready = true;
    std::printf("foley worker %s: ready (queue %s, model %s%s)\n", o.name.c_str(),
                to_string(url).c_str(), o.model_name.c_str(),
                go.overlap_encoders ? ", overlapped encoders: two batches at once" : "");
    std::fflush(stdout);

    // With overlapped encoders two loops share the generator: one batch encodes while the other
    // denoises (GeneratorOptions::overlap_encoders).
    const int loops = go.overlap_encoders ? 2 : 1;
    std::mutex error_mutex;
    std::exception_ptr error;
    auto serve = [&] {
      try {
        serve_jobs(url, queue, o, *model, go, *generator, counters);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        g_stop = true;  // the other loop runs the jobs it took and stops too
      }
    };
    std::vector<std::thread> others;
    for (int i = 1; i < loops; ++i) others.emplace_back(serve);
    serve();
    for (std::thread& t : others) t.join();
    if (error) std::rethrow_exception(error);
  } catch (...) {
    stop_health();
    throw;
  }
  stop_health();
  std::printf("foley worker %s: stopped\n", o.name.c_str());
  return 0;
}

}  // namespace
#endif

Command add_worker_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "worker", "run the jobs of a Redis queue (the workers behind `foley serve --queue`)");
#ifdef FOLEY_HAVE_HTTP
  auto o = std::make_shared<WorkerOptions>();
  cmd->add_option("--queue", o->queue, "redis://[:password@]host[:port][/db]")->required();
  cmd->add_option("--model", o->model,
                  "NAME=BUNDLE or BUNDLE (named after its file's stem), written by `foley "
                  "convert`. A worker serves this one model: a job that names another model "
                  "fails (give every worker of a queue the same model)")
      ->required();
  cmd->add_option("--data-dir", o->data_dir,
                  "the folder shared with the front ends (uploads/, results/)")
      ->required();
  cmd->add_option("--device", o->device, "cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  add_precision_option(cmd, &o->precision);
  cmd->add_option("--name", o->name, "consumer name in Redis (default: host-pid)");
  cmd->add_option("--visibility-timeout", o->visibility_seconds,
                  "seconds without a heartbeat before another worker takes a job over")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 3600.0));
  cmd->add_option("--max-clip-seconds", o->max_clip_seconds,
                  "longest clip accepted, in seconds: video seconds a job uses and the longest "
                  "text-only audio; clips beyond the model's 15 s are generated in overlapping "
                  "windows. Give front ends and workers the same value")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 7200.0));
  cmd->add_option("--max-batch", o->max_batch,
                  "jobs run together: after taking a job the worker takes up to N-1 more that "
                  "arrive within --batch-window-ms, and those whose clips have equal lengths "
                  "are denoised as one batch (each keeps its own seed, progress, cancel and "
                  "result)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--batch-window-ms", o->batch_window_ms,
                  "with --max-batch above 1: how long the first job waits for others to join")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 60000.0));
  cmd->add_option("--decode-ahead", o->decode_ahead,
                  "while a batch runs, take up to N jobs that are already waiting in the queue "
                  "and decode their videos, so that the next batch starts at its encoders and "
                  "the GPU does not wait for FFmpeg (host memory: ~10 MB per second of clip "
                  "each). Jobs are only taken ahead from a backlog: one that arrives while "
                  "another worker is idle goes to that worker. Default: --max-batch; 0: off")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--overlap-encoders", o->overlap_encoders,
                  "on: two batches at once on the worker's generator, one batch's encoders "
                  "(SigLIP2, Synchformer, CLAP, on a second CUDA stream) while the other "
                  "denoises, each from its own claims; results are unchanged (see `foley serve "
                  "--overlap-encoders`). Default: on for cuda, off for cpu")
      ->check(CLI::IsMember({"on", "off"}));
  cmd->add_option("--host", o->host, "address of the health endpoint")->capture_default_str();
  cmd->add_option("--port", o->port, "port of /health/* and /metrics (0: any free one)")
      ->check(CLI::Range(0, 65535));
  return {cmd, [o]() { return run_worker(*o); }};
#else
  return {cmd, []() -> int {
            throw foley::Error(foley::ErrorKind::kUnsupported,
                               "this build has no HTTP server (configured with FOLEY_HTTP=OFF)");
          }};
#endif
}

}  // namespace foley_cli
