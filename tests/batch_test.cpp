// Cross-request batching (issue 13): flow_sample_batch against flow_sample row by row, and
// Generator::generate_batch against each request run alone (generate / generate_text), on the
// tiny model: prompts, seeds, guidance and step counts of their own; a cancelled member leaving;
// requests of other lengths and failing requests run apart; progress per request.
//
// Equality: each request's audio is within 1e-5 (absolute, samples in [-1, 1]) of its run alone,
// not bitwise. Every other op computes a row of a batch on its own (attention per (row, head),
// norms and elementwise ops per row, each request's CFG + Euler step the same code,
// cfg_euler_step), but oneDNN's F32 GEMM (gemm:jit) gives a row different rounding when the
// number of rows M changes: the M blocking and the tail kernels move a row into another block,
// and with several threads the rows are split among them differently. Measured on the tiny
// model: up to 8e-6 in the latent (values up to ~4; it does not grow with the steps: 2e-6 after
// 50) and 4e-6 in the audio. Requests denoised alone (a batch of one) are bitwise equal.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "models/flow_sampler.h"
#include "pipeline/pipeline.h"
#include "test_util.h"
#include "tiny_pipeline.h"

namespace foley::test {
namespace {

using pipeline::GeneratorImpl;

constexpr double kMaxSeconds = 2.0;

GeneratorOptions batching_options() {
  GeneratorOptions o;
  o.max_clip_seconds = kMaxSeconds;
  o.max_batch = 3;
  return o;
}

// One generator that batches up to 3 requests, for clips up to 2 s, not warmed up (its arenas
// grow on first use), shared by the tests of this file.
GeneratorImpl& batching_generator() {
  static std::unique_ptr<Generator> g =
      Generator::create(TinyModel::get()->model, batching_options());
  return static_cast<GeneratorImpl&>(*g);
}

GenerationParams params(const std::string& prompt, uint64_t seed, float guidance, int steps) {
  GenerationParams p = quick_params(seed);
  p.prompt = prompt;
  p.guidance = guidance;
  p.steps = steps;
  p.max_clip_seconds = kMaxSeconds;
  return p;
}

// Within 1e-5 of the run alone (see the top of the file); bitwise when it ran alone.
void expect_same_audio(const GenerationResult& batched, const GenerationResult& alone) {
  ASSERT_EQ(batched.audio.size(), alone.audio.size());
  if (batched.batch_size == 1) {
    EXPECT_EQ(0, std::memcmp(batched.audio.data(), alone.audio.data(),
                             alone.audio.size() * sizeof(float)));
  }
  double worst = 0;
  for (size_t j = 0; j < alone.audio.size(); ++j)
    worst = std::max(worst, std::fabs(double(alone.audio[j]) - batched.audio[j]));
  EXPECT_LE(worst, 1e-5) << "the batched request's audio differs from its run alone";
  EXPECT_EQ(batched.audio_seconds, alone.audio_seconds);
}

std::vector<std::string> stages_of(const GenerationResult& r) {
  std::vector<std::string> s;
  for (const StageTiming& t : r.timings) s.push_back(t.stage);
  return s;
}

ErrorKind error_kind(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    return err.kind();
  } catch (...) {
  }
  return ErrorKind::kInternal;
}

TEST(FlowBatch, EachRequestMatchesItsOwnRun) {
  TINY_OR_SKIP();
  GeneratorImpl& g = batching_generator();
  const Mmdit& dit = g.dit();
  const MmditConfig& c = dit.config();
  const int64_t ta = 50, tv = 8, s8 = 16;
  // Text lengths 5, 9 and 9: the cross-attention runs per group of one length.
  struct Req {
    FlowConditions cond;
    FlowSampleParams params;
  };
  std::vector<Req> reqs(3);
  const int64_t lens[3] = {5, 9, 9};
  const float guidance[3] = {4.5f, 1.0f, 2.0f};  // the second without CFG: one row
  const int steps[3] = {3, 2, 4};
  for (int i = 0; i < 3; ++i) {
    Req& r = reqs[size_t(i)];
    r.cond.clip = random_tensor({tv, c.clip_dim}, DType::kF32, 10 + i);
    r.cond.sync = random_tensor({s8, c.sync_dim}, DType::kF32, 20 + i);
    r.cond.text = random_tensor({lens[i], c.text_dim}, DType::kF32, 30 + i);
    r.cond.uncond_text = random_tensor({lens[i], c.text_dim}, DType::kF32, 40 + i);
    r.params.steps = steps[i];
    r.params.guidance = guidance[i];
    r.params.seed = 100 + uint64_t(i);
  }
  FlowLimits limits{6, ta, tv, 16, s8};
  FlowWorkspace alone_ws(dit, limits), batch_ws(dit, limits);
  std::vector<FlowBatchItem> items(3);
  std::map<int, std::vector<int>> progress;
  for (int i = 0; i < 3; ++i) {
    items[size_t(i)].cond = &reqs[size_t(i)].cond;
    items[size_t(i)].params = reqs[size_t(i)].params;
    items[size_t(i)].callbacks.progress = [&, i](int done, int total) {
      EXPECT_EQ(total, steps[i]);
      progress[i].push_back(done);
    };
  }
  const std::vector<FlowBatchResult> batched = flow_sample_batch(dit, items, ta, batch_ws);
  ASSERT_EQ(batched.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    ASSERT_FALSE(batched[size_t(i)].error);
    const Tensor alone =
        flow_sample(dit, reqs[size_t(i)].cond, reqs[size_t(i)].params, ta, nullptr, alone_ws);
    ASSERT_EQ(alone.numel(), batched[size_t(i)].latent.numel());
    // 1e-5 of the latent's scale (its values reach ~4): a few F32 ulps (top of the file).
    double worst = 0, scale = 1;
    for (int64_t j = 0; j < alone.numel(); ++j) {
      const double a = alone.data<float>()[j];
      worst = std::max(worst, std::fabs(a - batched[size_t(i)].latent.data<float>()[j]));
      scale = std::max(scale, std::fabs(a));
    }
    EXPECT_LE(worst, 1e-5 * scale);
    std::vector<int> want;
    for (int s = 1; s <= steps[i]; ++s) want.push_back(s);
    EXPECT_EQ(progress[i], want);
  }

  // The same batch again: the same bits (the rows' rounding depends on the batch, not on chance).
  const std::vector<FlowBatchResult> again = flow_sample_batch(dit, items, ta, batch_ws);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(0, std::memcmp(again[i].latent.raw(), batched[i].latent.raw(),
                             size_t(batched[i].latent.numel()) * sizeof(float)));

  // A request whose lengths differ from the batch's fails alone; more rows than the workspace
  // holds is refused as a whole.
  Req odd = reqs[0];
  odd.cond.clip = random_tensor({tv + 1, c.clip_dim}, DType::kF32, 50);
  std::vector<FlowBatchItem> mixed = {items[0], items[0]};
  mixed[1].cond = &odd.cond;
  const std::vector<FlowBatchResult> r = flow_sample_batch(dit, mixed, ta, batch_ws);
  EXPECT_FALSE(r[0].error);
  EXPECT_EQ(error_kind(r[1].error), ErrorKind::kInvalidInput);
  std::vector<FlowBatchItem> four(4, items[0]);
  EXPECT_THROW(flow_sample_batch(dit, four, ta, batch_ws), Error);
}

TEST(Batch, RequestsGiveTheAudioOfTheirOwnRuns) {
  TINY_OR_SKIP();
  GeneratorImpl& g = batching_generator();
  const std::string clip = tiny_clip(50);
  // Prompts of different token lengths, own seeds, guidance (one without CFG) and steps.
  std::vector<GenerationRequest> reqs(3);
  reqs[0].video_path = clip;
  reqs[0].params = params("footsteps on gravel", 1, 4.5f, 2);
  reqs[1].video_path = clip;
  reqs[1].params = params("a door slams shut in a large empty hall", 2, 1.0f, 3);
  reqs[2].video_path = clip;
  reqs[2].params = params("rain", 3, 3.0f, 2);
  std::vector<std::vector<std::string>> seen(3);
  for (size_t i = 0; i < 3; ++i)
    reqs[i].callbacks.progress = [&seen, i](const GenerationProgress& p) {
      seen[i].push_back(p.stage + ":" + std::to_string(p.step) + "/" +
                        std::to_string(p.total_steps));
    };
  const std::vector<BatchItemResult> batched = g.generate_batch(reqs);
  ASSERT_EQ(batched.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(batched[i].result.has_value());
    EXPECT_FALSE(batched[i].error);
    EXPECT_EQ(batched[i].result->batch_size, 3);
    EXPECT_EQ(stages_of(*batched[i].result),
              (std::vector<std::string>{"decode", "visual", "sync", "text", "denoise", "vae"}));
    const GenerationResult alone = g.generate(clip, reqs[i].params);
    EXPECT_EQ(alone.batch_size, 1);
    expect_same_audio(*batched[i].result, alone);
    std::vector<std::string> want = {"decode:0/0", "visual:0/0", "sync:0/0", "text:0/0"};
    for (int s = 0; s <= reqs[i].params.steps; ++s)
      want.push_back("denoise:" + std::to_string(s) + "/" + std::to_string(reqs[i].params.steps));
    want.push_back("vae:0/0");
    EXPECT_EQ(seen[i], want);
  }

  // Text-only requests of one length batch too.
  std::vector<GenerationRequest> text(2);
  text[0].params = params("wind", 5, 4.5f, 2);
  text[0].params.seconds = 1.5;
  text[1].params = params("birds singing at dawn", 6, 4.5f, 2);
  text[1].params.seconds = 1.5;
  const std::vector<BatchItemResult> t = g.generate_batch(text);
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(t[i].result.has_value());
    EXPECT_EQ(t[i].result->batch_size, 2);
    expect_same_audio(*t[i].result, g.generate_text(text[i].params));
  }
}

