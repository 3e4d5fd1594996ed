// Euler CFG flow sampler: schedule, noise, a full run vs the PyTorch reference with injected
// noise, progress/cancellation, and the golden case's "sample" stage.
#include "models/flow_sampler.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "dit_fixture.h"
#include "foley/error.h"
#include "foley/golden.h"
#include "models/weight_store.h"

namespace foley {
namespace {

using test::random_tensor;
using test::TinyDit;

TEST(FlowSampler, SigmasFollowTorchLinspace) {
  const std::vector<float> s4 = flow_sigmas(4);
  ASSERT_EQ(s4.size(), 5u);
  const float want[5] = {1.f, 0.75f, 0.5f, 0.25f, 0.f};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s4[static_cast<size_t>(i)], want[i]);
  // N = 50: the first half counts up from 1, the second half down from 0, with step −1/50 in F32.
  const std::vector<float> s = flow_sigmas(50);
  const float step = -1.0f / 50.0f;
  EXPECT_EQ(s[10], 1.0f + step * 10.0f);
  EXPECT_EQ(s[40], 0.0f - step * 10.0f);
  EXPECT_EQ(s[50], 0.0f);
  EXPECT_EQ(s[0] * 1000.0f, 1000.0f);
  EXPECT_NEAR(s[49] * 1000.0f, 20.0f, 1e-4);
}

TEST(FlowSampler, NoiseIsSeededStandardNormalInBf16) {
  const Tensor a = flow_initial_noise(128, 250, 1);
  const Tensor b = flow_initial_noise(128, 250, 1);
  const Tensor c = flow_initial_noise(128, 250, 2);
  EXPECT_EQ(test::max_abs_error(a, b), 0.0);
  EXPECT_GT(test::max_abs_error(a, c), 0.5);
  double sum = 0, sq = 0;
  const int64_t n = a.numel();
  for (int64_t i = 0; i < n; ++i) {
    const float v = a.data<float>()[i];
    EXPECT_EQ(bf16_to_f32(f32_to_bf16(v)), v);
    sum += v;
    sq += double(v) * v;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.02);
  EXPECT_NEAR(std::sqrt(sq / n), 1.0, 0.02);
  // The noise is laid out flat: a smaller request is a prefix of a larger one.
  EXPECT_EQ(a.data<float>()[0], flow_initial_noise(1, 1, 1).data<float>()[0]);
}

// Known answers for Philox4x32-10: the three philox4x32_10 vectors of Random123's kat_vectors
// file (the reference implementation of Salmon et al., SC'11), reproduced by an independent
// Python implementation of the paper's round function.
TEST(FlowSampler, PhiloxMatchesPublishedKnownAnswers) {
  using Block = std::array<uint32_t, 4>;
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (Block{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                          {0xffffffffu, 0xffffffffu}),
            (Block{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                          {0xa4093822u, 0x299f31d0u}),
            (Block{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

// Known answers for the whole noise recipe (key = seed, counter = index / 4, Box–Muller in
// float64 on (x + 0.5)·2⁻³², float32 then bf16 round-to-nearest-even). The values were computed
// once by an independent Python implementation (its own Philox, math.log/cos/sin, numpy float32
// and a bit-level bf16 rounding), not by foley, so a change to any step of the recipe fails here.
// The model spec (§3, §15) says torch's generator cannot be reproduced bit-exactly, so this pins
// foley's own documented generator rather than torch's.
TEST(FlowSampler, NoiseMatchesIndependentKnownAnswers) {
  const Tensor s1 = flow_initial_noise(128, 250, 1);
  const float seed1[8] = {0x1.86p-2f, -0x1.3p-2f,  -0x1.fep-3f,  -0x1p+0f,
                          0x1.4p-1f,  -0x1.44p-1f, -0x1.5cp-1f, -0x1.04p+0f};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(s1.data<float>()[i], seed1[i]) << "seed 1, index " << i;
  const float seed1_at_1000[4] = {-0x1.44p-1f, 0x1.6cp-4f, 0x1.3p-2f, 0x1.1cp-1f};
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(s1.data<float>()[1000 + i], seed1_at_1000[i]) << "seed 1, index " << 1000 + i;
  const Tensor s42 = flow_initial_noise(2, 4, 42);
  const float seed42[8] = {-0x1.fp-1f,  0x1.8ep-3f, -0x1.3cp+0f, 0x1.ecp+0f,
                           -0x1.2cp-4f, 0x1.1cp-3f, -0x1.1cp+0f, 0x1.4ep-2f};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(s42.data<float>()[i], seed42[i]) << "seed 42, index " << i;
}

class FlowSamplerModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
    files_ = TinyDit::get();
    ASSERT_NE(files_, nullptr);
    backend_ = make_cpu_backend();
    store_ = WeightStore::open(files_->bundle(DType::kF32));
    model_ = std::make_unique<Mmdit>(*store_, *backend_);
  }

  FlowConditions conditions(int64_t tv, int64_t s8, int64_t l, uint64_t seed) {
    const int64_t F = TinyDit::kFeat;
    return {random_tensor({tv, F}, DType::kF32, seed),
            random_tensor({s8, F}, DType::kF32, seed + 1),
            random_tensor({l, F}, DType::kF32, seed + 2, -0.5f, 0.5f),
            random_tensor({l, F}, DType::kF32, seed + 3, -0.5f, 0.5f)};
  }

  const TinyDit* files_ = nullptr;
  std::unique_ptr<Backend> backend_;
  std::shared_ptr<WeightStore> store_;
  std::unique_ptr<Mmdit> model_;
};

TEST_F(FlowSamplerModelTest, MatchesReferenceWithInjectedNoise) {
  const int64_t ta = 50;
  const FlowConditions cond = conditions(13, 24, 7, 10);
  const Tensor noise = flow_initial_noise(128, ta, 3);
  FlowSampleParams params;
  params.steps = 6;
  params.guidance = 4.5f;
  const auto add_batch = [](const Tensor& t) { return t.reshape({1, t.dim(0), t.dim(1)}); };
  const Tensor ref = test::run_reference("sample", *files_,
                                         {{"noise", noise},
                                          {"clip", add_batch(cond.clip)},
                                          {"sync", add_batch(cond.sync)},
                                          {"text", add_batch(cond.text)},
                                          {"uncond_text", add_batch(cond.uncond_text)}},
                                         "latent", "6 4.5");
  ASSERT_TRUE(ref.defined());
  Arena arena(backend_->block_allocator());
  std::vector<int> progress;
  FlowCallbacks cb;
  cb.progress = [&](int done, int total) {
    EXPECT_EQ(total, 6);
    progress.push_back(done);
  };
  const Tensor latent = flow_sample(*model_, cond, params, ta, &noise, arena, cb);
  const double err = test::max_rel_error(latent, ref);
  std::printf("tiny DiT, 6 Euler CFG steps: max rel error %.3e\n", err);
  EXPECT_LE(err, 1e-4);
  EXPECT_EQ(progress, (std::vector<int>{1, 2, 3, 4, 5, 6}));
}

TEST_F(FlowSamplerModelTest, GuidanceOneRunsConditionalOnly) {
  // Without CFG the negative prompt is not used: any uncond_text (even a wrong length) is fine.
  const int64_t ta = 24;
  FlowConditions cond = conditions(4, 8, 5, 20);
  cond.uncond_text = Tensor();
  const Tensor noise = flow_initial_noise(128, ta, 4);
  FlowSampleParams params;
  params.steps = 2;
  params.guidance = 1.0f;
  Arena arena(backend_->block_allocator());
  const Tensor latent = flow_sample(*model_, cond, params, ta, &noise, arena);
  EXPECT_EQ(latent.shape(), (Shape{1, 128, ta}));
}

// One step with CFG: the pair shares its timestep, so the one-shot path's one-row timestep table
// serves it, and a workspace gives the same bits.
TEST_F(FlowSamplerModelTest, OneStepWithGuidance) {
  const int64_t ta = 24;
  const FlowConditions cond = conditions(4, 8, 5, 21);
  const Tensor noise = flow_initial_noise(128, ta, 5);
  FlowSampleParams params;
  params.steps = 1;
  params.guidance = 4.5f;
  Arena arena(backend_->block_allocator());
  const Tensor one_shot = flow_sample(*model_, cond, params, ta, &noise, arena);
  FlowLimits limits;
  limits.audio_len = ta;
  limits.visual_len = 4;
  limits.text_len = 5;
  limits.sync_len = 8;
  FlowWorkspace ws(*model_, limits);
  const Tensor in_workspace = flow_sample(*model_, cond, params, ta, &noise, ws);
  EXPECT_GT(test::max_abs_error(one_shot, noise), 0.0);
  EXPECT_EQ(test::max_abs_error(one_shot, in_workspace), 0.0);
}

TEST_F(FlowSamplerModelTest, CancellationStopsBetweenSteps) {
  const FlowConditions cond = conditions(4, 8, 5, 30);
  FlowSampleParams params;
  params.steps = 5;
  std::atomic<bool> cancel{false};
  int done = 0;
  FlowCallbacks cb;
  cb.cancel = &cancel;
  cb.progress = [&](int d, int) {
    done = d;
    if (d == 2) cancel = true;
  };
  Arena arena(backend_->block_allocator());
  try {
    flow_sample(*model_, cond, params, 24, nullptr, arena, cb);
    FAIL() << "cancelled sampling returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  EXPECT_EQ(done, 2);
  EXPECT_EQ(arena.used(), 0u);
}

TEST_F(FlowSamplerModelTest, RejectsBadRequests) {
  Arena arena(backend_->block_allocator());
  FlowSampleParams params;
  params.steps = 0;
  EXPECT_THROW(flow_sample(*model_, conditions(4, 8, 5, 40), params, 24, nullptr, arena), Error);
  params.steps = 2;
  FlowConditions cond = conditions(4, 8, 5, 40);
  cond.uncond_text = random_tensor({6, TinyDit::kFeat}, DType::kF32, 1);  // length differs
  EXPECT_THROW(flow_sample(*model_, cond, params, 24, nullptr, arena), Error);
  cond = conditions(4, 12, 5, 40);  // 12 sync tokens: not whole 8-token segments
  EXPECT_THROW(flow_sample(*model_, cond, params, 24, nullptr, arena), Error);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// prepare() in a caller's arena takes exactly context_arena_bytes: one byte less is refused.
TEST_F(FlowSamplerModelTest, ContextArenaBytesAreExact) {
  const int64_t B = 2, Tv = 13, S8 = 24, L = 7, Ta = 40, F = TinyDit::kFeat;
  const Tensor clip = random_tensor({B, Tv, F}, DType::kF32, 1);
  const Tensor sync = random_tensor({B, S8, F}, DType::kF32, 2);
  const Tensor text = random_tensor({B, L, F}, DType::kF32, 3);
  const size_t bytes = model_->context_arena_bytes(B, Ta, Tv, L, S8);
  Arena exact(backend_->block_allocator());
  exact.freeze(bytes);
  {
    Arena::Scope scope(exact);
    const void* start = exact.alloc_bytes(0);  // the current position
    const auto ctx = model_->prepare(clip, sync, text, Ta, exact);
    EXPECT_EQ(ctx->base(), start);
  }
  EXPECT_EQ(exact.high_water(), bytes);
  Arena short_by_one(backend_->block_allocator());
  short_by_one.freeze(bytes - Arena::kAlignment);
  EXPECT_THROW(model_->prepare(clip, sync, text, Ta, short_by_one), Error);
  // The owning overload sizes its own arena the same way and computes the same context.
  const auto owned = model_->prepare(clip, sync, text, Ta);
  EXPECT_EQ(owned->text_len(), L);
}

// A FlowWorkspace gives the one-shot path's latent bit for bit, request after request and for
// different lengths, and a request rewinds every arena (the next one reuses the same memory).
TEST_F(FlowSamplerModelTest, WorkspaceMatchesOneShotPathBitwise) {
  FlowLimits limits;
  limits.audio_len = 40;
  limits.visual_len = 13;
  limits.text_len = 7;
  limits.sync_len = 24;
  FlowWorkspace ws(*model_, limits);
  const FlowWorkspaceBytes bytes = FlowWorkspace::bytes(*model_, limits);
  EXPECT_EQ(ws.inputs_arena().reserved(), bytes.inputs);
  EXPECT_EQ(ws.context_arena().reserved(), bytes.context);
  EXPECT_EQ(ws.step_arena().reserved(), bytes.step);
  FlowSampleParams params;
  params.steps = 3;
  params.guidance = 4.5f;

  auto one_shot = [&](const FlowConditions& cond, int64_t ta, const Tensor& noise) {
    Arena arena(backend_->block_allocator());
    return flow_sample(*model_, cond, params, ta, &noise, arena);
  };
  const FlowConditions big = conditions(13, 24, 7, 50);
  const Tensor big_noise = flow_initial_noise(128, 40, 6);
  const Tensor want_big = one_shot(big, 40, big_noise);
  const Tensor first = flow_sample(*model_, big, params, 40, &big_noise, ws);
  EXPECT_TRUE(same_bits(first, want_big));
  const Arena* arenas[] = {&ws.inputs_arena(), &ws.context_arena(), &ws.step_arena()};
  std::vector<size_t> high_water;
  for (const Arena* a : arenas) {
    EXPECT_EQ(a->used(), 0u);
    EXPECT_TRUE(a->frozen());
    EXPECT_GT(a->high_water(), 0u);
    high_water.push_back(a->high_water());
  }
  // The largest request fills the exact arenas to the byte.
  EXPECT_EQ(ws.inputs_arena().high_water(), bytes.inputs);
  EXPECT_EQ(ws.context_arena().high_water(), bytes.context);

  const Tensor second = flow_sample(*model_, big, params, 40, &big_noise, ws);
  EXPECT_TRUE(same_bits(second, want_big));

  const FlowConditions small = conditions(5, 16, 4, 60);
  const Tensor small_noise = flow_initial_noise(128, 24, 7);
  EXPECT_TRUE(same_bits(flow_sample(*model_, small, params, 24, &small_noise, ws),
                        one_shot(small, 24, small_noise)));
  FlowSampleParams no_cfg = params;
  no_cfg.guidance = 1.0f;
  Arena arena(backend_->block_allocator());
  EXPECT_TRUE(same_bits(flow_sample(*model_, small, no_cfg, 24, &small_noise, ws),
                        flow_sample(*model_, small, no_cfg, 24, &small_noise, arena)));
  EXPECT_TRUE(same_bits(flow_sample(*model_, big, params, 40, &big_noise, ws), want_big));

  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(arenas[i]->used(), 0u);
    EXPECT_EQ(arenas[i]->high_water(), high_water[i]) << i;
  }
  EXPECT_EQ(ws.inputs_arena().reserved(), bytes.inputs);
  EXPECT_EQ(ws.context_arena().reserved(), bytes.context);
  EXPECT_EQ(ws.step_arena().reserved(), bytes.step);
  // Every request used the same 3-step schedule: its timestep rows were computed once.
  EXPECT_EQ(ws.timestep_table().rows_computed(), 3u);
  // The CPU backend does not record: every step ran eagerly, without complaint.
  EXPECT_EQ(ws.graphs_recorded(), 0u);
  EXPECT_EQ(ws.graph_error(), "");
}

TEST_F(FlowSamplerModelTest, WorkspaceRefusesRequestsBeyondItsLimits) {
  FlowLimits limits;
  limits.audio_len = 24;
  limits.visual_len = 5;
  limits.text_len = 4;
  limits.sync_len = 16;
  FlowWorkspace ws(*model_, limits);
  FlowSampleParams params;
  params.steps = 1;
  auto expect_refused = [&](const FlowConditions& cond, int64_t ta) {
    try {
      flow_sample(*model_, cond, params, ta, nullptr, ws);
      ADD_FAILURE() << "accepted a request beyond the limits";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput) << e.what();
      EXPECT_NE(std::string(e.what()).find("sized for"), std::string::npos) << e.what();
    }
  };
  expect_refused(conditions(5, 16, 4, 1), 25);
  expect_refused(conditions(6, 16, 4, 1), 24);
  expect_refused(conditions(5, 16, 5, 1), 24);
  expect_refused(conditions(5, 24, 4, 1), 24);
  for (const Arena* a : {&ws.inputs_arena(), &ws.context_arena(), &ws.step_arena()})
    EXPECT_EQ(a->used(), 0u);
  EXPECT_EQ(flow_sample(*model_, conditions(5, 16, 4, 1), params, 24, nullptr, ws).shape(),
            (Shape{1, 128, 24}));
  // A cancelled request rewinds the workspace too.
  std::atomic<bool> cancel{true};
  FlowCallbacks cb;
  cb.cancel = &cancel;
  EXPECT_THROW(flow_sample(*model_, conditions(5, 16, 4, 1), params, 24, nullptr, ws, cb), Error);
  for (const Arena* a : {&ws.inputs_arena(), &ws.context_arena(), &ws.step_arena()})
    EXPECT_EQ(a->used(), 0u);
  limits.text_len = 0;
  EXPECT_THROW(FlowWorkspace(*model_, limits), Error);
}

// A workspace that borrows its step arena (the pipeline's shared stage arena) computes the same
// bits and leaves the arena as it found it; the arena must be frozen and empty whenever sampling
// starts (its recorded steps point into it), and large enough from the start.
TEST_F(FlowSamplerModelTest, WorkspaceWithABorrowedStepArena) {
  FlowLimits limits;
  limits.audio_len = 24;
  limits.visual_len = 5;
  limits.text_len = 4;
  limits.sync_len = 16;
  const size_t step_bytes = FlowWorkspace::bytes(*model_, limits).step;
  Arena too_small(backend_->block_allocator());
  too_small.freeze(step_bytes - Arena::kAlignment);
  EXPECT_THROW(FlowWorkspace(*model_, limits, too_small), Error);

  Arena shared(backend_->block_allocator(), 2 * step_bytes);  // growing, like the pipeline's
  FlowWorkspace ws(*model_, limits, shared);
  FlowWorkspace owning(*model_, limits);
  EXPECT_FALSE(ws.owns_step_arena());
  EXPECT_TRUE(owning.owns_step_arena());
  EXPECT_EQ(&ws.step_arena(), &shared);
  FlowSampleParams params;
  params.steps = 2;
  const FlowConditions cond = conditions(5, 16, 4, 3);
  const Tensor noise = flow_initial_noise(128, 24, 5);
  auto expect_internal = [&](const char* why) {
    try {
      flow_sample(*model_, cond, params, 24, &noise, ws);
      ADD_FAILURE() << "sampled with the step arena " << why;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInternal) << e.what();
    }
  };
  expect_internal("growing");
  shared.freeze();
  {
    Arena::Scope other_work(shared);
    shared.alloc_bytes(1);
    expect_internal("holding other work");
  }
  const Tensor want = flow_sample(*model_, cond, params, 24, &noise, owning);
  EXPECT_TRUE(same_bits(flow_sample(*model_, cond, params, 24, &noise, ws), want));
  EXPECT_EQ(shared.used(), 0u);
  EXPECT_GE(shared.high_water(), owning.step_arena().high_water());
  // Other work between requests leaves nothing behind that the next request would notice.
  {
    Arena::Scope other_work(shared);
    backend_->fill(shared.alloc({int64_t(step_bytes / sizeof(float))}, DType::kF32), 7.0f);
  }
  EXPECT_TRUE(same_bits(flow_sample(*model_, cond, params, 24, &noise, ws), want));
}

// The official implementation's golden case: 4 Euler CFG steps from the recorded noise.
TEST(FlowSamplerGolden, SampleStage) {
  namespace fs = std::filesystem;
  const fs::path root = test::golden_root();
  int cases = 0;
  if (fs::is_directory(root)) {
    for (const auto& entry : fs::directory_iterator(root)) {
      if (!fs::exists(entry.path() / "case.json")) continue;
      ++cases;
      GoldenOptions opt;
      opt.stages = {"sample"};
      const GoldenReport r = run_golden_case(entry.path().string(), opt);
      ASSERT_EQ(r.stages.size(), 1u);
      std::printf("%s", format_golden_stage(r.stages[0]).c_str());
      EXPECT_EQ(r.stages[0].status, GoldenStatus::kPass)
          << entry.path() << ": " << format_golden_stage(r.stages[0]) << r.stages[0].message;
    }
  }
  if (cases == 0) FOLEY_SKIP_MISSING("no golden cases under " << root);
}

}  // namespace
}  // namespace foley
