// The XXL and XL DiT layouts, the bundle's variant and content hashes, and `foley models`:
// which DiT file the converter takes from a model directory (one of either layout, both only
// with a model size), a disagreeing config refused with the difference named, equal hashes for
// the shared encoders and DAC of two bundles with different DiTs, and the listing of a folder
// with good, foreign and damaged files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "backend/backend.h"
#include "convert/convert.h"
#include "foley/convert.h"
#include "foley/error.h"
#include "foley/weights.h"
#include "io/content_hash.h"
#include "io/safetensors.h"
#include "models/mmdit.h"
#include "models/weight_store.h"
#include "test_util.h"
#include "tiny_pipeline.h"

namespace foley {
namespace {

namespace fs = std::filesystem;
using test::run_command;
using test::source_path;

// ---- XXH64 -------------------------------------------------------------------------------------

TEST(ContentHash, Xxh64MatchesTheReferenceVectors) {
  // From the reference implementation (libxxhash 0.8.1, XXH64 with seed 0 unless given).
  EXPECT_EQ(xxh64("", 0), 0xef46db3751d8e999ULL);
  EXPECT_EQ(xxh64("a", 1), 0xd24ec4f1a98c6e5bULL);
  EXPECT_EQ(xxh64("abc", 3), 0x44bc2cf5ad770999ULL);
  EXPECT_EQ(xxh64("abc", 3, 1), 0xbea9ca8199328908ULL);
  const std::string s42 = "0123456789abcdef0123456789abcdef0123456789";
  EXPECT_EQ(xxh64(s42.data(), s42.size()), 0xa76190c3acf08a1cULL);
  std::string s1027;
  for (int r = 0; r < 4; ++r)
    for (int i = 0; i < 256; ++i) s1027 += static_cast<char>(i);
  s1027 += "xyz";
  EXPECT_EQ(xxh64(s1027.data(), s1027.size()), 0xe146cb31b65bc21aULL);
  // Streaming gives the same digest whatever the pieces.
  for (size_t piece : {1u, 3u, 7u, 31u, 32u, 33u, 100u}) {
    Xxh64 h;
    for (size_t i = 0; i < s1027.size(); i += piece)
      h.update(s1027.data() + i, std::min(piece, s1027.size() - i));
    EXPECT_EQ(h.digest(), 0xe146cb31b65bc21aULL) << piece;
  }
  EXPECT_EQ(content_hash_string(0xe146cb31b65bc21aULL), "xxh64:e146cb31b65bc21a");
}

TEST(ContentHash, WriterRecordsOneHashPerNetwork) {
  const std::string dir = test::temp_dir();
  const Tensor a = test::random_tensor({4, 8}, DType::kF32, 1);
  const Tensor b = test::random_tensor({16}, DType::kBF16, 2);
  auto write = [&](const std::string& path, const Tensor& second_b) {
    SafetensorsWriter w;
    w.set_metadata("format", "x");
    w.add("one.a", a);
    w.add("two.b", second_b);
    w.add("one.b", b);
    w.record_group_hashes("content_hashes");
    w.write(path);
    return SafetensorsFile::open(path);
  };
  const SafetensorsFile f1 = write(dir + "/1.safetensors", b);
  const SafetensorsFile f2 =
      write(dir + "/2.safetensors", test::random_tensor({16}, DType::kBF16, 3));
  const auto h1 = nlohmann::json::parse(f1.metadata().at("content_hashes"));
  const auto h2 = nlohmann::json::parse(f2.metadata().at("content_hashes"));
  ASSERT_EQ(h1.size(), 2u);
  // The recorded hash is the content hash of the file's tensors.
  EXPECT_EQ(h1["one"], network_content_hash(f1, "one"));
  EXPECT_EQ(h1["two"], network_content_hash(f1, "two"));
  EXPECT_EQ(h1["one"], h2["one"]);
  EXPECT_NE(h1["two"], h2["two"]);
  // By hand: u64 len · name · u64 len · dtype · u64 rank · dims · u64 nbytes · bytes, per tensor.
  Xxh64 h;
  for (const auto& [name, t] : {std::pair<std::string, Tensor>{"one.a", a}, {"one.b", b}}) {
    hash_tensor_header(h, name, t.dtype(), t.shape(), t.nbytes());
    h.update(t.raw(), t.nbytes());
  }
  EXPECT_EQ(h1["one"], content_hash_string(h.digest()));
  EXPECT_EQ(f1.metadata().at("format"), "x");
}

// ---- variants -----------------------------------------------------------------------------------

nlohmann::json official_config(int64_t hidden, int64_t heads, int64_t triple, int64_t single) {
  MmditConfig c;
  c.hidden = hidden;
  c.heads = heads;
  c.head_dim = hidden / heads;
  c.depth_triple = triple;
  c.depth_single = single;
  c.mlp_hidden = 4 * hidden;
  c.conv_mlp_hidden = c.sync_mlp_hidden = MmditConfig::conv_mlp_width(4 * hidden);
  return c.to_json();
}

TEST(BundleVariant, OfficialSizesExactly) {
  EXPECT_EQ(dit_variant(official_config(1536, 12, 18, 36)), "xxl");
  EXPECT_EQ(dit_variant(official_config(1408, 11, 12, 24)), "xl");
  EXPECT_EQ(dit_variant(official_config(1536, 12, 18, 35)), "custom");
  EXPECT_EQ(dit_variant(official_config(1408, 11, 24, 12)), "custom");
  nlohmann::json narrow = official_config(1536, 12, 18, 36);
  narrow["clip_dim"] = 64;
  EXPECT_EQ(dit_variant(narrow), "custom");
  EXPECT_EQ(dit_variant(official_config(128, 2, 2, 2)), "custom");
}

// ---- conversion from model directories ----------------------------------------------------------

class VariantConvertTest : public ::testing::Test {
 protected:
  // both/: the complete tiny model (XXL layout, hidden 128) plus an XL-layout DiT of other sizes
  // (hidden 64, 1+1 blocks); xl/: the DAC and an XL-layout DiT of the default tiny sizes.
  // The folders depend only on the generator scripts, so they are made once per version of
  // them (ctest runs every test in its own process; Python with torch is most of the time) and
  // renamed into place whole, so a half-made folder is never taken.
  static void SetUpTestSuite() {
    if (!test::have_python_torch()) return;
    out_ = new std::string(test::temp_dir());  // what the tests write: this process's own
    root_ = new std::string("/tmp/foley-variants-" + test::tiny_scripts_key());
    if (std::filesystem::exists(*root_ + "/xl/hunyuanvideo_foley_xl.pth")) return;
    const std::string tmp = test::temp_dir();
    const std::string py = std::string(FOLEY_PYTHON) + " ";
    std::string out;
    for (const std::string& cmd :
         {py + source_path("scripts/make_tiny_models.py") + " " + tmp + "/both --seed 3",
          py + source_path("scripts/tiny_models/dit.py") + " " + tmp +
              "/both --seed 4 --layout xl --hidden 64 --triple 1 --single 1",
          py + source_path("scripts/make_tiny_models.py") + " " + tmp +
              "/xl --seed 4 --dit-layout xl --no-encoders"}) {
      ASSERT_EQ(run_command(cmd + " 2>&1", &out), 0) << cmd << "\n" << out;
    }
    std::error_code ec;
    std::filesystem::rename(tmp, *root_, ec);  // losing a race to another process is fine
    if (ec && !std::filesystem::exists(*root_ + "/xl/hunyuanvideo_foley_xl.pth")) *root_ = tmp;
  }
  static void TearDownTestSuite() {
    delete root_;
    root_ = nullptr;
    delete out_;
    out_ = nullptr;
  }
  void SetUp() override {
    if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  }
  static std::string both() { return *root_ + "/both"; }
  static std::string xl() { return *root_ + "/xl"; }

