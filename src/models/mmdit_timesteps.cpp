// The timestep-only part of a DiT step (model-spec §2.3 steps 1 and, per triple block, the
// adaLN modulations): computed per context, or kept per timestep value in a TimestepTable.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "models/mmdit.h"
#include "models/mmdit_internal.h"

namespace foley {

namespace {

// Timestep sinusoids [cos | sin] of t[0..n) as torch computes them: freqs = exp(F32(−ln 1e4)·k /
// 128), into out[n, 256].
void timestep_sinusoids(const float* t, int64_t n, float* out) {
  const int64_t half = kTimeFreqDim / 2;
  const float neg_log = static_cast<float>(-std::log(10000.0));
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t k = 0; k < half; ++k) {
      const float freq = std::exp(neg_log * static_cast<float>(k) / static_cast<float>(half));
      const float arg = t[b] * freq;
      out[b * kTimeFreqDim + k] = std::cos(arg);
      out[b * kTimeFreqDim + half + k] = std::sin(arg);
    }
  }
}

uint32_t bits_of(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}

}  // namespace

void Mmdit::timestep_rows(const Tensor& temb, const Tensor& hidden, const Tensor& vec,
                          const Tensor& mods) const {
  const Weights& w = *w_;
  Backend& be = backend_;
  be.linear(temb, w.time_1.w, w.time_1.bias(), hidden);
  be.activation(Activation::kSilu, hidden, hidden);
  be.linear(hidden, w.time_2.w, w.time_2.bias(), vec);
  be.activation(Activation::kSilu, vec, hidden);
  for (size_t i = 0; i < w.triple.size(); ++i) {
    const int64_t audio_mod = 2 * static_cast<int64_t>(i);
    dit_linear(be, hidden, w.triple[i].audio.mod, mods.select(0, audio_mod));
    dit_linear(be, hidden, w.triple[i].visual.mod, mods.select(0, audio_mod + 1));
  }
}

void Mmdit::set_timesteps(const DitContext& ctx, const float* t) const {
  const int64_t B = ctx.batch_;
  float* e = ctx.temb_host_.data();
  timestep_sinusoids(t, B, e);
  backend_.copy_from_host(ctx.temb_, Tensor(e, DType::kF32, {B, kTimeFreqDim}, DeviceKind::kCPU));
  timestep_rows(ctx.temb_, ctx.time_hidden_, ctx.vec_, ctx.mods_);
}

// ---- the table ----------------------------------------------------------------------------------

size_t Mmdit::timestep_table_bytes(int64_t rows) const {
  const int64_t H = config_.hidden;
  return ArenaBytes()
      .f32(rows * kTimeFreqDim)
      .of(rows * H, act_)
      .f32(rows * H)
      .of(2 * config_.depth_triple * rows * 9 * H, act_)
      .total;
}

std::unique_ptr<TimestepTable> Mmdit::make_timestep_table(int64_t rows) const {
  FOLEY_CHECK(rows >= 1, "timestep table of %lld rows", static_cast<long long>(rows));
  auto arena = std::make_unique<Arena>(backend_.block_allocator(), timestep_table_bytes(rows));
  std::unique_ptr<TimestepTable> table = make_timestep_table(rows, *arena);
  table->arena_ = std::move(arena);
  return table;
}

std::unique_ptr<TimestepTable> Mmdit::make_timestep_table(int64_t rows, Arena& arena) const {
  FOLEY_CHECK(rows >= 1, "timestep table of %lld rows", static_cast<long long>(rows));
  const int64_t H = config_.hidden;
  auto table = std::make_unique<TimestepTable>();
  table->capacity_ = rows;
  table->temb_ = arena.alloc({rows, kTimeFreqDim}, DType::kF32);
  table->hidden_ = arena.alloc({rows, H}, act_);
  table->vec_ = arena.alloc({rows, H}, DType::kF32);
  table->mods_ = arena.alloc({2 * config_.depth_triple, rows, 9 * H}, act_);
  table->keys_.assign(static_cast<size_t>(rows), 0);
  table->held_.assign(static_cast<size_t>(rows), false);
  table->last_use_.assign(static_cast<size_t>(rows), 0);
  table->temb_host_.assign(static_cast<size_t>(rows * kTimeFreqDim), 0.0f);
  return table;
}

