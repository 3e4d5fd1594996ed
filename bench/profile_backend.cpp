// ProfilingBackend: forwarding, shape classes, FLOP/byte counts and the report.
#include "profile_backend.h"

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <vector>

namespace foley::bench {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string dims(const Tensor& t) {
  std::string s = "[";
  for (int i = 0; i < t.rank(); ++i) {
    if (i) s += ',';
    s += std::to_string(t.dim(i));
  }
  return s + "]";
}

// Bytes of the distinct elements a view touches: broadcast (stride-0) dims are read once.
double touched_bytes(const Tensor& t) {
  double n = 1;
  for (int i = 0; i < t.rank(); ++i)
    if (t.stride(i) != 0) n *= double(t.dim(i));
  return n * double(dtype_size(t.dtype()));
}

bool broadcasts(const Tensor& t) {
  for (int i = 0; i < t.rank(); ++i)
    if (t.stride(i) == 0 && t.dim(i) > 1) return true;
  return false;
}

// The parts of a tensor's layout that change a kernel's speed, as a shape-class suffix:
// non-F32 storage, broadcast inputs, strided (non-contiguous) views.
std::string layout_flags(std::initializer_list<const Tensor*> ts) {
  bool any_bcast = false, any_strided = false, all_f32 = true;
  std::string types;
  for (const Tensor* t : ts) {
    if (!t) continue;
    const bool b = broadcasts(*t);
    any_bcast |= b;
    any_strided |= !b && !t->is_contiguous();
    all_f32 &= t->dtype() == DType::kF32;
    if (!types.empty()) types += '/';
    types += dtype_name(t->dtype());
  }
  std::string s;
  if (!all_f32) s += " " + types;
  if (any_bcast) s += " bcast";
  if (any_strided) s += " strided";
  return s;
}

double bytes_of(std::initializer_list<const Tensor*> ts) {
  double b = 0;
  for (const Tensor* t : ts)
    if (t) b += touched_bytes(*t);
  return b;
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::kGeluTanh:
      return "gelu_tanh";
    case Activation::kGeluErf:
      return "gelu_erf";
    case Activation::kSilu:
      return "silu";
    case Activation::kTanh:
      return "tanh";
  }
  return "?";
}

}  // namespace

template <typename MetaFn, typename OpFn>
void ProfilingBackend::timed(const char* name, MetaFn&& meta, OpFn&& op) {
  if (!enabled_) {
    op();
    return;
  }
  const Meta m = meta();
  inner_.synchronize();  // earlier work must not be charged to this op
  const auto t0 = Clock::now();
  op();
  inner_.synchronize();
  const double s = seconds_since(t0);
  OpStat& st = stats_[std::string(name) + '\t' + m.shape];
  if (st.calls == 0) st.op = name, st.shape = m.shape;
  ++st.calls;
  st.seconds += s;
  st.flops += m.flops;
  st.bytes += m.bytes;
}

double ProfilingBackend::measure_sync_floor(int reps) {
  inner_.synchronize();
  double total = 0;
  for (int i = 0; i < reps; ++i) {
    inner_.synchronize();
    const auto t0 = Clock::now();
    inner_.synchronize();
    total += seconds_since(t0);
  }
  return total / reps;
}

// Elementwise-style ops: the output's shape names the class; bytes are every input + output.
#define FOLEY_EW_META(...) \
  [&] { return Meta{dims(y) + layout_flags({__VA_ARGS__, &y}), 0, bytes_of({__VA_ARGS__, &y})}; }

void ProfilingBackend::copy_from_host(const Tensor& dst, const Tensor& host_src) {
  const Tensor& y = dst;
  timed("copy_from_host", FOLEY_EW_META(&host_src), [&] { inner_.copy_from_host(dst, host_src); });
}
void ProfilingBackend::copy_to_host(const Tensor& host_dst, const Tensor& src) {
  const Tensor& y = host_dst;
  timed("copy_to_host", FOLEY_EW_META(&src), [&] { inner_.copy_to_host(host_dst, src); });
}
void ProfilingBackend::copy(const Tensor& dst, const Tensor& src) {
  const Tensor& y = dst;
  timed("copy", FOLEY_EW_META(&src), [&] { inner_.copy(dst, src); });
}
void ProfilingBackend::fill(const Tensor& dst, float value) {
  timed(
      "fill",
      [&] {
        return Meta{dims(dst) + layout_flags({&dst}), 0, touched_bytes(dst)};
      },
      [&] { inner_.fill(dst, value); });
}

void ProfilingBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                              float beta) {
  auto meta = [&] {
    const int64_t K = x.dim(-1), N = w.dim(0), M = K ? x.numel() / K : 0;
    std::string s = fmt("M=%" PRId64 " N=%" PRId64 " K=%" PRId64 " x=%s w=%s", M, N, K,
                        dtype_name(x.dtype()), dtype_name(w.dtype()));
    if (x.rank() >= 2 && x.stride(-2) != K) s += " x-rows-strided";
    if (beta != 0.0f) s += " +beta*y";
    const double bytes = bytes_of({&x, &w, bias, &y}) + (beta != 0.0f ? touched_bytes(y) : 0);
    return Meta{s, 2.0 * double(M) * double(N) * double(K), bytes};
  };
  timed("linear", meta, [&] { inner_.linear(x, w, bias, y, beta); });
}

void ProfilingBackend::linear_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                        const Tensor* bias, const Tensor& y) {
  auto meta = [&] {
    const int64_t K = x.dim(-1), N = w.dim(0), M = K ? x.numel() / K : 0;
    std::string s = fmt("M=%" PRId64 " N=%" PRId64 " K=%" PRId64 " x=%s w=%s y=%s", M, N, K,
                        dtype_name(x.dtype()), dtype_name(w.dtype()), dtype_name(y.dtype()));
    return Meta{s, 2.0 * double(M) * double(N) * double(K), bytes_of({&x, &w, &w_scale, bias, &y})};
  };
  timed("linear_quantized", meta, [&] { inner_.linear_quantized(x, w, w_scale, bias, y); });
}

void ProfilingBackend::conv3_quantized(const Tensor& x, const Tensor& w, const Tensor& w_scale,
                                       const Tensor* bias, const Tensor& y) {
  auto meta = [&] {
    const int64_t K = w.dim(1), N = w.dim(0), M = y.numel() / std::max<int64_t>(N, 1);
    std::string s = fmt("M=%" PRId64 " N=%" PRId64 " K=%" PRId64 " x=%s w=%s y=%s", M, N, K,
                        dtype_name(x.dtype()), dtype_name(w.dtype()), dtype_name(y.dtype()));
    return Meta{s, 2.0 * double(M) * double(N) * double(K), bytes_of({&x, &w, &w_scale, bias, &y})};
  };
  timed("conv3_quantized", meta, [&] { inner_.conv3_quantized(x, w, w_scale, bias, y); });
}

void ProfilingBackend::layer_norm(const Tensor& x, const Tensor* weight, const Tensor* bias,
                                  float eps, const Tensor& y) {
  timed("layer_norm", FOLEY_EW_META(&x, weight, bias),
        [&] { inner_.layer_norm(x, weight, bias, eps, y); });
}
void ProfilingBackend::rms_norm(const Tensor& x, const Tensor* weight, float eps, const Tensor& y) {
  timed("rms_norm", FOLEY_EW_META(&x, weight), [&] { inner_.rms_norm(x, weight, eps, y); });
}
void ProfilingBackend::layer_norm_modulate(const Tensor& x, float eps, const Tensor& shift,
                                           const Tensor& scale, const Tensor& y) {
  timed("layer_norm_modulate", FOLEY_EW_META(&x, &shift, &scale),
        [&] { inner_.layer_norm_modulate(x, eps, shift, scale, y); });
}

