// The bundle converter on a tiny official-format model: every DAC tensor equals the transformed
// source values, the key set is checked strictly, and damaged files fail with clear errors.
#include "convert/convert.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>

#include "foley/convert.h"
#include "foley/error.h"
#include "io/torch_checkpoint.h"
#include "models/dac_decoder.h"
#include "models/weight_store.h"
#include "test_util.h"

namespace foley {
namespace {

namespace fs = std::filesystem;
using test::have_python_torch;
using test::run_command;
using test::source_path;

// Variants of the tiny vae_128d_48k.pth, each broken in one way.
constexpr const char* kBreakScript = R"PY(
import sys, torch
d = sys.argv[1]
ck = torch.load(d + "/vae_128d_48k.pth")
def save(name, sd, meta=ck["metadata"]):
    torch.save({"state_dict": sd, "metadata": meta}, d + "/" + name)
sd = dict(ck["state_dict"]); del sd["decoder.model.3.block.2.block.1.weight_g"]; save("missing.pth", sd)
sd = dict(ck["state_dict"]); sd["decoder.model.9.weight"] = torch.zeros(3); save("extra.pth", sd)
sd = dict(ck["state_dict"]); sd["decoder.model.2.block.0.alpha"] = torch.ones(1, 31, 1); save("shape.pth", sd)
save("nokwargs.pth", ck["state_dict"], {})
torch.save(ck["state_dict"], d + "/flat.pth")
)PY";

class ConvertTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!have_python_torch()) return;
    dir_ = new std::string(test::temp_dir());
    std::string out;
    ASSERT_EQ(
        run_command(std::string(FOLEY_PYTHON) + " " + source_path("scripts/make_tiny_models.py") +
                        " " + *dir_ + " --no-dit --seed 3 2>&1",
                    &out),
        0)
        << out;
    std::ofstream(*dir_ + "/break.py") << kBreakScript;
    ASSERT_EQ(
        run_command(std::string(FOLEY_PYTHON) + " " + *dir_ + "/break.py " + *dir_ + " 2>&1", &out),
        0)
        << out;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  }

  // Converts one DAC checkpoint; returns the error message ("" on success).
  static std::string convert_error(const std::string& vae, const std::string& out) {
    OfficialFiles files;
    files.dac_checkpoint = vae;
    try {
      convert_bundle(files, ConvertOptions{}, out);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  static std::string* dir_;
};
std::string* ConvertTest::dir_ = nullptr;

// Expected bundle tensor from the source, computed independently in double: weight norm
// g·v/||v|| (dim 0 kept), permuted [d0, d1, K] -> [K, C_out, C_in].
std::vector<double> expected_weight(const TorchCheckpoint& ck, const std::string& prefix,
                                    bool transposed) {
  const Tensor v = test::to_f32(ck.tensor(prefix + ".weight_v"));
  const Tensor g = test::to_f32(ck.tensor(prefix + ".weight_g"));
  const int64_t d0 = v.dim(0), d1 = v.dim(1), k = v.dim(2);
  const float* pv = v.data<float>();
  std::vector<double> norm(static_cast<size_t>(d0));
  for (int64_t a = 0; a < d0; ++a) {
    double s = 0;
    for (int64_t j = 0; j < d1 * k; ++j) s += double(pv[a * d1 * k + j]) * pv[a * d1 * k + j];
    norm[static_cast<size_t>(a)] = std::sqrt(s);
  }
  const int64_t co = transposed ? d1 : d0, ci = transposed ? d0 : d1;
  std::vector<double> out;
  for (int64_t t = 0; t < k; ++t)
    for (int64_t o = 0; o < co; ++o)
      for (int64_t i = 0; i < ci; ++i) {
        const int64_t a = transposed ? i : o, b = transposed ? o : i;
        out.push_back(g.data<float>()[a] * double(pv[(a * d1 + b) * k + t]) /
                      norm[static_cast<size_t>(a)]);
      }
  return out;
}

TEST_F(ConvertTest, RoundTripMatchesTransformedSource) {
  const std::string vae = *dir_ + "/vae_128d_48k.pth";
  const std::string bundle = *dir_ + "/rt.safetensors";
  OfficialFiles files;
  files.dac_checkpoint = vae;
  convert_bundle(files, ConvertOptions{}, bundle);
  const TorchCheckpoint ck = TorchCheckpoint::open(vae);
  auto store = WeightStore::open(bundle);

  const auto& meta = store->file().metadata();
  EXPECT_EQ(meta.at("format"), "foley");
  EXPECT_EQ(meta.at("format_version"), std::to_string(kBundleFormatVersion));
  EXPECT_NE(meta.at("sources").find("vae_128d_48k.pth"), std::string::npos);
  const DacConfig cfg = DacConfig::from_json(store->config("dac"));
  EXPECT_EQ(cfg.decoder_dim, 64);
  EXPECT_EQ(cfg.decoder_rates, (std::vector<int>{8, 5, 4, 3, 2}));
  EXPECT_FALSE(store->has_network("dit"));

  // Every bundle tensor, mapped back to its source.
  size_t weights = 0, others = 0;
  for (const auto& e : store->file().entries()) {
    ASSERT_EQ(e.name.rfind("dac.", 0), 0u) << e.name;
    ASSERT_EQ(e.dtype, DType::kF32) << e.name;
    const std::string src = e.name.substr(4);
    const Tensor ours = store->file().tensor(e.name);
    std::vector<double> want;
    if (src == "post_quant_conv.weight") {
      const Tensor w = test::to_f32(ck.tensor(src));  // [Co, Ci, 1] -> [1, Co, Ci]
      want.assign(w.data<float>(), w.data<float>() + w.numel());
    } else if (src.size() > 7 && src.substr(src.size() - 7) == ".weight") {
      const std::string prefix = src.substr(0, src.size() - 7);
      // decoder.model.{i}.block.1 is a DecoderBlock's transposed conv (a ResidualUnit's conv is
      // one level deeper: ...block.{j}.block.1).
      static const std::regex kUp(R"(decoder\.model\.\d+\.block\.1)");
      const bool block_up = std::regex_match(prefix, kUp);
      want = expected_weight(ck, prefix, block_up);
      ++weights;
    } else {
      const Tensor s = test::to_f32(ck.tensor(src));  // bias [C] or alpha [1, C, 1] -> [C]
      want.assign(s.data<float>(), s.data<float>() + s.numel());
      ++others;
    }
    ASSERT_EQ(static_cast<size_t>(ours.numel()), want.size()) << e.name;
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      max_diff = std::max(max_diff, std::fabs(ours.data<float>()[i] - want[i]));
      max_ref = std::max(max_ref, std::fabs(want[i]));
    }
    EXPECT_LE(max_diff, 1e-6 * max_ref) << e.name;
  }
  // Weight-normed convs: the first, 5 blocks × (transposed + 3 units × 2), the last.
  EXPECT_EQ(weights, 1u + 5 * 7 + 1);
  // Biases and alphas: post_quant_conv and first conv biases, 5 blocks × (alpha + bias +
  // 3 units × 2 alphas and 2 biases), final alpha and bias.
  EXPECT_EQ(others, 2u + 5 * 14 + 2);
  for (const auto& e : ck.entries()) {
    if (e.name.rfind("encoder.", 0) == 0 || e.name.rfind("quant_conv.", 0) == 0) {
      EXPECT_FALSE(store->file().has("dac." + e.name)) << e.name;
    }
  }
}

