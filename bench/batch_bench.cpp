// Cross-request batching on the CPU for BENCHMARKS.md ("Batching (CPU)", issue 13): clips per
// minute of 4 concurrent requests run as one batch (one Generator, max_batch 4,
// generate_batch) against 4 separate workers (4 Generators on 4 threads, the way
// `foley serve --jobs-per-device 4` runs them), in one invocation. Each configuration runs in a
// child process of its own, since a process's thread count (FOLEY_THREADS, OpenMP) is fixed at
// its first parallel region:
//   batched       1 generator, T threads
//   workers_split 4 generators, T/4 threads each (at least 1): the same total threads
//   workers_full  4 generators, T threads each (what a server with 4 workers does by default)
// T = THREADS (default: the machine's cores). Every request is the same clip with its own
// prompt and seed, STEPS steps with CFG 4.5; each configuration warms up, then runs ROUNDS rounds
// of 4 requests; the best round counts (least disturbed by the shared machine), and the median
// is printed too. Each runs under libgomp's default waits and under OMP_WAIT_POLICY=PASSIVE
// (sleeping waits, kinder to several teams on few cores). Result lines are "key value".
//
//   batch_bench BUNDLE [CLIP_SECONDS=2] [STEPS=25] [ROUNDS=5] [THREADS]
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "foley/foley.h"
#include "models/mmdit.h"
#include "models/weight_store.h"

namespace foley {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRequests = 4;

double secs(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}

// A Y4M clip of `frames` frames at 25 fps (moving bars), readable with and without FFmpeg.
void write_clip(const std::string& path, int frames) {
  const int w = 128, h = 96;
  std::ofstream f(path, std::ios::binary);
  f << "YUV4MPEG2 W" << w << " H" << h << " F25:1 Ip A1:1 C420jpeg\n";
  std::vector<char> y(size_t(w) * h), c(size_t(w / 2) * (h / 2), char(128));
  for (int i = 0; i < frames; ++i) {
    for (int py = 0; py < h; ++py)
      for (int px = 0; px < w; ++px)
        y[size_t(py) * w + px] = char(((px + 3 * i) / 8 % 2) ? 200 : 40);
    f << "FRAME\n";
    f.write(y.data(), std::streamsize(y.size()));
    f.write(c.data(), std::streamsize(c.size()));
    f.write(c.data(), std::streamsize(c.size()));
  }
}

GenerationParams request(int i, int steps, double seconds) {
  static const char* prompts[kRequests] = {"footsteps on gravel", "a door slams shut",
                                           "rain on a tin roof", "a dog barks twice"};
  GenerationParams p;
  p.prompt = prompts[i % kRequests];
  p.steps = steps;
  p.guidance = 4.5f;
  p.seed = uint64_t(100 + i);
  p.max_clip_seconds = seconds;
  return p;
}

// The stages of one request (its "denoise" is the whole batch's when batched).
void print_stages(const GenerationResult& r) {
  std::printf("stages");
  for (const StageTiming& t : r.timings) std::printf(" %s %.4f", t.stage.c_str(), t.seconds);
  std::printf("\n");
}

// One DiT step of the clip's lengths at 2 rows (one request with CFG) and at 2·4 rows (the
// batch), single-threaded: how the step's cost grows with the rows.
int run_dit(const std::string& bundle, double seconds) {
  const auto store = WeightStore::open(bundle);
  auto be = make_cpu_backend();
  const Mmdit m(*store, *be);
  const MmditConfig& c = m.config();
  const int64_t t25 = int64_t(seconds * 25);
  const int64_t ta = t25 * 2, tv = (t25 - 1) * 8 / 25 + 1, s8 = ((t25 - 16) / 8 + 1) * 8, L = 8;
  double per_row_2 = 0;
  for (int64_t rows : {int64_t{2}, int64_t{2 * kRequests}}) {
    auto filled = [&](const Shape& shape, float v) {
      Tensor t = Tensor::empty(shape, DType::kF32);
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = v * float(i % 7 - 3);
      return t;
    };
    const Tensor clip = filled({rows, tv, c.clip_dim}, 0.1f);
    const Tensor sync = filled({rows, s8, c.sync_dim}, 0.2f);
    const Tensor text = filled({rows, L, c.text_dim}, 0.3f);
    const Tensor x = filled({rows, c.latent_dim, ta}, 0.5f);
    const Tensor v = Tensor::empty(x.shape(), DType::kF32);
    const auto ctx = m.prepare(clip, sync, text, ta);
    Arena arena(be->block_allocator(), m.step_arena_bytes(rows, ta, tv));
    const std::vector<float> t(size_t(rows), 500.0f);
    for (int i = 0; i < 3; ++i) m.forward(*ctx, x, t.data(), v, arena);
    const int n = 20;
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) m.forward(*ctx, x, t.data(), v, arena);
    const double step = secs(t0) / n;
    if (rows == 2) per_row_2 = step / 2;
    std::printf("dit_step rows %lld Ta %lld Tv %lld ms %.3f ms_per_row %.3f vs_2_rows %.3f\n",
                (long long)rows, (long long)ta, (long long)tv, step * 1e3, step * 1e3 / rows,
                step / rows / per_row_2);
  }
  return 0;
}

