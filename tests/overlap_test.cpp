// Two lanes on one Generator (GeneratorOptions::overlap_encoders, issue 13): one request's
// encoders run while another request's denoising runs, on a second backend in the encoder region
// of the stage arena, and every request still gets the audio it gets alone, bit for bit.
//
// The overlap is shown, not timed: the first request's denoising waits, inside its progress
// callback, until the second request has reported its "text" stage (so its SigLIP2 and
// Synchformer have run). With the lanes open that happens; without them (no option, or before
// warm-up) the second request cannot start its encoders until the first one is done, and the
// wait runs out.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "pipeline/pipeline.h"
#include "tiny_pipeline.h"

namespace foley::test {
namespace {

using pipeline::GeneratorImpl;

constexpr double kMaxSeconds = 2.0;

GeneratorOptions options(bool overlap, int max_batch = 1) {
  GeneratorOptions o;
  o.max_clip_seconds = kMaxSeconds;
  o.overlap_encoders = overlap;
  o.max_batch = max_batch;
  return o;
}

std::unique_ptr<GeneratorImpl> make(const GeneratorOptions& o, bool warm) {
  std::unique_ptr<Generator> g = Generator::create(TinyModel::get()->model, o);
  if (warm) g->warm_up();
  return std::unique_ptr<GeneratorImpl>(static_cast<GeneratorImpl*>(g.release()));
}

GenerationParams params(const std::string& prompt, uint64_t seed, int steps) {
  GenerationParams p = quick_params(seed);
  p.prompt = prompt;
  p.steps = steps;
  p.max_clip_seconds = kMaxSeconds;
  return p;
}

void expect_same_audio(const GenerationResult& a, const GenerationResult& b) {
  ASSERT_EQ(a.audio.size(), b.audio.size());
  double worst = 0;
  for (size_t i = 0; i < a.audio.size(); ++i)
    worst = std::max(worst, std::fabs(double(a.audio[i]) - b.audio[i]));
  EXPECT_EQ(0, std::memcmp(a.audio.data(), b.audio.data(), a.audio.size() * sizeof(float)))
      << "max |difference| " << worst;
}

// A flag one thread sets and another waits for, with a deadline.
class Signal {
 public:
  void set() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      set_ = true;
    }
    changed_.notify_all();
  }
  bool wait_for(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, limit, [&] { return set_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool set_ = false;
};

// FOLEY_SIDE_BY_SIDE_ENCODERS for the generators made while it lives (read when one is made).
class SideBySide {
 public:
  explicit SideBySide(bool on) {
    if (on)
      ::setenv("FOLEY_SIDE_BY_SIDE_ENCODERS", "1", 1);
    else
      ::unsetenv("FOLEY_SIDE_BY_SIDE_ENCODERS");
  }
  ~SideBySide() { ::unsetenv("FOLEY_SIDE_BY_SIDE_ENCODERS"); }
  SideBySide(const SideBySide&) = delete;
  SideBySide& operator=(const SideBySide&) = delete;
};

// The lane's encoder forms to test: in turn (the default) and side by side; under the sanitizer
// (slow) only side by side, the one with more threads and views at once.
std::vector<bool> side_by_side_forms() {
  if (kSanitizerBuild) return {true};
  return {false, true};
}

struct OverlapRun {
  bool second_encoded_during_first_denoise = false;
  GenerationResult first, second;
};

// The first request's denoising waits (up to `limit`) for the second request's encoders; the
// second request starts once the first is denoising.
OverlapRun run_two(GeneratorImpl& g, const std::string& clip, const GenerationParams& p1,
                   const GenerationParams& p2, std::chrono::milliseconds limit) {
  OverlapRun out;
  Signal first_denoising, second_encoded;
  bool waited = false;
  GenerationCallbacks c1;
  c1.progress = [&](const GenerationProgress& p) {
    if (p.stage == "denoise" && p.step == 1 && !waited) {
      waited = true;
      first_denoising.set();
      out.second_encoded_during_first_denoise = second_encoded.wait_for(limit);
    }
  };
  GenerationCallbacks c2;
  c2.progress = [&](const GenerationProgress& p) {
    if (p.stage == "text") second_encoded.set();
  };
  std::thread second([&] {
    first_denoising.wait_for(std::chrono::seconds(60));
    out.second = g.generate(clip, p2, c2);
  });
  out.first = g.generate(clip, p1, c1);
  second.join();
  return out;
}

TEST(Overlap, EncodersRunBesideAnotherRequestsDenoising) {
  TINY_OR_SKIP();
  const std::string clip = tiny_clip(50);
  const GenerationParams p1 = params("footsteps on gravel", 1, 4);
  const GenerationParams p2 = params("a door slams shut", 2, 3);
  const auto serial = make(options(false), true);
  const GenerationResult alone1 = serial->generate(clip, p1);
  const GenerationResult alone2 = serial->generate(clip, p2);

  // The lane's encoders one after another (the default) and side by side.
  for (const bool side : side_by_side_forms()) {
    SCOPED_TRACE(side);
    const SideBySide env(side);
    const auto g = make(options(true), true);
    ASSERT_TRUE(g->lanes_open());
    EXPECT_NE(&g->encoder_backend(), &g->backend());
    EXPECT_NE(&g->sync_backend(), &g->backend());
    EXPECT_EQ(&g->sync_backend() != &g->encoder_backend(), side);
    const OverlapRun r = run_two(*g, clip, p1, p2, std::chrono::seconds(60));
    EXPECT_TRUE(r.second_encoded_during_first_denoise);
    expect_same_audio(r.first, alone1);
    expect_same_audio(r.second, alone2);
    // The same generator, one request at a time, is unchanged too.
    expect_same_audio(g->generate(clip, p2), alone2);
  }
}

TEST(Overlap, WithoutOpenLanesRequestsTakeTurns) {
  TINY_OR_SKIP();
  const std::string clip = tiny_clip(50);
  const GenerationParams p1 = params("rain on a tin roof", 3, 3);
  const GenerationParams p2 = params("wind", 4, 2);
  // Without the option, and with it before warm-up: the second request's encoders wait for
  // the first request to finish.
  for (const bool option : {false, true}) {
    SCOPED_TRACE(option);
    const auto g = make(options(option), false);
    EXPECT_FALSE(g->lanes_open());
    EXPECT_EQ(&g->encoder_backend() == &g->backend(), !option);
    EXPECT_EQ(&g->sync_backend() == &g->backend(), !option);
    const OverlapRun r = run_two(*g, clip, p1, p2, std::chrono::milliseconds(700));
    EXPECT_FALSE(r.second_encoded_during_first_denoise);
    EXPECT_EQ(r.first.audio.size(), r.second.audio.size());
  }
}

TEST(Overlap, StageArenaHoldsTheStepAndTheEncoderRegionSideBySide) {
  TINY_OR_SKIP();
  const auto plain = make(options(false), true);
  for (const bool side : side_by_side_forms()) {
    SCOPED_TRACE(side);
    const SideBySide env(side);
    const auto g = make(options(true), true);
    const pipeline::StageArenaNeeds& n = g->stage_arena_needs();
    const auto round = [](size_t b) {
      return (b + Arena::kAlignment - 1) / Arena::kAlignment * Arena::kAlignment;
    };
    // The largest encoder's need; side by side SigLIP2's and Synchformer's parts next to each other
    // (they run at once), CLAP's after them.
    const size_t encoders = side ? std::max(round(n.visual) + round(n.sync), round(n.text))
                                 : std::max({round(n.visual), round(n.sync), round(n.text)});
    const size_t want = std::max(n.largest(), round(n.step) + encoders);
    size_t stage = 0, plain_stage = 0;
    for (const pipeline::ArenaStat& a : g->arena_stats())
      if (a.name == "stage") stage = a.reserved;
    for (const pipeline::ArenaStat& a : plain->arena_stats())
      if (a.name == "stage") plain_stage = a.reserved;
    EXPECT_EQ(stage, want);
    EXPECT_EQ(plain_stage, plain->stage_arena_needs().largest());
    // The other arenas are those of a generator without lanes.
    EXPECT_EQ(g->memory().work_bytes - plain->memory().work_bytes,
              static_cast<int64_t>(stage - plain_stage));
  }
}

// Many callers at once, videos, text-only requests and batches mixed: each result is the one
// its request gets alone (batches of one: bitwise; see batch_test.cpp for why larger batches
// are compared within 1e-5).
TEST(Overlap, ManyCallersGetTheirOwnResults) {
  TINY_OR_SKIP();
  const std::string clip = tiny_clip(50), short_clip = tiny_clip(30);
  const auto serial = make(options(false, 2), true);
  const SideBySide env(true);  // the more concurrent form
  const auto g = make(options(true, 2), true);
  std::vector<GenerationParams> video, text;
  for (int i = 0; i < 4; ++i) {
    video.push_back(params(i % 2 ? "glass shatters" : "a dog barks twice", 10 + i, 2 + i % 2));
    GenerationParams t = params("thunder rolls far away", 20 + i, 2);
    t.seconds = 1.0 + 0.25 * i;
    text.push_back(t);
  }
  std::vector<GenerationResult> want_video, want_text;
  for (int i = 0; i < 4; ++i) {
    want_video.push_back(serial->generate(i % 2 ? short_clip : clip, video[i]));
    want_text.push_back(serial->generate_text(text[i]));
  }
  std::vector<GenerationResult> got_video(4), got_text(4);
  std::vector<BatchItemResult> batch;
  std::vector<std::thread> callers;
  for (int i = 0; i < 4; ++i) {
    callers.emplace_back(
        [&, i] { got_video[i] = g->generate(i % 2 ? short_clip : clip, video[i]); });
    callers.emplace_back([&, i] { got_text[i] = g->generate_text(text[i]); });
  }
  callers.emplace_back([&] {
    std::vector<GenerationRequest> reqs(2);
    reqs[0].video_path = clip;
    reqs[0].params = video[0];
    reqs[1].video_path = short_clip;
    reqs[1].params = video[1];  // another length: denoised alone
    batch = g->generate_batch(reqs);
  });
  for (std::thread& t : callers) t.join();
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    expect_same_audio(got_video[i], want_video[i]);
    expect_same_audio(got_text[i], want_text[i]);
  }
  ASSERT_EQ(batch.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(batch[i].result.has_value());
    EXPECT_EQ(batch[i].result->batch_size, 1);
    expect_same_audio(*batch[i].result, want_video[i]);
  }
}

// A clip beyond the span is encoded chunk by chunk while it decodes (each encoder in its part of
// the region) and its DAC runs in span-sized chunks (its turns on the region), while a
// text-only request runs beside it.
TEST(Overlap, LongClipsBesideOtherRequestsGetTheirOwnResults) {
  TINY_OR_SKIP();
  // A 10-s span's arenas and windows take minutes under the sanitizer; the regions and locks it
  // uses are the short clips' (above), which run there.
  if (kSanitizerBuild) GTEST_SKIP() << "long clips run in the main build";
  GeneratorOptions o = options(false);
  o.max_clip_seconds = 10.0;  // the smallest span that windows (9-s windows)
  o.max_video_seconds = 30.0;
  const auto serial = make(o, true);
  o.overlap_encoders = true;
  const SideBySide env(true);
  const auto g = make(o, true);
  const std::string clip = tiny_clip(300);  // 12 s: two windows
  GenerationParams p = params("a train passes", 30, 2);
  p.max_clip_seconds = 0;  // the whole clip
  GenerationParams t = params("crickets at night", 31, 2);
  t.seconds = 11.0;
  const GenerationResult want = serial->generate(clip, p), want_text = serial->generate_text(t);
  ASSERT_EQ(want.windows, 2);
  GenerationResult got, got_text;
  std::thread other([&] { got_text = g->generate_text(t); });
  got = g->generate(clip, p);
  other.join();
  expect_same_audio(got, want);
  expect_same_audio(got_text, want_text);
}

#ifdef FOLEY_HAVE_CUDA
// On CUDA the encoders' backend is a second stream with its own GEMM workspace and plans; the
// step graph stays on the first. Same bits as a generator without lanes.
TEST(CudaOverlap, EncodersOnASecondStreamGiveTheSameAudio) {
  if (!make_cuda_backend()) GTEST_SKIP() << "no CUDA device";
  TINY_OR_SKIP();
  const std::string clip = tiny_clip(50);
  GeneratorOptions o = options(false);
  o.device = DeviceType::kCuda;
  const auto serial = make(o, true);
  o.overlap_encoders = true;
  const GenerationParams p1 = params("footsteps on gravel", 1, 6);
  const GenerationParams p2 = params("a door slams shut", 2, 4);
  GenerationParams t = params("thunder", 3, 3);
  t.seconds = 1.5;
  const GenerationResult want1 = serial->generate(clip, p1), want2 = serial->generate(clip, p2),
                         want_text = serial->generate_text(t);
  for (const bool side : side_by_side_forms()) {
    SCOPED_TRACE(side);
    const SideBySide env(side);
    const auto g = make(o, true);
    ASSERT_TRUE(g->lanes_open());
    const OverlapRun r = run_two(*g, clip, p1, p2, std::chrono::seconds(60));
    EXPECT_TRUE(r.second_encoded_during_first_denoise);
    expect_same_audio(r.first, want1);
    expect_same_audio(r.second, want2);
    expect_same_audio(g->generate_text(t), want_text);
  }
}
#endif

}  // namespace
}  // namespace foley::test
