// ModelRegistry (include/foley/registry.h): named models loaded on demand, least-recently-used
// idle ones unloaded to stay within a memory budget.
#include "foley/registry.h"

#include <algorithm>
#include <chrono>

#include "core/check.h"

namespace foley {

const char* model_state_name(ModelState s) {
  switch (s) {
    case ModelState::kUnloaded:
      return "unloaded";
    case ModelState::kLoading:
      return "loading";
    case ModelState::kLoaded:
      return "loaded";
    case ModelState::kUnloading:
      return "unloading";
  }
  return "?";
}

struct ModelRegistry::Entry {
  RegistryModel spec;
  ModelInfo info;
  ModelState state = ModelState::kUnloaded;
  std::shared_ptr<const Model> model;
  std::vector<std::unique_ptr<Generator>> generators;
  std::vector<int> leases;    // per generator: requests holding it now
  int64_t bytes = 0;          // measured while loaded, the estimate while loading
  int64_t last_measured = 0;  // from the last load, for the next estimate
  int64_t requests = 0;
  int running = 0, loads = 0, evictions = 0;
  double last_load_seconds = 0, last_used_unix = 0;
  uint64_t last_used_tick = 0;
  std::string last_error;
  uint64_t load_attempts = 0;
  // A load waits for this model's running requests to end so that it can unload it: new
  // requests for it wait meanwhile instead of keeping it busy forever.
  bool evicting = false;
  // Over the budget after a load whose estimate was short, with every other model busy: this
  // one is unloaded as soon as its last running request ends (and takes no new ones).
  bool evict_when_idle = false;
};

namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

ModelRegistry::ModelRegistry(std::vector<RegistryModel> models, RegistryOptions options)
    : options_(std::move(options)) {
  if (models.empty()) throw Error(ErrorKind::kInvalidInput, "model registry: no models given");
  if (options_.generators_per_model < 1)
    throw Error(ErrorKind::kInvalidInput, "model registry: generators_per_model must be >= 1");
  if (options_.budget_bytes < 0)
    throw Error(ErrorKind::kInvalidInput, "model registry: the budget must not be negative");
  for (RegistryModel& m : models) {
    if (m.name.empty())
      throw Error(ErrorKind::kInvalidInput, "model registry: a model has no name");
    for (const auto& e : entries_)
      if (e->spec.name == m.name)
        throw Error(ErrorKind::kInvalidInput,
                    "model registry: the name \"" + m.name + "\" is given twice");
    auto e = std::make_unique<Entry>();
    // Opening a bundle maps and checks it without reading its weights: bad files fail here,
    // at start, not at a first request. The mapping is dropped until the model is loaded.
    e->info = Model::load({m.bundle_path})->info();
    e->spec = std::move(m);
    entries_.push_back(std::move(e));
  }
}

ModelRegistry::~ModelRegistry() = default;

ModelRegistry::Lease::Lease(ModelRegistry* registry, std::string model, size_t slot,
                            Generator* generator)
    : registry_(registry), model_(std::move(model)), slot_(slot), generator_(generator) {}

ModelRegistry::Lease::Lease(Lease&& o) noexcept
    : registry_(o.registry_),
      model_(std::move(o.model_)),
      slot_(o.slot_),
      generator_(o.generator_) {
  o.registry_ = nullptr;
}

ModelRegistry::Lease::~Lease() {
  if (registry_) registry_->release(model_, slot_);
}

ModelRegistry::Entry& ModelRegistry::entry_locked(const std::string& name) const {
  const std::string& want = name.empty() ? entries_.front()->spec.name : name;
  for (const auto& e : entries_)
    if (e->spec.name == want) return *e;
  std::string known;
  for (const auto& e : entries_) known += (known.empty() ? "" : ", ") + e->spec.name;
  throw Error(ErrorKind::kNotFound,
              "unknown model \"" + want + "\" (this server has: " + known + ")");
}

const std::string& ModelRegistry::default_model() const {
  return entries_.front()->spec.name;
}

bool ModelRegistry::has(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& e : entries_)
    if (e->spec.name == name) return true;
  return false;
}

int64_t ModelRegistry::used_locked() const {
  int64_t sum = 0;
  for (const auto& e : entries_) sum += e->bytes;
  return sum;
}

int64_t ModelRegistry::used_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return used_locked();
}

int64_t ModelRegistry::estimate_locked(const Entry& e) const {
  if (e.last_measured > 0) return e.last_measured;
  return e.info.bundle_bytes + measured_work_per_generator_ * options_.generators_per_model;
}

void ModelRegistry::wait_locked(std::unique_lock<std::mutex>& lock,
                                const std::atomic<bool>* cancel) {
  if (cancel && cancel->load())
    throw Error(ErrorKind::kCancelled, "cancelled while waiting for a model");
  changed_.wait_for(lock, std::chrono::milliseconds(100));
  if (cancel && cancel->load())
    throw Error(ErrorKind::kCancelled, "cancelled while waiting for a model");
}

