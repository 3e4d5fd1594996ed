// Pieces of the flow sampler shared by its whole-clip (flow_sampler.cpp) and windowed
// (flow_windows.cpp) forms: the host and device inputs of one DiT evaluation, and the recorded
// steps. Not part of the models' interface.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/flow_sampler.h"

namespace foley {
namespace flow_internal {

// The request's host inputs, checked: the latent (updated in place by the Euler steps) and the
// conditions as contiguous F32.
struct HostInputs {
  Tensor x;  // [1, latent_dim, Ta]
  Tensor clip, sync, text, uncond_text;
  int64_t B = 1, Ta = 0, Tv = 0, S8 = 0, L = 0;
  bool cfg = false;
};

struct DeviceInputs {
  Tensor x, v;  // the step's latent and velocity [B, latent_dim, Ta]
  Tensor clip, sync, text;
};

// Host tensor of any float dtype -> contiguous F32 copy (kInvalidInput for other dtypes).
Tensor host_f32(const Tensor& t, const char* what);
// kInvalidInput unless 1 <= steps <= 1000.
void check_steps(int steps);
// Checks the request and gathers its inputs (the latent drawn from the seed unless `noise`).
HostInputs host_inputs(const Mmdit& model, const FlowConditions& cond,
                       const FlowSampleParams& params, int64_t audio_len, const Tensor* noise);
// A request's rows and lengths within what the workspace was sized for (kInvalidInput if not).
void check_fits(const HostInputs& in, const FlowLimits& l);
// The CFG batch [uncond, cond] on the device. x and v come first, so their addresses depend only
// on B and Ta.
DeviceInputs upload_inputs(const Mmdit& model, const HostInputs& in, Arena& arena);
bool graphs_enabled_by_env();
// The rows of a workspace's timestep table (FlowLimits::timestep_rows, at least the batch).
int64_t timestep_table_rows(const FlowLimits& l);
// The schedule's timesteps (1000·sigma, the final 0 excluded) into the table, before the first
// step, so that they are computed together.
void precompute_schedule(const Mmdit& model, TimestepTable& table,
                         const std::vector<float>& sigmas);

// Everything a recorded step refers to besides the model's weights and the backend's own memory
// (scratch, cuBLASLt workspace: see backend/cuda/cuda_graph.cu): the lengths and where the
// buffers sit. Any difference means the step is recorded again.
struct StepGraphKey {
  int64_t batch, audio_len, visual_len, text_len, sync_len;
  const void* x;
  const void* v;
  const void* context;
  size_t step_mark;
  std::vector<DitTextRows> text_rows;  // the rows' text lengths (DitContext::text_rows)
  bool operator==(const StepGraphKey&) const = default;
};

// One Euler step of one request on the host, in the official order of F32 operations:
// guided = u + s·(c − u) (or c without CFG), then x + dt·guided. Shared by every sampler form, so
// a request's arithmetic is the same code whether it ran alone or in a batch.
inline void cfg_euler_step(float* x, const float* vu, const float* vc, int64_t n, bool cfg, float s,
                           float dt) {
  for (int64_t j = 0; j < n; ++j) {
    const float guided = cfg ? vu[j] + s * (vc[j] - vu[j]) : vc[j];
    x[j] = x[j] + dt * guided;
  }
}

}  // namespace flow_internal

// Recorded steps, least recently used dropped first: each executable graph holds some device
// memory of the driver's, and lengths vary with the clip and the prompt, so only recent shapes
// are kept.
struct FlowWorkspace::Graphs {
  static constexpr size_t kMaxGraphs = 8;
  struct Entry {
    flow_internal::StepGraphKey key;
    std::unique_ptr<OpGraph> graph;
    uint64_t last_use = 0;
  };
  std::vector<Entry> entries;
  uint64_t clock = 0;
  size_t recorded = 0;
  std::string error;

  OpGraph* find(const flow_internal::StepGraphKey& key) {
    for (Entry& e : entries)
      if (e.key == key) {
        e.last_use = ++clock;
        return e.graph.get();
      }
    return nullptr;
  }
  OpGraph* add(const flow_internal::StepGraphKey& key, std::unique_ptr<OpGraph> graph) {
    if (entries.size() >= kMaxGraphs)
      entries.erase(std::min_element(entries.begin(), entries.end(),
                                     [](auto& a, auto& b) { return a.last_use < b.last_use; }));
    ++recorded;
    entries.push_back({key, std::move(graph), ++clock});
    return entries.back().graph.get();
  }
};

namespace flow_internal {

// One request's steps: replay the shape's graph when there is one; otherwise the first step
// runs eagerly (it creates whatever the ops make on first use: GEMM plans, scratch blocks), the
// second is recorded and replayed, and so is every later one.
class GraphedForward {
 public:
  GraphedForward(Backend& be, FlowWorkspace::Graphs& graphs, const StepGraphKey& key)
      : be_(be),
        graphs_(graphs),
        key_(key),
        enabled_(graphs_enabled_by_env() && graphs.error.empty()) {
    if (enabled_) graph_ = graphs_.find(key_);
  }

  const StepGraphKey& key() const { return key_; }

  void operator()(const std::function<void()>& forward) {
    if (graph_) return graph_->replay();
    if (!enabled_ || !ran_eagerly_) {
      forward();
      ran_eagerly_ = true;
      return;
    }
    std::unique_ptr<OpGraph> recorded;
    try {
      recorded = be_.record(forward);
    } catch (const Error& e) {
      // The results do not depend on it: run eagerly from now on, and say why.
      graphs_.error = e.what();
    }
    if (!recorded) {  // cannot record on this backend, or failed
      enabled_ = false;
      return forward();
    }
    graph_ = graphs_.add(key_, std::move(recorded));
    graph_->replay();
  }

 private:
  Backend& be_;
  FlowWorkspace::Graphs& graphs_;
  StepGraphKey key_;
  bool enabled_;
  bool ran_eagerly_ = false;
  OpGraph* graph_ = nullptr;
};

}  // namespace flow_internal
}  // namespace foley
