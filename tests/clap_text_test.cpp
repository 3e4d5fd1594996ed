// CLAP text tower: the shared golden "clap" stage, the converter's strictness, and a PyTorch
// reference (tests/python/reference_clap.py, written from the spec) on a second tiny config.
#include "models/clap_text.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "convert/convert.h"
#include "core/check.h"
#include "foley/convert.h"
#include "foley/golden.h"
#include "models/text_features.h"
#include "models/weight_store.h"
#include "test_util.h"

namespace foley {
namespace {

namespace fs = std::filesystem;

std::string python() {
  return FOLEY_PYTHON;
}
std::string reference_script() {
  return test::source_path("tests/python/reference_clap.py");
}

// A CLAP folder from the reference script; "" (and a failure) if it could not be made.
std::string make_clap_dir(const std::string& extra = "") {
  const std::string dir = test::temp_dir() + "/clap";
  std::string out;
  const int rc = test::run_command(
      python() + " " + reference_script() + " make " + dir + " 5 48 3 4 96 " + extra + " 2>&1",
      &out);
  EXPECT_EQ(rc, 0) << out;
  return rc == 0 ? dir : std::string();
}

std::string convert_clap_dir(const std::string& clap_dir) {
  OfficialFiles files;
  files.clap_dir = clap_dir;
  ConvertOptions options;
  const std::string bundle = test::temp_dir() + "/bundle.safetensors";
  write_bundle(official_sources(files, options), options, bundle);
  return bundle;
}

TEST(ClapText, SharedGoldenStage) {
  const fs::path dir = fs::path(FOLEY_SOURCE_DIR) / ".." / "shared" / "golden" / "tiny-a";
  if (!fs::exists(dir / "checkpoints" / "clap" / "pytorch_model.bin"))
    FOLEY_SKIP_MISSING("no shared golden case");
  GoldenOptions opt;
  opt.stages = {"clap"};
  const GoldenReport r = run_golden_case(dir.string(), opt);
  ASSERT_EQ(r.stages.size(), 1u);
  EXPECT_EQ(r.stages[0].status, GoldenStatus::kPass) << r.stages[0].message;
  EXPECT_EQ(r.stages[0].checks.size(), 5u);
  for (const auto& c : r.stages[0].checks) EXPECT_TRUE(c.pass) << c.tensor << " " << c.error;
}

TEST(ClapText, MatchesPythonReference) {
  if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  const std::string dir = make_clap_dir();
  ASSERT_FALSE(dir.empty());
  const auto weights = WeightStore::open(convert_clap_dir(dir));
  auto backend = make_cpu_backend();
  const auto tokenizer = load_clap_tokenizer(*weights);
  const ClapTextModel model(*weights, *backend);
  EXPECT_EQ(model.config().hidden_size, 48);
  EXPECT_EQ(model.config().num_layers, 3);
  Arena out(backend->block_allocator()), work(backend->block_allocator());
  // The negative prompt is the longer one here, so the positive row carries the padding; it is
  // also longer than 77 tokens (this vocabulary is mostly single bytes), so the features are
  // truncated hidden states of a full-context encoding.
  const std::string negative =
      "noisy, harsh and very noisy and harsh; a noisy room with harsh, noisy echoes and more "
      "noise, then harsh noise again";
  const TextFeatures f =
      encode_text_features(*tokenizer, model, "a noisy harp", negative, out, work);
  ASSERT_EQ(f.tokens.rows, 2);
  const int64_t length = f.tokens.length;
  EXPECT_EQ(f.tokens.mask[static_cast<size_t>(2 * length - 1)], 0);  // row 1 is padded

  std::string ids = "[";
  for (int64_t r = 0; r < 2; ++r) {
    ids += r ? ",[" : "[";
    for (int64_t i = 0; i < length; ++i)
      ids += (i ? "," : "") + std::to_string(f.tokens.ids[static_cast<size_t>(r * length + i)]);
    ids += "]";
  }
  ids += "]";
  const std::string ref_path = test::temp_dir() + "/ref.f32";
  std::string log;
  ASSERT_EQ(test::run_command(python() + " " + reference_script() + " run " + dir + " '" + ids +
                                  "' " + ref_path + " 2>&1",
                              &log),
            0)
      << log;
  Tensor ref = Tensor::empty(f.hidden.shape(), DType::kF32);
  std::ifstream in(ref_path, std::ios::binary);
  in.read(ref.data<char>(), static_cast<std::streamsize>(ref.nbytes()));
  ASSERT_TRUE(in.good());
  const double rel = test::max_rel_error(f.hidden, ref);
  std::printf("CLAP tiny (48 wide, 3 layers, 4 heads, L=%lld) vs float64 torch: rel %.3g\n",
              static_cast<long long>(length), rel);
  EXPECT_LE(rel, 1e-5);
  // The features are the first min(L, 77) positions of each row.
  ASSERT_GT(length, kTextFeatureLength);
  EXPECT_EQ(f.cond.shape(), (Shape{1, kTextFeatureLength, 48}));
  EXPECT_EQ(f.uncond.shape(), (Shape{1, kTextFeatureLength, 48}));
  EXPECT_EQ(f.cond.data<float>(), f.hidden.data<float>() + length * 48);
  EXPECT_EQ(f.uncond.data<float>(), f.hidden.data<float>());
}

// The converter names the tensor at fault; nothing is written.
void expect_convert_error(const std::string& flag, const std::string& key,
                          const std::string& needle) {
  const std::string dir = make_clap_dir(flag + " " + key);
  ASSERT_FALSE(dir.empty());
  try {
    convert_clap_dir(dir);
    ADD_FAILURE() << "no error for " << flag << " " << key;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
  }
}

TEST(ClapText, ConverterReportsMissingTensor) {
  if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  expect_convert_error("--drop", "text_model.encoder.layer.1.attention.self.key.bias",
                       "missing tensor");
}

TEST(ClapText, ConverterReportsMisshapedTensor) {
  if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  expect_convert_error("--reshape", "text_model.encoder.layer.0.output.dense.weight", "has shape");
}

// `foley convert --model-dir` takes CLAP from a clap/ subfolder (the golden case's checkpoints
// folder has the official layout).
TEST(ClapText, ModelDirPicksUpClapFolder) {
  const fs::path dir = fs::path(FOLEY_SOURCE_DIR) / ".." / "shared" / "golden" / "tiny-a";
  if (!fs::exists(dir / "checkpoints" / "clap" / "pytorch_model.bin"))
    FOLEY_SKIP_MISSING("no shared golden case");
  ConvertRequest req;
  req.model_dir = (dir / "checkpoints").string();
  req.include_dit = false;
  req.include_dac = false;
  req.output = test::temp_dir() + "/bundle.safetensors";
  const ConvertSummary s = convert_model(req);
  ASSERT_EQ(s.sources.count("clap"), 1u);
  EXPECT_EQ(s.sources.at("clap").front(), "clap/pytorch_model.bin");
  const auto weights = WeightStore::open(req.output);
  EXPECT_TRUE(weights->has_network("clap"));
  EXPECT_NO_THROW(load_clap_tokenizer(*weights));
}

TEST(ClapText, RejectsBadInputs) {
  const fs::path dir = fs::path(FOLEY_SOURCE_DIR) / ".." / "shared" / "golden" / "tiny-a";
  if (!fs::exists(dir / "checkpoints" / "clap" / "pytorch_model.bin"))
    FOLEY_SKIP_MISSING("no shared golden case");
  const auto weights = WeightStore::open(convert_clap_dir((dir / "checkpoints" / "clap").string()));
  auto backend = make_cpu_backend();
  const ClapTextModel model(*weights, *backend);
  Arena work(backend->block_allocator());
  Tensor hidden = Tensor::empty({1, 4, model.config().hidden_size}, DType::kF32);
  std::vector<int64_t> ids = {0, 5, 2, 1}, mask = {1, 1, 1, 0};
  auto run = [&] {
    model.forward(Tensor(ids.data(), DType::kI64, {1, 4}, DeviceKind::kCPU),
                  Tensor(mask.data(), DType::kI64, {1, 4}, DeviceKind::kCPU), hidden, work);
  };
  EXPECT_NO_THROW(run());
  mask = {1, 0, 1, 0};  // left or inner padding is not what the tokenizer produces
  EXPECT_THROW(run(), Error);
  mask = {1, 1, 1, 0};
  ids[1] = model.config().vocab_size;
  EXPECT_THROW(run(), Error);
}

// The generator behind make_tiny_models.py writes the hub's layout: a whole ClapModel (audio side
// and projections dropped), a nested ClapConfig (text_config), and a BPE vocabulary whose merges
// the tokenizer applies.
TEST(ClapText, TinyModelGeneratorFolderConvertsAndRuns) {
  if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  const std::string dir = test::temp_dir();
  std::string log;
  ASSERT_EQ(test::run_command(python() + " " + test::source_path("scripts/tiny_models/clap.py") +
                                  " " + dir + " --seed 2 2>&1",
                              &log),
            0)
      << log;
  const auto weights = WeightStore::open(convert_clap_dir(dir + "/clap"));
  auto backend = make_cpu_backend();
  const auto tokenizer = load_clap_tokenizer(*weights);
  const ClapTextModel model(*weights, *backend);
  EXPECT_EQ(model.config().hidden_size, 64);
  Arena out(backend->block_allocator()), work(backend->block_allocator());
  const std::string prompt = "the dog barks and footsteps on the wooden floor";
  const TextFeatures f = encode_text_features(*tokenizer, model, prompt, "noisy, harsh", out, work);
  // <s> + tokens + </s>: the merges learned from the generator's corpus shorten the words.
  EXPECT_LT(f.tokens.length, static_cast<int64_t>(prompt.size()) / 2);
  EXPECT_EQ(f.cond.shape(), (Shape{1, f.tokens.length, 64}));
  for (int64_t i = 0; i < f.hidden.numel(); ++i)
    ASSERT_TRUE(std::isfinite(f.hidden.data<float>()[i])) << i;
}

// The hub ships laion/larger_clap_general's weights as pytorch_model.bin and as model.safetensors.
// A folder with only model.safetensors converts (it used to be ignored), to exactly the bundle
// tensors of the .bin; with both, model.safetensors is the one used (clap_weights_file).
TEST(ClapText, SafetensorsWeightsConvertLikeTheBin) {
  if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  const std::string root = test::temp_dir();
  std::string log;
  ASSERT_EQ(test::run_command(python() + " " + test::source_path("scripts/tiny_models/clap.py") +
                                  " " + root + "/both --seed 4 --weights both 2>&1",
                              &log),
            0)
      << log;
  // Two more model directories, each holding one of the two weight files.
  const fs::path both = fs::path(root) / "both" / "clap";
  for (const char* only : {"pytorch_model.bin", "model.safetensors"}) {
    const fs::path dir = fs::path(root) / only / "clap";
    fs::create_directories(dir);
    for (const char* f : {"config.json", "vocab.json", "merges.txt", only})
      fs::copy_file(both / f, dir / f);
  }
  auto convert_dir = [](const fs::path& model_dir) {
    ConvertRequest req;
    req.model_dir = model_dir.string();
    req.include_dit = false;
    req.include_dac = false;
    req.output = test::temp_dir() + "/bundle.safetensors";
    const ConvertSummary s = convert_model(req);
    EXPECT_EQ(s.networks, std::vector<std::string>{"clap"});
    return std::make_pair(req.output, s.sources.count("clap") ? s.sources.at("clap").front() : "");
  };
  const auto [bin_bundle, bin_source] = convert_dir(fs::path(root) / "pytorch_model.bin");
  const auto [st_bundle, st_source] = convert_dir(fs::path(root) / "model.safetensors");
  const auto [both_bundle, both_source] = convert_dir(fs::path(root) / "both");
  EXPECT_EQ(bin_source, "clap/pytorch_model.bin");
  EXPECT_EQ(st_source, "clap/model.safetensors");
  EXPECT_EQ(both_source, "clap/model.safetensors");

  const SafetensorsFile a = SafetensorsFile::open(bin_bundle);
  for (const std::string& other : {st_bundle, both_bundle}) {
    const SafetensorsFile b = SafetensorsFile::open(other);
    ASSERT_EQ(a.entries().size(), b.entries().size()) << other;
    size_t clap_tensors = 0;
    for (const auto& e : a.entries()) {
      ASSERT_TRUE(b.has(e.name)) << e.name;
      const Tensor ta = a.tensor(e.name), tb = b.tensor(e.name);
      ASSERT_EQ(ta.shape(), tb.shape()) << e.name;
      ASSERT_EQ(ta.dtype(), tb.dtype()) << e.name;
      EXPECT_EQ(std::memcmp(ta.raw(), tb.raw(), ta.nbytes()), 0) << e.name << " differs";
      clap_tensors += e.name.rfind("clap.", 0) == 0;
    }
    EXPECT_GT(clap_tensors, 10u);
    EXPECT_EQ(a.metadata().at("config"), b.metadata().at("config"));
  }
}

// CPU time of one forward at the real size (RoBERTa-base, random weights) on a batch of two
// ~20-token prompts. Opt-in: FOLEY_CLAP_TIMING=1 (building the 500 MB bundle takes a while).
TEST(ClapText, FullSizeTiming) {
  // Opt-in, not a missing tool: skipped (also in CI) unless asked for.
  if (!std::getenv("FOLEY_CLAP_TIMING")) GTEST_SKIP() << "set FOLEY_CLAP_TIMING=1";
  ClapTextConfig cfg;  // the defaults are laion/larger_clap_general's text tower
  const int64_t h = cfg.hidden_size, inter = cfg.intermediate_size;
  SafetensorsWriter w;
  uint64_t seed = 1;
  auto add = [&](const std::string& name, const Shape& shape, float scale, float offset = 0.f) {
    const uint64_t s = seed++;
    w.add("clap." + name, DType::kF32, shape, [shape, scale, offset, s](void* dst) {
      std::mt19937_64 rng(s);
      std::uniform_real_distribution<float> u(-scale, scale);
      float* p = static_cast<float*>(dst);
      for (int64_t i = 0; i < shape.numel(); ++i) p[i] = offset + u(rng);
    });
  };
  add("embeddings.word_embeddings.weight", {cfg.vocab_size, h}, 0.5f);
  add("embeddings.position_embeddings.weight", {cfg.max_position_embeddings, h}, 0.5f);
  add("embeddings.token_type_embeddings.weight", {1, h}, 0.5f);
  add("embeddings.LayerNorm.weight", {h}, 0.1f, 1.f);
  add("embeddings.LayerNorm.bias", {h}, 0.1f);
  for (int i = 0; i < cfg.num_layers; ++i) {
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    add(p + "attention.qkv.weight", {3 * h, h}, 0.05f);
    add(p + "attention.qkv.bias", {3 * h}, 0.1f);
    add(p + "attention.output.dense.weight", {h, h}, 0.05f);
    add(p + "attention.output.dense.bias", {h}, 0.1f);
    add(p + "attention.output.LayerNorm.weight", {h}, 0.1f, 1.f);
    add(p + "attention.output.LayerNorm.bias", {h}, 0.1f);
    add(p + "intermediate.dense.weight", {inter, h}, 0.05f);
    add(p + "intermediate.dense.bias", {inter}, 0.1f);
    add(p + "output.dense.weight", {h, inter}, 0.03f);
    add(p + "output.dense.bias", {h}, 0.1f);
    add(p + "output.LayerNorm.weight", {h}, 0.1f, 1.f);
    add(p + "output.LayerNorm.bias", {h}, 0.1f);
  }
  w.set_metadata("format", "foley");
  w.set_metadata("format_version", std::to_string(kBundleFormatVersion));
  w.set_metadata("config", nlohmann::json{{"clap", cfg.to_json()}}.dump());
  const std::string path = test::temp_dir() + "/clap_full.safetensors";
  w.write(path);
  const auto weights = WeightStore::open(path);
  auto backend = make_cpu_backend();
  const ClapTextModel model(*weights, *backend);
  // [negative, prompt] = 8 and 22 tokens, padded to 22.
  const int64_t length = 22;
  std::vector<int64_t> ids(2 * length, 1), mask(2 * length, 0);
  for (int64_t i = 0; i < length; ++i) {
    const bool real0 = i < 8;
    ids[static_cast<size_t>(i)] = real0 ? 100 + i : 1;
    mask[static_cast<size_t>(i)] = real0;
    ids[static_cast<size_t>(length + i)] = 200 + i;
    mask[static_cast<size_t>(length + i)] = 1;
  }
  const Tensor tid(ids.data(), DType::kI64, {2, length}, DeviceKind::kCPU);
  const Tensor tmask(mask.data(), DType::kI64, {2, length}, DeviceKind::kCPU);
  Arena work(backend->block_allocator());
  model.reserve(work, 2, length);
  work.freeze();
  Tensor hidden = Tensor::empty({2, length, h}, DType::kF32);
  model.forward(tid, tmask, hidden, work);  // warm-up (page faults, oneDNN primitives)
  const int reps = 5;
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r) model.forward(tid, tmask, hidden, work);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
      reps;
  std::printf("CLAP text tower, full size, B=2 L=%lld: %.1f ms per forward (CPU)\n",
              static_cast<long long>(length), ms);
  for (int64_t i = 0; i < hidden.numel(); ++i) ASSERT_TRUE(std::isfinite(hidden.data<float>()[i]));
}

}  // namespace
}  // namespace foley