void ModelRegistry::ensure_loaded_locked(std::unique_lock<std::mutex>& lock, Entry& e,
                                         const std::atomic<bool>* cancel,
                                         const std::function<void()>& on_loading, bool& waited) {
  // Models this call asked to be evicted; released if it gives up.
  std::vector<Entry*> marked;
  struct Unmark {
    std::vector<Entry*>& marked;
    ~Unmark() {
      for (Entry* m : marked) m->evicting = false;
    }
  } unmark{marked};
  auto tell_loading = [&] {
    if (waited || !on_loading) return;
    waited = true;
    lock.unlock();
    on_loading();
    lock.lock();
  };
  for (;;) {
    const bool leaving = e.evicting || e.evict_when_idle;
    if (e.state == ModelState::kLoaded && !leaving) return;
    if (e.state != ModelState::kUnloaded || leaving) {
      if (e.state == ModelState::kLoading) tell_loading();
      const uint64_t attempt = e.load_attempts;
      wait_locked(lock, cancel);
      if (e.state == ModelState::kUnloaded && e.load_attempts != attempt && !e.last_error.empty())
        throw Error(ErrorKind::kInternal,
                    "model \"" + e.spec.name + "\" failed to load: " + e.last_error);
      continue;
    }
    // Unloaded: this call loads it, after making room.
    const int64_t need = estimate_locked(e), budget = options_.budget_bytes;
    if (budget > 0 && need > budget)
      throw make_error(ErrorKind::kUnsupported,
                       "model \"%s\" needs about %.2f GB, more than the whole budget of %.2f GB",
                       e.spec.name.c_str(), need / 1e9, budget / 1e9);
    bool room = true;
    for (;;) {
      const int64_t used = used_locked();
      if (budget <= 0 || used + need <= budget) break;
      Entry* victim = nullptr;
      for (const auto& o : entries_)
        if (o.get() != &e && o->state == ModelState::kLoaded && o->running == 0 &&
            (!victim || o->last_used_tick < victim->last_used_tick))
          victim = o.get();
      if (victim) {
        ++victim->evictions;
        unload_locked(lock, *victim);
        continue;
      }
      // Every other loaded model is running requests: ask the least recently used ones to
      // stop taking new ones, then wait for them to finish.
      std::vector<Entry*> busy;
      for (const auto& o : entries_)
        if (o.get() != &e && o->state == ModelState::kLoaded) busy.push_back(o.get());
      std::sort(busy.begin(), busy.end(),
                [](Entry* a, Entry* b) { return a->last_used_tick < b->last_used_tick; });
      int64_t freed = 0;
      for (Entry* b : busy) {
        if (used - freed + need <= budget) break;
        if (!b->evicting) {
          b->evicting = true;
          marked.push_back(b);
        }
        freed += b->bytes;
      }
      tell_loading();
      wait_locked(lock, cancel);
      room = false;
      break;
    }
    if (!room) continue;  // the world changed while waiting: decide again
    e.state = ModelState::kLoading;
    e.bytes = need;  // reserved while it loads, so concurrent loads see it
    e.last_error.clear();
    ++e.load_attempts;
    tell_loading();
    lock.unlock();
    const auto t0 = std::chrono::steady_clock::now();
    std::shared_ptr<const Model> model;
    std::vector<std::unique_ptr<Generator>> generators;
    std::string error;
    try {
      model = Model::load({e.spec.bundle_path});
      for (int i = 0; i < options_.generators_per_model; ++i) {
        generators.push_back(Generator::create(model, options_.generator));
        if (options_.warm_up) generators.back()->warm_up();
      }
    } catch (const std::exception& ex) {
      error = ex.what();
    }
    if (!error.empty()) {  // a half-made model is freed before the lock is taken again
      generators.clear();
      model.reset();
    }
    lock.lock();
    if (!error.empty()) {
      e.state = ModelState::kUnloaded;
      e.bytes = 0;
      e.last_error = error;
      changed_.notify_all();
      throw Error(ErrorKind::kInternal, "model \"" + e.spec.name + "\" failed to load: " + error);
    }
    int64_t bytes = 0, work = 0;
    for (const auto& g : generators) {
      const Generator::Memory m = g->memory();
      bytes = std::max(bytes, m.weights_bytes);
      work += m.work_bytes;
    }
    bytes += work;
    measured_work_per_generator_ = work / static_cast<int64_t>(generators.size());
    e.model = std::move(model);
    e.generators = std::move(generators);
    e.leases.assign(e.generators.size(), 0);
    e.bytes = e.last_measured = bytes;
    e.state = ModelState::kLoaded;
    ++e.loads;
    e.last_load_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The estimate may have been short: evict idle models until the budget holds again, and
    // if the rest are busy, have the least recently used leave once their requests end.
    for (;;) {
      int64_t used = 0;
      for (const auto& o : entries_)
        if (!o->evict_when_idle) used += o->bytes;
      if (budget <= 0 || used <= budget) break;
      Entry* victim = nullptr;
      for (const auto& o : entries_)
        if (o.get() != &e && o->state == ModelState::kLoaded && !o->evict_when_idle &&
            (!victim || o->running < victim->running ||
             (o->running == victim->running && o->last_used_tick < victim->last_used_tick)))
          victim = o.get();
      if (!victim) break;
      if (victim->running == 0) {
        ++victim->evictions;
        unload_locked(lock, *victim);
      } else {
        victim->evict_when_idle = true;
      }
    }
    changed_.notify_all();
    return;
  }
}

