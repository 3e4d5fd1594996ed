// DAC decoder vs the PyTorch reference (tests/python/reference_dac.py) on a tiny official-format
// model from scripts/make_tiny_models.py (width 64, the real rates: hop 960).
#include "models/dac_decoder.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "backend/backend.h"
#include "convert/convert.h"
#include "foley/error.h"
#include "io/safetensors.h"
#include "models/weight_store.h"
#include "test_util.h"

namespace foley {
namespace {

using test::have_python_torch;
using test::max_rel_error;
using test::run_command;
using test::source_path;

class DacDecoderTest : public ::testing::Test {
 protected:
  // One tiny model and bundle for the whole suite.
  static void SetUpTestSuite() {
    if (!have_python_torch()) return;
    dir_ = new std::string(test::temp_dir());
    const std::string cmd = std::string(FOLEY_PYTHON) + " " +
                            source_path("scripts/make_tiny_models.py") + " " + *dir_ +
                            " --no-dit --seed 7 2>&1";
    std::string out;
    ASSERT_EQ(run_command(cmd, &out), 0) << out;
    OfficialFiles files;
    files.dac_checkpoint = *dir_ + "/vae_128d_48k.pth";
    convert_bundle(files, ConvertOptions{}, *dir_ + "/bundle.safetensors");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
    store_ = WeightStore::open(*dir_ + "/bundle.safetensors");
    backend_ = make_cpu_backend();
  }

  // The reference decode of a seeded latent [1, 128, frames]: {latent, audio}. Computed once per
  // (frames, seed) for the suite.
  std::pair<Tensor, Tensor> reference(int frames, int seed) {
    const std::string out =
        *dir_ + "/ref_" + std::to_string(frames) + "_" + std::to_string(seed) + ".safetensors";
    if (!std::filesystem::exists(out)) {
      const std::string cmd = std::string(FOLEY_PYTHON) + " " +
                              source_path("tests/python/reference_dac.py") + " decode " + *dir_ +
                              "/vae_128d_48k.pth " + out + " " + std::to_string(frames) + " " +
                              std::to_string(seed) + " 2>&1";
      std::string log;
      EXPECT_EQ(run_command(cmd, &log), 0) << log;
    }
    files_.push_back(std::make_shared<SafetensorsFile>(SafetensorsFile::open(out)));
    return {files_.back()->tensor("latent"), files_.back()->tensor("audio")};
  }

  // Channels-first [1, C, T] -> contiguous channel-last [1, T, C].
  static Tensor channel_last(const Tensor& t) { return test::to_f32(t.transpose(1, 2)); }

  Tensor decode(const DacDecoder& dac, const Tensor& latent_cl, int max_frames) {
    auto arena = dac.make_workspace(max_frames);
    Tensor audio =
        Tensor::empty({latent_cl.dim(0), latent_cl.dim(1) * dac.config().hop()}, DType::kF32);
    dac.decode(latent_cl, audio, *arena);
    return audio;
  }

