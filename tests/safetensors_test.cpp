// SafetensorsFile / SafetensorsWriter: round trips, alignment, atomic writes, interoperability
// with a plain struct+json reader in Python, and strict rejection of damaged headers.
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <stdexcept>

#include "io/bytes.h"
#include "io/torch_checkpoint.h"
#include "io_test_helpers.h"
#include "test_util.h"

namespace foley::test {
namespace {

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// A safetensors image from header text and a zero blob of `blob` bytes.
Bytes st_image(const std::string& header, size_t blob) {
  Bytes b;
  put64(b, header.size());
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + blob);
  return b;
}

SafetensorsFile parse_bytes(const Bytes& b) {
  return SafetensorsFile::parse(b.data(), b.size(), nullptr, "mem");
}

Tensor int_tensor(const Shape& shape, DType dtype, int seed) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* p = static_cast<uint8_t*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(i * 31 + seed);
  if (dtype == DType::kBool)
    for (size_t i = 0; i < t.nbytes(); ++i) p[i] &= 1;
  return t;
}

// The tensors of the round-trip file, in the order they are added.
std::vector<std::pair<std::string, Tensor>> sample_tensors() {
  Tensor wide = random_tensor({4, 6}, DType::kF32, 5);
  return {
      {"blocks.0.w_bf16", random_tensor({3, 5}, DType::kBF16, 1)},
      {"blocks.0.w_f16", random_tensor({7}, DType::kF16, 2)},
      {"f32", random_tensor({2, 3, 4}, DType::kF32, 3)},
      {"i64", int_tensor({5}, DType::kI64, 4)},
      {"mask", int_tensor({3}, DType::kBool, 5)},
      {"bytes", int_tensor({300}, DType::kU8, 6)},
      {"scalar", int_tensor({}, DType::kF64, 7)},
      {"empty", Tensor::empty({0, 4}, DType::kF32)},
      {"transposed", wide.transpose(0, 1)},  // strided source, stored contiguous
  };
}

std::string write_sample(const std::string& dir) {
  SafetensorsWriter w;
  w.set_metadata("format", "foley");
  w.set_metadata("format_version", "1");
  w.set_metadata("config", "{\"name\": \"h\xc3\xa9llo\"}");
  for (const auto& [name, t] : sample_tensors()) w.add(name, t);
  const std::string path = dir + "/sample.safetensors";
  w.write(path);
  return path;
}

TEST(Safetensors, WriterRoundTripIsExactAndAligned) {
  const std::string dir = temp_dir();
  const std::string path = write_sample(dir);
  EXPECT_FALSE(exists(path + ".tmp"));
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.data_offset() % SafetensorsWriter::kBlobAlignment, 0u);
  const auto tensors = sample_tensors();
  ASSERT_EQ(f.entries().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    const SafetensorsEntry& e = f.entries()[i];
    SCOPED_TRACE(name);
    EXPECT_EQ(e.name, name);  // file order is add order
    EXPECT_EQ(e.dtype, t.dtype());
    EXPECT_EQ(e.shape, t.shape());
    EXPECT_EQ(e.begin % SafetensorsWriter::kTensorAlignment, 0u);
    const Tensor r = f.tensor(name);
    EXPECT_TRUE(same_elements(t, r.reshape(t.shape())));
    if (r.numel() > 0) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(r.raw()) % 256, 0u);
    }
  }
  EXPECT_EQ(f.metadata().at("format"), "foley");
  EXPECT_EQ(f.metadata().at("format_version"), "1");
  EXPECT_EQ(f.metadata().at("config"), "{\"name\": \"h\xc3\xa9llo\"}");
}