ModelRegistry::Lease ModelRegistry::acquire(const std::string& name,
                                            const std::atomic<bool>* cancel,
                                            const std::function<void()>& on_loading) {
  std::unique_lock<std::mutex> lock(mutex_);
  Entry& e = entry_locked(name);
  bool waited = false;
  for (;;) {
    ensure_loaded_locked(lock, e, cancel, on_loading, waited);
    // The least leased generator with room: an idle one first, then one whose other request
    // may be denoising while this one encodes (GeneratorOptions::overlap_encoders).
    size_t pick = e.leases.size();
    for (size_t i = 0; i < e.leases.size(); ++i)
      if (e.leases[i] < leases_per_generator() &&
          (pick == e.leases.size() || e.leases[i] < e.leases[pick]))
        pick = i;
    if (pick < e.leases.size()) {
      ++e.leases[pick];
      ++e.running;
      ++e.requests;
      e.last_used_unix = unix_now();
      e.last_used_tick = ++tick_;
      return Lease(this, e.spec.name, pick, e.generators[pick].get());
    }
    wait_locked(lock, cancel);
  }
}

void ModelRegistry::load(const std::string& name, const std::atomic<bool>* cancel) {
  std::unique_lock<std::mutex> lock(mutex_);
  Entry& e = entry_locked(name);
  bool waited = false;
  ensure_loaded_locked(lock, e, cancel, {}, waited);
  if (e.last_used_tick == 0) e.last_used_tick = ++tick_;
}

std::shared_ptr<const PreparedVideo> ModelRegistry::prepare_video(
    const std::string& name, const std::string& video_path, const GenerationParams& params,
    const std::atomic<bool>* cancel) {
  std::shared_ptr<const Model> model;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Entry& e = entry_locked(name);
    if (e.state != ModelState::kLoaded) return nullptr;
    model = e.model;  // kept alive by this reference even if the model is unloaded meanwhile
  }
  return model->prepare_video(video_path, params, options_.generator, cancel);
}

bool ModelRegistry::unload(const std::string& name) {
  std::unique_lock<std::mutex> lock(mutex_);
  Entry& e = entry_locked(name);
  if (e.state == ModelState::kUnloaded) return true;
  if (e.state != ModelState::kLoaded || e.running > 0) return false;
  unload_locked(lock, e);
  return true;
}

void ModelRegistry::unload_locked(std::unique_lock<std::mutex>& lock, Entry& e) {
  e.state = ModelState::kUnloading;
  std::vector<std::unique_ptr<Generator>> generators = std::move(e.generators);
  std::shared_ptr<const Model> model = std::move(e.model);
  e.leases.clear();
  e.bytes = 0;
  lock.unlock();
  generators.clear();  // frees the device memory (weights go with the last generator)
  model.reset();
  lock.lock();
  e.state = ModelState::kUnloaded;
  e.evicting = false;
  e.evict_when_idle = false;
  changed_.notify_all();
}

void ModelRegistry::release(const std::string& model, size_t slot) {
  std::unique_lock<std::mutex> lock(mutex_);
  Entry& e = entry_locked(model);
  --e.leases[slot];
  --e.running;
  e.last_used_unix = unix_now();
  e.last_used_tick = ++tick_;
  if (e.evict_when_idle && e.running == 0 && e.state == ModelState::kLoaded) {
    ++e.evictions;
    unload_locked(lock, e);
  }
  changed_.notify_all();
}

std::vector<RegistryModelStatus> ModelRegistry::status() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<RegistryModelStatus> out;
  for (const auto& e : entries_) {
    RegistryModelStatus s;
    s.name = e->spec.name;
    s.bundle_path = e->spec.bundle_path;
    s.dit_summary = e->info.dit_summary;
    s.parameters = e->info.parameters;
    s.file_bytes = e->info.bundle_bytes;
    s.state = e->state;
    s.bytes = e->bytes;
    s.requests = e->requests;
    s.running = e->running;
    s.loads = e->loads;
    s.evictions = e->evictions;
    s.last_load_seconds = e->last_load_seconds;
    s.last_used_unix = e->last_used_unix;
    s.last_error = e->last_error;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace foley
