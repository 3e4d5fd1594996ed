// foley serve: the HTTP service. Startup order matters: the socket is bound and /health/live
// answers before any model loads; /health/ready turns 200 only after the preloaded models
// (--preload, default the first --model) are loaded and warmed. Other models load when a job
// names them (or on POST /v1/models/{name}/load), within --vram-budget. SIGTERM/SIGINT drain:
// new work gets 503, queued jobs are cancelled, running ones get --drain-seconds to finish and
// are then cancelled at their next step.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "commands.h"
#include "foley/foley.h"
#include "stop_signals.h"

#ifdef FOLEY_HAVE_HTTP
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <filesystem>
#include <set>
#include <thread>

#include "foley/registry.h"
#include "server/app.h"
#include "server/model_specs.h"
#include "server/redis_jobs.h"
#endif

namespace foley_cli {

#ifdef FOLEY_HAVE_HTTP
namespace {

namespace fs = std::filesystem;

struct RemoveOnReturn {
  std::string path;  // empty: nothing to remove
  void now() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
    path.clear();
  }
  ~RemoveOnReturn() { now(); }
};

void make_private_dir(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec || ::chmod(path.c_str(), 0700) != 0)
    throw foley::Error(foley::ErrorKind::kInvalidInput, "cannot create directory " + path);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run_server(foley_server::ServerOptions o) {
  if (o.token.empty())
    if (const char* env = std::getenv("FOLEY_API_TOKEN")) o.token = env;
  const bool cuda = o.device == "cuda";
  // On CUDA one generator with overlapped encoders by default: run Q measured 95 % of four
  // generators' clips/min at 2 GB less VRAM (BENCHMARKS.md). The CPU is compute-bound either way.
  const int generators = o.jobs_per_device > 0 ? o.jobs_per_device : 1;
  const bool overlap = o.overlap_encoders.empty() ? cuda : o.overlap_encoders == "on";
  // With overlapped encoders each generator runs two jobs at once (one encoding, one denoising).
  const int workers = generators * (overlap ? 2 : 1);

  sigset_t signals = block_stop_signals();

  // A temporary data folder is removed also when the start fails (a bad --model, a port in use):
  // the folder is ours alone.
  RemoveOnReturn remove_temp_dir;
  if (o.data_dir.empty()) {
    char tmpl[] = "/tmp/foley-serve-XXXXXX";  // mkdtemp makes it 0700
    if (!::mkdtemp(tmpl))
      throw foley::Error(foley::ErrorKind::kInternal, "cannot create a temporary directory");
    o.data_dir = remove_temp_dir.path = tmpl;
  }
  make_private_dir(o.data_dir);
  const std::string uploads = o.data_dir + "/uploads", results = o.data_dir + "/results";
  make_private_dir(uploads);
  make_private_dir(results);
  std::string media_root;
  if (!o.media_root.empty()) {
    char resolved[PATH_MAX];
    if (!::realpath(o.media_root.c_str(), resolved) || !fs::is_directory(resolved))
      throw foley::Error(foley::ErrorKind::kNotFound, "--media-root is not a directory");
    media_root = resolved;
  }
  const bool front_end = !o.queue.empty();
  std::unique_ptr<foley_server::JobJournal> journal;
  // Declared before the App: the scheduler's workers use it until the App is gone.
  std::unique_ptr<foley::ModelRegistry> registry;
  std::vector<std::string> preload;
  std::unique_ptr<foley_server::App> app_holder;
  std::string queue_name;  // the Redis URL without its password, for the log
  if (front_end) {
    // Jobs live in Redis and run on `foley worker` processes; this process only answers HTTP.
    const foley_server::RedisUrl redis = foley_server::parse_redis_url(o.queue);
    queue_name = foley_server::to_string(redis);
    app_holder =
        std::make_unique<foley_server::App>(o, uploads, media_root, [&](foley_server::Metrics&) {
          foley_server::RedisJobsOptions ro;
          ro.url = redis;
          ro.queue_size = o.queue_size;
          ro.result_ttl_seconds = o.result_ttl_seconds;
          return std::make_unique<foley_server::RedisJobs>(ro);
        });
  } else {
    // The models: each bundle is opened and checked now (a bad file fails here), none loaded.
    foley::RegistryOptions ro;
    ro.generator.device = cuda ? foley::DeviceType::kCuda : foley::DeviceType::kCpu;
    // The operator's limit is the longest clip; the networks' span stays the model's 15 s
    // (less when no clip may be that long: arenas are sized for the span).
    ro.generator.max_video_seconds = o.max_clip_seconds;
    ro.generator.max_clip_seconds = std::min(15.0, o.max_clip_seconds);
    ro.generator.max_batch = o.max_batch;
    ro.generator.precision = precision_of(o.precision);
    ro.generator.overlap_encoders = overlap;
    ro.generators_per_model = generators;
    ro.budget_bytes = int64_t(o.vram_budget_gb * 1e9);
    ro.warm_up = true;
    registry = std::make_unique<foley::ModelRegistry>(foley_server::parse_model_specs(o.models), ro);
    preload = o.preload.empty() ? std::vector<std::string>{registry->default_model()} : o.preload;
    for (const auto& name : preload)
      if (!registry->has(name))
        throw foley::Error(foley::ErrorKind::kInvalidInput,
                           "--preload " + name + ": no --model is named so");
    // The journal of accepted jobs: a restart on the same data dir picks up what a killed (or
    // stopped) run left queued or running, and keeps serving its finished results.
    journal = foley_server::JobJournal::open(o.data_dir);
    const size_t interrupted = journal->requeue_interrupted();
    const auto rows = journal->load();
    app_holder = std::make_unique<foley_server::App>(
        o, uploads, media_root, [&](foley_server::Metrics& metrics) {
          foley_server::SchedulerOptions so{o.queue_size, results, o.result_ttl_seconds,
                                            o.disk_budget_mb << 20, journal.get()};
          so.max_batch = o.max_batch;
          so.batch_window_ms = o.batch_window_ms;
          so.decode_ahead = o.decode_ahead >= 0 ? o.decode_ahead : workers * o.max_batch;
          so.span_seconds = ro.generator.max_clip_seconds;
          so.max_clip_seconds = o.max_clip_seconds;
          return std::make_unique<foley_server::Scheduler>(std::move(so), metrics);
        },
        registry.get());
    const foley_server::RestoreSummary restored = app_holder->scheduler()->restore(rows);
    // Files no journaled job refers to (a run killed between writing and journaling) are
    // deleted, so nothing in the data dir is orphaned forever.
    const std::set<std::string> kept(restored.files.begin(), restored.files.end());
    size_t orphans = 0;
    for (const std::string& dir : {uploads, results}) {
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(dir, ec))
        if (!kept.count(e.path().string()) && fs::remove(e.path(), ec)) ++orphans;
    }
    if (!rows.empty() || orphans > 0)
      std::printf(
          "foley serve: %zu jobs from an earlier run: %zu queued again (%zu were "
          "running), %zu finished kept, %zu given up, %zu forgotten; %zu orphaned files "
          "removed\n",
          rows.size(), restored.requeued, interrupted, restored.finished, restored.given_up,
          restored.forgotten, orphans);
  }
  foley_server::App& app = *app_holder;
  const int port = app.bind();
  if (port < 0)
    throw foley::Error(foley::ErrorKind::kInvalidInput,
                       "cannot listen on " + o.host + ":" + std::to_string(o.port));
  const std::string url = "http://" + o.host + ":" + std::to_string(port);
  std::string loading;
  for (const auto& name : preload) loading += (loading.empty() ? "" : ", ") + name;
  std::printf("foley serve: listening on %s (loading %s)\n", url.c_str(),
              front_end ? queue_name.c_str() : loading.c_str());
  std::fflush(stdout);
  std::thread http([&app] { app.listen(); });

