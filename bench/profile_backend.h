// Per-op timing of any Backend, for the benchmarks (not part of the library).
//
// ProfilingBackend is a decorator: it forwards every virtual of Backend to the wrapped backend
// and, while enabled, times each op with synchronize() before and after it around a steady
// clock. Each recorded time is therefore the op's device time plus one host<->device sync round
// trip (a few µs on a GPU, ~0 on the CPU backend); measure_sync_floor() measures that round trip
// with no op in between so the report can show it. Calls are aggregated per op kind and per
// shape class ("linear M=1160 N=4608 K=1536 x=F32 w=BF16"), with the FLOPs (matmul-like ops) and
// bytes (read + written, from the tensors' dtypes) needed to turn times into TFLOP/s and GB/s.
//
// Any virtual the interface gains must be forwarded here too (a defaulted one would otherwise
// silently run the base's version instead of the wrapped backend's).
#pragma once

#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "backend/backend.h"

namespace foley::bench {

// One (op, shape class) row. flops and bytes are summed over calls.
struct OpStat {
  std::string op;
  std::string shape;
  int64_t calls = 0;
  double seconds = 0;
  double flops = 0;  // 0 for ops that are not matmul-like
  double bytes = 0;
};

class ProfilingBackend : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner) : inner_(inner) {}

  // Disabled: plain forwarding, nothing recorded, no extra syncs (warm-up, context setup).
  void set_enabled(bool on) { enabled_ = on; }
  void reset() { stats_.clear(); }
  const std::map<std::string, OpStat>& stats() const { return stats_; }
  // Mean seconds of synchronize(); clock; synchronize(); clock with no op: the timing floor.
  double measure_sync_floor(int reps = 200);

  // The wrapped backend's arena: forwarded ops allocate there, and so must any caller.
  Arena& scratch() override { return inner_.scratch(); }

  DeviceKind device() const override { return inner_.device(); }
  std::string name() const override { return inner_.name(); }
  bool supports_16bit_activations() const override { return inner_.supports_16bit_activations(); }
  BlockAllocator block_allocator() override { return inner_.block_allocator(); }
  void copy_from_host(const Tensor& dst, const Tensor& host_src) override;
  void copy_to_host(const Tensor& host_dst, const Tensor& src) override;
  void synchronize() override { inner_.synchronize(); }

  void copy(const Tensor& dst, const Tensor& src) override;
  void fill(const Tensor& dst, float value) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
              float beta = 0.0f) override;
  void linear_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale, const Tensor* bias,
                        const Tensor& y) override;
  void conv3_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale, const Tensor* bias,
                       const Tensor& y) override;
  bool supports_quantized(QuantFormat f) const override { return inner_.supports_quantized(f); }
  void layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias, float eps,
                  const Tensor& y) override;
  void rms_norm(const Tensor& x, const Tensor* weight, float eps, const Tensor& y) override;
  void layer_norm_modulate(const Tensor& x, float eps, const Tensor& shift, const Tensor& scale,
                           const Tensor& y) override;
  void activation(Activation act, const Tensor& x, const Tensor& y) override;
  void swiglu(const Tensor& a, const Tensor& b, const Tensor& y) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& y) override;
  void mul(const Tensor& a, const Tensor& b, const Tensor& y) override;
  void gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y) override;
  void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                const Tensor& y) override;
  void snake(const Tensor& x, const Tensor& alpha, const Tensor& y) override;
  void softmax(const Tensor& x, const Tensor& y) override;
  void rope(const Tensor& x, const RopeTable& rope, const Tensor& y) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale, const Tensor& out,
                 const RopeTable* rope_q = nullptr, const RopeTable* rope_k = nullptr) override;
  void conv1d(const Tensor& x, const Tensor& w, const Tensor* bias, int dilation, int pad,
              const Tensor& y) override;
  void conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad,
                        int output_padding, const Tensor& y) override;
  void unfold3(const Tensor& x, const Tensor& cols) override;
  void resample_nearest_exact(const Tensor& x, const Tensor& y) override;
  void patch_embed(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override;

 private:
  struct Meta {
    std::string shape;
    double flops = 0;
    double bytes = 0;
  };
  // Runs `op` (a call on inner_), timed and recorded under (name, meta()) when enabled. meta is
  // built before the first sync so string formatting stays outside the timed interval.
  template <typename MetaFn, typename OpFn>
  void timed(const char* name, MetaFn&& meta, OpFn&& op);

  Backend& inner_;
  bool enabled_ = false;
  std::map<std::string, OpStat> stats_;  // key: op '\t' shape
};

// What the report needs besides the rows; times in seconds.
struct ProfileSummary {
  int steps = 0;                  // forward passes the stats cover
  double unprofiled_step = 0;     // mean step time on the wrapped backend alone
  double profiled_wall_step = 0;  // mean step time with the decorator recording
  double sync_floor = 0;          // measure_sync_floor()
  int top = 40;                   // rows of the shape-class table
};

// Prints "key value" lines (kind ..., row ...) and then a readable table of the same numbers.
void print_profile(std::FILE* out, const std::map<std::string, OpStat>& stats,
                   const ProfileSummary& summary);

}  // namespace foley::bench
