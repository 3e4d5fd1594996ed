// MMDiT forward and DiT converter vs the PyTorch reference (tests/python/reference_dit.py, which
// is itself checked against the official implementation's golden case), plus the golden case.
#include "models/mmdit.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "convert/convert.h"
#include "dit_fixture.h"
#include "foley/error.h"
#include "foley/golden.h"
#include "models/rope.h"
#include "models/weight_store.h"

namespace foley {
namespace {

using test::max_rel_error;
using test::random_tensor;
using test::TinyDit;

class MmditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
    model_files_ = TinyDit::get();
    ASSERT_NE(model_files_, nullptr);
    backend_ = make_cpu_backend();
  }

  // Random CFG-batch inputs of the given sizes (host F32).
  std::map<std::string, Tensor> inputs(int64_t ta, int64_t tv, int64_t s8, int64_t l,
                                       uint64_t seed) {
    const int64_t F = TinyDit::kFeat;
    Tensor t = Tensor::empty({2}, DType::kF32);
    t.data<float>()[0] = 735.0f;
    t.data<float>()[1] = 20.0f;
    return {{"x", random_tensor({2, 128, ta}, DType::kF32, seed, -2.f, 2.f)},
            {"t", t},
            {"clip", random_tensor({2, tv, F}, DType::kF32, seed + 1)},
            {"sync", random_tensor({2, s8, F}, DType::kF32, seed + 2)},
            {"text", random_tensor({2, l, F}, DType::kF32, seed + 3, -0.5f, 0.5f)}};
  }

  // The C++ forward on host inputs; CPU backend, so host tensors are device tensors.
  Tensor forward(const Mmdit& model, const std::map<std::string, Tensor>& in, Arena& arena) {
    const Tensor& x = in.at("x");
    auto ctx = model.prepare(in.at("clip"), in.at("sync"), in.at("text"), x.dim(2));
    Tensor v = Tensor::empty(x.shape(), DType::kF32);
    model.forward(*ctx, x, in.at("t").data<float>(), v, arena);
    return v;
  }

  const TinyDit* model_files_ = nullptr;
  std::unique_ptr<Backend> backend_;
};

TEST_F(MmditTest, ForwardMatchesReferenceF32) {
  const auto store = WeightStore::open(model_files_->bundle(DType::kF32));
  const Mmdit model(*store, *backend_);
  EXPECT_EQ(model.config().heads, TinyDit::kHeads);
  EXPECT_EQ(model.config().head_dim, TinyDit::kHidden / TinyDit::kHeads);
  // Ta/Tv not a whole ratio and S·8 not a divisor of Ta: exercises both nearest-exact maps.
  const auto in = inputs(50, 13, 24, 9, 100);
  const Tensor ref = test::run_reference("forward", *model_files_, in, "v");
  ASSERT_TRUE(ref.defined());
  Arena arena(backend_->block_allocator());
  const Tensor v = forward(model, in, arena);
  const double err = max_rel_error(v, ref);
  std::printf("tiny DiT forward, F32 weights: max rel error %.3e\n", err);
  EXPECT_LE(err, 1e-4);
  EXPECT_EQ(arena.used(), 0u);  // the step released everything it took
}

TEST_F(MmditTest, ForwardMatchesReferenceOtherLengths) {
  // Tv > Ta / 2 and a 1-token text: the interleaved positions and the text path at edge sizes.
  const auto store = WeightStore::open(model_files_->bundle(DType::kF32));
  const Mmdit model(*store, *backend_);
  const auto in = inputs(40, 31, 8, 1, 200);
  const Tensor ref = test::run_reference("forward", *model_files_, in, "v");
  ASSERT_TRUE(ref.defined());
  Arena arena(backend_->block_allocator());
  const double err = max_rel_error(forward(model, in, arena), ref);
  std::printf("tiny DiT forward (Ta 40, Tv 31, L 1): max rel error %.3e\n", err);
  EXPECT_LE(err, 1e-4);
}