// One configuration, in this (child) process: prints the seconds of each round.
int run_mode(const std::string& mode, const std::string& bundle, const std::string& clip,
             double seconds, int steps, int rounds) {
  auto model = Model::load({bundle});
  GeneratorOptions go;
  go.max_clip_seconds = seconds;
  std::vector<double> times;
  if (mode == "batched") {
    go.max_batch = kRequests;
    auto gen = Generator::create(model, go);
    gen->warm_up();
    std::vector<GenerationRequest> reqs(kRequests);
    for (int i = 0; i < kRequests; ++i) {
      reqs[size_t(i)].video_path = clip;
      reqs[size_t(i)].params = request(i, steps, seconds);
    }
    gen->generate_batch(reqs);  // first request of the shape
    for (int r = 0; r < rounds; ++r) {
      const auto t0 = Clock::now();
      const std::vector<BatchItemResult> out = gen->generate_batch(reqs);
      times.push_back(secs(t0));
      for (const BatchItemResult& o : out)
        if (!o.result || o.result->batch_size != kRequests) {
          std::printf("error the batch did not run as one\n");
          return 1;
        }
      if (r + 1 == rounds) print_stages(*out[0].result);
    }
  } else {
    std::vector<std::unique_ptr<Generator>> gens;
    for (int i = 0; i < kRequests; ++i) {
      gens.push_back(Generator::create(model, go));
      gens.back()->warm_up();
    }
    // Each round: every worker runs its request at the same time.
    GenerationResult last;
    auto round = [&] {
      std::vector<std::thread> workers;
      for (int i = 0; i < kRequests; ++i)
        workers.emplace_back([&, i] {
          GenerationResult r = gens[size_t(i)]->generate(clip, request(i, steps, seconds));
          if (i == 0) last = std::move(r);
        });
      for (auto& w : workers) w.join();
    };
    round();
    for (int r = 0; r < rounds; ++r) {
      const auto t0 = Clock::now();
      round();
      times.push_back(secs(t0));
    }
    print_stages(last);
  }
  for (double t : times) std::printf("round_s %.4f\n", t);
  return 0;
}

struct ModeResult {
  std::vector<double> rounds;
  std::string stages;  // of one request in the last round
  double best() const { return *std::min_element(rounds.begin(), rounds.end()); }
  double median() const {
    std::vector<double> s = rounds;
    std::sort(s.begin(), s.end());
    return s[s.size() / 2];
  }
};

// Runs this program as a child in `mode` with `threads` threads per generator; `wait` is the
// OpenMP wait policy ("" leaves libgomp's default: spin a while, then sleep).
ModeResult spawn(const char* self, const std::string& mode, int threads, const std::string& wait,
                 const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    const std::string t = std::to_string(threads);
    setenv("FOLEY_THREADS", t.c_str(), 1);
    setenv("OMP_NUM_THREADS", t.c_str(), 1);
    if (wait.empty())
      unsetenv("OMP_WAIT_POLICY");
    else
      setenv("OMP_WAIT_POLICY", wait.c_str(), 1);
    std::vector<std::string> a = {self, "--mode", mode};
    a.insert(a.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, size_t(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ModeResult r;
  size_t at = 0;
  while ((at = out.find("round_s ", at)) != std::string::npos) {
    r.rounds.push_back(std::atof(out.c_str() + at + 8));
    at += 8;
  }
  if (r.rounds.empty()) std::printf("error %s: %s\n", mode.c_str(), out.c_str());
  if (const size_t s = out.find("stages "); s != std::string::npos)
    r.stages = out.substr(s + 7, out.find('\n', s) - s - 7);
  return r;
}

}  // namespace
}  // namespace foley

