// Synchformer in the reference's precision (fp16 autocast): `--synchformer-dtype f16` stores the
// matmul weights as F16 (round to nearest even of the F32 checkpoint values), vectors and
// embeddings as F32, and the model runs on them. The features of the F16 bundle are compared with
// the F32 bundle's on the CPU and with the CPU's on CUDA, on the tiny model of
// scripts/tiny_models/synchformer.py (dim 64, 2 heads, 64² images, 16-frame segments).
//
// Tolerance: F16 keeps 11 significant bits, so every weight moves by up to 2^-12 relative
// (~2.4e-4, round to nearest), and the CUDA GEMMs also round their F32 inputs to F16 (as autocast
// does; the CPU widens the weights and keeps F32 inputs). Each feature sums many independently
// rounded products, so the errors partly cancel: measured on the CPU, F16 vs F32 bundle, 4.1e-4
// of the largest feature. kTolerance (2e-3) leaves room for the inputs' rounding on CUDA; a wrong
// weight layout or a lost bias is off by O(1).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "backend/backend.h"
#include "convert/convert.h"
#include "core/dtype.h"
#include "cuda_test_util.h"
#include "foley/convert.h"
#include "foley/error.h"
#include "io/safetensors.h"
#include "models/synchformer.h"
#include "models/weight_store.h"
#include "test_util.h"

namespace foley {
namespace {

namespace fs = std::filesystem;

constexpr double kTolerance = 2e-3;

class SynchformerF16Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::have_python_torch()) return;
    dir_ = new std::string(test::temp_dir());
    std::string out;
    ASSERT_EQ(test::run_command(std::string(FOLEY_PYTHON) + " " +
                                    test::source_path("scripts/tiny_models/synchformer.py") + " " +
                                    *dir_ + " --seed 9 2>&1",
                                &out),
              0)
        << out;
    convert("f32", f32_bundle());
    convert("f16", f16_bundle());
    // 40 frames: 4 segments, two forwards of the default chunk (2).
    frames_ = new Tensor(Tensor::empty({40, 70, 90, 3}, DType::kU8));
    std::mt19937 rng(11);
    for (int64_t i = 0; i < frames_->numel(); ++i)
      frames_->data<uint8_t>()[i] = static_cast<uint8_t>(rng() & 0xff);
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

  static std::string f32_bundle() { return *dir_ + "/f32.safetensors"; }
  static std::string f16_bundle() { return *dir_ + "/f16.safetensors"; }
  static ConvertSummary convert(const std::string& dtype, const std::string& bundle) {
    ConvertRequest req;
    req.model_dir = *dir_;
    req.synchformer_dtype = dtype;
    req.output = bundle;
    return convert_model(req);
  }
  static Tensor features(const std::string& bundle, Backend& backend) {
    const auto weights = WeightStore::open(bundle);
    const Synchformer model(*weights, backend);
    Arena arena(backend.block_allocator(), model.workspace_bytes(Synchformer::kDefaultChunk));
    return model.encode_frames(*frames_, arena);
  }
  static nlohmann::json config(const std::string& bundle) {
    return nlohmann::json::parse(
        SafetensorsFile::open(bundle).metadata().at("config"))["synchformer"];
  }

  static std::string* dir_;
  static Tensor* frames_;
};
std::string* SynchformerF16Test::dir_ = nullptr;
Tensor* SynchformerF16Test::frames_ = nullptr;