// BF16 weight storage holds the same values as the checkpoint (which is bf16), so the difference
// comes from the backend's BF16 GEMMs, which round their activation inputs to bf16 (as torch's
// bf16 autocast does) while norms, attention, residuals and the latent stay F32. Each rounding
// is ~2^-9 relative; the official bf16 production path, which in addition keeps bf16 residuals
// and bf16 attention, lands 4.4e-3 from F32 on the golden case. Tolerance 1e-2 here (measured
// 3.1e-3 on this random-weight model); the golden test below holds BF16 mode to the official
// production path's own error.
TEST_F(MmditTest, ForwardBf16Weights) {
  const auto store = WeightStore::open(model_files_->bundle(DType::kBF16));
  const Mmdit model(*store, *backend_);
  const auto in = inputs(50, 13, 24, 9, 300);
  const Tensor ref = test::run_reference("forward", *model_files_, in, "v");
  ASSERT_TRUE(ref.defined());
  Arena arena(backend_->block_allocator());
  const double err = max_rel_error(forward(model, in, arena), ref);
  std::printf("tiny DiT forward, BF16 weights: max rel error %.3e\n", err);
  EXPECT_LE(err, 1e-2);
}

TEST_F(MmditTest, ContextIsReusableAcrossSteps) {
  // One context, several timesteps, in an arena frozen at exactly step_arena_bytes(): results
  // equal fresh runs, the bound suffices (a frozen arena throws instead of growing) and is tight.
  const auto store = WeightStore::open(model_files_->bundle(DType::kF32));
  const Mmdit model(*store, *backend_);
  auto in = inputs(32, 8, 16, 5, 400);
  auto ctx = model.prepare(in.at("clip"), in.at("sync"), in.at("text"), 32);
  Arena arena(backend_->block_allocator());
  arena.freeze(model.step_arena_bytes(2, 32, 8));
  Tensor v1 = Tensor::empty(in.at("x").shape(), DType::kF32);
  Tensor v2 = Tensor::empty(in.at("x").shape(), DType::kF32);
  const float t1[2] = {1000.f, 1000.f}, t2[2] = {500.f, 250.f};
  model.forward(*ctx, in.at("x"), t1, v1, arena);
  model.forward(*ctx, in.at("x"), t2, v2, arena);
  EXPECT_GT(test::max_abs_error(v1, v2), 0.0);
  model.forward(*ctx, in.at("x"), t1, v2, arena);
  EXPECT_EQ(test::max_abs_error(v1, v2), 0.0);
  EXPECT_EQ(arena.high_water(), model.step_arena_bytes(2, 32, 8));
  EXPECT_EQ(arena.used(), 0u);
}

// A TimestepTable gives each row what set_timesteps computes for it directly (the rows come from
// GEMMs of another number of rows, hence a bound rather than bits), computes a timestep once
// while it holds it, evicts the least recently used row when full, and refuses a batch with
// more distinct timesteps than rows.
TEST_F(MmditTest, TimestepTableMatchesDirectRowsAndKeepsThem) {
  const auto store = WeightStore::open(model_files_->bundle(DType::kF32));
  const Mmdit model(*store, *backend_);
  auto in = inputs(32, 8, 16, 5, 500);
  auto ctx = model.prepare(in.at("clip"), in.at("sync"), in.at("text"), 32);
  Arena arena(backend_->block_allocator());
  arena.freeze(model.step_arena_bytes(2, 32, 8));
  const Tensor& x = in.at("x");
  auto direct = [&](const float* t) {
    Tensor v = Tensor::empty(x.shape(), DType::kF32);
    model.set_timesteps(*ctx, t);
    model.forward(*ctx, x, v, arena);
    return v;
  };
  auto tabled = [&](TimestepTable& table, const float* t) {
    Tensor v = Tensor::empty(x.shape(), DType::kF32);
    model.set_timesteps(*ctx, table, t);
    model.forward(*ctx, x, v, arena);
    return v;
  };

  const auto table = model.make_timestep_table(3);
  const float schedule[4] = {1000.f, 800.f, 1000.f, 600.f};  // 3 distinct
  model.precompute_timesteps(*table, schedule, 4);
  EXPECT_EQ(table->rows_computed(), 3u);
  model.precompute_timesteps(*table, schedule, 4);
  EXPECT_EQ(table->rows_computed(), 3u);

  const float pair[2] = {800.f, 800.f}, mixed[2] = {600.f, 1000.f};
  for (const float* t : {pair, mixed}) {
    const double err = max_rel_error(tabled(*table, t), direct(t));
    EXPECT_LE(err, 1e-6) << t[0] << ", " << t[1];
  }
  EXPECT_EQ(table->rows_computed(), 3u);  // all held

  // 400 evicts 800, the least recently used; 800 then comes back in place of 1000, by then the
  // least recently used, and is what it was.
  const float fresh[2] = {400.f, 600.f}, back[2] = {800.f, 400.f};
  const Tensor v_fresh = tabled(*table, fresh);
  EXPECT_EQ(table->rows_computed(), 4u);
  EXPECT_LE(max_rel_error(v_fresh, direct(fresh)), 1e-6);
  const Tensor v_back = tabled(*table, back);
  EXPECT_EQ(table->rows_computed(), 5u);
  EXPECT_LE(max_rel_error(v_back, direct(back)), 1e-6);
  model.precompute_timesteps(*table, mixed, 2);  // 600 held, 1000 recomputed
  EXPECT_EQ(table->rows_computed(), 6u);

  const auto tiny = model.make_timestep_table(1);
  EXPECT_THROW(model.set_timesteps(*ctx, *tiny, mixed), Error);
  EXPECT_EQ(arena.used(), 0u);
}

