// Helpers shared by the tests: seeded random tensors, error metrics, running python3-torch.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/tensor.h"

namespace foley::test {

// Uniform in [lo, hi), deterministic per seed. F32, BF16 and F16 tensors are filled (rounded).
Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, float lo = -1.f,
                     float hi = 1.f);
// A contiguous F32 copy of any host tensor (any strides, F32/BF16/F16).
Tensor to_f32(const Tensor& t);
// max|a − b| / max|b| over the tensors (same shape), as the golden cases define it.
double max_rel_error(const Tensor& a, const Tensor& b);
double max_abs_error(const Tensor& a, const Tensor& b);

// A fresh temporary directory, unique per call, removed when the test process exits normally
// (FOLEY_KEEP_TEST_DIRS=1 keeps it).
std::string temp_dir();
// Runs a command through /bin/sh; returns its exit status (and its stdout in *out if given).
int run_command(const std::string& command, std::string* out = nullptr);
// Path of a file under the source tree.
std::string source_path(const std::string& relative);
// True if Debian's python3 with torch is usable (tests that need it skip otherwise).
bool have_python_torch();

// True when the suite runs in CI (CI=true): there a missing tool or data set is a broken install
// step, so tests fail instead of skipping.
bool in_ci();

// ASan + UBSan build (scripts/test.sh's second stage): several times slower, so tests that
// repeat the same work for confidence repeat it less there.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitizerBuild = true;
#else
inline constexpr bool kSanitizerBuild = false;
#endif

// A test whose tool or data is missing: skipped on a developer's machine, a failure in CI. The GPU
// is the one exception (CI never has one): CUDA tests call GTEST_SKIP themselves.
#define FOLEY_SKIP_MISSING(why)                           \
  do {                                                    \
    if (::foley::test::in_ci()) {                         \
      GTEST_FAIL() << "missing in CI (CI=true): " << why; \
    } else {                                              \
      GTEST_SKIP() << why;                                \
    }                                                     \
  } while (0)

// Sets an environment variable for one scope and restores what was there before (tests that
// switch a backend's env-read behaviour, e.g. FOLEY_CUDA_ATTENTION).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_.c_str(), old_.c_str(), 1);
    else
      unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

}  // namespace foley::test