void ProfilingBackend::activation(Activation act, const Tensor& x, const Tensor& y) {
  auto meta = [&] {
    return Meta{std::string(activation_name(act)) + " " + dims(y) + layout_flags({&x, &y}), 0,
                bytes_of({&x, &y})};
  };
  timed("activation", meta, [&] { inner_.activation(act, x, y); });
}
void ProfilingBackend::swiglu(const Tensor& a, const Tensor& b, const Tensor& y) {
  timed("swiglu", FOLEY_EW_META(&a, &b), [&] { inner_.swiglu(a, b, y); });
}
void ProfilingBackend::add(const Tensor& a, const Tensor& b, const Tensor& y) {
  timed("add", FOLEY_EW_META(&a, &b), [&] { inner_.add(a, b, y); });
}
void ProfilingBackend::mul(const Tensor& a, const Tensor& b, const Tensor& y) {
  timed("mul", FOLEY_EW_META(&a, &b), [&] { inner_.mul(a, b, y); });
}
void ProfilingBackend::gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y) {
  // x is read and written; y and gate are read.
  auto meta = [&] {
    return Meta{dims(x) + layout_flags({&x, &gate, &y}), 0, bytes_of({&x, &x, &gate, &y})};
  };
  timed("gated_residual", meta, [&] { inner_.gated_residual(x, gate, y); });
}
void ProfilingBackend::modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                const Tensor& y) {
  timed("modulate", FOLEY_EW_META(&x, &shift, &scale),
        [&] { inner_.modulate(x, shift, scale, y); });
}
void ProfilingBackend::snake(const Tensor& x, const Tensor& alpha, const Tensor& y) {
  timed("snake", FOLEY_EW_META(&x, &alpha), [&] { inner_.snake(x, alpha, y); });
}
void ProfilingBackend::softmax(const Tensor& x, const Tensor& y) {
  timed("softmax", FOLEY_EW_META(&x), [&] { inner_.softmax(x, y); });
}
void ProfilingBackend::rope(const Tensor& x, const RopeTable& table, const Tensor& y) {
  auto meta = [&] {
    // Rows 0..L-1 of both tables are read.
    const double tables = 2.0 * double(x.dim(1)) * double(x.dim(-1) / 2) * 4.0;
    return Meta{dims(y) + layout_flags({&x, &y}), 0, bytes_of({&x, &y}) + tables};
  };
  timed("rope", meta, [&] { inner_.rope(x, table, y); });
}

void ProfilingBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                 const Tensor& out, const RopeTable* rope_q,
                                 const RopeTable* rope_k) {
  auto meta = [&] {
    const int64_t B = q.dim(0), Lq = q.dim(1), H = q.dim(2), D = q.dim(3), Lk = k.dim(1),
                  Dv = v.dim(3);
    std::string s =
        fmt("B%" PRId64 " Lq%" PRId64 " Lk%" PRId64 " H%" PRId64 " D%" PRId64, B, Lq, Lk, H, D);
    if (Dv != D) s += fmt(" Dv%" PRId64, Dv);
    if (rope_q || rope_k) s += fmt(" rope%s%s", rope_q ? "q" : "", rope_k ? "k" : "");
    s += layout_flags({&q, &k, &v, &out});
    // QKᵀ and PV; the softmax's exp work is not counted.
    const double flops = 2.0 * double(B * H) * double(Lq) * double(Lk) * double(D + Dv);
    return Meta{s, flops, bytes_of({&q, &k, &v, &out})};
  };
  timed("attention", meta, [&] { inner_.attention(q, k, v, scale, out, rope_q, rope_k); });
}

void ProfilingBackend::conv1d(const Tensor& x, const Tensor& w, const Tensor* bias, int dilation,
                              int pad, const Tensor& y) {
  auto meta = [&] {
    const int64_t B = x.dim(0), T = x.dim(1), Ci = x.dim(2), K = w.dim(0), Co = w.dim(1),
                  To = y.dim(1);
    std::string s =
        fmt("B%" PRId64 " T%" PRId64 " Ci%" PRId64 " Co%" PRId64 " K%" PRId64 " dil%d w=%s", B, T,
            Ci, Co, K, dilation, dtype_name(w.dtype()));
    s += layout_flags({&x, &y});
    const double flops = 2.0 * double(B * To) * double(Co) * double(Ci) * double(K);
    return Meta{s, flops, bytes_of({&x, &w, bias, &y})};
  };
  timed("conv1d", meta, [&] { inner_.conv1d(x, w, bias, dilation, pad, y); });
}