TEST(MmditRope, InterleavedPositions) {
  // Audio at even slots; visual j at 2·floor((j+.5)·Ta/Tv)+1.
  const auto p = joint_self_positions(3, 8);
  ASSERT_EQ(p.size(), 11u);
  EXPECT_EQ(p[0], 3.f);   // floor(0.5·8/3)=1
  EXPECT_EQ(p[1], 9.f);   // floor(1.5·8/3)=4
  EXPECT_EQ(p[2], 13.f);  // floor(2.5·8/3)=6
  for (int i = 0; i < 8; ++i) EXPECT_EQ(p[static_cast<size_t>(3 + i)], 2.f * i);
  EXPECT_EQ(nearest_exact_source(5, 56, 128), 2);  // floor(5.5·0.4375)
  // Every length pair a video can produce round-trips (Ta = int(T25/25·50); Tv, the 8 fps frame
  // count of the same clip, is within one of T25·8/25); otherwise prepare() refuses.
  for (int64_t t25 = 16; t25 <= 376; ++t25) {
    const int64_t ta = static_cast<int64_t>(static_cast<double>(t25) / 25.0 * 50.0);
    for (int64_t tv = t25 * 8 / 25 - 1; tv <= t25 * 8 / 25 + 2; ++tv)
      EXPECT_NO_THROW(joint_self_positions(tv, ta)) << "Ta " << ta << " Tv " << tv;
  }
  EXPECT_THROW(joint_self_positions(20, 10), Error);
}

// Converter: key-set mismatches are reported by name.
TEST(DitConverter, ReportsMissingExtraAndMisshapedKeys) {
  if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  const std::string dir = test::temp_dir();
  const std::string script =
      "import sys, torch; sys.path.insert(0, '" + test::source_path("scripts/tiny_models") +
      "'); import dit; sd = dit.make_state_dict(seed=2, hidden=64, heads=2, triple=1, single=1,"
      " feat_dim=32); del sd['single_blocks.0.k_norm.weight'];"
      " sd['repa_projector.weight'] = torch.zeros(4);"
      " sd['triple_blocks.0.audio_cross_q.bias'] = torch.zeros(65);"
      " torch.save(sd, '" +
      dir + "/bad.pth')";
  std::string out;
  ASSERT_EQ(test::run_command(std::string(FOLEY_PYTHON) + " -c \"" + script + "\" 2>&1", &out), 0)
      << out;
  OfficialFiles files;
  files.dit_checkpoint = dir + "/bad.pth";
  try {
    convert_bundle(files, ConvertOptions{}, dir + "/b.safetensors");
    FAIL() << "conversion of a damaged key set succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("missing single_blocks.0.k_norm.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected repa_projector.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("triple_blocks.0.audio_cross_q.bias has shape [65]"), std::string::npos)
        << msg;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/b.safetensors"));
}