TEST_F(ConvertTest, KeyProblemsNameTheKey) {
  const std::string out = *dir_ + "/bad.safetensors";
  std::string err = convert_error(*dir_ + "/missing.pth", out);
  EXPECT_NE(err.find("missing tensor decoder.model.3.block.2.block.1.weight_g"), std::string::npos)
      << err;
  err = convert_error(*dir_ + "/extra.pth", out);
  EXPECT_NE(err.find("unexpected tensor decoder.model.9.weight"), std::string::npos) << err;
  err = convert_error(*dir_ + "/shape.pth", out);
  EXPECT_NE(err.find("decoder.model.2.block.0.alpha has shape [1, 31, 1], expected [1, 32, 1]"),
            std::string::npos)
      << err;
  err = convert_error(*dir_ + "/nokwargs.pth", out);
  EXPECT_NE(err.find("metadata.kwargs"), std::string::npos) << err;
  err = convert_error(*dir_ + "/flat.pth", out);
  EXPECT_NE(err.find("metadata.kwargs"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(ConvertTest, DamagedCheckpointFailsCleanly) {
  const std::string src = *dir_ + "/vae_128d_48k.pth";
  const std::string out = *dir_ + "/damaged.safetensors";
  // Truncated: the zip directory at the end is gone.
  const std::string truncated = *dir_ + "/truncated.pth";
  fs::copy_file(src, truncated, fs::copy_options::overwrite_existing);
  fs::resize_file(truncated, fs::file_size(src) / 2);
  std::string err = convert_error(truncated, out);
  EXPECT_NE(err.find("truncated.pth"), std::string::npos) << err;
  // Not a checkpoint at all.
  std::ofstream(*dir_ + "/text.pth") << "hello";
  err = convert_error(*dir_ + "/text.pth", out);
  EXPECT_NE(err.find("text.pth"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(ConvertTest, PublicApiFromModelDir) {
  ConvertRequest req;
  req.model_dir = *dir_;
  req.output = *dir_ + "/api.safetensors";
  const ConvertSummary s = convert_model(req);
  ASSERT_EQ(s.networks, std::vector<std::string>{"dac"});
  EXPECT_GT(s.bytes, 0u);
  // The tiny directory has no DiT: that is a note, not an error.
  ASSERT_FALSE(s.notes.empty());
  EXPECT_NE(s.notes[0].find("hunyuanvideo_foley.pth"), std::string::npos);
  ConvertRequest missing;
  missing.dac_checkpoint = *dir_ + "/nope.pth";
  missing.output = *dir_ + "/x.safetensors";
  EXPECT_THROW(convert_model(missing), Error);
}

TEST_F(ConvertTest, Cli) {
  std::string out;
  EXPECT_EQ(run_command(std::string(FOLEY_CLI) + " convert --model-dir " + *dir_ + " -o " + *dir_ +
                            "/cli.safetensors 2>&1",
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("dac"), std::string::npos) << out;
  EXPECT_EQ(run_command(std::string(FOLEY_CLI) + " convert --vae " + *dir_ + "/missing.pth -o " +
                            *dir_ + "/cli2.safetensors 2>&1",
                        &out),
            2)
      << out;
  EXPECT_NE(out.find("missing tensor"), std::string::npos) << out;
}

}  // namespace
}  // namespace foley
