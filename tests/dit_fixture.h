// Shared by the MMDiT and flow-sampler tests: a tiny official-format DiT from
// scripts/tiny_models/dit.py, converted to F32 and BF16 bundles, plus the PyTorch reference
// (tests/python/reference_dit.py) run on inputs written from C++.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>

#include "convert/convert.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace foley::test {

// The tiny model's sizes: deliberately unlike the golden case's (3 heads of 32, 48-wide
// features, 3 triple + 2 single blocks), so the code is exercised on a second shape.
struct TinyDit {
  static constexpr int kHidden = 96, kHeads = 3, kTriple = 3, kSingle = 2, kFeat = 48;
  std::string source;  // hunyuanvideo_foley.pth + config.yaml, cached across test processes
  std::string dir;     // this process's bundles and reference in/out files

  std::string checkpoint() const { return source + "/hunyuanvideo_foley.pth"; }
  std::string config() const { return source + "/config.yaml"; }
  std::string bundle(DType dtype) const {
    return dir + (dtype == DType::kF32 ? "/bundle_f32.safetensors" : "/bundle_bf16.safetensors");
  }

  // Made once per process; nullptr (and a gtest failure) when that fails. The official-format
  // files depend only on the generator script and its arguments, so they are cached in /tmp under
  // a hash of both (ctest runs every test in its own process, and starting Python with torch is
  // most of a test's time); conversion always runs, so converter changes are always tested.
  static const TinyDit* get() {
    static std::unique_ptr<TinyDit> model = [] {
      namespace fs = std::filesystem;
      auto m = std::make_unique<TinyDit>();
      const std::string script = source_path("scripts/tiny_models/dit.py");
      const std::string args = " --seed 5 --hidden " + std::to_string(kHidden) + " --heads " +
                               std::to_string(kHeads) + " --triple " + std::to_string(kTriple) +
                               " --single " + std::to_string(kSingle) + " --feat-dim " +
                               std::to_string(kFeat);
      std::ifstream in(script, std::ios::binary);
      const std::string key = std::string(std::istreambuf_iterator<char>(in), {}) + args;
      m->source = "/tmp/foley-tiny-dit-" + std::to_string(std::hash<std::string>()(key));
      if (!fs::exists(m->source + "/config.yaml")) {
        const std::string tmp = temp_dir();
        const std::string cmd =
            std::string(FOLEY_PYTHON) + " " + script + " " + tmp + args + " 2>&1";
        std::string out;
        if (run_command(cmd, &out) != 0) {
          ADD_FAILURE() << cmd << "\n" << out;
          return std::unique_ptr<TinyDit>();
        }
        std::error_code ec;
        fs::rename(tmp, m->source, ec);  // atomic; losing a race to another process is fine
      }
      m->dir = temp_dir();
      for (DType d : {DType::kF32, DType::kBF16}) {
        OfficialFiles files;
        files.dit_checkpoint = m->checkpoint();
        files.dit_config = m->config();
        ConvertOptions opt;
        opt.dit_dtype = d;
        convert_bundle(files, opt, m->bundle(d));
      }
      return m;
    }();
    return model.get();
  }
};

// Writes host F32 tensors to a safetensors file for the reference script.
inline void write_tensors(const std::string& path, const std::map<std::string, Tensor>& tensors) {
  SafetensorsWriter w;
  for (const auto& [name, t] : tensors) w.add(name, t);
  w.write(path);
}

// Runs `reference_dit.py MODE CKPT CONFIG IN OUT [extra]` and returns the output tensor `name`.
inline Tensor run_reference(const std::string& mode, const TinyDit& m,
                            const std::map<std::string, Tensor>& inputs, const std::string& name,
                            const std::string& extra = "") {
  static int counter = 0;
  const std::string tag = m.dir + "/" + mode + std::to_string(counter++);
  write_tensors(tag + "_in.safetensors", inputs);
  const std::string cmd = std::string(FOLEY_PYTHON) + " " +
                          source_path("tests/python/reference_dit.py") + " " + mode + " " +
                          m.checkpoint() + " " + m.config() + " " + tag + "_in.safetensors " + tag +
                          "_out.safetensors " + extra + " 2>&1";
  std::string out;
  const int rc = run_command(cmd, &out);
  EXPECT_EQ(rc, 0) << cmd << "\n" << out;
  if (rc != 0) return Tensor();
  // Copy out of the mapping so the result outlives the file object.
  const SafetensorsFile f = SafetensorsFile::open(tag + "_out.safetensors");
  return to_f32(f.tensor(name));
}

inline std::filesystem::path golden_root() {
  return std::filesystem::path(FOLEY_SOURCE_DIR) / ".." / "shared" / "golden";
}

// The golden case tiny-a's DiT checkpoint converted to a bundle with DiT weights in `dtype` (a
// fresh file per call); empty when the case is not there.
inline std::string golden_dit_bundle(DType dtype) {
  const std::filesystem::path dir = golden_root() / "tiny-a";
  if (!std::filesystem::exists(dir / "case.json")) return "";
  const std::string bundle = temp_dir() + "/dit_" + dtype_name(dtype) + ".safetensors";
  OfficialFiles files;
  files.dit_checkpoint = (dir / "checkpoints" / "hunyuanvideo_foley.pth").string();
  files.dit_config = (dir / "checkpoints" / "config.yaml").string();
  ConvertOptions opt;
  opt.dit_dtype = dtype;
  convert_bundle(files, opt, bundle);
  return bundle;
}

}  // namespace foley::test
