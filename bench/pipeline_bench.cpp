// The public pipeline on the GPU for BENCHMARKS.md (driven by bench/run_h100.sh): start->ready of
// Model::load + Generator::create(kCuda) + warm_up in a fresh process, the first request, steady
// requests for 5, 10 and 15 s clips (50 steps, CFG 4.5) with the per-stage split the Generator
// reports, VRAM (with the arenas and the warm-up's parts), and device-memory drift over 20
// requests. Result lines are "key value".
//
//   pipeline_bench BUNDLE VIDEO_5S VIDEO_10S VIDEO_15S
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/device_upload.h"
#include "foley/foley.h"
#include "pipeline/pipeline.h"

namespace foley {
namespace {

using Clock = std::chrono::steady_clock;
const Clock::time_point g_start = Clock::now();  // static init: as close to exec as we get

double secs(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}
void out(const char* key, double v) {
  std::printf("%s %.6g\n", key, v), std::fflush(stdout);
}
double used_gb() {
  size_t free = 0, total = 0;
  return cuda_memory_info(0, &free, &total) ? double(total - free) / 1e9 : -1;
}

int run(const std::string& path, const std::vector<std::string>& videos) {
  ModelOptions mo;
  mo.bundle_path = path;
  auto model = Model::load(mo);
  GeneratorOptions go;
  go.device = DeviceType::kCuda;
  auto gen = Generator::create(model, go);
  const double t_created = secs(g_start);
  gen->warm_up();
  out("pipe_start_to_created_s", t_created);
  out("pipe_start_to_ready_s", secs(g_start));
  out("pipe_device_bytes_GB", double(gen->device_bytes()) / 1e9);
  out("vram_used_after_ready_GB", used_gb());
  // Where the device bytes beyond the weights go (internal view, for the VRAM analysis).
  if (const auto* impl = dynamic_cast<const pipeline::GeneratorImpl*>(gen.get())) {
    for (const pipeline::ArenaStat& a : impl->arena_stats())
      std::printf("pipe_arena %s reserved_GB %.4f high_water_GB %.4f\n", a.name.c_str(),
                  double(a.reserved) / 1e9, double(a.high_water) / 1e9);
    const Arena& scratch = impl->backend().scratch();
    std::printf("pipe_arena backend_scratch reserved_GB %.4f high_water_GB %.4f\n",
                double(scratch.reserved()) / 1e9, double(scratch.high_water()) / 1e9);
    // What the shared stage arena holds the largest of (each would be its own arena otherwise).
    const pipeline::StageArenaNeeds& n = impl->stage_arena_needs();
    std::printf(
        "pipe_stage_need_GB visual %.4f sync %.4f text %.4f step %.4f dac %.4f sum %.4f "
        "largest %.4f\n",
        n.visual / 1e9, n.sync / 1e9, n.text / 1e9, n.step / 1e9, n.dac / 1e9, n.sum() / 1e9,
        n.largest() / 1e9);
    // Where the warm-up time goes ("total" is all of warm_up()).
    for (const StageTiming& t : impl->warm_up_timings())
      out(("pipe_warmup_" + t.stage + "_s").c_str(), t.seconds);
  }
  GenerationParams gp;
  gp.prompt = "footsteps on gravel";
  auto run = [&](const std::string& video, const char* tag) {
    const auto t0 = Clock::now();
    GenerationResult r = gen->generate(video, gp);
    const double s = secs(t0);
    std::printf("%s total_s %.4f audio_s %.2f", tag, s, r.audio_seconds);
    for (const auto& st : r.timings) std::printf(" %s %.4f", st.stage.c_str(), st.seconds);
    std::printf("\n"), std::fflush(stdout);
    return s;
  };
  run(videos[1], "pipe_first_10s");
  const char* names[] = {"pipe_steady_5s", "pipe_steady_10s", "pipe_steady_15s"};
  for (int k = 0; k < 3; ++k)
    for (int i = 0; i < 3; ++i) run(videos[size_t(k)], names[k]);
  const double before = used_gb();
  double peak = before;
  const auto t_drift = Clock::now();
  int n = 0;
  // FOLEY_BENCH_REPEATS bounds the drift loop (run_h100.sh's quant part compares three bundles).
  const char* reps = std::getenv("FOLEY_BENCH_REPEATS");
  const int max_n = reps ? std::max(1, std::atoi(reps)) : 20;
  for (; n < max_n && secs(t_drift) < 60; ++n) {
    gen->generate(videos[1], gp);
    peak = std::max(peak, used_gb());
  }
  out("pipe_drift_requests", n);
  out("pipe_drift_bytes", (used_gb() - before) * 1e9);
  out("vram_used_peak_GB", peak);
  return 0;
}

}  // namespace
}  // namespace foley

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: pipeline_bench BUNDLE VIDEO_5S VIDEO_10S VIDEO_15S\n");
    return 2;
  }
  try {
    const int rc = foley::run(argv[1], {argv[2], argv[3], argv[4]});
    std::printf("device %s\n", foley::cuda_device_name(0).c_str());
    return rc;
  } catch (const std::exception& e) {
    std::printf("error %s\n", e.what());
    return 1;
  }
}
