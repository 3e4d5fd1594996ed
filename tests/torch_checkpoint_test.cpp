// TorchCheckpoint: torch.save files from python3-torch, hand-built zips and pickles, and damage.
#include "io/torch_checkpoint.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "io_test_helpers.h"
#include "test_util.h"

namespace foley::test {
namespace {

using namespace std::string_literals;  // pickles contain NUL bytes

TorchCheckpoint parse_bytes(const Bytes& b, bool verify_crc = true) {
  TorchCheckpoint::Options options;
  options.verify_pickle_crc = verify_crc;
  return TorchCheckpoint::parse(b.data(), b.size(), nullptr, "mem", options);
}

void expect_torch_invalid(const Bytes& b, const std::string& needle) {
  expect_invalid([&] { parse_bytes(b); }, "mem", needle);
}

// Every tensor of `path` against the contiguous copies torch wrote next to it.
void expect_matches_values(const TorchCheckpoint& ckpt, const std::string& values_path) {
  const SafetensorsFile values = SafetensorsFile::open(values_path);
  ASSERT_EQ(ckpt.entries().size(), values.entries().size());
  for (size_t i = 0; i < ckpt.entries().size(); ++i) {
    const TorchTensorEntry& e = ckpt.entries()[i];
    SCOPED_TRACE(e.name);
    ASSERT_TRUE(values.has(e.name));
    EXPECT_EQ(e.dtype, values.entry(e.name).dtype);
    EXPECT_EQ(e.shape, values.entry(e.name).shape);
    EXPECT_EQ(e.nbytes, values.entry(e.name).end - values.entry(e.name).begin);
    EXPECT_TRUE(same_elements(ckpt.tensor(e.name), values.tensor(e.name)));
  }
}

class TorchFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = python_torch_files();
    if (dir_.empty()) FOLEY_SKIP_MISSING("python3-torch not available");
  }
  std::string dir_;
};

TEST_F(TorchFiles, FlatStateDictMatchesTorch) {
  const TorchCheckpoint ckpt = TorchCheckpoint::open(dir_ + "/flat.pth");
  expect_matches_values(ckpt, dir_ + "/flat.values.safetensors");
  EXPECT_EQ(ckpt.entries().front().name, "w_bf16");
  EXPECT_EQ(ckpt.entry("w_bf16").dtype, DType::kBF16);
  EXPECT_EQ(ckpt.entry("mask_bool").dtype, DType::kBool);
  EXPECT_EQ(ckpt.entry("transposed").strides, (std::vector<int64_t>{1, 7}));
  EXPECT_FALSE(ckpt.tensor("transposed").is_contiguous());
  EXPECT_EQ(ckpt.entry("expanded").strides[1], 0);
  EXPECT_EQ(ckpt.entry("param").dtype, DType::kBF16);  // nn.Parameter: _rebuild_parameter
  EXPECT_EQ(ckpt.entry("scalar").shape.rank(), 0);
  EXPECT_EQ(ckpt.entry("empty").nbytes, 0u);
  // Two views of one storage, at different element offsets.
  EXPECT_EQ(ckpt.entry("view_a").storage_key, ckpt.entry("view_b").storage_key);
  EXPECT_EQ(ckpt.entry("view_a").storage_offset, 4);
  EXPECT_EQ(ckpt.entry("view_b").storage_offset, 30);
  EXPECT_TRUE(ckpt.extra().empty());
}

TEST_F(TorchFiles, TensorsKeepTheMappingAlive) {
  Tensor t;
  {
    const TorchCheckpoint ckpt = TorchCheckpoint::open(dir_ + "/flat.pth");
    t = ckpt.tensor("w_f32");
  }
  const SafetensorsFile values = SafetensorsFile::open(dir_ + "/flat.values.safetensors");
  EXPECT_TRUE(same_elements(t, values.tensor("w_f32")));
}

TEST_F(TorchFiles, NestedStateDictAndMetadata) {
  const TorchCheckpoint ckpt = TorchCheckpoint::open(dir_ + "/nested.pth");
  expect_matches_values(ckpt, dir_ + "/nested.values.safetensors");
  std::ifstream f(dir_ + "/nested.extra.json");
  EXPECT_EQ(ckpt.extra(), nlohmann::json::parse(f));
  EXPECT_EQ(ckpt.extra()["metadata"]["kwargs"]["sample_rate"], 48000);
}

TEST_F(TorchFiles, ModuleStateDictWithMetadataAttribute) {
  const TorchCheckpoint ckpt = TorchCheckpoint::open(dir_ + "/module.pth");
  expect_matches_values(ckpt, dir_ + "/module.values.safetensors");
  EXPECT_EQ(ckpt.entries().size(), 4u);
  EXPECT_TRUE(ckpt.extra().empty());
}

TEST_F(TorchFiles, LegacyFormatIsRefused) {
  const std::string path = dir_ + "/legacy.pth";
  expect_invalid([&] { TorchCheckpoint::open(path); }, path, "legacy (non-zip) torch.save format");
}