  std::atomic<bool> signalled{false};
  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    signalled = true;
  });
  auto shut_down = [&](int code) {
    // Bounded: running jobs get --drain-seconds, then ~1 s after their cancel; requests in
    // progress get 0.5 s more to finish writing.
    bool clean = app.drain();
    app.stop(0.5);
    http.join();
    // A POST .../load still loading on its own thread uses the registry.
    clean = clean && app.loads_in_flight() == 0;
    if (!signalled) pthread_kill(signal_waiter.native_handle(), SIGTERM);
    signal_waiter.join();
    if (!clean) {
      // A job is still inside a stage that cannot be interrupted (or a model is still loading);
      // its thread uses the model, so nothing may be destroyed under it: leave now.
      std::printf("foley serve: stopped (a running job or a model load did not stop in time)\n");
      std::fflush(stdout);
      std::fflush(stderr);
      remove_temp_dir.now();  // _exit runs no destructors
      ::_exit(code);
    }
    return code;
  };

  try {
    if (front_end) {
      app.set_ready();  // /health/ready also asks Redis each time
      std::printf("foley serve: ready on %s (front end of the queue %s)\n", url.c_str(),
                  queue_name.c_str());
      std::fflush(stdout);
    } else {
      // Ready means the preloaded models are warm. Each load can be stopped by a signal only
      // between models.
      const auto t_warm = std::chrono::steady_clock::now();
      for (const auto& name : preload) {
        if (signalled) break;
        try {
          registry->load(name, &signalled);
        } catch (const foley::Error& e) {
          if (e.kind() != foley::ErrorKind::kCancelled) throw;
        }
      }
      const double warm = seconds_since(t_warm);
      app.metrics().warmup_seconds = warm;
      if (!signalled) {
        // Preloads beyond the budget evict the ones before them (least recently used first).
        std::string names;
        for (const auto& m : registry->status()) {
          if (std::find(preload.begin(), preload.end(), m.name) == preload.end()) continue;
          if (m.state != foley::ModelState::kLoaded)
            std::fprintf(stderr,
                         "foley serve: warning: --preload %s is not loaded: the models named "
                         "after it took its place within --vram-budget\n",
                         m.name.c_str());
          else
            names += (names.empty() ? "" : ", ") + m.name;
        }
        app.scheduler()->start(*registry, workers);
        app.set_ready();
        std::printf(
            "foley serve: ready on %s (models loaded: %s; %zu configured, default %s; "
            "%d workers on %d generators%s, batches of up to %d, warmed in %.1f s)\n",
            url.c_str(), names.c_str(), registry->status().size(),
            registry->default_model().c_str(), workers, generators,
            overlap ? " with overlapped encoders" : "", o.max_batch, warm);
        std::fflush(stdout);
      }
    }
  } catch (...) {
    shut_down(0);
    throw;  // main() prints it and picks the exit code
  }
  while (!signalled) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::printf("foley serve: draining (up to %.0f s for running jobs)\n", o.drain_seconds);
  std::fflush(stdout);
  const int code = shut_down(0);
  std::printf("foley serve: stopped\n");
  return code;
}

}  // namespace
#endif

