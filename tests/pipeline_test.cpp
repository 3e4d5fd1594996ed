// The generation pipeline (src/pipeline) on a complete tiny model from
// scripts/make_tiny_models.py (all five networks, converted to F32): output lengths, determinism,
// CFG, cancellation, parameter and video errors, frozen arenas, concurrency, and parity of the
// denoise + VAE stages with the networks run directly.
#include "pipeline/pipeline.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <tuple>

#include "backend/backend.h"
#include "foley/convert.h"
#include "foley/foley.h"
#include "foley/media.h"
#include "media_clips.h"
#include "models/text_features.h"
#include "test_util.h"
#include "tiny_pipeline.h"

namespace foley::test {
namespace {

namespace fs = std::filesystem;
using pipeline::GeneratorImpl;

// One generator for clips up to 4 s, shared by the tests that do not look at arenas. It is not
// warmed up (ctest runs each test in its own process, and its arenas grow on first use).
constexpr double kSharedMaxSeconds = 4.0;
GeneratorImpl& shared_generator() {
  static std::unique_ptr<Generator> g = [] {
    GeneratorOptions o;
    o.max_clip_seconds = kSharedMaxSeconds;
    return Generator::create(TinyModel::get()->model, o);
  }();
  return static_cast<GeneratorImpl&>(*g);
}

std::string clip(int frames) {
  return tiny_clip(frames);
}

GenerationParams quick(uint64_t seed = 7) {
  GenerationParams p = quick_params(seed);
  p.max_clip_seconds = kSharedMaxSeconds;
  return p;
}

// Audio samples the reference would produce for a clip: T25 from media's own frame sampler
// (the accumulated 25 fps clock takes 24 targets from 25 frames at 0..0.96 s).
ClipTiming expected_timing(const std::string& path, double max_seconds) {
  DecodeOptions o;
  o.end_sec = max_seconds;
  return clip_timing(decode_video(path, o).sync.count);
}
int64_t expected_samples(const std::string& path, double max_seconds) {
  return expected_timing(path, max_seconds).audio_samples;
}

void expect_valid_audio(const GenerationResult& r, int64_t samples) {
  ASSERT_EQ(static_cast<int64_t>(r.audio.size()), samples);
  EXPECT_EQ(r.sample_rate, 48000);
  for (float v : r.audio) {
    ASSERT_TRUE(std::isfinite(v));
    ASSERT_LE(std::fabs(v), 1.0f);
  }
}

template <typename F>
void expect_error(ErrorKind kind, const std::string& needle, F&& f) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Pipeline, ModelInfoAndMissingNetworks) {
  TINY_OR_SKIP();
  const ModelInfo info = tiny->model->info();
  EXPECT_TRUE(info.is_tiny);
  EXPECT_GT(info.parameters, 10000);
  EXPECT_GT(info.bundle_bytes, info.parameters * 4 - 1);
  EXPECT_NE(info.dit_summary.find("MMDiT hidden"), std::string::npos);
  expect_error(ErrorKind::kNotFound, "not found",
               [] { Model::load({"/nonexistent.safetensors"}); });
  // A DAC-only bundle is a valid bundle but cannot generate.
  const std::string partial = temp_dir() + "/dac_only.safetensors";
  const std::string dir = temp_dir();
  ASSERT_EQ(run_command(std::string(FOLEY_PYTHON) + " " +
                        source_path("scripts/make_tiny_models.py") + " " + dir + " --no-dit"),
            0);
  ConvertRequest dac_only;
  dac_only.model_dir = dir;
  dac_only.output = partial;
  convert_model(dac_only);
  expect_error(ErrorKind::kInvalidInput, "\"dit\"", [&] { Model::load({partial}); });
}

TEST(Pipeline, OutputLengthFollowsTheClipAndIsCappedAt15s) {
  TINY_OR_SKIP();
  // A 15 s generator, used without warm-up (its arenas grow on the first request).
  auto gen = Generator::create(tiny->model);
  auto& g = static_cast<GeneratorImpl&>(*gen);
  EXPECT_EQ(g.max_latent_frames(), 752);
  EXPECT_EQ(g.max_semantic_frames(), 121);
  EXPECT_EQ(g.max_sync_frames(), 376);
  // 1 s, 2.52 s and 16 s of video; the last is capped at 15 s (T25 = 376, Ta = 752).
  for (int frames : {25, 63, 400}) {
    SCOPED_TRACE(frames);
    GenerationParams p = quick();
    p.steps = 1;
    p.max_clip_seconds = 15.0;
    const GenerationResult r = g.generate(clip(frames), p);
    const int64_t samples = expected_samples(clip(frames), 15.0);
    expect_valid_audio(r, samples);
    if (frames == 25) {
      EXPECT_EQ(samples, 48 * 960);  // T25 = 24: the accumulated clock overshoots 0.96 s
    }
    if (frames == 400) {
      EXPECT_EQ(samples, 752 * 960);
    }
    EXPECT_DOUBLE_EQ(r.audio_seconds, expected_timing(clip(frames), 15.0).audio_seconds);
    std::vector<std::string> stages;
    for (const auto& s : r.timings) stages.push_back(s.stage);
    EXPECT_EQ(stages,
              (std::vector<std::string>{"decode", "visual", "sync", "text", "denoise", "vae"}));
  }
}

TEST(Pipeline, SeedDeterminesTheOutputAndCfgMatters) {
  TINY_OR_SKIP();
  GeneratorImpl& g = shared_generator();
  const std::string c = clip(25);
  const GenerationResult a = g.generate(c, quick(7));
  const GenerationResult b = g.generate(c, quick(7));
  const GenerationResult other = g.generate(c, quick(8));
  EXPECT_EQ(a.audio, b.audio);
  EXPECT_NE(a.audio, other.audio);
  GenerationParams off = quick(7);
  off.guidance = 1.0f;
  const GenerationResult no_cfg = g.generate(c, off);
  expect_valid_audio(no_cfg, expected_samples(clip(25), kSharedMaxSeconds));
  EXPECT_NE(a.audio, no_cfg.audio);
}

TEST(Pipeline, ProgressAndCancellation) {
  TINY_OR_SKIP();
  GeneratorImpl& g = shared_generator();
  std::vector<std::string> seen;
  std::atomic<bool> cancel{false};
  GenerationCallbacks cb;
  cb.cancel = &cancel;
  cb.progress = [&](const GenerationProgress& p) {
    seen.push_back(p.stage + ":" + std::to_string(p.step) + "/" + std::to_string(p.total_steps));
    if (p.stage == "denoise" && p.step == 2) cancel = true;
  };
  GenerationParams p = quick();
  p.steps = 5;
  expect_error(ErrorKind::kCancelled, "cancelled", [&] { g.generate(clip(25), p, cb); });
  EXPECT_EQ(seen, (std::vector<std::string>{"decode:0/0", "visual:0/0", "sync:0/0", "text:0/0",
                                            "denoise:0/5", "denoise:1/5", "denoise:2/5"}));
  // Cancelled before it starts: nothing runs.
  seen.clear();
  expect_error(ErrorKind::kCancelled, "cancelled", [&] { g.generate(clip(25), p, cb); });
  EXPECT_TRUE(seen.empty());
  // The generator is usable afterwards.
  cancel = false;
  cb.progress = nullptr;
  expect_valid_audio(g.generate(clip(25), quick(), cb),
                     expected_samples(clip(25), kSharedMaxSeconds));
}

TEST(Pipeline, BadParametersNameTheField) {
  TINY_OR_SKIP();
  GeneratorImpl& g = shared_generator();
  const std::string c = clip(25);
  auto with = [&](auto edit, const char* field) {
    GenerationParams p = quick();
    edit(p);
    expect_error(ErrorKind::kInvalidInput, field, [&] { g.generate(c, p); });
  };
  with([](GenerationParams& p) { p.steps = 0; }, "steps");
  with([](GenerationParams& p) { p.steps = 201; }, "steps");
  with([](GenerationParams& p) { p.guidance = std::nanf(""); }, "guidance");
  with([](GenerationParams& p) { p.guidance = 31.0f; }, "guidance");
  with([](GenerationParams& p) { p.guidance = -1.0f; }, "guidance");
  with([](GenerationParams& p) { p.prompt = std::string(4097, 'a'); }, "prompt");
  with([](GenerationParams& p) { p.prompt = "bad \xC3\x28 utf8"; }, "prompt");
  with([](GenerationParams& p) { p.prompt = "surrogate \xED\xA0\x80"; }, "prompt");
  with([](GenerationParams& p) { p.negative_prompt = "overlong \xC0\xAF"; }, "negative_prompt");
  with([](GenerationParams& p) { p.max_clip_seconds = -1; }, "max_clip_seconds");
  with([](GenerationParams& p) { p.max_clip_seconds = 601; }, "max_clip_seconds");
  EXPECT_TRUE(pipeline::valid_utf8("h\xC3\xA9llo \xF0\x9F\x94\x8A"));
  GenerationParams empty = quick();
  empty.prompt = "";
  expect_valid_audio(g.generate(c, empty), expected_samples(clip(25), kSharedMaxSeconds));
}

TEST(Pipeline, UnusableVideosAreInvalidInput) {
  TINY_OR_SKIP();
  GeneratorImpl& g = shared_generator();
  expect_error(ErrorKind::kInvalidInput, "0.64 s", [&] { g.generate(clip(8), quick()); });
  const std::string text = temp_dir() + "/notes.mp4";
  media::write_file(text, "this is not a video, just some text\n");
  try {
    g.generate(text, quick());
    ADD_FAILURE() << "a text file was accepted";
  } catch (const Error& e) {
    // Without FFmpeg only Y4M is read: anything else is "built without FFmpeg" (kUnsupported).
    if (media_has_ffmpeg() || e.kind() != ErrorKind::kUnsupported) {
      EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(ErrorKind::kInvalidInput)) << e.what();
    }
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
  expect_error(ErrorKind::kNotFound, "", [&] { g.generate("/nonexistent/clip.mp4", quick()); });
}

TEST(Pipeline, EncoderSizedFramesGiveTheNativeFramesFeatures) {
  TINY_OR_SKIP();
  GeneratorImpl& g = shared_generator();
  // 128x96 frames: SigLIP2's stretch and Synchformer's resize + crop both do work.
  const std::string path = temp_dir() + "/wide.y4m";
  media::write_index_y4m(path, 30, "25:1");
  const pipeline::ClipFrames compact = g.decode(path, kSharedMaxSeconds);
  const DecodedVideo native = decode_video(path);
  ASSERT_EQ(compact.semantic.dim(0), native.semantic.count);
  ASSERT_EQ(compact.sync.dim(0), native.sync.count);
  auto stack = [](const FrameStack& s) {
    return Tensor(const_cast<uint8_t*>(s.rgb.data()), DType::kU8, {s.count, s.height, s.width, 3},
                  DeviceKind::kCPU);
  };
  Arena a(g.backend().block_allocator());
  const Tensor f1 = g.siglip().encode_frames(compact.semantic, a);
  const Tensor f2 = g.siglip().encode_frames(stack(native.semantic), a);
  EXPECT_EQ(max_abs_error(f1, f2), 0.0);
  const Tensor s1 = g.synchformer().encode_frames(compact.sync, a);
  const Tensor s2 = g.synchformer().encode_frames(stack(native.sync), a);
  EXPECT_EQ(max_abs_error(s1, s2), 0.0);
}

TEST(Pipeline, DenoiseAndVaeMatchTheNetworksRunDirectly) {
  TINY_OR_SKIP();
  GeneratorImpl& g = shared_generator();
  const MmditConfig& c = g.dit().config();
  const int ta = 50;
  pipeline::ClipFeatures f;
  f.audio_len = ta;
  f.audio_seconds = 1.0;
  f.cond.clip = random_tensor({8, c.clip_dim}, DType::kF32, 1);
  f.cond.sync = random_tensor({16, c.sync_dim}, DType::kF32, 2);
  f.cond.text = random_tensor({9, c.text_dim}, DType::kF32, 3);
  f.cond.uncond_text = random_tensor({9, c.text_dim}, DType::kF32, 4);
  const Tensor noise = flow_initial_noise(c.latent_dim, ta, 11);
  GenerationParams p = quick();
  const GenerationResult r = g.generate_features(f, p, {}, &noise);

  // The same computation with fresh networks on a fresh backend.
  const auto& model = static_cast<const pipeline::ModelImpl&>(*TinyModel::get()->model);
  auto be = make_cpu_backend();
  const Mmdit dit(model.weights(), *be);
  const DacDecoder dac(model.weights(), *be);
  FlowSampleParams sp;
  sp.steps = p.steps;
  sp.guidance = p.guidance;
  Arena step(be->block_allocator());
  const Tensor latent = flow_sample(dit, f.cond, sp, ta, &noise, step);
  Tensor lat = Tensor::empty({1, ta, c.latent_dim}, DType::kF32);
  for (int64_t t = 0; t < ta; ++t)
    for (int64_t k = 0; k < c.latent_dim; ++k)
      lat.data<float>()[t * c.latent_dim + k] = latent.data<float>()[k * ta + t];
  Tensor audio = Tensor::empty({1, int64_t{ta} * 960}, DType::kF32);
  auto ws = dac.make_workspace(ta);
  dac.decode(lat, audio, *ws);
  ASSERT_EQ(static_cast<int64_t>(r.audio.size()), audio.numel());
  double worst = 0;
  for (int64_t i = 0; i < audio.numel(); ++i)
    worst = std::max(worst, std::fabs(double(r.audio[size_t(i)]) - audio.data<float>()[i]));
  // Same ops in the same order; only the step arena's size differs. Tolerance 1e-6 absolute.
  EXPECT_LE(worst, 1e-6);
}

TEST(Pipeline, ArenasAreFrozenByWarmUpAndNeverGrow) {
  TINY_OR_SKIP();
  GeneratorOptions o;
  o.max_clip_seconds = kSharedMaxSeconds;
  auto gen = Generator::create(tiny->model, o);
  auto& g = static_cast<GeneratorImpl&>(*gen);
  EXPECT_EQ(g.max_sync_frames(), 100);
  gen->warm_up();
  const auto before = g.arena_stats();
  for (const auto& a : before) EXPECT_TRUE(a.frozen) << a.name;
  g.generate(clip(63), quick());
  g.generate(clip(400), quick());  // capped at 4 s: the largest shape again
  GenerationParams long_text = quick();
  long_text.prompt = std::string(300, 'x') + " a long prompt with many words";
  g.generate(clip(25), long_text);
  const auto after = g.arena_stats();
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].reserved, after[i].reserved) << before[i].name;
    EXPECT_EQ(before[i].high_water, after[i].high_water) << before[i].name;
  }
  GenerationParams too_long = quick();
  too_long.max_clip_seconds = 601;  // beyond max_video_seconds
  expect_error(ErrorKind::kInvalidInput, "max_clip_seconds",
               [&] { g.generate(clip(25), too_long); });
  // Longer than the 4 s span: windows need a span of 9 s or more.
  too_long.max_clip_seconds = 16;
  expect_error(ErrorKind::kInvalidInput, "span", [&] { g.generate(clip(400), too_long); });
  GeneratorOptions bad;
  bad.max_clip_seconds = 0.5;
  expect_error(ErrorKind::kInvalidInput, "0.64", [&] { Generator::create(tiny->model, bad); });
}