  static std::string* dir_;
  std::shared_ptr<WeightStore> store_;
  std::unique_ptr<Backend> backend_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
};
std::string* DacDecoderTest::dir_ = nullptr;

TEST_F(DacDecoderTest, ConfigFromBundle) {
  DacDecoder dac(*store_, *backend_);
  EXPECT_EQ(dac.config().latent_dim, 128);
  EXPECT_EQ(dac.config().decoder_dim, 64);
  EXPECT_EQ(dac.config().hop(), 960);
  EXPECT_EQ(dac.config().sample_rate, 48000);
}

TEST_F(DacDecoderTest, MatchesReference) {
  auto [latent, expected] = reference(12, 5);
  DacDecoder dac(*store_, *backend_);
  Tensor audio = decode(dac, channel_last(latent), 16);
  const double err = max_rel_error(audio.reshape(expected.shape()), expected);
  EXPECT_LE(err, 1e-4);
  std::printf("[ dac ] tiny decoder, 12 frames: max rel error %.3g vs PyTorch\n", err);
}

TEST_F(DacDecoderTest, SingleFrame) {
  auto [latent, expected] = reference(1, 9);
  DacDecoder dac(*store_, *backend_);
  Tensor audio = decode(dac, channel_last(latent), 1);
  EXPECT_LE(max_rel_error(audio.reshape(expected.shape()), expected), 1e-4);
}

// Tiny chunks (smaller than the dilated halo) must give the same result as one chunk per stage.
TEST_F(DacDecoderTest, ChunkedResidualUnitsMatch) {
  auto [latent, expected] = reference(12, 5);
  DacTiling tiny;
  tiny.chunk_elements = 1;
  tiny.min_chunk_rows = 19;  // not a divisor of any stage length, below the 27-sample halo
  DacDecoder chunked(*store_, *backend_, tiny);
  Tensor audio = decode(chunked, channel_last(latent), 12);
  EXPECT_LE(max_rel_error(audio.reshape(expected.shape()), expected), 1e-4);
  DacDecoder whole(*store_, *backend_);
  EXPECT_LE(max_rel_error(audio, decode(whole, channel_last(latent), 12)), 1e-6);
}

TEST_F(DacDecoderTest, BatchDecodesEachItem) {
  auto [l1, a1] = reference(12, 5);
  auto [l2, a2] = reference(12, 6);
  ASSERT_GT(max_rel_error(a1, a2), 1e-2);  // two different items
  Tensor batch = Tensor::empty({2, 12, 128}, DType::kF32);
  Tensor c1 = channel_last(l1), c2 = channel_last(l2);
  std::copy_n(c1.data<float>(), c1.numel(), batch.data<float>());
  std::copy_n(c2.data<float>(), c2.numel(), batch.data<float>() + c1.numel());
  DacDecoder dac(*store_, *backend_);
  Tensor audio = decode(dac, batch, 12);
  EXPECT_LE(max_rel_error(audio.slice(0, 0, 1).reshape(a1.shape()), a1), 1e-4);
  EXPECT_LE(max_rel_error(audio.slice(0, 1, 1).reshape(a2.shape()), a2), 1e-4);
}

TEST_F(DacDecoderTest, RejectsBadInputs) {
  DacDecoder dac(*store_, *backend_);
  auto arena = dac.make_workspace(4);
  Tensor wrong_dim = Tensor::zeros({1, 4, 64}, DType::kF32);
  Tensor audio = Tensor::empty({1, 4 * 960}, DType::kF32);
  EXPECT_THROW(dac.decode(wrong_dim, audio, *arena), Error);
  Tensor latent = Tensor::zeros({1, 4, 128}, DType::kF32);
  Tensor short_audio = Tensor::empty({1, 4 * 960 - 1}, DType::kF32);
  EXPECT_THROW(dac.decode(latent, short_audio, *arena), Error);
  // Far longer than the frozen workspace was sized for (its block has some slack, at least
  // 1 MB): refused, not grown.
  Tensor long_latent = Tensor::zeros({1, 400, 128}, DType::kF32);
  Tensor long_audio = Tensor::empty({1, 400 * 960}, DType::kF32);
  EXPECT_THROW(dac.decode(long_latent, long_audio, *arena), Error);
  // The workspace is reusable after a refusal.
  EXPECT_NO_THROW(dac.decode(latent, audio, *arena));
}

}  // namespace
}  // namespace foley