  static ConvertSummary convert(const std::string& dir, const std::string& size,
                                const std::string& output) {
    ConvertRequest r;
    r.model_dir = dir;
    r.model_size = size;
    r.dtype = "f32";
    r.output = *out_ + "/" + output;
    return convert_model(r);
  }
  static std::string convert_error(const ConvertRequest& r) {
    try {
      convert_model(r);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  static std::string* root_;  // the generated model folders, shared by processes
  static std::string* out_;   // this process's outputs
};
std::string* VariantConvertTest::root_ = nullptr;
std::string* VariantConvertTest::out_ = nullptr;

TEST_F(VariantConvertTest, BothLayoutsNeedAModelSize) {
  ConvertRequest r;
  r.model_dir = both();
  r.output = *out_ + "/ambiguous.safetensors";
  const std::string err = convert_error(r);
  EXPECT_NE(err.find("hunyuanvideo_foley.pth"), std::string::npos) << err;
  EXPECT_NE(err.find("hunyuanvideo_foley_xl.pth"), std::string::npos) << err;
  EXPECT_NE(err.find("--model-size"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(r.output));
  // The CLI: exit 2, the same message.
  std::string out;
  EXPECT_EQ(run_command(std::string(FOLEY_CLI) + " convert --model-dir " + both() + " -o " +
                            r.output + " 2>&1",
                        &out),
            2)
      << out;
  EXPECT_NE(out.find("hunyuanvideo_foley_xl.pth"), std::string::npos) << out;
}

TEST_F(VariantConvertTest, ModelSizePicksTheFileAndHashesMatchForSharedNetworks) {
  const ConvertSummary big = convert(both(), "xxl", "xxl.safetensors");
  const ConvertSummary small = convert(both(), "xl", "xl.safetensors");
  EXPECT_EQ(big.sources.at("dit").at(0), "hunyuanvideo_foley.pth");
  EXPECT_EQ(big.sources.at("dit").at(1), "config.yaml");
  EXPECT_EQ(small.sources.at("dit").at(0), "hunyuanvideo_foley_xl.pth");
  EXPECT_EQ(small.sources.at("dit").at(1), "hunyuanvideo-foley-xl.yaml");
  EXPECT_EQ(big.variant, "custom");
  EXPECT_EQ(small.variant, "custom");
  ASSERT_EQ(big.networks.size(), 5u);
  ASSERT_EQ(small.networks.size(), 5u);

  auto big_store = WeightStore::open(*out_ + "/xxl.safetensors");
  auto small_store = WeightStore::open(*out_ + "/xl.safetensors");
  EXPECT_EQ(big_store->config("dit")["hidden_size"], 128);
  EXPECT_EQ(small_store->config("dit")["hidden_size"], 64);
  EXPECT_EQ(big_store->file().metadata().at("variant"), "custom");

  // Same encoders and DAC in both bundles: same hashes; different DiTs: different ones.
  for (const std::string net : {"dac", "clap", "siglip2", "synchformer"}) {
    ASSERT_TRUE(big.content_hashes.count(net)) << net;
    EXPECT_EQ(big.content_hashes.at(net), small.content_hashes.at(net)) << net;
    EXPECT_EQ(big.content_hashes.at(net).rfind("xxh64:", 0), 0u);
    EXPECT_EQ(big.content_hashes.at(net).size(), 6u + 16u);
  }
  EXPECT_NE(big.content_hashes.at("dit"), small.content_hashes.at("dit"));
  // Each recorded hash is that of the tensors in the file.
  for (const auto& [net, hash] : big.content_hashes)
    EXPECT_EQ(hash, network_content_hash(big_store->file(), net)) << net;

  // The public API: inspect_bundle and verify_bundle_hashes.
  const BundleInfo info = inspect_bundle(*out_ + "/xl.safetensors");
  EXPECT_EQ(info.variant, "custom");
  EXPECT_TRUE(info.has_dit);
  EXPECT_EQ(info.dit.hidden, 64);
  EXPECT_EQ(info.dit.heads, 2);
  EXPECT_EQ(info.dit.depth_double, 1);
  EXPECT_EQ(info.dit.depth_single, 1);
  EXPECT_EQ(info.dit.dtype, "F32");
  EXPECT_EQ(info.content_hashes, small.content_hashes);
  EXPECT_EQ(info.networks.size(), 5u);
  EXPECT_TRUE(info.supported_version);
  uint64_t sum = 0;
  for (const auto& [net, n] : info.parameters) sum += n;
  EXPECT_EQ(sum, info.total_parameters);
  EXPECT_GT(info.parameters.at("dit"), 0u);
  EXPECT_TRUE(verify_bundle_hashes(*out_ + "/xl.safetensors").empty());

  // One flipped byte in the DiT's data: the DiT (only) no longer matches its hash.
  const std::string flipped = *out_ + "/flipped.safetensors";
  fs::copy_file(*out_ + "/xl.safetensors", flipped, fs::copy_options::overwrite_existing);
  const SafetensorsEntry& e = small_store->file().entry("dit.final_layer.linear.weight");
  {
    std::fstream f(flipped, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(small_store->file().data_offset() + e.begin + 5);
    f.seekg(at);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(at);
    f.write(&c, 1);
  }
  EXPECT_EQ(verify_bundle_hashes(flipped), std::vector<std::string>{"dit"});
}

TEST_F(VariantConvertTest, OneLayoutIsTakenWithoutAModelSize) {
  const ConvertSummary s = convert(xl(), "", "only_xl.safetensors");
  EXPECT_EQ(s.sources.at("dit").at(0), "hunyuanvideo_foley_xl.pth");
  EXPECT_EQ(s.variant, "custom");
  // The default tiny directory (XXL layout) as before.
  ConvertRequest r;
  r.model_dir = both();
  r.include_dit = false;
  r.output = *out_ + "/no_dit.safetensors";
  const ConvertSummary encoders = convert_model(r);
  EXPECT_EQ(encoders.variant, "");
  EXPECT_EQ(encoders.content_hashes.count("dit"), 0u);
  EXPECT_EQ(inspect_bundle(r.output).variant, "");
  EXPECT_FALSE(inspect_bundle(r.output).has_dit);
  // A model size the directory does not have: refused, naming what it holds.
  r.model_dir = xl();
  r.include_dit = true;
  r.model_size = "xxl";
  r.output = *out_ + "/wrong_size.safetensors";
  const std::string err = convert_error(r);
  EXPECT_NE(err.find("no hunyuanvideo_foley.pth"), std::string::npos) << err;
  EXPECT_NE(err.find("hunyuanvideo_foley_xl.pth, the XL DiT"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(r.output));
}

TEST_F(VariantConvertTest, DisagreeingConfigIsRefusedNamingTheDifference) {
  // The XL-layout checkpoint (hidden 64, 1+1 blocks) with the XXL-layout config (128, 2+2).
  ConvertRequest r;
  r.dit_checkpoint = both() + "/hunyuanvideo_foley_xl.pth";
  r.dit_config = both() + "/config.yaml";
  r.output = *out_ + "/disagree.safetensors";
  std::string err = convert_error(r);
  EXPECT_NE(err.find("hidden_size is 128 but the tensors say 64"), std::string::npos) << err;
  EXPECT_NE(err.find("depth_triple_blocks is 2 but the tensors say 1"), std::string::npos) << err;
  EXPECT_NE(err.find("config.yaml"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(r.output));
  // In a model directory: the XL checkpoint beside a config of other sizes under the XL name.
  const std::string dir = *out_ + "/mixed";
  fs::create_directories(dir);
  fs::copy_file(both() + "/hunyuanvideo_foley_xl.pth", dir + "/hunyuanvideo_foley_xl.pth",
                fs::copy_options::overwrite_existing);
  fs::copy_file(both() + "/config.yaml", dir + "/hunyuanvideo-foley-xl.yaml",
                fs::copy_options::overwrite_existing);
  ConvertRequest d;
  d.model_dir = dir;
  d.output = *out_ + "/mixed.safetensors";
  err = convert_error(d);
  EXPECT_NE(err.find("hunyuanvideo-foley-xl.yaml"), std::string::npos) << err;
  EXPECT_NE(err.find("hidden_size is 128 but the tensors say 64"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(d.output));
  // The explicit checkpoint picks its config by name: without one beside it, that is said.
  fs::remove(dir + "/hunyuanvideo-foley-xl.yaml");
  ConvertRequest n;
  n.model_dir = dir;
  n.dit_checkpoint = dir + "/hunyuanvideo_foley_xl.pth";
  n.output = *out_ + "/noconfig.safetensors";
  err = convert_error(n);
  EXPECT_NE(err.find("hunyuanvideo-foley-xl.yaml"), std::string::npos) << err;
}

// A bundle written before variants and hashes were recorded still loads and inspects.
TEST_F(VariantConvertTest, BundleWithoutVariantOrHashes) {
  const std::string path = *out_ + "/legacy.safetensors";
  {
    const std::string src = *out_ + "/xl.safetensors";
    if (!fs::exists(src)) convert(both(), "xl", "xl.safetensors");
    const SafetensorsFile f = SafetensorsFile::open(src);
    SafetensorsWriter w;
    for (const auto& [k, v] : f.metadata())
      if (k != "variant" && k != "content_hashes") w.set_metadata(k, v);
    for (const auto& e : f.entries()) w.add(e.name, f.tensor(e.name));
    w.write(path);
  }
  EXPECT_EQ(SafetensorsFile::open(path).metadata().count("variant"), 0u);
  auto store = WeightStore::open(path);
  EXPECT_TRUE(store->has_network("dit"));
  auto backend = make_cpu_backend();
  Mmdit dit(*store, *backend);  // strict: every tensor used with its exact shape
  const BundleInfo info = inspect_bundle(path);
  EXPECT_EQ(info.variant, "unknown");
  EXPECT_TRUE(info.content_hashes.empty());
  EXPECT_TRUE(verify_bundle_hashes(path).empty());
}

// `foley models DIR` (table and --json, --verify) and `foley inspect` on bundles.
TEST_F(VariantConvertTest, ModelsCliListsBundlesAndBadFiles) {
  const std::string dir = *out_ + "/listing";
  fs::create_directories(dir + "/sub.safetensors");  // a folder: not listed
  convert(both(), "xxl", "listing/tiny-xxl.safetensors");
  convert(both(), "xl", "listing/tiny-xl.safetensors");
  std::ofstream(dir + "/notes.txt") << "not listed";
  std::ofstream(dir + "/text.safetensors") << "hello, not a weight file";
  {
    SafetensorsWriter w;  // a safetensors file, but not foley's
    w.add("w", test::random_tensor({2}, DType::kF32, 1));
    w.write(dir + "/foreign.safetensors");
  }
  const std::string good = dir + "/tiny-xl.safetensors";
  fs::copy_file(good, dir + "/truncated.safetensors");
  fs::resize_file(dir + "/truncated.safetensors", fs::file_size(good) / 2);
  fs::copy_file(good, dir + "/zz-flipped.safetensors");
  {
    const SafetensorsFile f = SafetensorsFile::open(good);
    std::fstream io(dir + "/zz-flipped.safetensors",
                    std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(
        static_cast<std::streamoff>(f.data_offset() + f.entry("dac.post_quant_conv.bias").begin));
    io.write("\x7f\x7f\x7f\x7f", 4);
  }

  std::string out;
  ASSERT_EQ(run_command(std::string(FOLEY_CLI) + " models " + dir + " 2>&1", &out), 0) << out;
  auto line_of = [&](const std::string& name) {
    const size_t at = out.find("\n" + name + " ");
    return at == std::string::npos ? std::string()
                                   : out.substr(at + 1, out.find('\n', at + 1) - at - 1);
  };
  EXPECT_EQ(out.rfind("NAME ", 0), 0u) << out;
  const std::string xxl = line_of("tiny-xxl.safetensors");
  EXPECT_NE(xxl.find(" custom "), std::string::npos) << out;
  EXPECT_NE(xxl.find("hidden 128, 2 heads, 2+2 blocks, F32"), std::string::npos) << out;
  EXPECT_NE(xxl.find("dit,dac,clap,siglip2,synchformer"), std::string::npos) << out;
  EXPECT_NE(line_of("tiny-xl.safetensors").find("hidden 64, 2 heads, 1+1 blocks"),
            std::string::npos)
      << out;
  EXPECT_NE(line_of("foreign.safetensors").find("not a foley bundle"), std::string::npos) << out;
  EXPECT_NE(line_of("text.safetensors").find("error: "), std::string::npos) << out;
  EXPECT_NE(line_of("truncated.safetensors").find("error: "), std::string::npos) << out;
  EXPECT_EQ(out.find("sub.safetensors"), std::string::npos) << out;
  EXPECT_EQ(out.find("notes.txt"), std::string::npos) << out;
  // The header is intact, so only --verify sees the changed bytes.
  EXPECT_EQ(line_of("zz-flipped.safetensors").find("DAMAGED"), std::string::npos) << out;
  ASSERT_EQ(run_command(std::string(FOLEY_CLI) + " models --verify " + dir + " 2>&1", &out), 0)
      << out;
  EXPECT_NE(line_of("zz-flipped.safetensors").find("DAMAGED: dac"), std::string::npos) << out;
  EXPECT_NE(line_of("tiny-xl.safetensors").find("verified"), std::string::npos) << out;

  ASSERT_EQ(run_command(std::string(FOLEY_CLI) + " models --json --verify " + dir, &out), 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  const auto& bundles = j.at("bundles");
  ASSERT_EQ(bundles.size(), 6u) << out;
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& b : bundles) by_name[b.at("name").get<std::string>()] = b;
  const nlohmann::json& x = by_name.at("tiny-xxl.safetensors");
  EXPECT_TRUE(x.at("ok").get<bool>());
  EXPECT_EQ(x.at("variant"), "custom");
  EXPECT_EQ(x.at("format_version"), std::to_string(kBundleFormatVersion));
  EXPECT_EQ(x.at("dit").at("hidden_size"), 128);
  EXPECT_EQ(x.at("dit").at("depth_double_blocks"), 2);
  EXPECT_EQ(x.at("networks").size(), 5u);
  EXPECT_EQ(x.at("bytes"), fs::file_size(dir + "/tiny-xxl.safetensors"));
  EXPECT_GT(x.at("parameters").get<uint64_t>(), 0u);
  const nlohmann::json& l = by_name.at("tiny-xl.safetensors");
  EXPECT_EQ(x.at("content_hashes").at("clap"), l.at("content_hashes").at("clap"));
  EXPECT_NE(x.at("content_hashes").at("dit"), l.at("content_hashes").at("dit"));
  for (const std::string bad :
       {"foreign.safetensors", "text.safetensors", "truncated.safetensors"}) {
    EXPECT_FALSE(by_name.at(bad).at("ok").get<bool>()) << bad;
    EXPECT_FALSE(by_name.at(bad).at("error").get<std::string>().empty()) << bad;
  }
  EXPECT_FALSE(by_name.at("zz-flipped.safetensors").at("ok").get<bool>());
  EXPECT_EQ(by_name.at("zz-flipped.safetensors").at("damaged_networks"),
            nlohmann::json::array({"dac"}));

  // A missing folder: exit 2, one line.
  EXPECT_EQ(run_command(std::string(FOLEY_CLI) + " models " + dir + "/nope 2>&1", &out), 2) << out;
  // `foley inspect` on a bundle shows its variant and hashes.
  ASSERT_EQ(run_command(std::string(FOLEY_CLI) + " inspect --no-metadata " + good, &out), 0);
  EXPECT_NE(out.find("# bundle variant custom: DiT hidden 64, 2 heads, 1+1 blocks"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("# bundle dit: "), std::string::npos) << out;
  EXPECT_NE(out.find("content hash " + l.at("content_hashes").at("dit").get<std::string>()),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace foley