TEST_F(TorchFiles, Zip64BeyondFourGiB) {
  // A sparse file: the storages start past 4 GiB, so offsets need ZIP64 extra fields.
  const std::string path = temp_dir() + "/zip64.pth";
  const std::string cmd = std::string(FOLEY_PYTHON) + " " +
                          source_path("tests/python/make_torch_files.py") + " zip64 " + dir_ +
                          "/flat.pth " + path + " 2>&1";
  std::string out;
  if (run_command(cmd, &out) != 0) {
    std::remove(path.c_str());
    FOLEY_SKIP_MISSING("cannot make a sparse > 4 GiB file here: " << out);
  }
  {
    const TorchCheckpoint ckpt = TorchCheckpoint::open(path);
    expect_matches_values(ckpt, dir_ + "/flat.values.safetensors");
  }
  std::remove(path.c_str());
}

TEST_F(TorchFiles, EveryTruncationFails) {
  const Bytes full = read_bytes(dir_ + "/flat.pth");
  for (size_t n = 0; n < full.size(); ++n) {
    const Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    try {
      parse_bytes(cut);
      ADD_FAILURE() << "a " << n << "-byte prefix parsed";
    } catch (const Error& e) {
      ASSERT_EQ(e.kind(), ErrorKind::kInvalidInput) << n << ": " << e.what();
    }
  }
}

TEST_F(TorchFiles, ByteDamageNeverCrashes) {
  // Each byte inverted in turn: the parse either fails cleanly or yields in-bounds views.
  const Bytes full = read_bytes(dir_ + "/flat.pth");
  for (bool crc : {true, false}) {
    for (size_t i = 0; i < full.size(); ++i) {
      Bytes b = full;
      b[i] ^= 0xff;
      try {
        const TorchCheckpoint ckpt = parse_bytes(b, crc);
        for (const auto& e : ckpt.entries()) checksums(ckpt.tensor(e.name));
      } catch (const Error& e) {
        ASSERT_EQ(e.kind(), ErrorKind::kInvalidInput) << i << ": " << e.what();
      }
    }
  }
}

TEST(TorchCheckpoint, HandBuiltArchive) {
  const Bytes storage = float_bytes({1, 2, 3, 4, 5, 6});
  for (bool zip64 : {false, true}) {
    const Bytes zip = torch_zip(one_tensor_pickle().bytes(), storage, zip64);  // outlives views
    const TorchCheckpoint ckpt = parse_bytes(zip);
    ASSERT_EQ(ckpt.entries().size(), 1u);
    const Tensor t = ckpt.tensor("w");
    EXPECT_EQ(t.shape(), Shape({2, 3}));
    EXPECT_EQ(t.data<float>()[5], 6.f);
  }
}

TEST(TorchCheckpoint, HostilePicklesAreRefused) {
  const Bytes storage = float_bytes({1, 2, 3, 4, 5, 6});
  const auto run = [&](const Pickle& p, const std::string& needle) {
    SCOPED_TRACE(needle);
    expect_torch_invalid(torch_zip(p.bytes(), storage), needle);
  };
  run(Pickle().global("os", "system").str("echo pwned").raw("\x85R."),
      "pickle refers to foreign class os.system");
  run(Pickle().global("builtins", "eval").str("1").raw("\x85R."),
      "pickle refers to foreign class builtins.eval");
  run(Pickle().raw("\x8c\x05posix\x8c\x06system\x93."), "foreign class posix.system");
  run(Pickle().global("torch", "ComplexFloatStorage").raw("."),
      "foreign class torch.ComplexFloatStorage");
  run(Pickle().raw("(ios\nsystem\n."), "INST opcode");
  run(Pickle().raw("(o."), "OBJ opcode");
  run(Pickle().raw("\x81."), "NEWOBJ opcode");
  run(Pickle().raw("\xff."), "unsupported opcode 0xff");
  run(Pickle().global("torch", "FloatStorage").raw(")R."), "not callable");
  run(Pickle().raw("}}b."), "state of something other than an OrderedDict");
  run(Pickle().raw("}(").str("w").tensor("FloatStorage", "0", 6, 2, {2, 3}, {3, 1}).raw("u."),
      "reaches past its storage");
  run(Pickle().raw("}(").str("w").tensor("FloatStorage", "0", 8, 0, {2, 3}, {3, 1}).raw("u."),
      "holds 24 bytes, the pickle says 32");
  run(Pickle().raw("}(").str("w").tensor("FloatStorage", "9", 6, 0, {6}, {1}).raw("u."),
      "storage 9 is missing");
  run(Pickle()
          .raw("}(")
          .str("w")
          .tensor("FloatStorage", "0", 6, 0, {1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1})
          .raw("u."),
      "rank 7");
  run(Pickle()
          .raw("}(")
          .str("w")
          .global("torch._utils", "_rebuild_tensor_v2")
          .raw("(")
          .storage("FloatStorage", "0", 6)
          .int1(0)
          .raw("(")
          .long1(int64_t{1} << 40)
          .long1(int64_t{1} << 40)
          .raw("t(K\x00K\x00t\x89}tRu."s),
      "too many elements");
  run(Pickle().global("torch._utils", "_rebuild_tensor_v2").raw("(K\x01tR."),
      "_rebuild_tensor_v2 with 1 arguments");
  run(Pickle().raw("}(").str("w"), "truncated");
  run(Pickle().raw("}h\x05."), "missing memo entry 5");
  run(Pickle().raw(std::string(5000, '(')), "nests MARKs too deeply");
  run(Pickle().raw("\x8a\x09").raw(std::string(8, '\0')).raw("\x01."), "wider than 64 bits");
  run(Pickle().raw("}(").str("a").raw("u."), "odd number");
  run(Pickle().raw("X\x01\x00\x00\x00\xff."s), "not UTF-8");
  run(Pickle().raw("]."), "does not hold a dict");
  run(Pickle().raw("t."), "no MARK");
  run(Pickle().raw("0."), "unsupported opcode 0x30");
  // A list that contains itself, and a DAG that doubles 40 times: rendering stays bounded.
  run(Pickle().raw("}(").str("a").raw("]q\x00h\x00"
                                      "au."s),
      "nests values too deeply");
  Pickle dag;
  dag.raw("}(").str("a").raw("]");
  for (int i = 0; i < 40; ++i) dag.raw("q\x00h\x00\x86"s);  // x -> (x, x)
  run(dag.raw("u."), "too many values");
}

