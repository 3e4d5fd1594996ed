// The complete tiny model (all five networks, official formats from
// scripts/make_tiny_models.py, converted to F32) for the pipeline tests.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "foley/convert.h"
#include "foley/foley.h"
#include "media_clips.h"
#include "test_util.h"

namespace foley::test {

// A hash of the tiny-model generator scripts: folders they write are cached in /tmp under it
// and made again only when a script changes.
inline std::string tiny_scripts_key() {
  std::string text;
  for (const char* f : {"scripts/make_tiny_models.py", "scripts/tiny_models/dit.py",
                        "scripts/tiny_models/seeded.py", "scripts/tiny_models/siglip2.py",
                        "scripts/tiny_models/clap.py", "scripts/tiny_models/synchformer.py",
                        "tests/python/fp8_reference.py"}) {
    std::ifstream in(source_path(f), std::ios::binary);
    text += std::string(std::istreambuf_iterator<char>(in), {});
  }
  return std::to_string(std::hash<std::string>()(text));
}

// A folder written by scripts/make_tiny_models.py with `args`: it depends only on the generator
// scripts, so it is cached in /tmp under a hash of them and the arguments (Python with torch is
// most of a test's time) and renamed into place whole, so a half-made folder is never taken.
// Returns "" after reporting a failure.
inline std::string cached_tiny_models(const std::string& args) {
  const std::string key = tiny_scripts_key() + "-" + std::to_string(std::hash<std::string>()(args));
  const std::string dir = "/tmp/foley-tiny-" + key;
  if (std::filesystem::exists(dir + "/complete")) return dir;
  const std::string tmp = temp_dir();
  const std::string cmd = std::string(FOLEY_PYTHON) + " " +
                          source_path("scripts/make_tiny_models.py") + " " + tmp + " " + args +
                          " 2>&1";
  std::string out;
  if (run_command(cmd, &out) != 0) {
    ADD_FAILURE() << cmd << "\n" << out;
    return "";
  }
  std::ofstream(tmp + "/complete") << "ok\n";
  std::error_code ec;
  std::filesystem::rename(tmp, dir, ec);  // losing a race to another process is fine
  return std::filesystem::exists(dir + "/complete") ? dir : tmp;
}

// The tiny model (seed 3), converted in every process.
struct TinyModel {
  std::string bundle;
  std::shared_ptr<const Model> model;

  static const TinyModel* get() {
    static std::unique_ptr<TinyModel> tiny = []() -> std::unique_ptr<TinyModel> {
      const std::string source = cached_tiny_models("--seed 3");
      if (source.empty()) return nullptr;
      auto t = std::make_unique<TinyModel>();
      t->bundle = temp_dir() + "/tiny.safetensors";
      ConvertRequest req;
      req.model_dir = source;
      req.dtype = "f32";
      req.output = t->bundle;
      convert_model(req);
      t->model = Model::load({t->bundle});
      return t;
    }();
    return tiny.get();
  }
};

// Without python3-torch the tiny model cannot be made (skipped here, a failure in CI); when it
// can but making it failed, the test fails (TinyModel::get reported why).
#define TINY_OR_SKIP()                                                          \
  if (!::foley::test::have_python_torch())                                      \
    FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch for the tiny model"); \
  const TinyModel* tiny = TinyModel::get();                                     \
  if (!tiny) GTEST_FAIL() << "the tiny model could not be made (see above)";    \
  (void)tiny

// A Y4M clip of `frames` frames at 25 fps (readable with and without FFmpeg), made once.
inline std::string tiny_clip(int frames) {
  static const std::string dir = temp_dir();
  const std::string path = dir + "/clip" + std::to_string(frames) + ".y4m";
  if (!std::filesystem::exists(path)) media::write_index_y4m(path, frames, "25:1");
  return path;
}

// A cheap request: two steps of a fixed prompt.
inline GenerationParams quick_params(uint64_t seed = 7) {
  GenerationParams p;
  p.prompt = "footsteps on gravel";
  p.steps = 2;
  p.seed = seed;
  return p;
}

}  // namespace foley::test