TEST(Safetensors, FillCallbacksStreamInOrder) {
  SafetensorsWriter w;
  std::vector<std::string> calls;
  const Shape big{3, 1000, 1000};  // 3 MB: larger than any stdio buffer
  for (std::string name : {"c", "a", "b"})
    w.add(name, DType::kU8, name == "a" ? big : Shape{17}, [&calls, name](void* dst) {
      calls.push_back(name);
      const size_t n = name == "a" ? 3000000 : 17;
      for (size_t i = 0; i < n; ++i) static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(i % 251);
    });
  const std::string path = temp_dir() + "/stream.safetensors";
  w.write(path);
  EXPECT_EQ(calls, (std::vector<std::string>{"c", "a", "b"}));
  const SafetensorsFile f = SafetensorsFile::open(path);
  const Tensor a = f.tensor("a");
  EXPECT_EQ(a.data<uint8_t>()[2999999], 2999999 % 251);
  EXPECT_EQ(f.entries()[1].name, "a");
}

TEST(Safetensors, FailedWriteLeavesOldFileAndNoTemp) {
  const std::string path = temp_dir() + "/atomic.safetensors";
  write_bytes(path, Bytes{'o', 'l', 'd'});
  SafetensorsWriter w;
  w.add("x", DType::kF32, {4}, [](void*) { throw std::runtime_error("source went away"); });
  EXPECT_THROW(w.write(path), std::runtime_error);
  EXPECT_EQ(read_bytes(path), (Bytes{'o', 'l', 'd'}));
  EXPECT_FALSE(exists(path + ".tmp"));
}

TEST(Safetensors, WriterRejectsBadRequests) {
  SafetensorsWriter w;
  w.add("x", DType::kF32, {1}, [](void*) {});
  EXPECT_THROW(w.add("x", DType::kF32, {1}, [](void*) {}), Error);
  EXPECT_THROW(w.add("__metadata__", DType::kF32, {1}, [](void*) {}), Error);
  try {
    w.write("/nonexistent-dir/x.safetensors");
    ADD_FAILURE() << "wrote into a missing directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
  }
}

TEST(Safetensors, PythonReadsWhatWeWrite) {
  if (!have_python_torch()) FOLEY_SKIP_MISSING("python3-torch not available");
  const std::string dir = temp_dir();
  const std::string path = write_sample(dir);
  std::string out;
  const std::string cmd = std::string(FOLEY_PYTHON) + " " +
                          source_path("tests/python/make_torch_files.py") + " check_safetensors " +
                          path + " " + dir + "/back.pth 2>&1";
  ASSERT_EQ(run_command(cmd, &out), 0) << out;
  EXPECT_EQ(out.rfind("ok 9 ", 0), 0u) << out;
  EXPECT_NE(out.find("\"format\": \"foley\""), std::string::npos) << out;
  // torch re-saved what it read; every tensor must come back bit-identical.
  const TorchCheckpoint back = TorchCheckpoint::open(dir + "/back.pth");
  for (const auto& [name, t] : sample_tensors()) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(same_elements(t, back.tensor(name)));
  }
}

TEST(Safetensors, AcceptsMinimalAndPaddedHeaders) {
  EXPECT_TRUE(parse_bytes(st_image("{}", 0)).entries().empty());
  const std::string header = R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                             R"("a":{"dtype":"U8","shape":[0],"data_offsets":[4,4]},)"
                             R"("c":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}}     )";
  const Bytes image = st_image(header, 8);  // the parsed file refers into it
  const auto f = parse_bytes(image);
  ASSERT_EQ(f.entries().size(), 3u);  // ordered by data offset
  EXPECT_EQ(f.entries()[0].name, "c");
  EXPECT_EQ(f.entries()[1].name, "a");
  EXPECT_EQ(f.entries()[2].name, "b");
  EXPECT_EQ(f.data_offset(), 8u + header.size());
}

