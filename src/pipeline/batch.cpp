// Several requests on one Generator (Generator::generate_batch): videos decoded several at once,
// each request's encoders run on their own, requests of equal lengths are denoised together (flow_sample_batch), each one's
// audio is decoded on its own.
#include <algorithm>
#include <chrono>
#include <atomic>
#include <map>
#include <thread>
#include <tuple>

#include "core/check.h"
#include "pipeline/pipeline.h"

namespace foley {
namespace pipeline {

std::vector<BatchItemResult> GeneratorImpl::generate_batch(
    const std::vector<GenerationRequest>& requests) {
  const size_t n = requests.size();
  std::vector<BatchItemResult> out(n);
  std::vector<Run> runs;
  runs.reserve(n);
  for (const GenerationRequest& r : requests) runs.push_back(Run{r.callbacks, {}});
  std::vector<ClipFeatures> features(n);
  std::vector<bool> ready(n, false);

  // 1. Videos not decoded ahead are decoded first, several at once, each into buffers of its
  //    own (CPU work: the encoders should not wait for it clip by clip).
  std::vector<std::shared_ptr<const PreparedVideo>> prepared(n);
  std::vector<size_t> to_decode;
  for (size_t i = 0; i < n; ++i) {
    prepared[i] = requests[i].prepared;
    if (!prepared[i] && !requests[i].video_path.empty()) to_decode.push_back(i);
  }
  if (to_decode.size() > 1) decode_ahead(to_decode, runs, requests, prepared, out);

  // 2. Encode, one request at a time (they share the stage arena, or its encoder region). A
  //    request that fails here fails alone. The encoder lane is taken per request, so that
  //    another caller's DAC can go between them.
  for (size_t i = 0; i < n; ++i) {
    if (out[i].error) continue;
    try {
      const EncoderLane lane(*this);
      const GenerationRequest& r = requests[i];
      features[i] =
          request_features(runs[i], r.video_path, r.params, r.video_path.empty(), prepared[i].get());
      check_latent_length(features[i]);
      ready[i] = true;
    } catch (...) {
      out[i].error = std::current_exception();
    }
  }

  // The rest is the denoise lane's.
  std::lock_guard<std::mutex> lock(busy_);

  // 3. Group by the lengths that fix the DiT's sequences (latent, visual and sync rows), in the
  //    order the groups' first requests came; a clip beyond the span (windowed sampling) is a
  //    group of its own.
  using Key = std::tuple<int64_t, int64_t, int64_t>;
  std::vector<std::vector<size_t>> groups;
  std::map<Key, size_t> group_of;
  for (size_t i = 0; i < n; ++i) {
    if (!ready[i]) continue;
    const ClipFeatures& f = features[i];
    if (windows_for(f).size() > 1) {
      groups.push_back({i});
      continue;
    }
    const Key key{f.audio_len, f.cond.clip.dim(0), f.cond.sync.dim(0)};
    const auto [it, added] = group_of.try_emplace(key, groups.size());
    if (added) groups.emplace_back();
    groups[it->second].push_back(i);
  }

  // 4. Each group in pieces of at most max_batch requests; one alone takes the single path.
  const size_t per_batch = size_t(std::max(1, options_.max_batch));
  for (const std::vector<size_t>& group : groups) {
    for (size_t b = 0; b < group.size(); b += per_batch) {
      const std::vector<size_t> members(group.begin() + b,
                                        group.begin() + std::min(group.size(), b + per_batch));
      if (members.size() > 1) {
        run_batch(members, runs, features, requests, out);
        continue;
      }
      const size_t i = members[0];
      try {
        out[i].result = run_features(runs[i], features[i], requests[i].params, nullptr);
      } catch (...) {
        out[i].error = std::current_exception();
      }
    }
  }
  return out;
}

void GeneratorImpl::decode_ahead(const std::vector<size_t>& members, std::vector<Run>& runs,
                                 const std::vector<GenerationRequest>& requests,
                                 std::vector<std::shared_ptr<const PreparedVideo>>& prepared,
                                 std::vector<BatchItemResult>& out) {
  // A few decoders at a time: each also runs FFmpeg's own frame threads.
  constexpr size_t kDecoders = 4;
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t k; (k = next++) < members.size();) {
      const size_t i = members[k];
      try {
        runs[i].check_cancel();
        runs[i].report("decode");
        // Null for a clip beyond the span: request_features decodes and encodes it in windows.
        prepared[i] = model_->prepare_video(requests[i].video_path, requests[i].params, options_,
                                            requests[i].callbacks.cancel);
      } catch (...) {
        out[i].error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < std::min(kDecoders, members.size()); ++t) helpers.emplace_back(work);
  work();
  for (std::thread& t : helpers) t.join();
}

void GeneratorImpl::run_batch(const std::vector<size_t>& members, std::vector<Run>& runs,
                              const std::vector<ClipFeatures>& features,
                              const std::vector<GenerationRequest>& requests,
                              std::vector<BatchItemResult>& out) {
  // The "denoise" stage begins for each request as run_features begins it.
  std::vector<size_t> started;
  for (size_t i : members) {
    try {
      runs[i].check_cancel();
      runs[i].report("denoise", 0, requests[i].params.steps);
      started.push_back(i);
    } catch (...) {
      out[i].error = std::current_exception();
    }
  }
  if (started.empty()) return;
  std::vector<FlowBatchItem> items(started.size());
  for (size_t k = 0; k < started.size(); ++k) {
    const size_t i = started[k];
    const GenerationParams& p = requests[i].params;
    FlowBatchItem& item = items[k];
    item.cond = &features[i].cond;
    item.params.steps = p.steps;
    item.params.guidance = p.guidance;
    item.params.seed = p.seed;
    item.callbacks.cancel = requests[i].callbacks.cancel;
    const Run* run = &runs[i];
    item.callbacks.progress = [run](int done, int total) { run->report("denoise", done, total); };
  }
  const int64_t audio_len = features[started[0]].audio_len;
  std::vector<FlowBatchResult> latents;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    freeze_stage_arena();  // normally done by warm-up already
    stage_arena_->restart_peak();
    latents = flow_sample_batch(*dit_, items, audio_len, *flow_);
    check_step_region();
  } catch (...) {
    // The batch as a whole failed (the device, say): every request of it did.
    for (size_t i : started) out[i].error = std::current_exception();
    return;
  }
  const double denoise_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (size_t k = 0; k < started.size(); ++k) {
    const size_t i = started[k];
    if (latents[k].error) {
      out[i].error = latents[k].error;
      continue;
    }
    Run& run = runs[i];
    try {
      run.timings.push_back({"denoise", denoise_seconds});
      const ClipFeatures& f = features[i];
      std::vector<float> audio = run.stage(
          "vae", [&] { return decode_audio(latents[k].latent, f.audio_len, run.callbacks); });
      GenerationResult r;
      r.audio = std::move(audio);
      r.sample_rate = dac_->config().sample_rate;
      r.audio_seconds = f.audio_seconds;
      r.batch_size = static_cast<int>(started.size());
      r.timings = std::move(run.timings);
      out[i].result = std::move(r);
    } catch (...) {
      out[i].error = std::current_exception();
    }
  }
}

void GeneratorImpl::warm_up_batches(const ClipFeatures& f, int steps) {
  // Every size on a backend that records steps (each size's own graph and GEMM plans, and the
  // backend's scratch grown to the largest before any request); on the others only the largest,
  // which is what sizes the scratch. At most 7 sizes: the sampler keeps 8 recorded steps.
  std::vector<int> sizes;
  const int largest = options_.max_batch;
  if (backend_->device() != DeviceKind::kCPU)
    for (int b = 2; b < largest && sizes.size() < 6; ++b) sizes.push_back(b);
  sizes.push_back(largest);
  FlowBatchItem item;
  item.cond = &f.cond;
  item.params.steps = steps;
  item.params.guidance = 4.5f;  // CFG on: two rows per request
  for (int b : sizes) {
    std::vector<FlowBatchItem> items(size_t(b), item);
    for (int k = 0; k < b; ++k) items[size_t(k)].params.seed = uint64_t(k);
    for (const FlowBatchResult& r : flow_sample_batch(*dit_, items, f.audio_len, *flow_))
      if (r.error) std::rethrow_exception(r.error);
  }
}

}  // namespace pipeline
}  // namespace foley