TEST(DitConverter, ConfigMismatchIsRefused) {
  if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  const TinyDit* m = TinyDit::get();
  ASSERT_NE(m, nullptr);
  const std::string dir = test::temp_dir();
  std::string out;
  // Same checkpoint, a config claiming 4 heads and the non-interleaved RoPE.
  ASSERT_EQ(test::run_command("sed -e 's/num_heads: 3/num_heads: 4/' -e "
                              "'s/interleaved_audio_visual_rope: True/"
                              "interleaved_audio_visual_rope: False/' " +
                                  m->config() + " > " + dir + "/config.yaml",
                              &out),
            0);
  OfficialFiles files;
  files.dit_checkpoint = m->checkpoint();
  files.dit_config = dir + "/config.yaml";
  try {
    convert_bundle(files, ConvertOptions{}, dir + "/b.safetensors");
    FAIL() << "conversion with a mismatching config succeeded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("num_heads is 4"), std::string::npos) << msg;
    EXPECT_NE(msg.find("interleaved_audio_visual_rope"), std::string::npos) << msg;
  }
}

// The official implementation's golden case: the "dit" stage (one CFG-batch forward) through
// the golden runner, i.e. converter + model on the official checkpoint format.
TEST(MmditGolden, DitStage) {
  namespace fs = std::filesystem;
  const fs::path root = test::golden_root();
  int cases = 0;
  if (fs::is_directory(root)) {
    for (const auto& entry : fs::directory_iterator(root)) {
      if (!fs::exists(entry.path() / "case.json")) continue;
      ++cases;
      GoldenOptions opt;
      opt.stages = {"dit"};
      const GoldenReport r = run_golden_case(entry.path().string(), opt);
      ASSERT_EQ(r.stages.size(), 1u);
      std::printf("%s", format_golden_stage(r.stages[0]).c_str());
      EXPECT_EQ(r.stages[0].status, GoldenStatus::kPass)
          << entry.path() << ": " << format_golden_stage(r.stages[0]) << r.stages[0].message;
    }
  }
  if (cases == 0) FOLEY_SKIP_MISSING("no golden cases under " << root);
}

// BF16 weights on the golden case: no further from the official F32 output than the official
// bf16 production run is (case.json's dit_bf16prod_vs_fp32_max_rel).
TEST(MmditGolden, Bf16WeightsWithinOfficialBf16Error) {
  namespace fs = std::filesystem;
  const fs::path dir = test::golden_root() / "tiny-a";
  if (!fs::exists(dir / "case.json")) FOLEY_SKIP_MISSING("no golden case " << dir);
  const nlohmann::json c = nlohmann::json::parse(std::ifstream(dir / "case.json"));
  const double official = c.at("dit_bf16prod_vs_fp32_max_rel").get<double>();
  const auto store = WeightStore::open(test::golden_dit_bundle(DType::kBF16));
  auto backend = make_cpu_backend();
  const Mmdit model(*store, *backend);
  const SafetensorsFile g = SafetensorsFile::open((dir / "tensors.safetensors").string());
  const Tensor x = test::to_f32(g.tensor("dit_in_x"));
  const Tensor t = test::to_f32(g.tensor("dit_in_t"));
  auto ctx =
      model.prepare(test::to_f32(g.tensor("dit_in_clip")), test::to_f32(g.tensor("dit_in_sync")),
                    test::to_f32(g.tensor("dit_in_text")), x.dim(2));
  Tensor v = Tensor::empty(x.shape(), DType::kF32);
  Arena arena(backend->block_allocator());
  model.forward(*ctx, x, t.data<float>(), v, arena);
  const double err = max_rel_error(v, g.tensor("dit_out_v"));
  const double vs_prod = max_rel_error(v, g.tensor("dit_out_v_bf16prod"));
  std::printf(
      "golden DiT, BF16 weights: %.3e from F32 golden (official bf16: %.3e), %.3e from "
      "the official bf16 output\n",
      err, official, vs_prod);
  EXPECT_LE(err, official);
}

}  // namespace
}  // namespace foley
