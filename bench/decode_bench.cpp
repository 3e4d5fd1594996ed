// The decode stage alone: a clip decoded and resized into the encoders' frames (SigLIP2 512x512 at
// 8 fps, Synchformer 224x224 at 25 fps), as a request's decode stage and Model::prepare_video do.
// Without a clip argument it writes the synthetic 320x240 25-fps Y4M that run_h100.sh uses.
//
//   decode_bench [CLIP|-] [SECONDS] [REPEATS]   (-: the synthetic clip)
// Compare thread counts with OMP_NUM_THREADS (FOLEY_THREADS) in one run of this machine.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "pipeline/pipeline.h"

namespace {

std::string write_synthetic_clip(double seconds) {
  const int w = 320, h = 240, frames = static_cast<int>(seconds * 25);
  const std::string path = "/tmp/foley-decode-bench-" + std::to_string(::getpid()) + ".y4m";
  std::ofstream f(path, std::ios::binary);
  f << "YUV4MPEG2 W" << w << " H" << h << " F25:1 Ip A1:1 C420jpeg\n";
  std::vector<char> luma(size_t(w) * h), chroma(size_t(w) * h / 2, char(128));
  for (int i = 0; i < frames; ++i) {
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) luma[size_t(y) * w + x] = char((x + y + 3 * i) % 256);
    f << "FRAME\n";
    f.write(luma.data(), std::streamsize(luma.size()));
    f.write(chroma.data(), std::streamsize(chroma.size()));
  }
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace foley;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 10.0;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 5;
  const bool synthetic = argc < 2 || std::string(argv[1]).empty() || std::string(argv[1]) == "-";
  const std::string clip = synthetic ? write_synthetic_clip(seconds) : argv[1];
  const int64_t semantic = int64_t(seconds * 8) + 1, sync = int64_t(seconds * 25) + 1;
  std::printf("decode_bench clip %s seconds %.1f threads %d\n", clip.c_str(), seconds,
              ThreadPool::global().size());
  for (int r = 0; r < repeats; ++r) {
    // Fresh buffers each time, as prepare_video makes them (their first touch is part of it).
    pipeline::FrameQueue sem(Tensor::empty({semantic, 512, 512, 3}, DType::kU8));
    pipeline::FrameQueue syn(Tensor::empty({sync, 224, 224, 3}, DType::kU8));
    const auto t0 = std::chrono::steady_clock::now();
    const SamplingResult got = pipeline::decode_clip_frames(
        clip, seconds, sem, syn, [] {}, [] {});
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("decode_clip_frames_s %.4f semantic %d sync %d\n", s, got.semantic_frames,
                got.sync_frames);
  }
  if (synthetic) std::remove(clip.c_str());
  return 0;
}
