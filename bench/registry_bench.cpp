// Several models in one process for BENCHMARKS.md (issue 14), on CUDA: start->ready of each
// model through ModelRegistry, both resident (VRAM), a 10-s clip on each, and the swap-in of an
// evicted model from the page cache (load + warm-up, then its first request). Prints "key value".
//
//   registry_bench XXL_BUNDLE XL_BUNDLE VIDEO_10S
#include <chrono>
#include <cstdio>
#include <string>

#include "backend/device_upload.h"
#include "foley/registry.h"

namespace foley {
namespace {

using Clock = std::chrono::steady_clock;
const Clock::time_point g_start = Clock::now();
double secs(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}
double used_gb() {
  size_t free = 0, total = 0;
  return cuda_memory_info(0, &free, &total) ? double(total - free) / 1e9 : -1;
}
void out(const std::string& key, double v) {
  std::printf("%s %.4f\n", key.c_str(), v), std::fflush(stdout);
}

int run(const std::string& xxl, const std::string& xl, const std::string& video) {
  RegistryOptions o;
  o.generator.device = DeviceType::kCuda;
  const double base = used_gb();
  out("vram_before_GB", base);
  ModelRegistry r({{"xxl", xxl}, {"xl", xl}}, o);
  GenerationParams gp;
  gp.prompt = "footsteps on gravel";
  auto clip = [&](const char* name) {
    const auto t0 = Clock::now();
    auto lease = r.acquire(name);
    const double got = secs(t0);
    lease.generator().generate(video, gp);
    out(std::string("clip10_") + name + "_s", secs(t0));
    return got;
  };
  for (const char* name : {"xxl", "xl"}) {
    const auto t0 = Clock::now();
    r.load(name);
    out(std::string("load_") + name + "_s", secs(t0));
    out(std::string("process_start_to_") + name + "_ready_s", secs(g_start));
    out(std::string("vram_after_") + name + "_GB", used_gb());
  }
  for (const auto& s : r.status()) out("bytes_" + s.name + "_GB", double(s.bytes) / 1e9);
  out("vram_both_resident_GB", used_gb() - base);
  clip("xxl"), clip("xl");
  clip("xxl"), clip("xl");
  // Swap-in from the page cache: unload, then a request finds it unloaded.
  for (const char* name : {"xl", "xxl"}) {
    r.unload(name);
    out(std::string("vram_without_") + name + "_GB", used_gb());
    const auto t0 = Clock::now();
    r.load(name);
    out(std::string("swap_in_") + name + "_s", secs(t0));
    const auto t1 = Clock::now();
    auto lease = r.acquire(name);
    GenerationParams one = gp;
    one.steps = 1;
    lease.generator().generate(video, one);
    out(std::string("swap_in_") + name + "_then_1_step_clip_s", secs(t1));
  }
  return 0;
}

}  // namespace
}  // namespace foley

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: registry_bench XXL_BUNDLE XL_BUNDLE VIDEO_10S\n");
    return 2;
  }
  try {
    const int rc = foley::run(argv[1], argv[2], argv[3]);
    std::printf("device %s\n", foley::cuda_device_name(0).c_str());
    return rc;
  } catch (const std::exception& e) {
    std::printf("error %s\n", e.what());
    return 1;
  }
}