TEST(Batch, CancelledMemberLeavesTheOthersUnchanged) {
  TINY_OR_SKIP();
  GeneratorImpl& g = batching_generator();
  const std::string clip = tiny_clip(50);
  std::vector<GenerationRequest> reqs(3);
  std::atomic<bool> cancel_mid{false}, cancel_early{true};
  for (size_t i = 0; i < 3; ++i) {
    reqs[i].video_path = clip;
    reqs[i].params = params("footsteps number " + std::to_string(i), 10 + i, 4.5f, 4);
  }
  // The middle one cancels itself after its second step; the last was cancelled before it began.
  reqs[1].callbacks.cancel = &cancel_mid;
  reqs[1].callbacks.progress = [&](const GenerationProgress& p) {
    if (p.stage == "denoise" && p.step == 2) cancel_mid = true;
  };
  reqs[2].callbacks.cancel = &cancel_early;
  const std::vector<BatchItemResult> r = g.generate_batch(reqs);
  EXPECT_EQ(error_kind(r[1].error), ErrorKind::kCancelled);
  EXPECT_EQ(error_kind(r[2].error), ErrorKind::kCancelled);
  EXPECT_FALSE(r[1].result.has_value());
  ASSERT_TRUE(r[0].result.has_value());
  // Only two requests began the denoising: the early-cancelled one never reached it.
  EXPECT_EQ(r[0].result->batch_size, 2);
  expect_same_audio(*r[0].result, g.generate(clip, reqs[0].params));
}