// The stages that never overlap (SigLIP2, Synchformer, CLAP's work memory, the DiT step, the DAC)
// share one arena of the largest need, frozen by warm-up, which also reports its parts' times.
TEST(Pipeline, StagesShareOneArenaOfTheLargestNeed) {
  TINY_OR_SKIP();
  GeneratorOptions o;
  o.max_clip_seconds = kSharedMaxSeconds;
  auto gen = Generator::create(tiny->model, o);
  auto& g = static_cast<GeneratorImpl&>(*gen);
  gen->warm_up();
  std::vector<std::string> names;
  size_t total = 0;
  const pipeline::ArenaStat* stage = nullptr;
  const auto stats = g.arena_stats();
  for (const auto& a : stats) {
    names.push_back(a.name);
    total += a.reserved;
    if (a.name == "stage") stage = &a;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"stage", "text_out", "flow_inputs", "dit_context",
                                             "timestep_table", "io"}));
  ASSERT_NE(stage, nullptr);
  const pipeline::StageArenaNeeds& n = g.stage_arena_needs();
  for (size_t need : {n.visual, n.sync, n.text, n.step, n.dac}) EXPECT_GT(need, 0u);
  // One block of the largest need (an arena's first block is at least 1 MiB), far from the sum.
  EXPECT_EQ(stage->reserved, std::max<size_t>(n.largest(), size_t{1} << 20));
  EXPECT_LT(stage->reserved, n.sum());
  EXPECT_GT(stage->high_water, 0u);
  EXPECT_LE(stage->high_water, stage->reserved);
  EXPECT_TRUE(stage->frozen);
  // The sampler borrows it: the step is not an arena of its own.
  EXPECT_FALSE(g.flow_workspace().owns_step_arena());
  EXPECT_EQ(g.flow_workspace().step_arena().reserved(), stage->reserved);
  // Nothing on a device: the arenas are host memory on the CPU backend.
  EXPECT_EQ(gen->device_bytes(), 0);
  EXPECT_GT(total, stage->reserved);

  std::vector<std::string> parts;
  double sum = 0, all = -1;
  for (const StageTiming& t : g.warm_up_timings()) {
    parts.push_back(t.stage);
    EXPECT_GE(t.seconds, 0.0) << t.stage;
    if (t.stage == "total")
      all = t.seconds;
    else
      sum += t.seconds;
  }
  EXPECT_EQ(parts, (std::vector<std::string>{"encoders", "text", "freeze", "denoise", "vae",
                                             "schedule", "total"}));
  EXPECT_GE(all, sum);
  // The default 50-step schedule's timestep rows are ready before the first request.
  EXPECT_GE(g.flow_workspace().timestep_table().rows_computed(), 50u);
}

