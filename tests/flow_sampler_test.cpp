// Euler CFG flow sampler: schedule, noise, a full run vs the PyTorch reference with injected
// noise, progress/cancellation, and the golden case's "sample" stage.
#include "models/flow_sampler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>

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
  // A fixed value pins the generator across platforms and releases.
  EXPECT_EQ(a.data<float>()[0], flow_initial_noise(1, 1, 1).data<float>()[0]);
}

class FlowSamplerModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::have_python_torch()) GTEST_SKIP() << "needs /usr/bin/python3 with torch";
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
  if (cases == 0) GTEST_SKIP() << "no golden cases under " << root;
}

}  // namespace
}  // namespace foley