std::vector<int64_t> Mmdit::table_slots(TimestepTable& tb, const float* t, int64_t n) const {
  const uint64_t now = ++tb.clock_;
  const auto cap = static_cast<size_t>(tb.capacity_);
  std::vector<int64_t> slot(static_cast<size_t>(n), -1);
  std::vector<uint32_t> missing;  // distinct, in order of first use
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t key = bits_of(t[i]);
    for (size_t s = 0; s < cap; ++s)
      if (tb.held_[s] && tb.keys_[s] == key) {
        slot[static_cast<size_t>(i)] = static_cast<int64_t>(s);
        tb.last_use_[s] = now;
        break;
      }
    if (slot[static_cast<size_t>(i)] < 0 &&
        std::find(missing.begin(), missing.end(), key) == missing.end())
      missing.push_back(key);
  }
  if (!missing.empty()) {
    // Free slots first, then the least recently used; never one this call uses.
    std::vector<size_t> free;
    for (size_t s = 0; s < cap; ++s)
      if (tb.last_use_[s] != now) free.push_back(s);
    FOLEY_CHECK(free.size() >= missing.size(),
                "timestep table of %zu rows cannot hold %zu new timesteps beside %zu in use", cap,
                missing.size(), cap - free.size());
    std::stable_sort(free.begin(), free.end(), [&](size_t a, size_t b) {
      if (tb.held_[a] != tb.held_[b]) return !tb.held_[a];
      return tb.last_use_[a] < tb.last_use_[b];
    });
    free.resize(missing.size());
    std::sort(free.begin(), free.end());  // in slot order, so that runs of slots are contiguous
    for (size_t k = 0; k < missing.size(); ++k) {
      const size_t s = free[k];
      tb.held_[s] = false;  // until its row is computed: a failure below leaves it empty
      tb.keys_[s] = missing[k];
      tb.last_use_[s] = now;
      float v;
      std::memcpy(&v, &missing[k], sizeof v);
      timestep_sinusoids(&v, 1, tb.temb_host_.data() + s * kTimeFreqDim);
    }
    // One batch of rows per run of consecutive slots.
    for (size_t k = 0; k < free.size();) {
      size_t end = k + 1;
      while (end < free.size() && free[end] == free[end - 1] + 1) ++end;
      const auto first = static_cast<int64_t>(free[k]), len = static_cast<int64_t>(end - k);
      backend_.copy_from_host(tb.temb_.slice(0, first, len),
                              Tensor(tb.temb_host_.data() + first * kTimeFreqDim, DType::kF32,
                                     {len, kTimeFreqDim}, DeviceKind::kCPU));
      timestep_rows(tb.temb_.slice(0, first, len), tb.hidden_.slice(0, first, len),
                    tb.vec_.slice(0, first, len), tb.mods_.slice(1, first, len));
      tb.computed_ += static_cast<size_t>(len);
      k = end;
    }
    for (size_t s : free) tb.held_[s] = true;
    for (int64_t i = 0; i < n; ++i) {
      if (slot[static_cast<size_t>(i)] >= 0) continue;
      const uint32_t key = bits_of(t[i]);
      for (size_t s = 0; s < cap; ++s)
        if (tb.held_[s] && tb.keys_[s] == key)
          slot[static_cast<size_t>(i)] = static_cast<int64_t>(s);
    }
  }
  return slot;
}

void Mmdit::precompute_timesteps(TimestepTable& tb, const float* t, int64_t n) const {
  std::vector<float> distinct;
  for (int64_t i = 0; i < n && static_cast<int64_t>(distinct.size()) < tb.capacity_; ++i)
    if (std::none_of(distinct.begin(), distinct.end(),
                     [&](float d) { return bits_of(d) == bits_of(t[i]); }))
      distinct.push_back(t[i]);
  table_slots(tb, distinct.data(), static_cast<int64_t>(distinct.size()));
}

void Mmdit::set_timesteps(const DitContext& ctx, TimestepTable& tb, const float* t) const {
  const int64_t B = ctx.batch_;
  // Rows at one timestep share a slot (a CFG pair needs one); table_slots refuses more distinct
  // timesteps than the table holds.
  const std::vector<int64_t> slot = table_slots(tb, t, B);
  // One copy per run of rows at one timestep (a CFG pair is one run).
  for (int64_t b = 0; b < B;) {
    const int64_t s = slot[static_cast<size_t>(b)];
    int64_t end = b + 1;
    while (end < B && slot[static_cast<size_t>(end)] == s) ++end;
    const int64_t rows = end - b;
    const Tensor vec = tb.vec_.slice(0, s, 1);
    backend_.copy(ctx.vec_.slice(0, b, rows), vec.expand({rows, vec.dim(1)}));
    const Tensor mods = tb.mods_.slice(1, s, 1);
    backend_.copy(ctx.mods_.slice(1, b, rows), mods.expand({mods.dim(0), rows, mods.dim(2)}));
    b = end;
  }
}

}  // namespace foley