// The shared arena changes only where activations live: a request gives the bits of the same
// networks run stage by stage with an arena each (the layout before the arena was shared).
TEST(Pipeline, SharedStageArenaGivesTheBitsOfSeparateArenas) {
  TINY_OR_SKIP();
  GeneratorImpl& g = shared_generator();
  const pipeline::ClipFrames frames = g.synthetic_clip(20, 60);
  const GenerationParams p = quick(5);
  const GenerationResult r = g.generate_frames(frames, p);

  Backend& be = g.backend();
  auto own_arena = [&] { return Arena(be.block_allocator()); };
  FlowConditions cond;
  {
    Arena a = own_arena();
    const Tensor v = g.siglip().encode_frames(frames.semantic, a);
    cond.clip = v.reshape({v.dim(1), v.dim(2)});
  }
  {
    Arena a = own_arena();
    const Tensor s = g.synchformer().encode_frames(frames.sync, a);
    cond.sync = s.reshape({s.dim(1), s.dim(2)});
  }
  {
    Arena out = own_arena(), work = own_arena();
    const TextFeatures f =
        encode_text_features(g.tokenizer(), g.clap(), p.prompt, p.negative_prompt, out, work);
    Tensor hidden = Tensor::empty(f.hidden.shape(), DType::kF32);
    be.copy_to_host(hidden, f.hidden);
    be.synchronize();
    const int64_t keep = f.cond.dim(1), l = hidden.dim(1), h = hidden.dim(2);
    cond.uncond_text = Tensor::empty({keep, h}, DType::kF32);
    cond.text = Tensor::empty({keep, h}, DType::kF32);
    std::memcpy(cond.uncond_text.data<float>(), hidden.data<float>(), size_t(keep * h) * 4);
    std::memcpy(cond.text.data<float>(), hidden.data<float>() + l * h, size_t(keep * h) * 4);
  }
  const int ta = frames.timing.latent_frames;
  FlowSampleParams sp;
  sp.steps = p.steps;
  sp.guidance = p.guidance;
  sp.seed = p.seed;
  FlowWorkspace ws(g.dit(), g.flow_limits());  // its own step arena
  ASSERT_TRUE(ws.owns_step_arena());
  const Tensor latent = flow_sample(g.dit(), cond, sp, ta, nullptr, ws);
  const int64_t c = latent.dim(1);
  Tensor lat = Tensor::empty({1, ta, c}, DType::kF32);
  for (int64_t t = 0; t < ta; ++t)
    for (int64_t k = 0; k < c; ++k) lat.data<float>()[t * c + k] = latent.data<float>()[k * ta + t];
  Tensor audio = Tensor::empty({1, int64_t{ta} * 960}, DType::kF32);
  const auto dac_ws = g.dac().make_workspace(ta);
  g.dac().decode(lat, audio, *dac_ws);
  ASSERT_EQ(static_cast<int64_t>(r.audio.size()), audio.numel());
  EXPECT_EQ(r.audio, std::vector<float>(audio.data<float>(), audio.data<float>() + audio.numel()));
}