TEST_F(SynchformerF16Test, ConverterStoresMatmulWeightsInF16) {
  const SafetensorsFile f32 = SafetensorsFile::open(f32_bundle());
  const SafetensorsFile f16 = SafetensorsFile::open(f16_bundle());
  EXPECT_EQ(config(f32_bundle()).value("weight_dtype", ""), "F32");
  EXPECT_EQ(config(f16_bundle()).value("weight_dtype", ""), "F16");
  for (const char* name :
       {"blocks.0.attn.qkv.weight", "blocks.1.timeattn.proj.weight", "blocks.0.mlp.fc2.weight",
        "patch_embed_3d.proj.weight", "spatial_attn_agg.self_attn.in_proj_weight",
        "spatial_attn_agg.linear1.weight"}) {
    const std::string full = std::string("synchformer.") + name;
    EXPECT_EQ(f16.tensor(full).dtype(), DType::kF16) << name;
    EXPECT_EQ(f32.tensor(full).dtype(), DType::kF32) << name;
  }
  for (const char* name :
       {"blocks.0.attn.qkv.bias", "blocks.0.norm3.weight", "norm.bias", "cls_token", "pos_embed",
        "temp_embed", "spatial_attn_agg.cls_token", "spatial_attn_agg.self_attn.in_proj_bias"})
    EXPECT_EQ(f16.tensor(std::string("synchformer.") + name).dtype(), DType::kF32) << name;
  // Every element of a matrix is the F32 value rounded to nearest even, and at least one moved.
  const Tensor w32 = f32.tensor("synchformer.blocks.1.mlp.fc1.weight");
  const Tensor w16 = f16.tensor("synchformer.blocks.1.mlp.fc1.weight");
  int64_t mismatched = 0, inexact = 0;
  for (int64_t i = 0; i < w32.numel(); ++i) {
    const float v = w32.data<float>()[i];
    const uint16_t h = w16.data<uint16_t>()[i];
    mismatched += h != f32_to_f16(v);
    inexact += f16_to_f32(h) != v;
  }
  EXPECT_EQ(mismatched, 0);
  EXPECT_GT(inexact, 0);
  EXPECT_LT(fs::file_size(f16_bundle()), fs::file_size(f32_bundle()));
}

TEST_F(SynchformerF16Test, Bf16AndUnknownDtypesAreRefused) {
  const std::string out = *dir_ + "/bf16.safetensors";
  try {
    convert("bf16", out);
    ADD_FAILURE() << "bf16 converted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("fp16 autocast"), std::string::npos) << e.what();
  }
  EXPECT_THROW(convert("f64", out), Error);
  EXPECT_FALSE(fs::exists(out));
  // The library entry point refuses it too, with the network named.
  OfficialFiles files;
  files.synchformer_checkpoint = *dir_ + "/synchformer_state_dict.pth";
  ConvertOptions options;
  options.synchformer_dtype = DType::kBF16;
  try {
    convert_bundle(files, options, out);
    ADD_FAILURE() << "bf16 converted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("BF16"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out));
  // And the command line, with the bad-input exit code.
  std::string log;
  EXPECT_EQ(test::run_command(std::string(FOLEY_CLI) + " convert --model-dir " + *dir_ +
                                  " --synchformer-dtype bf16 -o " + out + " 2>&1",
                              &log),
            2)
      << log;
  EXPECT_NE(log.find("fp16 autocast"), std::string::npos) << log;
  EXPECT_EQ(test::run_command(std::string(FOLEY_CLI) + " convert --model-dir " + *dir_ +
                                  " --synchformer-dtype f16 -o " + out + " 2>&1",
                              &log),
            0)
      << log;
}

TEST_F(SynchformerF16Test, CpuFeaturesMatchTheF32Bundle) {
  auto cpu = make_cpu_backend();
  const Tensor f32 = features(f32_bundle(), *cpu);
  const Tensor f16 = features(f16_bundle(), *cpu);
  ASSERT_EQ(f16.shape(), (Shape{1, 32, 64}));
  const double rel = test::max_rel_error(f16, f32);
  std::printf("Synchformer tiny on the CPU: F16 weights vs F32 weights, max rel %.3g\n", rel);
  EXPECT_EQ(test::count_nonfinite(f16), 0);
  EXPECT_LE(rel, kTolerance);
  EXPECT_GT(rel, 0.0);  // the F16 weights are in use
}

// Named Cuda* so that tests/cuda/run_gpu_tests.sh (filter 'Cuda*') runs it on a GPU machine.
class CudaSynchformerF16 : public SynchformerF16Test {};
TEST_F(CudaSynchformerF16, FeaturesMatchTheCpu) {
  FOLEY_CUDA_OR_SKIP(be);
  auto cpu = make_cpu_backend();
  const Tensor on_cpu = features(f16_bundle(), *cpu);
  const Tensor on_cuda = features(f16_bundle(), be);
  const Tensor f32_cpu = features(f32_bundle(), *cpu);
  const double rel = test::max_rel_error(on_cuda, on_cpu);
  std::printf(
      "Synchformer tiny, F16 weights: CUDA vs CPU max rel %.3g; CUDA vs F32 on the CPU %.3g\n", rel,
      test::max_rel_error(on_cuda, f32_cpu));
  EXPECT_EQ(test::count_nonfinite(on_cuda), 0);
  EXPECT_LE(rel, kTolerance);
  EXPECT_LE(test::max_rel_error(on_cuda, f32_cpu), kTolerance);
}

}  // namespace
}  // namespace foley