void ProfilingBackend::conv_transpose1d(const Tensor& x, const Tensor& w, const Tensor* bias,
                                        int stride, int pad, int output_padding, const Tensor& y) {
  auto meta = [&] {
    const int64_t B = x.dim(0), T = x.dim(1), Ci = x.dim(2), K = w.dim(0), Co = w.dim(1);
    std::string s =
        fmt("B%" PRId64 " T%" PRId64 " Ci%" PRId64 " Co%" PRId64 " K%" PRId64 " stride%d w=%s", B,
            T, Ci, Co, K, stride, dtype_name(w.dtype()));
    s += layout_flags({&x, &y});
    // Every input frame meets every tap once.
    const double flops = 2.0 * double(B * T) * double(Ci) * double(Co) * double(K);
    return Meta{s, flops, bytes_of({&x, &w, bias, &y})};
  };
  timed("conv_transpose1d", meta,
        [&] { inner_.conv_transpose1d(x, w, bias, stride, pad, output_padding, y); });
}

void ProfilingBackend::unfold3(const Tensor& x, const Tensor& cols) {
  const Tensor& y = cols;
  timed("unfold3", FOLEY_EW_META(&x), [&] { inner_.unfold3(x, cols); });
}

void ProfilingBackend::resample_nearest_exact(const Tensor& x, const Tensor& y) {
  timed("resample_nearest_exact", FOLEY_EW_META(&x), [&] { inner_.resample_nearest_exact(x, y); });
}

void ProfilingBackend::patch_embed(const Tensor& x, const Tensor& w, const Tensor* bias,
                                   const Tensor& y) {
  auto meta = [&] {
    const double per_out = w.dim(0) ? double(w.numel()) / double(w.dim(0)) : 0;
    return Meta{"x" + dims(x) + " w" + dims(w) + layout_flags({&x, &w, &y}),
                2.0 * double(y.numel()) * per_out, bytes_of({&x, &w, bias, &y})};
  };
  timed("patch_embed", meta, [&] { inner_.patch_embed(x, w, bias, y); });
}

#undef FOLEY_EW_META

// ---- report -------------------------------------------------------------------------------------

namespace {

std::string rate(double num, double seconds, double unit) {
  if (num <= 0 || seconds <= 0) return "-";
  return fmt("%.1f", num / seconds / unit);
}

}  // namespace