TEST(TorchCheckpoint, DamagedArchivesAreRefused) {
  const Bytes pkl = one_tensor_pickle().bytes();
  const Bytes storage = float_bytes({1, 2, 3, 4, 5, 6});
  const Bytes good = torch_zip(pkl, storage);
  ASSERT_NO_THROW(parse_bytes(good));

  expect_torch_invalid(Bytes{'h', 'e', 'l', 'l', 'o'}, "not a torch.save zip checkpoint");
  expect_torch_invalid(ZipBuilder().add("a/data.pkl", pkl, 8).add("a/data/0", storage).build(),
                       "is compressed (method 8)");
  expect_torch_invalid(ZipBuilder().add("a/other", pkl).build(), "without <name>/data.pkl");
  expect_torch_invalid(ZipBuilder().add("a/data.pkl", pkl).add("b/data.pkl", pkl).build(),
                       "more than one data.pkl");
  expect_torch_invalid(
      ZipBuilder().add("a/data.pkl", pkl).add("a/byteorder", std::string("big")).build(),
      "byte order 'big'");
  expect_torch_invalid(ZipBuilder().add("a/data.pkl", pkl).add("a/data.pkl", pkl).build(),
                       "duplicate zip entry a/data.pkl");

  Bytes b = good;
  b[50] ^= 1;  // inside data.pkl, which starts after the 30-byte header and 16-byte name
  expect_torch_invalid(b, "CRC");
  // The end record is the last 22 bytes; the central directory precedes it.
  const size_t end = good.size() - 22;
  const uint32_t cd = io::load_le32(good.data() + end + 16);
  b = good;
  b[cd] = 'X';
  expect_torch_invalid(b, "bad central directory entry signature");
  b = good;
  b[end + 16] = 0xf0;  // directory offset out of bounds
  expect_torch_invalid(b, "central directory out of bounds");
  b = good;
  b[end] = 'X';
  expect_torch_invalid(b, "no end of central directory record");
  b = good;
  b[cd + 42] = 3;  // first entry's local header offset now points into nothing sensible
  expect_torch_invalid(b, "archive/data.pkl");
  b = good;
  b[end + 8] = b[end + 10] = 9;  // more entries than the directory can hold
  expect_torch_invalid(b, "central directory too small");

  // ZIP64: a locator whose record offset is out of bounds, and a truncated extra field.
  const Bytes z = torch_zip(pkl, storage, true);
  b = z;
  b[z.size() - 22 - 20 + 15] = 0xff;
  expect_torch_invalid(b, "ZIP64 end record offset out of bounds");
  const size_t cd64 = io::load_le64(z.data() + z.size() - 22 - 20 - 56 + 48);
  b = z;
  b[cd64 + 46 + 16 + 2] = 8;  // the first entry's ZIP64 field claims 8 bytes, not 24
  expect_torch_invalid(b, "ZIP64 extra field too short");
}

TEST(TorchCheckpoint, EveryTruncationOfAHandBuiltFileFails) {
  for (bool zip64 : {false, true}) {
    const Bytes full =
        torch_zip(one_tensor_pickle().bytes(), float_bytes({1, 2, 3, 4, 5, 6}), zip64);
    for (size_t n = 0; n < full.size(); ++n)
      expect_torch_invalid(Bytes(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n)), "");
  }
}

}  // namespace
}  // namespace foley::test
