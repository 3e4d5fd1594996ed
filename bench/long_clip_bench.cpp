// Long clips for BENCHMARKS.md (issue 15): one generation per process, so that the peak RSS
// (getrusage) belongs to that clip alone. Prints "key value" lines: the stages, the windows, the
// seam measure (pipeline::seam_ratio) of the output, the process's peak RSS and, on CUDA, the
// device memory in use after the request (the arenas are sized at start, so it must not grow).
//
//   long_clip_bench BUNDLE cpu|cuda VIDEO|text:SECONDS [STEPS] [REPEAT] [WINDOW_SECONDS]
// REPEAT runs the request again that many times (the first one records the step graphs) and
// reports the last; a 10 s and a 60 s run in separate processes give the time ratio.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "backend/device_upload.h"
#include "foley/foley.h"
#include "pipeline/pipeline.h"

namespace foley {
namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}
double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;
}
double used_gb(bool cuda) {
  size_t free = 0, total = 0;
  return cuda && cuda_memory_info(0, &free, &total) ? double(total - free) / 1e9 : 0;
}

int run(const std::string& bundle, bool cuda, const std::string& input, int steps, int repeat,
        double window) {
  auto model = Model::load({bundle});
  GeneratorOptions go;
  go.device = cuda ? DeviceType::kCuda : DeviceType::kCpu;
  go.window_seconds = window;
  auto gen = Generator::create(model, go);
  gen->warm_up();
  std::printf("rss_after_ready_MB %.1f\nvram_after_ready_GB %.4f\n", peak_rss_mb(), used_gb(cuda));
  GenerationParams gp;
  gp.prompt = "footsteps on gravel";
  gp.steps = steps;
  const bool text_only = input.rfind("text:", 0) == 0;
  if (text_only) gp.seconds = std::atof(input.c_str() + 5);
  GenerationResult r;
  double total = 0;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = Clock::now();
    r = text_only ? gen->generate_text(gp) : gen->generate(input, gp);
    total = secs(t0);
  }
  std::printf("input %s\nwindow_s %.2f\naudio_s %.2f\nwindows %d\ntotal_s %.4f\n", input.c_str(),
              window, r.audio_seconds, r.windows, total);
  for (const StageTiming& t : r.timings)
    std::printf("stage_%s_s %.4f\n", t.stage.c_str(), t.seconds);
  // The windows the pipeline used, from the clip's lengths (pipeline::plan_windows).
  const int t25 = static_cast<int>(r.audio_seconds * 25.0 + 0.5);
  const ClipTiming timing = clip_timing(t25);
  auto* impl = dynamic_cast<pipeline::GeneratorImpl*>(gen.get());
  if (impl && r.windows > 1) {
    const auto windows = pipeline::plan_windows(
        t25, timing.latent_frames, int64_t{t25 - 1} * 8 / 25 + 1, int64_t{timing.sync_segments} * 8,
        8, static_cast<int>(window * 25 + 0.5), impl->max_sync_frames(),
        impl->max_semantic_frames());
    std::printf("seam_ratio %.4f\n", pipeline::seam_ratio(r.audio, windows));
  }
  if (const char* raw = std::getenv("LONG_CLIP_RAW")) {  // the samples as raw F32, for analysis
    if (FILE* f = std::fopen(raw, "wb")) {
      std::fwrite(r.audio.data(), sizeof(float), r.audio.size(), f);
      std::fclose(f);
    }
  }
  std::printf("peak_rss_MB %.1f\nvram_after_request_GB %.4f\n", peak_rss_mb(), used_gb(cuda));
  return 0;
}

}  // namespace
}  // namespace foley

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: long_clip_bench BUNDLE cpu|cuda VIDEO|text:SECONDS [STEPS] [REPEAT]\n");
    return 2;
  }
  try {
    return foley::run(argv[1], std::string(argv[2]) == "cuda", argv[3],
                      argc > 4 ? std::atoi(argv[4]) : 50, argc > 5 ? std::atoi(argv[5]) : 1,
                      argc > 6 ? std::atof(argv[6]) : 9.0);
  } catch (const std::exception& e) {
    std::printf("error %s\n", e.what());
    return 1;
  }
}
