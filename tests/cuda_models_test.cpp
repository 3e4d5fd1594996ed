// Networks on the CUDA backend beyond the golden runner's F32 stages (tests/cuda/run_gpu_tests.sh
// runs those): the DiT with BF16 weights, and how model weights reach the device.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/convert.h"
#include "cuda_test_util.h"
#include "dit_fixture.h"
#include "io/safetensors.h"
#include "models/device_weights.h"
#include "models/mmdit.h"
#include "models/weight_store.h"

namespace foley {
namespace {

using test::download;
using test::upload;

// A bundle tensor handed to place_weight: host tensors are copied into the arena (reserved once
// for the whole network), tensors already on the device are used as they are, and a device
// tensor is refused by the CPU backend.
TEST(CudaModels, PlaceWeightCopiesHostTensorsAndKeepsDeviceOnes) {
  FOLEY_CUDA_OR_SKIP(be);
  const Tensor host = test::random_tensor({3, 70}, DType::kBF16, 1);
  std::unique_ptr<Arena> arena;
  int reserves = 0;
  auto reserve = [&] {
    ++reserves;
    return size_t{4096};
  };
  const Tensor a = place_weight(be, host, arena, reserve);
  const Tensor b = place_weight(be, host, arena, reserve);
  EXPECT_EQ(reserves, 1);
  ASSERT_TRUE(arena);
  EXPECT_GE(arena->reserved(), size_t{4096});
  EXPECT_EQ(a.device(), DeviceKind::kCUDA);
  EXPECT_EQ(a.dtype(), DType::kBF16);  // weights keep their dtype
  EXPECT_NE(a.raw(), b.raw());
  Tensor back = download(be, a);
  EXPECT_EQ(std::memcmp(back.raw(), host.raw(), host.nbytes()), 0);
  const Tensor dev = upload(be, host);
  EXPECT_EQ(place_weight(be, dev, arena, reserve).raw(), dev.raw());
  std::unique_ptr<Arena> cpu_arena;
  EXPECT_EQ(place_weight(test::cpu_oracle(), host, cpu_arena, reserve).raw(), host.raw());
  EXPECT_FALSE(cpu_arena);
  EXPECT_THROW(place_weight(test::cpu_oracle(), dev, cpu_arena, reserve), Error);
}

// The golden case's DiT forward with BF16 weights on the GPU: no further from the official F32
// output than the official bf16 production run is (case.json's dit_bf16prod_vs_fp32_max_rel),
// the bound the CPU backend meets too (MmditGolden.Bf16WeightsWithinOfficialBf16Error).
TEST(CudaModels, DitBf16WeightsWithinOfficialBf16Error) {
  FOLEY_CUDA_OR_SKIP(be);
  namespace fs = std::filesystem;
  const fs::path dir = test::golden_root() / "tiny-a";
  if (!fs::exists(dir / "case.json")) GTEST_SKIP() << "no golden case " << dir;
  const nlohmann::json c = nlohmann::json::parse(std::ifstream(dir / "case.json"));
  const double official = c.at("dit_bf16prod_vs_fp32_max_rel").get<double>();
  const auto store = WeightStore::open(test::golden_dit_bundle(DType::kBF16));
  const Mmdit model(*store, be);
  const SafetensorsFile g = SafetensorsFile::open((dir / "tensors.safetensors").string());
  const Tensor x = upload(be, test::to_f32(g.tensor("dit_in_x")));
  const Tensor t = test::to_f32(g.tensor("dit_in_t"));
  auto ctx = model.prepare(upload(be, test::to_f32(g.tensor("dit_in_clip"))),
                           upload(be, test::to_f32(g.tensor("dit_in_sync"))),
                           upload(be, test::to_f32(g.tensor("dit_in_text"))), x.dim(2));
  const Tensor v = test::device_poisoned(be, x.shape());
  Arena arena(be.block_allocator(), model.step_arena_bytes(x.dim(0), x.dim(2), ctx->visual_len()));
  model.forward(*ctx, x, t.data<float>(), v, arena);
  const Tensor vh = download(be, v);
  const double err = test::max_rel_error(vh, g.tensor("dit_out_v"));
  std::printf("golden DiT on CUDA, BF16 weights: %.3e from F32 golden (official bf16: %.3e)\n", err,
              official);
  EXPECT_EQ(test::count_nonfinite(vh), 0);
  EXPECT_LE(err, official);
}

}  // namespace
}  // namespace foley
