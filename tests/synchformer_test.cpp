// Synchformer visual branch: the golden "synchformer" stage on the shared case, and the
// converter's strictness on edited copies of its checkpoint (written by torch).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "convert/convert.h"
#include "foley/convert.h"
#include "foley/error.h"
#include "foley/golden.h"
#include "test_util.h"

namespace foley {
namespace {

namespace fs = std::filesystem;

// The shared golden case, next to the checkout (../shared/golden relative to the repository root).
const std::string kTinyCase = test::source_path("../shared/golden/tiny-a");

std::string tiny_checkpoint() {
  return (fs::path(kTinyCase) / "checkpoints/synchformer_state_dict.pth").string();
}

TEST(Synchformer, GoldenStagePasses) {
  if (!fs::exists(tiny_checkpoint())) FOLEY_SKIP_MISSING(kTinyCase << " not present");
  GoldenOptions options;
  options.stages = {"synchformer"};
  const GoldenReport r = run_golden_case(kTinyCase, options);
  ASSERT_EQ(r.stages.size(), 1u);
  std::printf("%s", format_golden_stage(r.stages[0]).c_str());
  EXPECT_EQ(r.stages[0].status, GoldenStatus::kPass) << r.stages[0].message;
  EXPECT_EQ(r.stages[0].checks.size(), 2u);
}

TEST(Synchformer, ConvertModelDirTakesTheCheckpoint) {
  if (!fs::exists(tiny_checkpoint())) FOLEY_SKIP_MISSING(kTinyCase << " not present");
  ConvertRequest req;
  req.model_dir = (fs::path(kTinyCase) / "checkpoints").string();
  req.include_dit = false;
  req.include_dac = false;
  req.output = test::temp_dir() + "/bundle.safetensors";
  const ConvertSummary s = convert_model(req);
  EXPECT_NE(std::find(s.networks.begin(), s.networks.end(), "synchformer"), s.networks.end());
  const SafetensorsFile bundle = SafetensorsFile::open(req.output);
  EXPECT_TRUE(bundle.has("synchformer.patch_embed_3d.proj.weight"));
  EXPECT_FALSE(bundle.has("synchformer.patch_embed.proj.weight"));  // the unused 2-D one
}

// Converts a copy of the tiny checkpoint edited by the Python statement `edit` (on dict `sd`)
// and returns the converter's error message ("" if it converted).
std::string convert_edited(const std::string& edit) {
  const std::string dir = test::temp_dir();
  const std::string path = dir + "/synchformer_state_dict.pth";
  const std::string cmd = std::string(FOLEY_PYTHON) + " -c \"import torch; sd = torch.load('" +
                          tiny_checkpoint() + "'); " + edit + "; torch.save(sd, '" + path + "')\"";
  EXPECT_EQ(test::run_command(cmd), 0) << cmd;
  OfficialFiles files;
  files.synchformer_checkpoint = path;
  try {
    convert_bundle(files, ConvertOptions{}, dir + "/bundle.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Synchformer, ConverterRejectsMisShapedAndUnknownKeys) {
  if (!fs::exists(tiny_checkpoint())) FOLEY_SKIP_MISSING(kTinyCase << " not present");
  if (test::run_command(std::string(FOLEY_PYTHON) + " -c 'import torch' 2>/dev/null") != 0)
    FOLEY_SKIP_MISSING("python3-torch not available");
  EXPECT_EQ(convert_edited("pass"), "");
  // Unused branches are dropped, not reported.
  EXPECT_EQ(convert_edited("sd['transformer.x.weight'] = torch.zeros(2)"), "");
  const std::string shaped =
      convert_edited("sd['vfeat_extractor.blocks.1.mlp.fc1.weight'] = torch.zeros(7, 64)");
  EXPECT_NE(shaped.find("vfeat_extractor.blocks.1.mlp.fc1.weight"), std::string::npos) << shaped;
  const std::string unknown = convert_edited("sd['vfeat_extractor.extra'] = torch.zeros(3)");
  EXPECT_NE(unknown.find("unexpected tensor vfeat_extractor.extra"), std::string::npos) << unknown;
  const std::string missing =
      convert_edited("del sd['vfeat_extractor.blocks.0.timeattn.proj.bias']");
  EXPECT_NE(missing.find("missing tensor vfeat_extractor.blocks.0.timeattn.proj.bias"),
            std::string::npos)
      << missing;
  const std::string foreign = convert_edited("sd['something.else'] = torch.zeros(1)");
  EXPECT_NE(foreign.find("something.else"), std::string::npos) << foreign;
}

}  // namespace
}  // namespace foley
