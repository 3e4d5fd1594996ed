#include "metrics.h"

#include <cmath>
#include <cstdio>

namespace foley_server {

namespace {

std::string number(double v) {
  char buf[64];
  // Whole numbers (byte counts above 1e9 among them) exactly; others to 9 digits.
  if (v == std::floor(v) && std::fabs(v) < 9e15)
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  else
    std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string with_labels(const std::string& labels, const std::string& extra) {
  if (labels.empty()) return "{" + extra + "}";
  return "{" + labels + "," + extra + "}";
}

const std::vector<double> kStageBounds = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name,
                       const std::string& labels) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    out += name + "_bucket" + with_labels(labels, "le=\"" + le + "\"") + " " +
           std::to_string(cumulative) + "\n";
  }
  const std::string l = labels.empty() ? "" : "{" + labels + "}";
  out += name + "_sum" + l + " " + number(sum_) + "\n";
  out += name + "_count" + l + " " + std::to_string(count_) + "\n";
}

void Metrics::observe_stage(const std::string& stage, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  stages_.try_emplace(stage, kStageBounds).first->second.observe(seconds);
}

void Metrics::observe_request(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  requests_.observe(seconds);
}

void Metrics::observe_batch(int size) {
  std::lock_guard<std::mutex> lock(mutex_);
  batch_sizes_.observe(double(size));
}

void Metrics::count_finished(const std::string& state) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++finished_[state];
}

std::string Metrics::render(size_t queue_depth,
                            const std::map<std::string, size_t>& jobs_by_state) const {
  std::string out;
  auto gauge = [&](const char* name, const char* help, double v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name +
           " " + number(v) + "\n";
  };
  gauge("foley_queue_depth", "Jobs waiting for a worker.", double(queue_depth));
  out += "# HELP foley_jobs Jobs currently known to the server, by state.\n";
  out += "# TYPE foley_jobs gauge\n";
  for (const char* s : {"queued", "running", "succeeded", "failed", "cancelled"}) {
    const auto it = jobs_by_state.find(s);
    out += std::string("foley_jobs{state=\"") + s + "\"} " +
           std::to_string(it == jobs_by_state.end() ? 0 : it->second) + "\n";
  }
  std::lock_guard<std::mutex> lock(mutex_);
  out += "# HELP foley_jobs_total Jobs accepted since start, and finished ones by outcome.\n";
  out += "# TYPE foley_jobs_total counter\n";
  out += "foley_jobs_total{state=\"submitted\"} " + std::to_string(jobs_submitted.load()) + "\n";
  for (const auto& [state, n] : finished_)
    out += "foley_jobs_total{state=\"" + state + "\"} " + std::to_string(n) + "\n";
  out += "# HELP foley_jobs_decoded_ahead_total Videos decoded while their jobs were queued "
         "(--decode-ahead).\n";
  out += "# TYPE foley_jobs_decoded_ahead_total counter\n";
  out += "foley_jobs_decoded_ahead_total " + std::to_string(jobs_decoded_ahead.load()) + "\n";
  out += "# HELP foley_stage_seconds Time per pipeline stage of finished jobs.\n";
  out += "# TYPE foley_stage_seconds histogram\n";
  for (const auto& [stage, h] : stages_) h.render(out, "foley_stage_seconds", "stage=\"" + stage + "\"");
  out += "# HELP foley_request_seconds Time from submission to the end of a job.\n";
  out += "# TYPE foley_request_seconds histogram\n";
  requests_.render(out, "foley_request_seconds", "");
  out += "# HELP foley_job_batch_size Jobs denoised together (--max-batch), per succeeded job.\n";
  out += "# TYPE foley_job_batch_size histogram\n";
  batch_sizes_.render(out, "foley_job_batch_size", "");
  gauge("foley_warmup_seconds", "Time to load and warm the preloaded models (--preload).",
        warmup_seconds.load());
  gauge("foley_device_memory_bytes", "Device memory held by the loaded models (0 on the CPU).",
        double(device_memory_bytes.load()));
  gauge("foley_ready", "1 once the preloaded models are warm and the server takes jobs.",
        ready.load() ? 1 : 0);
  return out;
}

std::string render_model_metrics(const std::vector<foley::RegistryModelStatus>& models,
                                 int64_t budget_bytes, int64_t used_bytes) {
  std::string out;
  // Model names are plain ([A-Za-z0-9._-]): nothing to escape in the label.
  auto family = [&](const char* name, const char* type, const char* help, auto value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    for (const auto& m : models)
      out += std::string(name) + "{model=\"" + m.name + "\"} " + number(double(value(m))) + "\n";
  };
  using S = foley::RegistryModelStatus;
  family("foley_model_loaded", "gauge", "1 while the model is loaded (ready for requests).",
         [](const S& m) { return m.state == foley::ModelState::kLoaded ? 1 : 0; });
  family("foley_model_bytes", "gauge",
         "Memory the model holds now: weights and work memory of its generators (device memory "
         "on CUDA, host memory on the CPU); its reservation while it loads.",
         [](const S& m) { return m.bytes; });
  family("foley_model_requests_total", "counter", "Requests that ran on the model since start.",
         [](const S& m) { return m.requests; });
  family("foley_model_loads_total", "counter", "Times the model was loaded since start.",
         [](const S& m) { return m.loads; });
  family("foley_model_evictions_total", "counter",
         "Times the model was unloaded to make room for another within the budget.",
         [](const S& m) { return m.evictions; });
  family("foley_model_load_seconds", "gauge", "Time the model's last load took (with warm-up).",
         [](const S& m) { return m.last_load_seconds; });
  out += "# HELP foley_models_budget_bytes The models' memory budget (--vram-budget; 0: none).\n"
         "# TYPE foley_models_budget_bytes gauge\nfoley_models_budget_bytes " +
         number(double(budget_bytes)) + "\n";
  out += "# HELP foley_models_used_bytes Memory the loaded models hold now.\n"
         "# TYPE foley_models_used_bytes gauge\nfoley_models_used_bytes " +
         number(double(used_bytes)) + "\n";
  return out;
}

}  // namespace foley_server
