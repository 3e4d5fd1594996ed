// Prometheus metrics of the server, rendered as text format 0.0.4 by GET /metrics.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "foley/registry.h"

namespace foley_server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Lines for `name{labels,le=...}`, `_sum` and `_count`; `labels` is "" or `k="v"`.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  void observe_stage(const std::string& stage, double seconds);
  void observe_request(double seconds);
  void count_finished(const std::string& state);  // succeeded, failed, cancelled
  // A succeeded job was denoised in a batch of `size` jobs (1: alone).
  void observe_batch(int size);

  std::atomic<double> warmup_seconds{0};         // loading and warming the preloaded models
  std::atomic<int64_t> device_memory_bytes{0};   // the loaded models' cost on CUDA; 0 on the CPU
  std::atomic<bool> ready{false};
  std::atomic<uint64_t> jobs_submitted{0};
  std::atomic<uint64_t> jobs_decoded_ahead{0};  // videos decoded while their jobs were queued

  // `jobs_by_state` is the current count per state, `queue_depth` the queued ones.
  std::string render(size_t queue_depth, const std::map<std::string, size_t>& jobs_by_state) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, Histogram> stages_;
  Histogram requests_{{0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300}};
  std::map<std::string, uint64_t> finished_;
  Histogram batch_sizes_{{1, 2, 4, 8, 16, 32}};
};

// Per model of the registry (label model="NAME"): foley_model_loaded, foley_model_bytes,
// foley_model_requests_total, foley_model_loads_total, foley_model_evictions_total,
// foley_model_load_seconds (the last load); and foley_models_budget_bytes, foley_models_used_bytes.
std::string render_model_metrics(const std::vector<foley::RegistryModelStatus>& models,
                                 int64_t budget_bytes, int64_t used_bytes);

}  // namespace foley_server