TEST(Batch, OtherLengthsAndFailuresRunApart) {
  TINY_OR_SKIP();
  GeneratorImpl& g = batching_generator();
  std::vector<GenerationRequest> reqs(4);
  reqs[0].video_path = tiny_clip(50);
  reqs[0].params = params("gravel", 1, 4.5f, 2);
  reqs[1].video_path = tiny_clip(30);  // another length: denoised alone
  reqs[1].params = params("gravel", 2, 4.5f, 2);
  reqs[2].video_path = temp_dir() + "/missing.mp4";  // fails alone
  reqs[2].params = params("gravel", 3, 4.5f, 2);
  reqs[3].video_path = tiny_clip(50);
  reqs[3].params = params("snow", 4, 4.5f, 2);
  reqs[3].params.steps = 0;  // invalid: fails alone
  const std::vector<BatchItemResult> r = g.generate_batch(reqs);
  ASSERT_TRUE(r[0].result.has_value());
  ASSERT_TRUE(r[1].result.has_value());
  EXPECT_TRUE(r[2].error);
  EXPECT_FALSE(r[2].result.has_value());
  EXPECT_EQ(error_kind(r[3].error), ErrorKind::kInvalidInput);
  EXPECT_EQ(r[0].result->batch_size, 1);
  EXPECT_EQ(r[1].result->batch_size, 1);
  expect_same_audio(*r[0].result, g.generate(reqs[0].video_path, reqs[0].params));
  expect_same_audio(*r[1].result, g.generate(reqs[1].video_path, reqs[1].params));

  // More requests of one length than max_batch: batches of 3, then the rest.
  std::vector<GenerationRequest> five(5);
  for (size_t i = 0; i < 5; ++i) {
    five[i].params = params("hum " + std::to_string(i), 20 + i, 4.5f, 1);
    five[i].params.seconds = 1.0;
  }
  const std::vector<BatchItemResult> f = g.generate_batch(five);
  for (size_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(f[i].result.has_value()) << i;
    EXPECT_EQ(f[i].result->batch_size, i < 3 ? 3 : 2) << i;
  }
  expect_same_audio(*f[4].result, g.generate_text(five[4].params));

  GeneratorOptions bad;
  bad.max_batch = 0;
  EXPECT_THROW(Generator::create(tiny->model, bad), Error);
}

