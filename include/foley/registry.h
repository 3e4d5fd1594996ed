// Several models in one process: named bundles loaded on demand, kept while there is room and
// unloaded least-recently-used first when a load would pass the memory budget (never one that
// is running a request). A server gives each request to `acquire(name)`; a lease holds one of
// that model's generators until it is destroyed.
//
// A model's cost is what its generators hold: the weights once (shared by them) plus each
// generator's work memory (arenas), on the device for CUDA and in host memory for the CPU.
// Before a model's first load the cost is estimated from its file (its weights) plus the work
// memory of another loaded model per generator if one was measured; after a load it is
// measured, and the budget is checked again (idle models evicted if the estimate was short).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "foley/foley.h"

namespace foley {

struct RegistryModel {
  std::string name;         // as requests name it, e.g. "xxl"
  std::string bundle_path;  // a bundle written by `foley convert`
};

struct RegistryOptions {
  GeneratorOptions generator;    // for every generator of every model
  int generators_per_model = 1;  // loaded generators per model (see leases_per_generator)
  int64_t budget_bytes = 0;      // 0: no limit
  bool warm_up = true;           // warm each generator before the model counts as loaded
};

enum class ModelState { kUnloaded, kLoading, kLoaded, kUnloading };
const char* model_state_name(ModelState s);

struct RegistryModelStatus {
  std::string name, bundle_path, dit_summary;
  int64_t parameters = 0, file_bytes = 0;
  ModelState state = ModelState::kUnloaded;
  int64_t bytes = 0;     // measured cost while loaded (0 otherwise)
  int64_t requests = 0;  // leases handed out since start
  int running = 0;       // leases held now
  int loads = 0, evictions = 0;
  double last_load_seconds = 0;
  double last_used_unix = 0;  // 0: never used
  std::string last_error;     // why the last load failed ("" if it did not)
};

class ModelRegistry {
 public:
  // Names must be unique and non-empty; nothing is loaded yet. Throws kInvalidInput.
  ModelRegistry(std::vector<RegistryModel> models, RegistryOptions options);
  ~ModelRegistry();
  ModelRegistry(const ModelRegistry&) = delete;
  ModelRegistry& operator=(const ModelRegistry&) = delete;

  // One generator of a loaded model, returned to the registry when the lease is destroyed.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    Generator& generator() const { return *generator_; }
    const std::string& model() const { return model_; }

   private:
    friend class ModelRegistry;
    Lease(ModelRegistry* registry, std::string model, size_t slot, Generator* generator);
    ModelRegistry* registry_;
    std::string model_;
    size_t slot_;
    Generator* generator_;
  };

  // A generator of `name` (empty: the first model), loading the model first if it is not
  // loaded; waits while it loads, while every generator of it is busy, or while a load waits
  // for running requests of models it must evict. `on_loading` is called (once, without locks
  // held) when this call has to wait for a load. Throws kNotFound for an unknown name,
  // kCancelled when `cancel` is set while waiting, the load's error if it fails, and
  // kUnsupported when the model alone is larger than the budget.
  Lease acquire(const std::string& name, const std::atomic<bool>* cancel = nullptr,
                const std::function<void()>& on_loading = {});
  // Loads (if needed) and returns when the model is loaded; same errors as acquire.
  void load(const std::string& name, const std::atomic<bool>* cancel = nullptr);
  // Unloads an idle model now. Returns false (and changes nothing) when it is running requests
  // or loading; true when it was unloaded or was not loaded. Throws kNotFound.
  bool unload(const std::string& name);

  // Model::prepare_video with `name`'s model for its generators, when that model is loaded;
  // null when it is not (the request then decodes as it runs) or the clip is beyond the span.
  // Runs beside the model's requests and never waits for a load. Throws as prepare_video does,
  // and kNotFound for an unknown name.
  std::shared_ptr<const PreparedVideo> prepare_video(const std::string& name,
                                                     const std::string& video_path,
                                                     const GenerationParams& params,
                                                     const std::atomic<bool>* cancel = nullptr);

  std::vector<RegistryModelStatus> status() const;
  // Sum of the loaded models' costs.
  int64_t used_bytes() const;
  // The first model: the one a request that names none gets.
  const std::string& default_model() const;
  bool has(const std::string& name) const;
  const RegistryOptions& options() const { return options_; }
  // Requests one generator takes at once: 2 with GeneratorOptions::overlap_encoders (one
  // encoding while the other denoises), else 1. A server runs generators_per_model times this
  // many workers per model.
  int leases_per_generator() const { return options_.generator.overlap_encoders ? 2 : 1; }

 private:
  struct Entry;
  Entry& entry_locked(const std::string& name) const;
  // Makes `e` loaded, called with the lock held (released while loading). Returns with the
  // lock held and e loaded, or throws.
  void ensure_loaded_locked(std::unique_lock<std::mutex>& lock, Entry& e,
                            const std::atomic<bool>* cancel,
                            const std::function<void()>& on_loading, bool& waited);
  int64_t estimate_locked(const Entry& e) const;
  int64_t used_locked() const;  // the models' bytes: measured, or reserved while loading
  void release(const std::string& model, size_t slot);
  // Unloads a loaded, idle model (lock held; released while its memory is freed).
  void unload_locked(std::unique_lock<std::mutex>& lock, Entry& e);
  void wait_locked(std::unique_lock<std::mutex>& lock, const std::atomic<bool>* cancel);

  RegistryOptions options_;
  std::vector<std::unique_ptr<Entry>> entries_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  int64_t measured_work_per_generator_ = 0;  // from the last load, for estimates
  uint64_t tick_ = 0;                        // orders uses for least-recently-used
};

}  // namespace foley
