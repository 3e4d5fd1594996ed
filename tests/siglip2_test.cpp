// SigLIP2 vision tower: the golden "siglip2" stage on the shared case, and the converter's
// strictness on a synthetic SiglipModel file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>

#include "convert/convert.h"
#include "foley/convert.h"
#include "foley/error.h"
#include "foley/golden.h"
#include "models/siglip2_vision.h"
#include "test_util.h"

namespace foley {
namespace {

namespace fs = std::filesystem;

// The shared golden case, next to the checkout (../shared/golden relative to the repository root).
const std::string kTinyCase = test::source_path("../shared/golden/tiny-a");

TEST(Siglip2, GoldenStagePasses) {
  if (!fs::exists(fs::path(kTinyCase) / "checkpoints/siglip2/model.safetensors"))
    FOLEY_SKIP_MISSING(kTinyCase << " not present");
  GoldenOptions options;
  options.stages = {"siglip2"};
  const GoldenReport r = run_golden_case(kTinyCase, options);
  ASSERT_EQ(r.stages.size(), 1u);
  std::printf("%s", format_golden_stage(r.stages[0]).c_str());
  EXPECT_EQ(r.stages[0].status, GoldenStatus::kPass) << r.stages[0].message;
  EXPECT_EQ(r.stages[0].checks.size(), 2u);
}

TEST(Siglip2, ConvertModelDirTakesTheSiglip2Subfolder) {
  const fs::path checkpoints = fs::path(kTinyCase) / "checkpoints";
  if (!fs::exists(checkpoints / "siglip2/model.safetensors"))
    FOLEY_SKIP_MISSING(kTinyCase << " not present");
  ConvertRequest req;
  req.model_dir = checkpoints.string();
  req.include_dit = false;
  req.include_dac = false;
  req.output = test::temp_dir() + "/bundle.safetensors";
  const ConvertSummary s = convert_model(req);
  EXPECT_NE(std::find(s.networks.begin(), s.networks.end(), "siglip2"), s.networks.end());
  const SafetensorsFile bundle = SafetensorsFile::open(req.output);
  EXPECT_TRUE(bundle.has("siglip2.head.probe"));
  EXPECT_FALSE(bundle.has("siglip2.text_model.final_layer_norm.weight"));
}

// A tiny SiglipModel-style file: the vision tower of `vision`, plus text-tower and logit keys
// that the converter must drop. `bad` (if set) is written with a wrong shape.
std::string write_tiny_siglip(const std::string& dir, const std::string& bad = "",
                              const std::string& extra = "") {
  const int64_t h = 8, m = 16, p = 16, n = 4;  // image 32 -> 2x2 patches
  SafetensorsWriter w;
  int seed = 1;
  auto add = [&](const std::string& name, Shape shape) {
    if (name == bad) shape[0] += 1;
    w.add(name, test::random_tensor(shape, DType::kF32, static_cast<uint64_t>(seed++)));
  };
  const std::string v = "vision_model.";
  add(v + "embeddings.patch_embedding.weight", {h, 3, p, p});
  add(v + "embeddings.patch_embedding.bias", {h});
  add(v + "embeddings.position_embedding.weight", {n, h});
  const std::string l = v + "encoder.layers.0.";
  for (const char* ln : {"layer_norm1", "layer_norm2"}) {
    add(l + ln + ".weight", {h});
    add(l + ln + ".bias", {h});
  }
  for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
    add(l + "self_attn." + proj + ".weight", {h, h});
    add(l + "self_attn." + proj + ".bias", {h});
  }
  add(l + "mlp.fc1.weight", {m, h});
  add(l + "mlp.fc1.bias", {m});
  add(l + "mlp.fc2.weight", {h, m});
  add(l + "mlp.fc2.bias", {h});
  for (const char* ln : {"post_layernorm", "head.layernorm"}) {
    add(v + ln + ".weight", {h});
    add(v + ln + ".bias", {h});
  }
  add(v + "head.probe", {1, 1, h});
  add(v + "head.attention.in_proj_weight", {3 * h, h});
  add(v + "head.attention.in_proj_bias", {3 * h});
  add(v + "head.attention.out_proj.weight", {h, h});
  add(v + "head.attention.out_proj.bias", {h});
  add(v + "head.mlp.fc1.weight", {m, h});
  add(v + "head.mlp.fc1.bias", {m});
  add(v + "head.mlp.fc2.weight", {h, m});
  add(v + "head.mlp.fc2.bias", {h});
  add("text_model.final_layer_norm.weight", {h});
  add("logit_scale", {1});
  add("logit_bias", {1});
  if (!extra.empty()) add(extra, {2});
  const std::string path = dir + "/model.safetensors";
  w.write(path);
  return path;
}

nlohmann::json tiny_config() {
  return {{"model_type", "siglip"},
          {"vision_config",
           {{"hidden_size", 8},
            {"intermediate_size", 16},
            {"num_hidden_layers", 1},
            {"num_attention_heads", 2},
            {"image_size", 32},
            {"patch_size", 16},
            {"layer_norm_eps", 1e-6},
            {"hidden_act", "gelu_pytorch_tanh"}}}};
}

TEST(Siglip2, ConverterKeepsOnlyTheVisionTower) {
  const std::string dir = test::temp_dir();
  const SafetensorsFile file = SafetensorsFile::open(write_tiny_siglip(dir));
  SafetensorsWriter out;
  const nlohmann::json config = convert_siglip2(file, tiny_config(), out);
  EXPECT_EQ(config["hidden_size"], 8);
  out.write(dir + "/bundle.safetensors");
  const SafetensorsFile bundle = SafetensorsFile::open(dir + "/bundle.safetensors");
  EXPECT_EQ(bundle.entries().size(), 32u);  // 35 source tensors less text_model and logits
  EXPECT_TRUE(bundle.has("siglip2.head.probe"));
  EXPECT_FALSE(bundle.has("siglip2.logit_scale"));
  for (const auto& e : bundle.entries()) EXPECT_EQ(e.name.rfind("siglip2.", 0), 0u) << e.name;
}

TEST(Siglip2, ConverterRejectsMisShapedAndUnknownKeys) {
  const std::string bad = "vision_model.encoder.layers.0.mlp.fc1.weight";
  {
    const std::string dir = test::temp_dir();
    const SafetensorsFile file = SafetensorsFile::open(write_tiny_siglip(dir, bad));
    SafetensorsWriter out;
    try {
      convert_siglip2(file, tiny_config(), out);
      FAIL() << "a mis-shaped tensor was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("shape"), std::string::npos) << e.what();
    }
  }
  {
    const std::string dir = test::temp_dir();
    const SafetensorsFile file =
        SafetensorsFile::open(write_tiny_siglip(dir, "", "vision_model.head.extra"));
    SafetensorsWriter out;
    try {
      convert_siglip2(file, tiny_config(), out);
      FAIL() << "an unknown tensor was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("vision_model.head.extra"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace foley