TEST(Safetensors, DamagedHeadersAreRefused) {
  const auto bad = [](const Bytes& image, const std::string& needle) {
    SCOPED_TRACE(needle);
    expect_invalid([&] { parse_bytes(image); }, "mem", needle);
  };
  const auto bad_header = [&](const std::string& header, size_t blob, const std::string& needle) {
    bad(st_image(header, blob), needle);
  };
  const auto one = [](const std::string& fields) { return "{\"t\":{" + fields + "}}"; };
  bad(Bytes{1, 0, 0}, "file too short");
  Bytes huge = st_image("{}", 0);
  huge[3] = 0x10;  // 268 MB
  bad(huge, "exceeds the 100 MB limit");
  Bytes past = st_image("{}", 0);
  past[0] = 50;
  bad(past, "runs past the end");
  bad_header("[1,2]", 0, "header is not a JSON object");
  bad_header("{garbage", 0, "header is not valid JSON");
  bad_header("{\"t\":\xff}", 0, "header is not valid JSON");
  bad_header("{\"t\":1}", 0, "is not described by a JSON object");
  bad_header(one(R"("dtype":"F32","shape":[1])"), 4, "lacks dtype, shape or data_offsets");
  bad_header(one(R"("dtype":5,"shape":[1],"data_offsets":[0,4])"), 4, "dtype is not a string");
  bad_header(one(R"("dtype":"Q7","shape":[1],"data_offsets":[0,4])"), 4, "unknown dtype \"Q7\"");
  bad_header(one(R"("dtype":"F32","shape":"x","data_offsets":[0,4])"), 4, "shape is not an array");
  bad_header(one(R"("dtype":"F32","shape":[-1],"data_offsets":[0,4])"), 4,
             "a shape dimension is not a non-negative integer");
  bad_header(one(R"("dtype":"F32","shape":[1.5],"data_offsets":[0,4])"), 4,
             "a shape dimension is not a non-negative integer");
  bad_header(one(R"("dtype":"U8","shape":[1,1,1,1,1,1,1],"data_offsets":[0,1])"), 1,
             "rank 7 exceeds 6");
  bad_header(one(R"("dtype":"F32","shape":[1],"data_offsets":[0])"), 4, "[begin, end] pair");
  bad_header(one(R"("dtype":"F32","shape":[1],"data_offsets":["0",4])"), 4,
             "data_offsets[0] is not a non-negative integer");
  bad_header(one(R"("dtype":"F32","shape":[1],"data_offsets":[4,0])"), 4, "end before they begin");
  bad_header(one(R"("dtype":"F32","shape":[2],"data_offsets":[0,8])"), 4,
             "past the 4-byte data section");
  bad_header(one(R"("dtype":"F32","shape":[2],"data_offsets":[0,4])"), 4,
             "span 4 bytes, dtype and shape need 8");
  bad_header(one(R"("dtype":"F32","shape":[4611686018427387904,4611686018427387904],)"
                 R"("data_offsets":[0,4])"),
             4, "shape is too large");
  bad_header(one(R"("dtype":"U8","shape":[4611686018427387905],"data_offsets":[0,4])"), 4,
             "shape is too large");
  bad_header(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
             R"("b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})",
             12, "tensors \"a\" and \"b\" overlap");
  bad_header(one(R"("dtype":"F32","shape":[1],"data_offsets":[0,4])"), 8,
             "4 bytes after the last tensor");
  bad_header(R"({"__metadata__":5})", 0, "__metadata__ is not a JSON object");
  bad_header(R"({"__metadata__":{"k":1}})", 0, "__metadata__ value \"k\" is not a string");
  bad_header(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
             R"("a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})",
             0, "repeats the key \"a\"");
  bad_header(R"({"a":{"shape":[[1]]}})", 0, "nests deeper");
  bad_header("{\"a\":" + std::string(100000, '[') + "}", 0, "nests deeper");
}

TEST(Safetensors, EveryTruncationAndByteFlipIsHandled) {
  const Bytes full = read_bytes(write_sample(temp_dir()));
  for (size_t n = 0; n < full.size(); ++n)
    expect_invalid([&] { parse_bytes(Bytes(full.begin(), full.begin() + std::ptrdiff_t(n))); },
                   "mem", "");
  // Byte flips in the length and header: a clean error or a file whose views are in bounds.
  const size_t header_end = 8 + io::load_le64(full.data());
  for (size_t i = 0; i < header_end; ++i) {
    Bytes b = full;
    b[i] ^= 0x41;
    try {
      const SafetensorsFile f = parse_bytes(b);
      for (const auto& e : f.entries()) checksums(f.tensor(e.name));
    } catch (const Error& e) {
      ASSERT_EQ(e.kind(), ErrorKind::kInvalidInput) << e.what();
    }
  }
}

}  // namespace
}  // namespace foley::test