Command add_serve_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("serve", "HTTP service: queued generations, SSE progress, metrics");
#ifdef FOLEY_HAVE_HTTP
  auto o = std::make_shared<foley_server::ServerOptions>();
  auto* model = cmd->add_option(
      "--model", o->models,
      "NAME=BUNDLE (repeat for several models, loaded on demand), or one BUNDLE (named after "
      "its file's stem); bundles are written by `foley convert`. The first is the default "
      "model of requests that name none");
  auto* queue = cmd->add_option(
      "--queue", o->queue,
      "redis://[:password@]host[:port][/db]: be a stateless front end of a shared queue whose "
      "jobs `foley worker` processes run (needs --data-dir on a folder shared with them)");
  model->excludes(queue);
  auto* budget = cmd->add_option(
      "--vram-budget", o->vram_budget_gb,
      "GB (1e9 bytes) the loaded models may hold together: weights plus every generator's work "
      "memory (arenas); on CUDA device memory, on the CPU (same accounting) host memory. A model "
      "that would not fit unloads the least recently used idle ones first (default: no limit)")
      ->check(CLI::Range(0.0, 1e6));
  auto* preload = cmd->add_option(
      "--preload", o->preload,
      "models (by name) loaded and warmed before /health/ready turns 200 (default: the first "
      "--model); the others load when a request names them");
  budget->excludes(queue);
  preload->excludes(queue);
  cmd->callback([o] {
    if (o->models.empty() && o->queue.empty())
      throw CLI::RequiredError("--model (or --queue for a front end)");
    if (!o->queue.empty() && o->data_dir.empty())
      throw CLI::ValidationError("--queue", "needs --data-dir: the folder shared with the workers");
  });
  cmd->add_option("--host", o->host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "port (0: pick a free one and print it)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--device", o->device, "cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  add_precision_option(cmd, &o->precision);
  cmd->add_option("--jobs-per-device", o->jobs_per_device,
                  "warmed generators per loaded model (default 1); the workers are as many, or "
                  "twice as many with --overlap-encoders on")
      ->check(CLI::Range(1, 64));
  auto* overlap =
      cmd->add_option("--overlap-encoders", o->overlap_encoders,
                      "on: each generator runs two jobs at once, one job's encoders (SigLIP2, "
                      "Synchformer, CLAP, on a second CUDA stream) while the other job denoises, "
                      "in memory sized at start beside the denoising step's (for XXL at 15 s no "
                      "more, but a second 32 MB GEMM workspace); results are unchanged. Default: "
                      "on for cuda, off for cpu")
          ->check(CLI::IsMember({"on", "off"}));
  auto* max_batch =
      cmd->add_option("--max-batch", o->max_batch,
                      "jobs denoised together: a worker that takes a job also takes queued jobs "
                      "of the same model and clip length (up to this many; clips beyond 15 s run "
                      "alone) and runs the DiT once per step for all of them, each with its own "
                      "prompt, seed, progress and cancel, and the audio it would get alone. "
                      "Memory for the denoising grows with it")
          ->capture_default_str()
          ->check(CLI::Range(1, 32));
  auto* window = cmd->add_option("--batch-window-ms", o->batch_window_ms,
                                 "with --max-batch above 1: how long a worker waits for more "
                                 "jobs of its batch before it starts (milliseconds)")
                     ->capture_default_str()
                     ->check(CLI::Range(0.0, 60000.0));
  auto* ahead = cmd->add_option("--decode-ahead", o->decode_ahead,
                                "queued video jobs decoded while the workers run others, so "
                                "that a job starts at its encoders and the GPU does not wait "
                                "for FFmpeg (host memory: ~10 MB per second of clip each). "
                                "Default: workers x max-batch; 0: off")
                    ->check(CLI::Range(0, 256));
  max_batch->excludes(queue);
  window->excludes(queue);
  ahead->excludes(queue);
  overlap->excludes(queue);
  cmd->add_option("--queue-size", o->queue_size, "queued jobs before 429")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--threads", o->http_threads,
                  "HTTP threads for uploads, downloads and POST /generate waits (health checks, "
                  "status and event streams have their own)")
      ->capture_default_str()
      ->check(CLI::Range(2, 1024));
  cmd->add_option("--max-streams", o->max_streams,
                  "concurrent SSE event streams (503 + Retry-After beyond)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--sync-timeout", o->sync_timeout_seconds,
                  "longest wait of POST /generate, seconds (then 504 and the job is cancelled)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  cmd->add_option("--max-upload-mb", o->max_upload_mb, "request body cap (413 above)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--data-dir", o->data_dir,
                  "uploads and results (default: a private temporary directory)");
  cmd->add_option("--media-root", o->media_root,
                  "folder JSON requests may name files in (video_path); absent: refused");
  cmd->add_option("--result-ttl", o->result_ttl_seconds, "seconds results are kept")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e7));
  cmd->add_option("--disk-budget-mb", o->disk_budget_mb, "results kept within this size")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--drain-seconds", o->drain_seconds,
                  "on SIGTERM, time running jobs get before they are cancelled")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--token", o->token,
                  "bearer token for /v1/*, /generate, /metrics (or env FOLEY_API_TOKEN)");
  cmd->add_option("--max-clip-seconds", o->max_clip_seconds,
                  "longest clip accepted, in seconds: video seconds a job uses (max_seconds' "
                  "default and bound) and the longest text-only audio; clips beyond the model's "
                  "15 s are generated in overlapping windows. A longer upload without "
                  "max_seconds is refused (422)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 7200.0));
  cmd->add_option("--io-timeout", o->io_timeout_seconds, "socket read/write timeout, seconds")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  return {cmd, [o]() { return run_server(*o); }};
#else
  return {cmd, []() -> int {
            throw foley::Error(foley::ErrorKind::kUnsupported,
                               "this build has no HTTP server (configured with FOLEY_HTTP=OFF)");
          }};
#endif
}

}  // namespace foley_cli
