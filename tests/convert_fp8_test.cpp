// Community DiT conversions as converter input: a hunyuanvideo_foley*.safetensors of F8_E4M3 or
// F8_E5M2 plain casts (some 1-D tensors left BF16), as phazei's HunyuanVideo-Foley files are,
// made by scripts/make_tiny_models.py --dit-format safetensors with tests/python/fp8_reference.py
// as the encoder, and CLAP as clap/model.safetensors. The bundle's DiT holds exactly the fp8
// values (each the plain cast of the official bf16 weight), the file rule of a model directory
// refuses two DiTs of one size, bad tensors are refused by name, and the bundle generates.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "convert/convert.h"
#include "core/dtype.h"
#include "core/host_values.h"
#include "foley/convert.h"
#include "foley/error.h"
#include "foley/foley.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "tiny_pipeline.h"

namespace foley::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kE4M3File = "hunyuanvideo_foley_fp8_e4m3fn.safetensors";
constexpr const char* kE5M2File = "hunyuanvideo_foley_fp8_e5m2.safetensors";

// The tiny model of TinyModel (seed 3) with its DiT as an fp8-E4M3 safetensors (1-D tensors BF16)
// and CLAP as model.safetensors only: the other networks are those of TinyModel's folder.
std::string e4m3_dir() {
  return cached_tiny_models(
      "--seed 3 --dit-format safetensors --dit-dtype f8_e4m3 --dit-keep-vectors "
      "--clap-weights safetensors");
}
// The same DiT as F8_E5M2 everywhere (no BF16 tensors), with the DAC only.
std::string e5m2_dir() {
  return cached_tiny_models("--seed 3 --no-encoders --dit-format safetensors --dit-dtype f8_e5m2");
}
// TinyModel's own folder: the official .pth of the same weights.
std::string pth_dir() {
  return cached_tiny_models("--seed 3");
}

ConvertSummary convert(const std::string& dir, const std::string& dtype, const std::string& out,
                       bool encoders = true) {
  ConvertRequest r;
  r.model_dir = dir;
  r.dtype = dtype;
  r.include_dac = encoders;
  r.output = out;
  return convert_model(r);
}

