// `foley inspect` and inspect_weights_file: exact listings against torch, the official-format
// golden checkpoints, and one-line errors (exit code 2) for damaged or hostile files.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>

#include "foley/weights.h"
#include "io/safetensors.h"
#include "io/torch_checkpoint.h"
#include "io_test_helpers.h"
#include "test_util.h"

namespace foley::test {
namespace {

struct CliResult {
  int rc;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

CliResult run_inspect(const std::string& file) {
  const std::string dir = temp_dir();
  CliResult r;
  r.rc = run_command(std::string(FOLEY_CLI) + " inspect '" + file + "' >" + dir + "/out 2>" + dir +
                     "/err");
  r.out = slurp(dir + "/out");
  r.err = slurp(dir + "/err");
  return r;
}

TEST(Inspect, CliMatchesTorchExactly) {
  const std::string dir = python_torch_files();
  if (dir.empty()) FOLEY_SKIP_MISSING("python3-torch not available");
  for (const std::string name : {"flat", "nested", "module"}) {
    SCOPED_TRACE(name);
    const std::string path = dir + "/" + name + ".pth";
    const CliResult r = run_inspect(path);
    EXPECT_EQ(r.rc, 0) << r.err;
    std::string expected = slurp(dir + "/" + name + ".expected");
    expected.replace(expected.find("@FILE@"), 6, path);
    EXPECT_EQ(r.out, expected);
    EXPECT_EQ(r.err, "");
  }
}

TEST(Inspect, CliListsSafetensorsInFileOrder) {
  const std::string path = temp_dir() + "/w.safetensors";
  SafetensorsWriter w;
  w.set_metadata("format", "foley");
  w.set_metadata("config", "{\"depth\": 2}");
  w.add("z.weight", Tensor::zeros({2, 3}, DType::kBF16));
  w.add("a.bias", Tensor::zeros({5}, DType::kF32));
  w.write(path);
  const CliResult r = run_inspect(path);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "# " + path + " (safetensors), 2 tensors\n" +
                       "z.weight\tBF16\t[2, 3]\t12\n"
                       "a.bias\tF32\t[5]\t20\n"
                       "# total 32 bytes\n"
                       "# metadata config = {\"depth\": 2}\n"
                       "# metadata format = foley\n");
}

TEST(Inspect, ApiRendersTorchExtraAsJson) {
  const Bytes pkl = Pickle()
                        .raw("}(")
                        .str("state_dict")
                        .raw("}(")
                        .str("w")
                        .tensor("FloatStorage", "0", 6, 0, {6}, {1})
                        .raw("u")
                        .str("metadata")
                        .raw("}(")
                        .str("rate")
                        .int1(7)
                        .raw("uu.")
                        .bytes();
  const std::string path = temp_dir() + "/nested.pth";
  write_bytes(path, torch_zip(pkl, float_bytes({1, 2, 3, 4, 5, 6})));
  const FileListing l = inspect_weights_file(path);
  EXPECT_EQ(l.format, "torch-zip");
  ASSERT_EQ(l.tensors.size(), 1u);
  EXPECT_EQ(l.tensors[0].name, "w");
  EXPECT_EQ(l.tensors[0].dtype, "F32");
  EXPECT_EQ(l.tensors[0].shape, (std::vector<int64_t>{6}));
  EXPECT_EQ(l.tensors[0].nbytes, 24u);
  EXPECT_EQ(l.metadata.at("metadata"), "{\"rate\":7}");
}

TEST(Inspect, CliErrorsAreOneLineWithExitCode2) {
  const std::string dir = temp_dir();
  const Bytes storage = float_bytes({1, 2, 3, 4, 5, 6});
  const Bytes good = torch_zip(one_tensor_pickle().bytes(), storage);
  std::vector<std::pair<std::string, Bytes>> files = {
      {"truncated.pth", Bytes(good.begin(), good.end() - 30)},
      {"os_system.pth",
       torch_zip(Pickle().global("os", "system").str("echo pwned").raw("\x85R.").bytes(), storage)},
      {"eval.pth",
       torch_zip(Pickle().global("builtins", "eval").str("1").raw("\x85R.").bytes(), storage)},
      {"compressed.pth", ZipBuilder().add("a/data.pkl", one_tensor_pickle().bytes(), 8).build()},
      {"text.bin", Bytes{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'}},
      {"empty.safetensors", Bytes{}},
      {"json.safetensors", Bytes{5, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'a', '"', ':'}},
  };
  std::vector<std::string> paths;
  for (const auto& [name, bytes] : files) {
    paths.push_back(dir + "/" + name);
    write_bytes(paths.back(), bytes);
  }
  paths.push_back(dir + "/missing.pth");
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    const CliResult r = run_inspect(path);
    EXPECT_EQ(r.rc, 2);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.rfind("foley: " + path + ": ", 0), 0u) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  }
  EXPECT_NE(run_inspect(paths[1]).err.find("foreign class os.system"), std::string::npos);
  EXPECT_NE(run_inspect(paths[2]).err.find("foreign class builtins.eval"), std::string::npos);
}

// The official-format tiny checkpoints: listing and value checksums against torch.
TEST(Inspect, GoldenCheckpointsMatchTorch) {
  const std::string root = golden_checkpoints();
  const std::vector<std::string> names = {"hunyuanvideo_foley.pth", "synchformer_state_dict.pth",
                                          "vae_128d_48k.pth", "clap/pytorch_model.bin",
                                          "siglip2/model.safetensors"};
  std::string args;
  for (const auto& n : names) {
    if (!std::ifstream(root + "/" + n)) FOLEY_SKIP_MISSING("golden checkpoints not present");
    args += " " + root + "/" + n;
  }
  if (!have_python_torch()) FOLEY_SKIP_MISSING("python3-torch not available");
  std::string out;
  ASSERT_EQ(run_command(std::string(FOLEY_PYTHON) + " " +
                            source_path("tests/python/make_torch_files.py") + " golden" + args,
                        &out),
            0);
  std::istringstream lines(out);
  std::string line;
  FileListing listing;
  std::function<Tensor(const std::string&)> tensor;
  std::shared_ptr<void> holder;
  size_t index = 0, checked = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("== ", 0) == 0) {
      EXPECT_EQ(index, listing.tensors.size()) << "tensors torch does not list";
      const std::string path = line.substr(3);
      listing = inspect_weights_file(path);
      index = 0;
      if (listing.format == "safetensors") {
        auto f = std::make_shared<SafetensorsFile>(SafetensorsFile::open(path));
        holder = f;
        tensor = [f](const std::string& n) { return f->tensor(n); };
      } else {
        auto f = std::make_shared<TorchCheckpoint>(TorchCheckpoint::open(path));
        holder = f;
        tensor = [f](const std::string& n) { return f->tensor(n); };
      }
      continue;
    }
    // name, dtype, shape, bytes, sum, sum_abs
    std::vector<std::string> cols;
    std::istringstream ls(line);
    for (std::string c; std::getline(ls, c, '\t');) cols.push_back(c);
    ASSERT_EQ(cols.size(), 6u) << line;
    ASSERT_LT(index, listing.tensors.size());
    const TensorListing& t = listing.tensors[index++];
    std::string shape = "[";
    for (size_t i = 0; i < t.shape.size(); ++i)
      shape += (i ? ", " : "") + std::to_string(t.shape[i]);
    shape += "]";
    EXPECT_EQ(t.name + "\t" + t.dtype + "\t" + shape + "\t" + std::to_string(t.nbytes),
              cols[0] + "\t" + cols[1] + "\t" + cols[2] + "\t" + cols[3]);
    const auto [sum, sum_abs] = checksums(tensor(t.name));
    const double ref_abs = std::stod(cols[5]);
    EXPECT_NEAR(sum_abs, ref_abs, 1e-9 * ref_abs + 1e-12) << t.name;
    EXPECT_NEAR(sum, std::stod(cols[4]), 1e-9 * ref_abs + 1e-12) << t.name;
    ++checked;
  }
  EXPECT_EQ(index, listing.tensors.size());
  EXPECT_GT(checked, 500u);
}

}  // namespace
}  // namespace foley::test
