// Synchformer vs the PyTorch reference (tests/python/reference_synchformer.py, written from the
// spec) on a tiny model from scripts/tiny_models/synchformer.py at sizes unlike the golden case:
// dim 96, 9 spatial tokens (48² images, patch 16), 4 temporal tokens (8-frame segments, stride 4),
// frames 37×61 (upscaled, centre crop at a .5 offset). Also the head-count override: no tensor
// carries it, so a wrong count converts fine and must change the output.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "backend/backend.h"
#include "convert/convert.h"
#include "foley/convert.h"
#include "foley/error.h"
#include "models/synchformer.h"
#include "models/weight_store.h"
#include "test_util.h"

namespace foley {
namespace {

constexpr int kT = 16, kH = 37, kW = 61, kDim = 96;

class SynchformerReferenceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::have_python_torch()) return;
    dir_ = new std::string(test::temp_dir());
    std::string out;
    ASSERT_EQ(test::run_command(std::string(FOLEY_PYTHON) + " " +
                                    test::source_path("scripts/tiny_models/synchformer.py") + " " +
                                    *dir_ +
                                    " --seed 5 --dim 96 --depth 2 --mlp 192 --agg-ff 160 "
                                    "--image-size 48 --patch 16 --tubelet 2 --frames 4 2>&1",
                                &out),
              0)
        << out;
    frames_ = new Tensor(Tensor::empty({kT, kH, kW, 3}, DType::kU8));
    std::mt19937 rng(3);
    for (int64_t i = 0; i < frames_->numel(); ++i)
      frames_->data<uint8_t>()[i] = static_cast<uint8_t>(rng() & 0xff);
    std::ofstream(*dir_ + "/frames.u8", std::ios::binary)
        .write(frames_->data<char>(), static_cast<std::streamsize>(frames_->nbytes()));
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete frames_;
    dir_ = nullptr;
    frames_ = nullptr;
  }
  void SetUp() override {
    if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  }

  // Converts the tiny checkpoint with `heads` (0: the converter's guess), returns the summary.
  static ConvertSummary convert(int heads, const std::string& bundle) {
    ConvertRequest req;
    req.model_dir = *dir_;
    req.synchformer_heads = heads;
    req.output = bundle;
    return convert_model(req);
  }
  // foley's features [1, S·F, dim] for the frames from `bundle`.
  static Tensor foley_features(const std::string& bundle) {
    const auto weights = WeightStore::open(bundle);
    auto backend = make_cpu_backend();
    const Synchformer model(*weights, *backend);
    Arena arena(backend->block_allocator(), model.workspace_bytes(Synchformer::kDefaultChunk));
    return model.encode_frames(*frames_, arena);
  }
  static Tensor reference(int heads, const Shape& shape) {
    const std::string out = *dir_ + "/ref" + std::to_string(heads) + ".f32";
    std::string log;
    EXPECT_EQ(
        test::run_command(std::string(FOLEY_PYTHON) + " " +
                              test::source_path("tests/python/reference_synchformer.py") + " run " +
                              *dir_ + "/synchformer_state_dict.pth " + std::to_string(heads) + " " +
                              *dir_ + "/frames.u8 " + std::to_string(kT) + " " +
                              std::to_string(kH) + " " + std::to_string(kW) + " " + out + " 2>&1",
                          &log),
        0)
        << log;
    Tensor ref = Tensor::empty(shape, DType::kF32);
    std::ifstream in(out, std::ios::binary);
    in.read(ref.data<char>(), static_cast<std::streamsize>(ref.nbytes()));
    EXPECT_TRUE(in.good()) << out;
    return ref;
  }

  static std::string* dir_;
  static Tensor* frames_;
};
std::string* SynchformerReferenceTest::dir_ = nullptr;
Tensor* SynchformerReferenceTest::frames_ = nullptr;

TEST_F(SynchformerReferenceTest, GuessedHeadsMatchReference) {
  const std::string bundle = *dir_ + "/guess.safetensors";
  const ConvertSummary s = convert(0, bundle);
  bool noted = false;
  for (const auto& n : s.notes)
    noted |= n.find("Synchformer: 3 attention heads (guessed") != std::string::npos;
  EXPECT_TRUE(noted) << "no note on the guessed head count";
  const Tensor got = foley_features(bundle);
  // (16 − 8)/4 + 1 = 3 segments of 4 tokens.
  ASSERT_EQ(got.shape(), (Shape{1, 12, kDim}));
  const double rel = test::max_rel_error(got, reference(3, got.shape()));
  std::printf(
      "Synchformer tiny (dim 96, 3 heads, 48², 8-frame segments) vs float64 torch: rel "
      "%.3g\n",
      rel);
  EXPECT_LE(rel, 1e-4);
}

TEST_F(SynchformerReferenceTest, GivenHeadsOverrideTheGuess) {
  const std::string bundle = *dir_ + "/two.safetensors";
  const ConvertSummary s = convert(2, bundle);
  bool noted = false;
  for (const auto& n : s.notes)
    noted |= n.find("Synchformer: 2 attention heads (given)") != std::string::npos;
  EXPECT_TRUE(noted) << "no note on the given head count";
  const Tensor got = foley_features(bundle);
  ASSERT_EQ(got.shape(), (Shape{1, 12, kDim}));
  const Tensor ref2 = reference(2, got.shape());
  const double rel = test::max_rel_error(got, ref2);
  std::printf("Synchformer tiny with --synchformer-heads 2 vs float64 torch (2 heads): rel %.3g\n",
              rel);
  EXPECT_LE(rel, 1e-4);
  // The wrong count for this model (the guess, 3) gives clearly different features.
  const double wrong = test::max_rel_error(got, reference(3, got.shape()));
  std::printf("  the same vs the reference with 3 heads: rel %.3g\n", wrong);
  EXPECT_GT(wrong, 1e-2);
  // A count that does not divide the width is refused.
  EXPECT_THROW(convert(5, *dir_ + "/five.safetensors"), Error);
}

}  // namespace
}  // namespace foley
