#include "test_util.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <vector>

#include "core/check.h"
#include "core/host_values.h"

namespace foley::test {

Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::empty(shape, dtype);
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    const float v = dist(rng);
    switch (dtype) {
      case DType::kF32:
        t.data<float>()[i] = v;
        break;
      case DType::kBF16:
        t.data<uint16_t>()[i] = f32_to_bf16(v);
        break;
      case DType::kF16:
        t.data<uint16_t>()[i] = f32_to_f16(v);
        break;
      default:
        FOLEY_CHECK(false, "random_tensor: unsupported dtype");
    }
  }
  return t;
}

Tensor to_f32(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape(), DType::kF32);
  const std::vector<float> v = host_values_f32(t);
  std::copy(v.begin(), v.end(), out.data<float>());
  return out;
}

double max_abs_error(const Tensor& a, const Tensor& b) {
  FOLEY_CHECK(a.shape() == b.shape(), "shape mismatch %s vs %s", a.describe().c_str(),
              b.describe().c_str());
  Tensor fa = to_f32(a), fb = to_f32(b);
  double m = 0;
  for (int64_t i = 0; i < fa.numel(); ++i) {
    const double d = std::fabs(double(fa.data<float>()[i]) - double(fb.data<float>()[i]));
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

double max_rel_error(const Tensor& a, const Tensor& b) {
  Tensor fb = to_f32(b);
  double mb = 0;
  for (int64_t i = 0; i < fb.numel(); ++i)
    mb = std::max(mb, std::fabs(double(fb.data<float>()[i])));
  const double abs = max_abs_error(a, b);
  return mb > 0 ? abs / mb : abs;
}

namespace {

// The folders temp_dir() made, removed when the test process exits (ctest runs each case in its
// own process) unless FOLEY_KEEP_TEST_DIRS is set, to look at what a failing test left.
class TempDirs {
 public:
  std::string make() {
    char tmpl[] = "/tmp/foley-test-XXXXXX";
    const char* d = mkdtemp(tmpl);
    FOLEY_CHECK(d != nullptr, "mkdtemp failed");
    std::lock_guard<std::mutex> lock(mutex_);
    dirs_.emplace_back(d);
    return d;
  }
  ~TempDirs() {
    // A forked child that exits normally must not take its parent's folders with it.
    if (::getpid() != owner_ || std::getenv("FOLEY_KEEP_TEST_DIRS")) return;
    std::error_code ec;
    for (const auto& d : dirs_) std::filesystem::remove_all(d, ec);
  }

 private:
  const pid_t owner_ = ::getpid();
  std::mutex mutex_;
  std::vector<std::string> dirs_;
};

}  // namespace

std::string temp_dir() {
  static TempDirs dirs;
  return dirs.make();
}

int run_command(const std::string& command, std::string* out) {
  FILE* p = popen(command.c_str(), "r");
  if (!p) return -1;
  std::string s;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) s.append(buf.data(), n);
  const int status = pclose(p);
  if (out) *out = s;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string source_path(const std::string& relative) {
  return std::string(FOLEY_SOURCE_DIR) + "/" + relative;
}

bool have_python_torch() {
  static const bool ok =
      run_command(std::string(FOLEY_PYTHON) + " -c 'import torch, numpy' 2>/dev/null") == 0;
  return ok;
}

}  // namespace foley::test

namespace foley::test {

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

}  // namespace foley::test
