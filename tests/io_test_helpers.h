// Helpers for the weight-file reader tests: file bytes, a tiny stored-zip builder (with optional
// ZIP64 records), hand-assembled pickles, and checks that an error is a one-line kInvalidInput.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "foley/error.h"
#include "io/bytes.h"
#include "io/zip_reader.h"
#include "test_util.h"

namespace foley::test {

using Bytes = std::vector<uint8_t>;

inline Bytes read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), {});
}

inline void write_bytes(const std::string& path, const Bytes& data) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

inline void put16(Bytes& b, uint32_t v) {
  for (int i = 0; i < 2; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void put32(Bytes& b, uint64_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void put64(Bytes& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// Stored zip archives laid out like torch.save's. With zip64, every central entry carries its
// sizes and offset in a ZIP64 extra field and the end record defers to a ZIP64 end record.
struct ZipBuilder {
  struct Member {
    std::string name;
    Bytes data;
    uint16_t method = 0;
  };
  std::vector<Member> members;

  ZipBuilder& add(const std::string& name, const Bytes& data, uint16_t method = 0) {
    members.push_back({name, data, method});
    return *this;
  }
  ZipBuilder& add(const std::string& name, const std::string& data, uint16_t method = 0) {
    return add(name, Bytes(data.begin(), data.end()), method);
  }

  Bytes build(bool zip64 = false) const {
    Bytes out, central;
    for (const auto& m : members) {
      const uint64_t offset = out.size();
      const uint32_t crc = io::crc32(m.data.data(), m.data.size());
      put32(out, 0x04034b50);
      put16(out, 45);
      put16(out, 0);
      put16(out, m.method);
      put32(out, 0);  // time, date
      put32(out, crc);
      put32(out, m.data.size());
      put32(out, m.data.size());
      put16(out, static_cast<uint32_t>(m.name.size()));
      put16(out, 0);
      out.insert(out.end(), m.name.begin(), m.name.end());
      out.insert(out.end(), m.data.begin(), m.data.end());

      put32(central, 0x02014b50);
      put16(central, 45);
      put16(central, 45);
      put16(central, 0);
      put16(central, m.method);
      put32(central, 0);
      put32(central, crc);
      put32(central, zip64 ? 0xffffffffu : m.data.size());
      put32(central, zip64 ? 0xffffffffu : m.data.size());
      put16(central, static_cast<uint32_t>(m.name.size()));
      put16(central, zip64 ? 28 : 0);
      put16(central, 0);  // comment
      put16(central, 0);  // disk
      put16(central, 0);
      put32(central, 0);
      put32(central, zip64 ? 0xffffffffu : offset);
      central.insert(central.end(), m.name.begin(), m.name.end());
      if (zip64) {
        put16(central, 1);
        put16(central, 24);
        put64(central, m.data.size());
        put64(central, m.data.size());
        put64(central, offset);
      }
    }
    const uint64_t cd_offset = out.size();
    out.insert(out.end(), central.begin(), central.end());
    if (zip64) {
      const uint64_t record = out.size();
      put32(out, 0x06064b50);
      put64(out, 44);
      put16(out, 45);
      put16(out, 45);
      put32(out, 0);
      put32(out, 0);
      put64(out, members.size());
      put64(out, members.size());
      put64(out, central.size());
      put64(out, cd_offset);
      put32(out, 0x07064b50);
      put32(out, 0);
      put64(out, record);
      put32(out, 1);
    }
    put32(out, 0x06054b50);
    put32(out, 0);  // disks
    put16(out, zip64 ? 0xffff : static_cast<uint32_t>(members.size()));
    put16(out, zip64 ? 0xffff : static_cast<uint32_t>(members.size()));
    put32(out, zip64 ? 0xffffffffu : central.size());
    put32(out, zip64 ? 0xffffffffu : cd_offset);
    put16(out, 0);
    return out;
  }
};

// Pickle assembly: enough opcodes to write state dicts (and hostile variants) by hand.
struct Pickle {
  std::string s = "\x80\x02";
  Pickle& raw(const std::string& bytes) {
    s += bytes;
    return *this;
  }
  Pickle& str(const std::string& v) {
    s += 'X';
    for (int i = 0; i < 4; ++i) s += static_cast<char>(v.size() >> (8 * i));
    s += v;
    return *this;
  }
  Pickle& int1(uint8_t v) {
    s += 'K';
    s += static_cast<char>(v);
    return *this;
  }
  Pickle& long1(int64_t v) {  // LONG1 with 8 bytes
    s += "\x8a\x08";
    for (int i = 0; i < 8; ++i) s += static_cast<char>(static_cast<uint64_t>(v) >> (8 * i));
    return *this;
  }
  Pickle& global(const std::string& module, const std::string& name) {
    s += "c" + module + "\n" + name + "\n";
    return *this;
  }
  // ('storage', torch.<type>, key, 'cpu', numel) followed by BINPERSID.
  Pickle& storage(const std::string& type, const std::string& key, uint8_t numel) {
    raw("(").str("storage").global("torch", type).str(key).str("cpu").int1(numel);
    return raw("tQ");
  }
  // _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()) with 1-d or 2-d
  // size/stride tuples.
  Pickle& tensor(const std::string& type, const std::string& key, uint8_t numel, uint8_t offset,
                 std::vector<uint8_t> size, std::vector<uint8_t> stride) {
    global("torch._utils", "_rebuild_tensor_v2").raw("(");
    storage(type, key, numel).int1(offset);
    raw("(");
    for (uint8_t d : size) int1(d);
    raw("t(");
    for (uint8_t d : stride) int1(d);
    raw("t\x89").global("collections", "OrderedDict").raw(")R");
    return raw("tR");
  }
  Bytes bytes() const { return Bytes(s.begin(), s.end()); }
};

inline Bytes float_bytes(const std::vector<float>& v) {
  Bytes b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A valid hand-made checkpoint: {"w": FloatStorage of 6 floats viewed as [2, 3]}.
inline Pickle one_tensor_pickle() {
  return Pickle().raw("}(").str("w").tensor("FloatStorage", "0", 6, 0, {2, 3}, {3, 1}).raw("u.");
}
inline Bytes torch_zip(const Bytes& pickle, const Bytes& storage0, bool zip64 = false) {
  return ZipBuilder()
      .add("archive/data.pkl", pickle)
      .add("archive/byteorder", std::string("little"))
      .add("archive/data/0", storage0)
      .build(zip64);
}

// The files of tests/python/make_torch_files.py `write`; "" when Debian's python3-torch is
// missing (the caller skips). Every test runs in its own process under ctest, and importing
// torch takes seconds, so the files are cached next to the build, keyed by the script's text.
inline const std::string& python_torch_files() {
  static const std::string dir = [] {
    const std::string script = source_path("tests/python/make_torch_files.py");
    std::ifstream f(script);
    const std::string text((std::istreambuf_iterator<char>(f)), {});
    const std::string cli = FOLEY_CLI;
    const std::string cache = cli.substr(0, cli.rfind('/')) + "/../test-data/torch-files-" +
                              std::to_string(std::hash<std::string>{}(text));
    if (std::ifstream(cache + "/done")) return cache;
    if (!have_python_torch()) return std::string();
    const std::string tmp = temp_dir();
    if (run_command(std::string(FOLEY_PYTHON) + " " + script + " write " + tmp) != 0 ||
        run_command("touch " + tmp + "/done") != 0)
      return std::string();
    // Concurrent test processes may race here; whichever rename wins, the content is the same.
    run_command("mkdir -p " + cache.substr(0, cache.rfind('/')) + " && mv -T " + tmp + " " + cache +
                " 2>/dev/null");
    return std::ifstream(cache + "/done") ? cache : tmp;
  }();
  return dir;
}

inline std::string golden_checkpoints() {
  return std::string(FOLEY_SOURCE_DIR) + "/../shared/golden/tiny-a/checkpoints";
}

// Runs `fn`, which must throw foley::Error(kInvalidInput) with a one-line message that starts
// with "<label>: " and contains `needle`.
inline void expect_invalid(const std::function<void()>& fn, const std::string& label,
                           const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing \"" << needle << "\"";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput) << msg;
    EXPECT_EQ(msg.rfind(label + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg << "\n  expected: " << needle;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// Element-wise byte comparison of a strided view against a contiguous tensor of the same shape.
inline bool same_elements(const Tensor& view, const Tensor& contiguous) {
  if (view.shape() != contiguous.shape() || view.dtype() != contiguous.dtype()) return false;
  const size_t esize = dtype_size(view.dtype());
  std::array<int64_t, kMaxRank> idx{};
  for (int64_t i = 0; i < view.numel(); ++i) {
    int64_t off = 0;
    for (int d = 0; d < view.rank(); ++d) off += idx[static_cast<size_t>(d)] * view.stride(d);
    if (std::memcmp(static_cast<const uint8_t*>(view.raw()) + off * static_cast<int64_t>(esize),
                    static_cast<const uint8_t*>(contiguous.raw()) + i * static_cast<int64_t>(esize),
                    esize) != 0)
      return false;
    for (int d = view.rank() - 1; d >= 0; --d) {
      if (++idx[static_cast<size_t>(d)] < view.dim(d)) break;
      idx[static_cast<size_t>(d)] = 0;
    }
  }
  return true;
}

// Any element as a double, for checksums against torch.
inline double element_as_double(const Tensor& t, int64_t offset) {
  const uint8_t* p =
      static_cast<const uint8_t*>(t.raw()) + offset * static_cast<int64_t>(dtype_size(t.dtype()));
  auto load = [p](auto v) {
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  switch (t.dtype()) {
    case DType::kF32:
      return load(float{});
    case DType::kF64:
      return load(double{});
    case DType::kBF16:
      return bf16_to_f32(load(uint16_t{}));
    case DType::kF16:
      return f16_to_f32(load(uint16_t{}));
    case DType::kI64:
      return static_cast<double>(load(int64_t{}));
    case DType::kI32:
      return load(int32_t{});
    case DType::kI16:
      return load(int16_t{});
    case DType::kI8:
      return load(int8_t{});
    case DType::kU8:
      return load(uint8_t{});
    case DType::kBool:
      return load(uint8_t{}) ? 1 : 0;
    default:
      return 0;
  }
}

// (sum, sum of |x|) over a strided tensor, in double.
inline std::pair<double, double> checksums(const Tensor& t) {
  double sum = 0, sum_abs = 0;
  std::array<int64_t, kMaxRank> idx{};
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t off = 0;
    for (int d = 0; d < t.rank(); ++d) off += idx[static_cast<size_t>(d)] * t.stride(d);
    const double v = element_as_double(t, off);
    sum += v;
    sum_abs += v < 0 ? -v : v;
    for (int d = t.rank() - 1; d >= 0; --d) {
      if (++idx[static_cast<size_t>(d)] < t.dim(d)) break;
      idx[static_cast<size_t>(d)] = 0;
    }
  }
  return {sum, sum_abs};
}

}  // namespace foley::test