namespace foley {
namespace {

// The real decoder shapes (decoder_dim 2048) with random weights, parity with PyTorch on a short
// latent. Slow (generates a 300 MB checkpoint); run with --gtest_also_run_disabled_tests.
TEST(DacDecoderRealSize, DISABLED_Parity) {
  if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  const std::string dir = test::temp_dir();
  std::string out;
  ASSERT_EQ(test::run_command(std::string(FOLEY_PYTHON) + " " +
                                  test::source_path("scripts/make_tiny_models.py") + " " + dir +
                                  " --no-dit --decoder-dim 2048 2>&1 && " + FOLEY_PYTHON + " " +
                                  test::source_path("tests/python/reference_dac.py") + " decode " +
                                  dir + "/vae_128d_48k.pth " + dir + "/ref.safetensors 6 1 2>&1",
                              &out),
            0)
      << out;
  OfficialFiles files;
  files.dac_checkpoint = dir + "/vae_128d_48k.pth";
  convert_bundle(files, ConvertOptions{}, dir + "/bundle.safetensors");
  auto store = WeightStore::open(dir + "/bundle.safetensors");
  auto backend = make_cpu_backend();
  DacDecoder dac(*store, *backend);
  ASSERT_EQ(dac.config().decoder_dim, 2048);
  const SafetensorsFile ref = SafetensorsFile::open(dir + "/ref.safetensors");
  const Tensor latent = test::to_f32(ref.tensor("latent").transpose(1, 2));
  Tensor audio = Tensor::empty({1, 6 * 960}, DType::kF32);
  dac.decode(latent, audio, *dac.make_workspace(6));
  const double err = max_rel_error(audio.reshape({1, 1, 6 * 960}), ref.tensor("audio"));
  std::printf("[ dac ] decoder_dim 2048, 6 frames: max rel error %.3g vs PyTorch\n", err);
  EXPECT_LE(err, 1e-4);
}

// CPU time of the real decoder shapes at 1, 10 and 15 s, on a bundle of random weights written
// directly (no Python, so it also runs on machines without torch). Env FOLEY_DAC_FRAMES
// overrides the lengths ("50,500,752").
TEST(DacDecoderRealSize, DISABLED_Timing) {
  const DacConfig cfg;  // the official sizes
  const std::string path = test::temp_dir() + "/random_dac.safetensors";
  SafetensorsWriter w;
  uint64_t seed = 1;
  auto add = [&](const std::string& name, const Shape& shape, float scale) {
    w.add("dac." + name, test::random_tensor(shape, DType::kF32, seed++, -scale, scale));
  };
  // Uniform(±sqrt(3/fan_in)) keeps activations O(1), like trained weights (no denormals, NaNs).
  auto conv = [&](const std::string& p, int64_t k, int64_t co, int64_t ci) {
    add(p + ".weight", {k, co, ci}, std::sqrt(3.0f / float(k * ci)));
    add(p + ".bias", {co}, 0.05f);
  };
  auto alpha = [&](const std::string& name, int64_t c) {
    w.add("dac." + name, test::random_tensor({c}, DType::kF32, seed++, 0.5f, 1.5f));
  };
  int64_t c = cfg.decoder_dim;
  conv("post_quant_conv", 1, 128, 128);
  conv("decoder.model.0", 7, c, 128);
  for (int i = 0; i < 5; ++i) {
    const std::string p = "decoder.model." + std::to_string(i + 1) + ".block.";
    alpha(p + "0.alpha", c);
    conv(p + "1", 2 * cfg.decoder_rates[size_t(i)], c / 2, c);
    c /= 2;
    for (int j = 2; j <= 4; ++j) {
      const std::string u = p + std::to_string(j) + ".block.";
      alpha(u + "0.alpha", c);
      conv(u + "1", 7, c, c);
      alpha(u + "2.alpha", c);
      conv(u + "3", 1, c, c);
    }
  }
  alpha("decoder.model.6.alpha", c);
  conv("decoder.model.7", 7, 1, c);
  w.set_metadata("format", "foley");
  w.set_metadata("format_version", std::to_string(kBundleFormatVersion));
  w.set_metadata("config", nlohmann::json{{"dac", cfg.to_json()}}.dump());
  w.write(path);

  auto store = WeightStore::open(path);
  auto backend = make_cpu_backend();
  DacDecoder dac(*store, *backend);
  auto workspace = dac.make_workspace(DacDecoder::kMaxFrames);
  std::printf("[ dac ] workspace for %d frames: %.1f MB\n", DacDecoder::kMaxFrames,
              workspace->reserved() / 1e6);
  std::vector<int> lengths = {50, 500, 752};
  if (const char* env = std::getenv("FOLEY_DAC_FRAMES")) {
    lengths.clear();
    for (std::string s = env; !s.empty();) {
      const size_t comma = s.find(',');
      lengths.push_back(std::stoi(s.substr(0, comma)));
      s = comma == std::string::npos ? "" : s.substr(comma + 1);
    }
  }
  for (int frames : lengths) {
    const Tensor z = test::random_tensor({1, frames, 128}, DType::kF32, 5, -2.f, 2.f);
    Tensor a = Tensor::empty({1, int64_t{frames} * 960}, DType::kF32);
    for (int rep = 0; rep < 2; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      dac.decode(z, a, *workspace);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("[ dac ] decoder_dim 2048, %d frames (%d samples): %.2f s (run %d)\n", frames,
                  frames * 960, s, rep + 1);
      std::fflush(stdout);
    }
  }
}

}  // namespace
}  // namespace foley