std::string convert_error(const ConvertRequest& r) {
  try {
    convert_model(r);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Every "dit." tensor of `got` (converted from the fp8 file `source`) against the same tensor of
// `pth_bundle` (the official .pth converted to F32): where the source tensor is fp8, the plain
// cast of the .pth value decoded again, else the .pth value itself; bit for bit.
void expect_fp8_values(const std::string& got, const std::string& pth_bundle,
                       const std::string& source, DType fp8) {
  const SafetensorsFile a = SafetensorsFile::open(got);
  const SafetensorsFile b = SafetensorsFile::open(pth_bundle);
  const SafetensorsFile src = SafetensorsFile::open(source);
  size_t tensors = 0, fp8_tensors = 0, rounded = 0;
  for (const auto& e : a.entries()) {
    if (e.name.rfind("dit.", 0) != 0) continue;
    ++tensors;
    ASSERT_TRUE(b.has(e.name)) << e.name;
    const DType from = src.entry(e.name.substr(4)).dtype;
    const std::vector<float> va = host_values_f32(a.tensor(e.name));
    const std::vector<float> vb = host_values_f32(b.tensor(e.name));
    ASSERT_EQ(va.size(), vb.size()) << e.name;
    fp8_tensors += from == fp8;
    size_t wrong = 0;
    for (size_t i = 0; i < va.size(); ++i) {
      float want = vb[i];
      if (from == DType::kF8E4M3) want = e4m3_to_f32(f32_to_e4m3(vb[i], false));
      if (from == DType::kF8E5M2) want = e5m2_to_f32(f32_to_e5m2(vb[i], false));
      rounded += want != vb[i];
      if (bits(va[i]) != bits(want) && ++wrong <= 3)
        ADD_FAILURE() << e.name << "[" << i << "] = " << va[i] << ", expected " << want
                      << " (the .pth value " << vb[i] << " through " << dtype_name(fp8) << ")";
    }
    EXPECT_EQ(wrong, 0u) << e.name;
  }
  size_t expected_tensors = 0;
  for (const auto& e : b.entries()) expected_tensors += e.name.rfind("dit.", 0) == 0;
  EXPECT_EQ(tensors, expected_tensors);
  EXPECT_GT(fp8_tensors, tensors / 3);
  EXPECT_GT(rounded, 1000u);  // the fp8 values do differ from the bf16 ones
}

TEST(ConvertFp8, E4M3DitGivesExactlyItsFp8ValuesAndClapSafetensorsTheBinsTensors) {
  TINY_OR_SKIP();
  const std::string dir = e4m3_dir();
  ASSERT_FALSE(dir.empty());
  const std::string out = temp_dir();
  const ConvertSummary s = convert(dir, "f32", out + "/e4m3.safetensors");
  EXPECT_EQ(s.networks.size(), 5u);
  EXPECT_EQ(s.sources.at("dit"), (std::vector<std::string>{kE4M3File, "config.yaml"}));
  EXPECT_EQ(s.sources.at("clap").at(0), "clap/model.safetensors");
  EXPECT_EQ(s.variant, "custom");

  // The file is what community files are: F8_E4M3 matrices, BF16 vectors, no scale tensors.
  const SafetensorsFile src = SafetensorsFile::open(dir + "/" + kE4M3File);
  size_t bf16 = 0;
  for (const auto& e : src.entries()) {
    EXPECT_EQ(e.dtype, e.shape.rank() == 1 ? DType::kBF16 : DType::kF8E4M3) << e.name;
    bf16 += e.dtype == DType::kBF16;
  }
  EXPECT_GT(bf16, 10u);
  expect_fp8_values(out + "/e4m3.safetensors", tiny->bundle, dir + "/" + kE4M3File, DType::kF8E4M3);

  // The same recorded in the bundle's metadata.
  const SafetensorsFile bundle = SafetensorsFile::open(out + "/e4m3.safetensors");
  const auto sources = nlohmann::json::parse(bundle.metadata().at("sources"));
  EXPECT_EQ(sources["dit"][0], kE4M3File);
  EXPECT_EQ(sources["clap"][0], "clap/model.safetensors");

  // Every other network, CLAP from model.safetensors included, is byte for byte TinyModel's
  // (CLAP from pytorch_model.bin): equal content hashes.
  const SafetensorsFile pth = SafetensorsFile::open(tiny->bundle);
  const auto pth_hashes = nlohmann::json::parse(pth.metadata().at("content_hashes"));
  for (const std::string net : {"dac", "clap", "siglip2", "synchformer"})
    EXPECT_EQ(s.content_hashes.at(net), pth_hashes.at(net).get<std::string>()) << net;
  EXPECT_NE(s.content_hashes.at("dit"), pth_hashes.at("dit").get<std::string>());

  // Upcast to bf16 (the default --dtype): every fp8 value is a bf16 value, so the bf16 bundle holds
  // the same numbers as the f32 one.
  convert(dir, "bf16", out + "/e4m3_bf16.safetensors");
  const SafetensorsFile f32 = SafetensorsFile::open(out + "/e4m3.safetensors");
  const SafetensorsFile b16 = SafetensorsFile::open(out + "/e4m3_bf16.safetensors");
  size_t bf16_tensors = 0;
  for (const auto& e : f32.entries()) {
    if (e.name.rfind("dit.", 0) != 0) continue;
    bf16_tensors += b16.entry(e.name).dtype == DType::kBF16;
    EXPECT_EQ(host_values_f32(b16.tensor(e.name)), host_values_f32(f32.tensor(e.name))) << e.name;
  }
  EXPECT_GT(bf16_tensors, 10u);
}

TEST(ConvertFp8, E5M2DitGivesExactlyItsFp8Values) {
  TINY_OR_SKIP();
  const std::string dir = e5m2_dir();
  ASSERT_FALSE(dir.empty());
  const std::string out = temp_dir() + "/e5m2.safetensors";
  const ConvertSummary s = convert(dir, "f32", out, /*encoders=*/false);
  EXPECT_EQ(s.networks, std::vector<std::string>{"dit"});
  EXPECT_EQ(s.sources.at("dit").at(0), kE5M2File);
  const SafetensorsFile src = SafetensorsFile::open(dir + "/" + kE5M2File);
  for (const auto& e : src.entries()) EXPECT_EQ(e.dtype, DType::kF8E5M2) << e.name;
  expect_fp8_values(out, tiny->bundle, dir + "/" + kE5M2File, DType::kF8E5M2);
}

// A folder of symlinks to the generated files, named as the test needs.
std::string link_dir(const std::vector<std::pair<std::string, std::string>>& links) {
  const std::string dir = temp_dir() + "/model";
  fs::create_directories(dir);
  for (const auto& [name, target] : links) fs::create_symlink(target, fs::path(dir) / name);
  return dir;
}

TEST(ConvertFp8, FileRuleOfAModelDirectory) {
  TINY_OR_SKIP();
  const std::string fp8 = e4m3_dir(), pth = pth_dir();
  ASSERT_FALSE(fp8.empty());
  ASSERT_FALSE(pth.empty());
  const std::string out = temp_dir();

  // The .pth and a .safetensors DiT of one size: refused, naming both, nothing written.
  const std::string both = link_dir({{"hunyuanvideo_foley.pth", pth + "/hunyuanvideo_foley.pth"},
                                     {kE4M3File, fp8 + "/" + kE4M3File},
                                     {"config.yaml", pth + "/config.yaml"}});
  ConvertRequest r;
  r.model_dir = both;
  r.output = out + "/ambiguous.safetensors";
  const std::string err = convert_error(r);
  EXPECT_NE(err.find("2 XXL DiT checkpoints"), std::string::npos) << err;
  EXPECT_NE(err.find("hunyuanvideo_foley.pth"), std::string::npos) << err;
  EXPECT_NE(err.find(kE4M3File), std::string::npos) << err;
  EXPECT_NE(err.find("--dit"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(r.output));
  // The CLI: exit 2, the same message.
  std::string cli;
  EXPECT_EQ(run_command(std::string(FOLEY_CLI) + " convert --no-vae --model-dir " + both + " -o " +
                            r.output + " 2>&1",
                        &cli),
            2)
      << cli;
  EXPECT_NE(cli.find(kE4M3File), std::string::npos) << cli;
  // Told which: --dit names the file, the config still comes from the directory.
  r.dit_checkpoint = both + "/" + kE4M3File;
  r.include_dac = false;
  r.output = out + "/chosen.safetensors";
  const ConvertSummary chosen = convert_model(r);
  EXPECT_EQ(chosen.sources.at("dit"), (std::vector<std::string>{kE4M3File, "config.yaml"}));

  // XL by name ("hunyuanvideo_foley_xl..."): next to an XXL .pth it needs a model size, and
  // --model-size xl takes it with the XL config. A foley bundle in the folder is no DiT.
  const std::string sizes =
      link_dir({{"hunyuanvideo_foley.pth", pth + "/hunyuanvideo_foley.pth"},
                {"hunyuanvideo_foley_xl_fp8_e4m3fn.safetensors", fp8 + "/" + kE4M3File},
                {"config.yaml", pth + "/config.yaml"},
                {"hunyuanvideo-foley-xl.yaml", pth + "/config.yaml"},
                {"hunyuanvideo_foley_bundle.safetensors", tiny->bundle}});
  r = ConvertRequest{};
  r.model_dir = sizes;
  r.include_dac = false;
  r.output = out + "/xl.safetensors";
  const std::string both_sizes = convert_error(r);
  EXPECT_NE(both_sizes.find("hunyuanvideo_foley.pth (XXL) and "
                            "hunyuanvideo_foley_xl_fp8_e4m3fn.safetensors (XL)"),
            std::string::npos)
      << both_sizes;
  EXPECT_EQ(both_sizes.find("hunyuanvideo_foley_bundle"), std::string::npos) << both_sizes;
  r.model_size = "xl";
  const ConvertSummary xl = convert_model(r);
  EXPECT_EQ(xl.sources.at("dit"),
            (std::vector<std::string>{"hunyuanvideo_foley_xl_fp8_e4m3fn.safetensors",
                                      "hunyuanvideo-foley-xl.yaml"}));
  r.model_size = "xxl";
  r.output = out + "/xxl.safetensors";
  EXPECT_EQ(convert_model(r).sources.at("dit").at(0), "hunyuanvideo_foley.pth");

  // The CLI on a folder with the fp8 DiT only.
  ASSERT_EQ(run_command(std::string(FOLEY_CLI) + " convert --model-dir " + fp8 + " -o " + out +
                            "/cli.safetensors 2>&1",
                        &cli),
            0)
      << cli;
  EXPECT_NE(cli.find(std::string("dit    <- ") + kE4M3File + ", config.yaml"), std::string::npos)
      << cli;
}

// The fp8 file with its header edited in place (same length, so the offsets still hold).
std::string edited_copy(const std::string& from, const std::string& find, const std::string& put) {
  EXPECT_EQ(find.size(), put.size());
  std::ifstream in(from, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const size_t at = bytes.find(find);
  EXPECT_NE(at, std::string::npos) << find;
  if (at != std::string::npos) bytes.replace(at, find.size(), put);
  const std::string path = temp_dir() + "/" + kE4M3File;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(ConvertFp8, BadTensorsAreRefusedByName) {
  TINY_OR_SKIP();
  const std::string dir = e4m3_dir();
  ASSERT_FALSE(dir.empty());
  const std::string good = dir + "/" + kE4M3File;
  const std::string key = R"("final_layer.linear.weight":{"dtype":)";
  struct Case {
    std::string find, put, expect;
  };
  const Case cases[] = {
      // A dtype no reader knows: refused when the file is opened.
      {key + R"("F8_E4M3")", key + R"("F8_E3M4")",
       R"(tensor "final_layer.linear.weight": unknown dtype "F8_E3M4")"},
      // A dtype the reader knows but the DiT converter does not take.
      {key + R"("F8_E4M3")", key + R"("I8"     )", "final_layer.linear.weight has dtype I8"},
      // A wrong shape (same element count).
      {R"("cond_in.linear_2.weight":{"dtype":"F8_E4M3","shape":[128,128])",
       R"("cond_in.linear_2.weight":{"dtype":"F8_E4M3","shape":[256,64] )",
       "cond_in.linear_2.weight has shape [256, 64], expected [128, 128]"},
  };
  for (const Case& c : cases) {
    ConvertRequest r;
    r.dit_checkpoint = edited_copy(good, c.find, c.put);
    r.dit_config = dir + "/config.yaml";
    r.output = temp_dir() + "/bad.safetensors";
    const std::string err = convert_error(r);
    EXPECT_NE(err.find(c.expect), std::string::npos) << err;
    EXPECT_FALSE(fs::exists(r.output));
  }
}

TEST(ConvertFp8, PipelineGeneratesFromTheFp8InputBundle) {
  TINY_OR_SKIP();
  const std::string dir = e4m3_dir();
  ASSERT_FALSE(dir.empty());
  const std::string bundle = temp_dir() + "/fp8_input.safetensors";
  convert(dir, "bf16", bundle);
  GeneratorOptions o;
  o.max_clip_seconds = 2.0;
  auto fp8 = Generator::create(Model::load({bundle}), o);
  auto ref = Generator::create(tiny->model, o);
  GenerationParams p = quick_params();
  p.max_clip_seconds = 2.0;
  const GenerationResult a = fp8->generate(tiny_clip(25), p);
  const GenerationResult b = ref->generate(tiny_clip(25), p);
  ASSERT_EQ(a.audio.size(), b.audio.size());
  ASSERT_GT(a.audio.size(), 0u);
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.audio.size(); ++i) {
    ASSERT_TRUE(std::isfinite(a.audio[i])) << i;
    ASSERT_LE(std::fabs(a.audio[i]), 1.0f) << i;
    diff += (a.audio[i] - b.audio[i]) * double(a.audio[i] - b.audio[i]);
    norm += b.audio[i] * double(b.audio[i]);
  }
  // Other weights, other audio (the fp8 rounding of every DiT matrix shows), but near the bf16
  // input's (0.12 relative here; unrelated audio would be ~1.4).
  const double rel = std::sqrt(diff / std::max(norm, 1e-30));
  std::printf("fp8-input vs bf16-input audio: relative L2 difference %.3g\n", rel);
  EXPECT_GT(rel, 0.0);
  EXPECT_LT(rel, 0.5);
}

}  // namespace
}  // namespace foley::test