int main(int argc, char** argv) {
  using namespace foley;
  if (argc >= 3 && std::string(argv[1]) == "--mode") {
    // Child: --mode MODE BUNDLE CLIP SECONDS STEPS ROUNDS
    try {
      if (std::string(argv[2]) == "dit") return run_dit(argv[3], std::atof(argv[5]));
      return run_mode(argv[2], argv[3], argv[4], std::atof(argv[5]), std::atoi(argv[6]),
                      std::atoi(argv[7]));
    } catch (const std::exception& e) {
      std::printf("error %s\n", e.what());
      return 1;
    }
  }
  if (argc < 2) {
    std::fprintf(stderr, "usage: batch_bench BUNDLE [CLIP_SECONDS] [STEPS] [ROUNDS] [THREADS]\n");
    return 2;
  }
  const std::string bundle = argv[1];
  const double seconds = argc > 2 ? std::atof(argv[2]) : 2.0;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 25;
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 5;
  const int threads =
      argc > 5 ? std::atoi(argv[5]) : int(std::max(1u, std::thread::hardware_concurrency()));
  char tmpl[] = "/tmp/foley-batch-bench-XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  const std::string clip = std::string(tmpl) + "/clip.y4m";
  write_clip(clip, int(seconds * 25));
  const std::vector<std::string> args = {bundle, clip, std::to_string(seconds),
                                         std::to_string(steps), std::to_string(rounds)};
  std::printf("requests %d\nclip_s %.2f\nsteps %d\nrounds %d\nthreads_total %d\n", kRequests,
              seconds, steps, rounds, threads);
  struct Mode {
    const char* name;
    int threads;
  };
  const Mode modes[] = {{"batched", threads},
                        {"workers_full", threads},
                        {"workers_split", std::max(1, threads / kRequests)}};
  // Each configuration under libgomp's default waits (what `foley serve` runs with) and under
  // OMP_WAIT_POLICY=PASSIVE; every child twice, interleaved, so a busy spell of the machine
  // does not fall on one configuration only. The best round of both counts.
  for (const std::string wait : {"", "PASSIVE"}) {
    ModeResult results[3];
    for (int pass = 0; pass < 2; ++pass)
      for (int m = 0; m < 3; ++m) {
        const ModeResult r = spawn(argv[0], modes[m].name, modes[m].threads, wait, args);
        if (r.rounds.empty()) return 1;
        results[m].rounds.insert(results[m].rounds.end(), r.rounds.begin(), r.rounds.end());
        results[m].stages = r.stages;
      }
    const char* policy = wait.empty() ? "default" : "passive";
    for (int m = 0; m < 3; ++m) {
      const ModeResult& r = results[m];
      std::printf(
          "%s wait %s threads_per_generator %d best_round_s %.4f median_round_s %.4f "
          "clips_per_min %.1f\n",
          modes[m].name, policy, modes[m].threads, r.best(), r.median(),
          kRequests * 60.0 / r.best());
      std::printf("%s wait %s stages_of_one_request %s\n", modes[m].name, policy, r.stages.c_str());
    }
    std::printf("wait %s speedup_vs_workers_full %.2f speedup_vs_workers_split %.2f\n", policy,
                results[1].best() / results[0].best(), results[2].best() / results[0].best());
    std::fflush(stdout);
  }
  // Why: the DiT step's cost per row at 2 and at 8 rows, one thread.
  {
    std::fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
      setenv("FOLEY_THREADS", "1", 1);
      setenv("OMP_NUM_THREADS", "1", 1);
      std::vector<std::string> a = {argv[0], "--mode", "dit"};
      a.insert(a.end(), args.begin(), args.end());
      std::vector<char*> av;
      for (auto& x : a) av.push_back(x.data());
      av.push_back(nullptr);
      execv("/proc/self/exe", av.data());
      _exit(127);
    }
    waitpid(pid, nullptr, 0);
  }
  std::remove(clip.c_str());
  rmdir(tmpl);
  return 0;
}
