// The HTTP side of `foley serve`: routes, auth, readiness, SSE, and the lifecycle (loading ->
// ready -> draining) that cmd_serve.cpp drives.
#pragma once

#include <atomic>
#include <functional>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <httplib.h>

#include "foley/registry.h"
#include "http_front.h"
#include "metrics.h"
#include "requests.h"
#include "scheduler.h"

namespace foley_server {

struct ServerOptions {
  // --model values: NAME=BUNDLE, or one BUNDLE (named after its file's stem); the first is the
  // default model of requests that name none.
  std::vector<std::string> models;
  double vram_budget_gb = 0;         // the registry's memory budget (0: none)
  std::vector<std::string> preload;  // loaded and warmed before ready (default: the first model)
  std::string queue;  // redis://...: a front end of a shared queue (no model, no workers)
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string device = "cpu";
  std::string precision = "exact";  // GeneratorOptions::precision: exact or fast
  int http_threads = 32;   // uploads, downloads and synchronous requests served at once
  int max_streams = 64;    // concurrent SSE streams (503 + Retry-After beyond)
  size_t queue_size = 16;
  // Generators per loaded model (0: 1); the scheduler runs as many workers, or twice as many
  // with overlapped encoders.
  int jobs_per_device = 0;
  // GeneratorOptions::overlap_encoders, "on" or "off"; empty: on for CUDA, off for the CPU.
  std::string overlap_encoders;
  // Cross-request batching (--max-batch, --batch-window-ms): jobs of one model and clip length
  // denoised together, up to max_batch, gathered for up to batch_window_ms. 1: no batching.
  int max_batch = 1;
  double batch_window_ms = 20;
  // Queued video jobs decoded ahead while the workers run others (SchedulerOptions::decode_ahead);
  // -1: one per job a worker can hold (workers · max_batch), 0: off.
  int decode_ahead = -1;
  int64_t max_upload_mb = 256;
  std::string data_dir;    // empty: a private temporary directory
  std::string media_root;  // empty: JSON video_path refused
  double result_ttl_seconds = 3600;
  int64_t disk_budget_mb = 2048;
  double drain_seconds = 30;
  std::string token;
  // The longest clip accepted (--max-clip-seconds): video seconds a job uses, and the longest
  // text-only audio (GeneratorOptions::max_video_seconds). Clips beyond the networks' 15 s span
  // are generated in overlapping windows.
  double max_clip_seconds = 600;
  int io_timeout_seconds = 60;
  double sync_timeout_seconds = 600;  // POST /generate waits at most this long (then 504)
};

enum class Phase { kLoading, kReady, kDraining };

class App {
 public:
  // Where jobs live is made by `make_jobs` (it gets the App's metrics): the local Scheduler, or
  // the Redis front end. `registry` (the local scheduler's models; null on a front end, which
  // passes `model` through to its workers unchecked but for its form) must outlive the App.
  using JobServiceFactory = std::function<std::unique_ptr<JobService>(Metrics&)>;
  App(const ServerOptions& options, const std::string& uploads_dir,
      const std::string& media_root_real, const JobServiceFactory& make_jobs,
      foley::ModelRegistry* registry = nullptr);
  ~App();

  int bind();     // the port actually bound (--port, or a free one for --port 0); -1 on failure
  void listen();  // blocks until stop()
  // Stops taking connections; requests in progress get `grace` to finish their I/O.
  void stop(double grace_seconds = 1.0);

  void set_ready() { phase_ = Phase::kReady; metrics_.ready = true; }
  // The local scheduler, or null on a Redis front end.
  Scheduler* scheduler() { return dynamic_cast<Scheduler*>(jobs_.get()); }
  // Stops taking work (ready -> 503 draining), then drains the scheduler within the budget.
  // False when a running job did not stop in time (the caller should exit without joining it).
  bool drain();

  Metrics& metrics() { return metrics_; }
  // POST /v1/models/{name}/load runs the load on a thread of its own (a load cannot be
  // interrupted, and the HTTP threads must stop in bounded time): while one is still running,
  // the registry is in use and the process must exit without destroying it.
  int loads_in_flight() const { return *loads_in_flight_; }

 private:
  void routes();
  bool authorized(const httplib::Request& req) const;
  // Answers a request that its head alone refuses (auth, phase, body length); true if answered.
  bool judge_head(const httplib::Request& req, httplib::Response& res);
  void post_generation(const httplib::Request& req, httplib::Response& res,
                       const httplib::ContentReader& body, bool synchronous);
  void answer_synchronously(const httplib::Request& req, const std::shared_ptr<Job>& job,
                            httplib::Response& res);
  void get_job(const httplib::Request& req, httplib::Response& res);
  void get_events(const httplib::Request& req, httplib::Response& res);
  void get_file(const httplib::Request& req, httplib::Response& res, bool video);
  void delete_job(const httplib::Request& req, httplib::Response& res);
  std::shared_ptr<Job> job_or_404(const httplib::Request& req, httplib::Response& res);
  // /v1/models (models_api.cpp).
  void get_models(const httplib::Request& req, httplib::Response& res);
  void post_model_load(const httplib::Request& req, httplib::Response& res);
  void post_model_unload(const httplib::Request& req, httplib::Response& res);
  bool known_model_or_404(const std::string& name, httplib::Response& res);
  nlohmann::json model_entry(const std::string& name) const;

  ServerOptions options_;
  RequestLimits limits_;
  Metrics metrics_;
  std::unique_ptr<JobService> jobs_;
  foley::ModelRegistry* registry_ = nullptr;
  // Shared with the threads of POST .../load, which may outlive a request (and, at exit, the App).
  std::shared_ptr<std::atomic<int>> loads_in_flight_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<bool>> loads_cancel_ = std::make_shared<std::atomic<bool>>(false);
  FrontServer http_;
  std::atomic<Phase> phase_{Phase::kLoading};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> listen_entered_{false}, listen_returned_{false};
  std::string openapi_;  // made once: it depends only on the options
};

// The OpenAPI document, with this server's --max-clip-seconds as the bound of max_seconds and
// seconds.
std::string openapi_json(double max_clip_seconds);

}  // namespace foley_server