TEST(Batch, WarmUpFreezesTheArenasForTheLargestBatch) {
  TINY_OR_SKIP();
  GeneratorOptions o;
  o.max_clip_seconds = 1.0;
  o.max_batch = 2;
  auto gen = Generator::create(tiny->model, o);
  auto& g = static_cast<GeneratorImpl&>(*gen);
  EXPECT_EQ(g.flow_limits().batch, 4);
  gen->warm_up();
  bool batches = false;
  for (const StageTiming& t : g.warm_up_timings()) batches = batches || t.stage == "batches";
  EXPECT_TRUE(batches);
  const auto before = g.arena_stats();
  std::vector<GenerationRequest> reqs(2);
  for (size_t i = 0; i < 2; ++i) {
    reqs[i].video_path = tiny_clip(25);
    reqs[i].params = params("tap " + std::to_string(i), i, 4.5f, 2);
    reqs[i].params.max_clip_seconds = 1.0;
  }
  const std::vector<BatchItemResult> r = gen->generate_batch(reqs);
  for (const BatchItemResult& item : r) {
    ASSERT_TRUE(item.result.has_value());
    EXPECT_EQ(item.result->batch_size, 2);
  }
  const auto after = g.arena_stats();
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    SCOPED_TRACE(before[i].name);
    EXPECT_TRUE(after[i].frozen);
    EXPECT_EQ(before[i].reserved, after[i].reserved);
  }
}

TEST(PreparedVideo, DecodedAheadGivesTheSameAudio) {
  TINY_OR_SKIP();
  GeneratorImpl& g = batching_generator();
  const std::shared_ptr<const Model>& model = TinyModel::get()->model;
  const std::string clip = tiny_clip(50);
  const GenerationParams p = params("glass shatters", 5, 4.5f, 2);
  const std::shared_ptr<const PreparedVideo> ahead =
      model->prepare_video(clip, p, batching_options());
  ASSERT_TRUE(ahead);
  EXPECT_NEAR(ahead->audio_seconds(), 2.0, 0.05);
  EXPECT_GT(ahead->decode_seconds(), 0.0);
  std::vector<GenerationRequest> reqs(1);
  reqs[0].video_path = clip;
  reqs[0].prepared = ahead;
  reqs[0].params = p;
  std::vector<std::string> seen;
  reqs[0].callbacks.progress = [&seen](const GenerationProgress& q) { seen.push_back(q.stage); };
  const std::vector<BatchItemResult> r = g.generate_batch(reqs);
  ASSERT_TRUE(r[0].result.has_value());
  const GenerationResult alone = g.generate(clip, p);
  ASSERT_EQ(r[0].result->audio.size(), alone.audio.size());
  EXPECT_EQ(0, std::memcmp(r[0].result->audio.data(), alone.audio.data(),
                           alone.audio.size() * sizeof(float)));
  EXPECT_EQ(r[0].result->timings.front().stage, "decode");
  EXPECT_EQ(r[0].result->timings.front().seconds, ahead->decode_seconds());
  EXPECT_EQ(seen.front(), "visual");  // its decoding was reported when it happened, not now

  // The same frames twice in one batch: both as alone (the frames are read, never changed).
  reqs.push_back(reqs[0]);
  for (const BatchItemResult& item : g.generate_batch(reqs)) {
    ASSERT_TRUE(item.result.has_value());
    expect_same_audio(*item.result, alone);
  }
}

TEST(PreparedVideo, RefusesWhatItCannotPrepareOrUse) {
  TINY_OR_SKIP();
  GeneratorImpl& g = batching_generator();
  const std::shared_ptr<const Model>& model = TinyModel::get()->model;
  const GenerationParams p = params("rain", 1, 4.5f, 1);
  // A clip beyond the span is left to the request (it is encoded in windows as it decodes).
  GeneratorOptions one_second = batching_options();
  one_second.max_clip_seconds = 1.0;
  EXPECT_EQ(model->prepare_video(tiny_clip(50), p, one_second), nullptr);
  // Prepared for generators of another span: refused by one of this span, by name.
  const auto other = model->prepare_video(tiny_clip(25), p, one_second);
  ASSERT_TRUE(other);
  std::vector<GenerationRequest> reqs(1);
  reqs[0].video_path = tiny_clip(25);
  reqs[0].prepared = other;
  reqs[0].params = p;
  const std::vector<BatchItemResult> r = g.generate_batch(reqs);
  ASSERT_TRUE(r[0].error);
  EXPECT_EQ(error_kind(r[0].error), ErrorKind::kInvalidInput);
  // Bad files and parameters throw as the decode stage would; a set cancel flag stops it.
  EXPECT_THROW(model->prepare_video(temp_dir() + "/missing.mp4", p, batching_options()), Error);
  GenerationParams bad = p;
  bad.steps = 0;
  EXPECT_THROW(model->prepare_video(tiny_clip(50), bad, batching_options()), Error);
  std::atomic<bool> cancel{true};
  try {
    model->prepare_video(tiny_clip(50), p, batching_options(), &cancel);
    ADD_FAILURE() << "a cancelled preparation returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
}

}  // namespace
}  // namespace foley::test