void print_profile(std::FILE* out, const std::map<std::string, OpStat>& stats,
                   const ProfileSummary& sum) {
  const double steps = std::max(sum.steps, 1);
  std::vector<OpStat> rows;
  std::map<std::string, OpStat> kinds;
  OpStat all;
  for (const auto& [key, st] : stats) {
    rows.push_back(st);
    for (OpStat* agg : {&kinds[st.op], &all}) {
      agg->op = st.op;
      agg->calls += st.calls;
      agg->seconds += st.seconds;
      agg->flops += st.flops;
      agg->bytes += st.bytes;
    }
  }
  auto by_time = [](const OpStat& a, const OpStat& b) { return a.seconds > b.seconds; };
  std::sort(rows.begin(), rows.end(), by_time);
  std::vector<OpStat> kind_rows;
  for (const auto& [name, st] : kinds) kind_rows.push_back(st);
  std::sort(kind_rows.begin(), kind_rows.end(), by_time);
  const double total = std::max(all.seconds, 1e-12);
  const double ops_per_step = double(all.calls) / steps;
  const double op_sum_step = all.seconds / steps;

  std::fprintf(out, "profile_steps %d\n", sum.steps);
  std::fprintf(out, "profile_ops_per_step %.0f\n", ops_per_step);
  std::fprintf(out, "step_ms_unprofiled %.3f\n", sum.unprofiled_step * 1e3);
  std::fprintf(out, "step_ms_profiled_wall %.3f\n", sum.profiled_wall_step * 1e3);
  std::fprintf(out, "op_sum_ms_per_step %.3f\n", op_sum_step * 1e3);
  std::fprintf(out, "sync_floor_us %.2f\n", sum.sync_floor * 1e6);
  std::fprintf(out, "sync_floor_ms_per_step %.3f\n", sum.sync_floor * ops_per_step * 1e3);
  // Device time the ops would take without the profiler's syncs, roughly: what a step would cost
  // with no launch or host gaps (compare with step_ms_unprofiled).
  std::fprintf(out, "op_sum_minus_floor_ms_per_step %.3f\n",
               (op_sum_step - sum.sync_floor * ops_per_step) * 1e3);
  if (sum.unprofiled_step > 0)
    std::fprintf(out, "op_sum_over_unprofiled %.3f\n", op_sum_step / sum.unprofiled_step);
  std::fprintf(out, "step_matmul_tflop %.4f\n", all.flops / steps / 1e12);
  std::fprintf(out, "step_tflops_unprofiled %s\n",
               rate(all.flops / steps, sum.unprofiled_step, 1e12).c_str());
  for (const OpStat& k : kind_rows)
    std::fprintf(out,
                 "kind calls_per_step %.0f ms_per_step %.3f share_pct %.1f tflops %s gbps %s op "
                 "%s\n",
                 double(k.calls) / steps, k.seconds / steps * 1e3, 100 * k.seconds / total,
                 rate(k.flops, k.seconds, 1e12).c_str(), rate(k.bytes, k.seconds, 1e9).c_str(),
                 k.op.c_str());
  const size_t top = std::min(rows.size(), size_t(std::max(sum.top, 0)));
  for (size_t i = 0; i < top; ++i) {
    const OpStat& r = rows[i];
    std::fprintf(out,
                 "row %zu calls %" PRId64
                 " total_ms %.3f mean_us %.1f share_pct %.2f tflops %s "
                 "gbps %s op %s shape %s\n",
                 i + 1, r.calls, r.seconds * 1e3, r.seconds / double(r.calls) * 1e6,
                 100 * r.seconds / total, rate(r.flops, r.seconds, 1e12).c_str(),
                 rate(r.bytes, r.seconds, 1e9).c_str(), r.op.c_str(), r.shape.c_str());
  }

  // The same numbers for reading.
  std::fprintf(out,
               "\nPer-op times over %d steps; each op is timed between two synchronize() calls, "
               "so it includes one sync round trip (~%.1f us, measured with no op).\n"
               "step: %.3f ms un-profiled, %.3f ms profiled wall, %.3f ms sum of ops "
               "(%.0f ops/step, sync floor %.3f ms/step)\n\n",
               sum.steps, sum.sync_floor * 1e6, sum.unprofiled_step * 1e3,
               sum.profiled_wall_step * 1e3, op_sum_step * 1e3, ops_per_step,
               sum.sync_floor * ops_per_step * 1e3);
  std::fprintf(out, "%-24s %9s %11s %7s %9s %9s\n", "op kind", "calls/st", "ms/step", "share%",
               "TFLOP/s", "GB/s");
  for (const OpStat& k : kind_rows)
    std::fprintf(out, "%-24s %9.0f %11.3f %7.1f %9s %9s\n", k.op.c_str(), double(k.calls) / steps,
                 k.seconds / steps * 1e3, 100 * k.seconds / total,
                 rate(k.flops, k.seconds, 1e12).c_str(), rate(k.bytes, k.seconds, 1e9).c_str());
  std::fprintf(out, "\n%4s %-20s %-46s %7s %10s %9s %7s %8s %8s\n", "#", "op", "shape class",
               "calls", "total ms", "mean us", "share%", "TFLOP/s", "GB/s");
  for (size_t i = 0; i < top; ++i) {
    const OpStat& r = rows[i];
    std::fprintf(out, "%4zu %-20s %-46s %7" PRId64 " %10.3f %9.1f %7.2f %8s %8s\n", i + 1,
                 r.op.c_str(), r.shape.c_str(), r.calls, r.seconds * 1e3,
                 r.seconds / double(r.calls) * 1e6, 100 * r.seconds / total,
                 rate(r.flops, r.seconds, 1e12).c_str(), rate(r.bytes, r.seconds, 1e9).c_str());
  }
  if (rows.size() > top)
    std::fprintf(
        out, "(%zu more shape classes, %.1f%% of the op time)\n", rows.size() - top, 100 * [&] {
          double s = 0;
          for (size_t i = top; i < rows.size(); ++i) s += rows[i].seconds;
          return s / total;
        }());
  std::fflush(out);
}

}  // namespace foley::bench