TEST(Pipeline, GeneratorsRunConcurrentlyWithTheSameResults) {
  TINY_OR_SKIP();
  const std::string c = clip(25);
  const GenerationResult serial = shared_generator().generate(c, quick(3));
  std::vector<GenerationResult> results(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i)
    threads.emplace_back([&, i] {
      try {
        GeneratorOptions o;
        o.max_clip_seconds = kSharedMaxSeconds;
        auto gen = Generator::create(tiny->model, o);
        results[size_t(i)] = gen->generate(c, quick(3));
      } catch (const std::exception& e) {
        errors[size_t(i)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(errors[size_t(i)], "");
    EXPECT_EQ(results[size_t(i)].audio, serial.audio) << "thread " << i;
  }
}

TEST(Pipeline, FastPrecisionOnTheCpuComputesWhatExactDoes) {
  // The CPU has no reduced-precision F32 math (GeneratorOptions::precision says so).
  TINY_OR_SKIP();
  GeneratorOptions o;
  o.max_clip_seconds = kSharedMaxSeconds;
  o.precision = Precision::kFast;
  auto fast = Generator::create(tiny->model, o);
  const std::string c = clip(25);
  EXPECT_EQ(fast->generate(c, quick(3)).audio, shared_generator().generate(c, quick(3)).audio);
}

#ifdef FOLEY_HAVE_CUDA
// On a GPU: --precision fast moves the video encoders' features a little (TF32 products) and
// leaves the text features alone. The measured distance is printed; the bound is loose (TF32
// rounds inputs to 2^-11 relative; the tiny encoders have a few layers).
TEST(CudaPipeline, FastPrecisionEncodersStayClose) {
  if (!make_cuda_backend()) GTEST_SKIP() << "no CUDA device";
  TINY_OR_SKIP();
  GeneratorOptions o;
  o.device = DeviceType::kCuda;
  o.max_clip_seconds = 2.0;
  auto exact = Generator::create(tiny->model, o);
  o.precision = Precision::kFast;
  auto fast = Generator::create(tiny->model, o);
  auto& e = static_cast<GeneratorImpl&>(*exact);
  auto& f = static_cast<GeneratorImpl&>(*fast);
  const pipeline::ClipFrames frames = e.synthetic_clip(16, 50);
  GenerationParams p = quick();
  p.max_clip_seconds = 2.0;
  const pipeline::ClipFeatures a = e.features_of(frames, p), b = f.features_of(frames, p);
  for (const auto& [name, x, y] : {std::tuple{"visual", &a.cond.clip, &b.cond.clip},
                                   std::tuple{"sync", &a.cond.sync, &b.cond.sync}}) {
    ASSERT_EQ(x->shape(), y->shape()) << name;
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < x->numel(); ++i) {
      scale = std::max(scale, std::fabs(double(x->data<float>()[i])));
      worst = std::max(worst, std::fabs(double(x->data<float>()[i]) - y->data<float>()[i]));
    }
    std::printf("[precision] %s max |fast - exact| / max |exact| = %.3e\n", name, worst / scale);
    EXPECT_LT(worst / scale, 2e-2) << name;
  }
  EXPECT_EQ(0, std::memcmp(a.cond.text.raw(), b.cond.text.raw(), a.cond.text.nbytes()));
}
#endif

#ifndef FOLEY_HAVE_CUDA
TEST(Pipeline, CudaIsUnsupportedWithoutCuda) {
  TINY_OR_SKIP();
  GeneratorOptions o;
  o.device = DeviceType::kCuda;
  expect_error(ErrorKind::kUnsupported, "CUDA not available",
               [&] { Generator::create(tiny->model, o); });
}
#endif

}  // namespace
}  // namespace foley::test
