// SigLIP2 vs the PyTorch reference (tests/python/reference_siglip2.py, written from the spec) on
// a tiny model from scripts/tiny_models/siglip2.py at sizes unlike the golden case: hidden 48,
// 3 heads of 16, 32² images with 8-pixel patches, frames 27×45 stretched (PIL bilinear), through
// convert --model-dir (so the text tower in the file is dropped on the way).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "backend/backend.h"
#include "foley/convert.h"
#include "models/siglip2_vision.h"
#include "models/weight_store.h"
#include "test_util.h"

namespace foley {
namespace {

TEST(Siglip2Reference, MatchesPythonReference) {
  if (!test::have_python_torch()) FOLEY_SKIP_MISSING("needs /usr/bin/python3 with torch");
  constexpr int kT = 3, kH = 27, kW = 45, kHidden = 48;
  const std::string dir = test::temp_dir();
  std::string log;
  ASSERT_EQ(test::run_command(std::string(FOLEY_PYTHON) + " " +
                                  test::source_path("scripts/tiny_models/siglip2.py") + " " + dir +
                                  " --seed 4 --hidden 48 --heads 3 --layers 2 --inter 96 "
                                  "--image-size 32 --patch 8 2>&1",
                              &log),
            0)
      << log;
  ConvertRequest req;
  req.model_dir = dir;
  req.output = dir + "/bundle.safetensors";
  const ConvertSummary s = convert_model(req);
  ASSERT_EQ(s.networks, std::vector<std::string>{"siglip2"});

  Tensor frames = Tensor::empty({kT, kH, kW, 3}, DType::kU8);
  std::mt19937 rng(9);
  for (int64_t i = 0; i < frames.numel(); ++i)
    frames.data<uint8_t>()[i] = static_cast<uint8_t>(rng() & 0xff);
  std::ofstream(dir + "/frames.u8", std::ios::binary)
      .write(frames.data<char>(), static_cast<std::streamsize>(frames.nbytes()));

  const auto weights = WeightStore::open(req.output);
  auto backend = make_cpu_backend();
  const Siglip2Vision model(*weights, *backend);
  EXPECT_EQ(model.config().num_attention_heads, 3);
  Arena arena(backend->block_allocator(), model.workspace_bytes(2));
  const Tensor got = model.encode_frames(frames, arena, 2);  // chunks of 2: a partial last chunk
  ASSERT_EQ(got.shape(), (Shape{1, kT, kHidden}));

  const std::string out = dir + "/ref.f32";
  ASSERT_EQ(
      test::run_command(std::string(FOLEY_PYTHON) + " " +
                            test::source_path("tests/python/reference_siglip2.py") + " run " + dir +
                            "/siglip2 " + dir + "/frames.u8 " + std::to_string(kT) + " " +
                            std::to_string(kH) + " " + std::to_string(kW) + " " + out + " 2>&1",
                        &log),
      0)
      << log;
  Tensor ref = Tensor::empty(got.shape(), DType::kF32);
  std::ifstream in(out, std::ios::binary);
  in.read(ref.data<char>(), static_cast<std::streamsize>(ref.nbytes()));
  ASSERT_TRUE(in.good());
  const double rel = test::max_rel_error(got, ref);
  std::printf("SigLIP2 tiny (hidden 48, 3 heads, 32² / patch 8) vs float64 torch: rel %.3g\n", rel);
  EXPECT_LE(rel, 1e-4);
}

}  // namespace
}  // namespace foley
