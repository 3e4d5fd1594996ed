// ModelRegistry (include/foley/registry.h) on the CPU with two tiny models of different sizes:
// loading on demand, least-recently-used eviction within the budget, never evicting a model
// that runs a request, unloading refused while busy, no request lost or answered by the wrong
// model while models swap under concurrent load.
#include "foley/registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "foley/convert.h"
#include "test_util.h"
#include "tiny_pipeline.h"

namespace foley::test {
namespace {

// Model "big": the tiny model with a DAC twice as wide (a different size from TinyModel's).
const std::string& big_bundle() {
  static const std::string path = [] {
    const std::string dir = temp_dir();
    const std::string source = cached_tiny_models("--seed 4 --decoder-dim 128");
    if (source.empty()) return std::string();
    ConvertRequest req;
    req.model_dir = source;
    req.dtype = "f32";
    req.output = dir + "/big.safetensors";
    convert_model(req);
    return req.output;
  }();
  return path;
}

RegistryOptions small_options(int64_t budget = 0) {
  RegistryOptions o;
  o.generator.max_clip_seconds = 2.0;  // small arenas, quick warm-up
  o.generator.max_video_seconds = 2.0;
  o.budget_bytes = budget;
  return o;
}

std::vector<float> text_audio(Generator& g, uint64_t seed) {
  GenerationParams p;
  p.prompt = "a door slams";
  p.steps = 1;
  p.seed = seed;
  p.seconds = 1.0;
  return g.generate_text(p).audio;
}

const RegistryModelStatus& find(const std::vector<RegistryModelStatus>& all, const std::string& n) {
  for (const auto& s : all)
    if (s.name == n) return s;
  throw std::runtime_error("no model " + n);
}

struct Sizes {
  int64_t small = 0, big = 0;
};
// Each model's measured cost, loaded alone.
const Sizes& sizes() {
  static const Sizes s = [] {
    ModelRegistry r({{"small", TinyModel::get()->bundle}, {"big", big_bundle()}}, small_options());
    r.load("small");
    r.load("big");
    Sizes out;
    out.small = find(r.status(), "small").bytes;
    out.big = find(r.status(), "big").bytes;
    return out;
  }();
  return s;
}

#define REGISTRY_OR_SKIP()                \
  TINY_OR_SKIP();                         \
  if (big_bundle().empty()) GTEST_FAIL(); \
  const Sizes& size = sizes();            \
  ASSERT_GT(size.small, 0);               \
  ASSERT_GT(size.big, size.small)

TEST(ModelRegistry, LoadsOnDemandAndEvictsTheLeastRecentlyUsedIdleModel) {
  REGISTRY_OR_SKIP();
  std::printf("[registry] small %.1f MB, big %.1f MB\n", size.small / 1e6, size.big / 1e6);
  // Room for "big" and one "small", not for all three.
  const int64_t budget = size.big + size.small + size.small / 2;
  ModelRegistry r(
      {{"a", TinyModel::get()->bundle}, {"b", TinyModel::get()->bundle}, {"big", big_bundle()}},
      small_options(budget));
  EXPECT_EQ(r.default_model(), "a");
  for (const auto& s : r.status()) EXPECT_EQ(s.state, ModelState::kUnloaded) << s.name;
  { auto lease = r.acquire("a"); }
  { auto lease = r.acquire("big"); }
  EXPECT_EQ(r.used_bytes(), size.small + size.big);
  // "a" is now the least recently used: loading "b" evicts it, not "big".
  { auto lease = r.acquire("b"); }
  auto st = r.status();
  EXPECT_EQ(find(st, "a").state, ModelState::kUnloaded);
  EXPECT_EQ(find(st, "a").evictions, 1);
  EXPECT_EQ(find(st, "big").state, ModelState::kLoaded);
  EXPECT_EQ(find(st, "b").state, ModelState::kLoaded);
  EXPECT_LE(r.used_bytes(), budget);
  // Use "big", then "a" evicts "b" (least recently used now).
  { auto lease = r.acquire("big"); }
  { auto lease = r.acquire(""); }  // the default model, "a"
  st = r.status();
  EXPECT_EQ(find(st, "b").state, ModelState::kUnloaded);
  EXPECT_EQ(find(st, "a").loads, 2);
  EXPECT_EQ(find(st, "a").requests, 2);
  EXPECT_LE(r.used_bytes(), budget);
}

TEST(ModelRegistry, UnloadIsRefusedWhileARequestRuns) {
  REGISTRY_OR_SKIP();
  ModelRegistry r({{"small", TinyModel::get()->bundle}}, small_options());
  {
    auto lease = r.acquire("small");
    EXPECT_FALSE(r.unload("small"));
    EXPECT_EQ(find(r.status(), "small").running, 1);
  }
  EXPECT_TRUE(r.unload("small"));
  EXPECT_EQ(find(r.status(), "small").state, ModelState::kUnloaded);
  EXPECT_EQ(r.used_bytes(), 0);
  EXPECT_TRUE(r.unload("small"));  // already unloaded
}

// With two lanes per generator (GeneratorOptions::overlap_encoders) a generator takes two
// requests at once; idle generators are handed out first.
TEST(ModelRegistry, LeasesAGeneratorWithLanesTwice) {
  REGISTRY_OR_SKIP();
  RegistryOptions o = small_options();
  o.generator.overlap_encoders = true;
  o.generators_per_model = 2;
  ModelRegistry r({{"small", TinyModel::get()->bundle}}, o);
  EXPECT_EQ(r.leases_per_generator(), 2);
  std::vector<ModelRegistry::Lease> held;
  held.push_back(r.acquire("small"));
  held.push_back(r.acquire("small"));
  EXPECT_NE(&held[0].generator(), &held[1].generator()) << "an idle generator was left idle";
  held.push_back(r.acquire("small"));
  held.push_back(r.acquire("small"));
  EXPECT_EQ(find(r.status(), "small").running, 4);
  std::atomic<bool> cancel{true};
  EXPECT_THROW(r.acquire("small", &cancel), Error) << "a fifth request got a lease";
  // Both leases of a generator run requests at once.
  EXPECT_EQ(&held[0].generator(), &held[2].generator());
  std::vector<float> a, b;
  std::thread other([&] { b = text_audio(held[2].generator(), 5); });
  a = text_audio(held[0].generator(), 5);
  other.join();
  EXPECT_EQ(a, b);
  held.clear();
  EXPECT_EQ(find(r.status(), "small").running, 0);
  EXPECT_EQ(
      ModelRegistry({{"small", TinyModel::get()->bundle}}, small_options()).leases_per_generator(),
      1);
}

TEST(ModelRegistry, NeverEvictsAModelThatIsRunning) {
  REGISTRY_OR_SKIP();
  // Room for one model at a time.
  ModelRegistry r({{"small", TinyModel::get()->bundle}, {"big", big_bundle()}},
                  small_options(size.big + size.small / 2));
  auto held = std::make_unique<ModelRegistry::Lease>(r.acquire("small"));
  std::atomic<bool> got{false}, told{false};
  std::thread other([&] {
    auto lease = r.acquire("big", nullptr, [&] { told = true; });
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(got.load()) << "\"big\" was loaded while \"small\" was running";
  EXPECT_TRUE(told.load()) << "the waiting request was not told that a model is loading";
  EXPECT_EQ(find(r.status(), "small").state, ModelState::kLoaded);
  held.reset();  // the request ends: now "small" can go
  other.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(find(r.status(), "small").state, ModelState::kUnloaded);
  EXPECT_EQ(find(r.status(), "big").state, ModelState::kLoaded);
}

TEST(ModelRegistry, ErrorsNameTheProblem) {
  REGISTRY_OR_SKIP();
  ModelRegistry r({{"small", TinyModel::get()->bundle}}, small_options(size.small / 2));
  try {
    r.acquire("nope");
    ADD_FAILURE() << "unknown model accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("small"), std::string::npos) << e.what();
  }
  try {
    r.acquire("small");
    ADD_FAILURE() << "a model larger than the budget was loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << e.what();
  }
  EXPECT_THROW(ModelRegistry({{"x", "/nonexistent.safetensors"}}, small_options()), Error);
  EXPECT_THROW(
      ModelRegistry({{"x", TinyModel::get()->bundle}, {"x", big_bundle()}}, small_options()),
      Error);
  // Waiting for a model can be cancelled.
  ModelRegistry one({{"small", TinyModel::get()->bundle}, {"big", big_bundle()}},
                    small_options(size.big + size.small / 2));
  auto held = one.acquire("small");
  std::atomic<bool> cancel{true};
  EXPECT_THROW(one.acquire("big", &cancel), Error);
}

// Four threads, two models that cannot both be loaded: every request gets its own model's
// answer (compared with each model's result computed alone), none fails. Six requests per
// thread (three under the sanitizer, which is what makes this slow there).
TEST(ModelRegistry, SwapsUnderConcurrentLoadLoseAndMixNothing) {
  REGISTRY_OR_SKIP();
  std::map<std::string, std::vector<float>> want;
  {
    ModelRegistry alone({{"small", TinyModel::get()->bundle}, {"big", big_bundle()}},
                        small_options());
    for (const char* m : {"small", "big"}) {
      auto lease = alone.acquire(m);
      want[m] = text_audio(lease.generator(), 5);
    }
  }
  ASSERT_NE(want["small"], want["big"]);
  RegistryOptions o = small_options(size.big + size.small / 2);
  o.generators_per_model = 2;
  // The budget counts both generators' arenas now: measured again in a first load.
  ModelRegistry r({{"small", TinyModel::get()->bundle}, {"big", big_bundle()}}, o);
  constexpr int kPerThread = kSanitizerBuild ? 3 : 6;
  std::atomic<int> done{0}, wrong{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string m = (t + i) % 2 ? "big" : "small";
        try {
          auto lease = r.acquire(m);
          if (text_audio(lease.generator(), 5) != want[m]) ++wrong;
          ++done;
        } catch (const std::exception& e) {
          std::printf("request failed: %s\n", e.what());
          ++failed;
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(done.load(), 4 * kPerThread);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  const auto st = r.status();
  std::printf("[registry] %d requests, loads small %d big %d, evictions small %d big %d\n",
              4 * kPerThread, find(st, "small").loads, find(st, "big").loads,
              find(st, "small").evictions, find(st, "big").evictions);
  EXPECT_GE(find(st, "small").loads + find(st, "big").loads, 3) << "no swap happened";
  EXPECT_LE(r.used_bytes(), o.budget_bytes);
}

}  // namespace
}  // namespace foley::test
