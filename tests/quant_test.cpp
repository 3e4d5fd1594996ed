// Quantised DiT weights (issue 12): the per-row quantiser (core/quant.h), linear_quantized on the
// CPU against a double-precision reference computed here from the codes, the converter's
// --dtype fp8|int8 output, the tiny DiT's forward from quantised bundles against its F32 bundle,
// and (with a GPU) the CUDA FP8/INT8 GEMMs and the quantised DiT against the CPU oracle.
#include "core/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "convert/convert.h"
#include "cuda_test_util.h"
#include "dit_fixture.h"
#include "io/safetensors.h"
#include "models/mmdit.h"
#include "models/weight_store.h"

namespace foley {
namespace {

using test::download;
using test::random_tensor;
using test::tiny_dit_forward;
using test::upload;

constexpr QuantFormat kFormats[] = {QuantFormat::kE4M3, QuantFormat::kI8};

// Largest relative step between neighbouring codes near the top of the range: E4M3 keeps 3
// mantissa bits (half a step: 2⁻⁴), int8 127 levels (half a step of the max: 1/254).
double half_step(QuantFormat f) {
  return f == QuantFormat::kE4M3 ? 1.0 / 16 : 1.0 / 254;
}

TEST(QuantizeRow, LargestValueMapsToTheLargestCodeAndNothingSaturates) {
  for (QuantFormat f : kFormats) {
    const std::vector<float> x = {0.5f, -3.0f, 1.25f, 0.001f, 2.9f, -0.75f};
    std::vector<uint8_t> codes(x.size());
    const float scale = quantize_row(x.data(), int64_t(x.size()), f, codes.data());
    EXPECT_FLOAT_EQ(scale, 3.0f / quant_max_code(f)) << quant_format_name(f);
    EXPECT_FLOAT_EQ(quant_code_value(f, codes[1]) * scale, -3.0f) << quant_format_name(f);
    for (size_t i = 0; i < x.size(); ++i) {
      const double back = double(quant_code_value(f, codes[i])) * scale;
      // E4M3's error is relative to the value (floating point), int8's to the row's max.
      const double bound = f == QuantFormat::kE4M3 ? std::max(std::fabs(x[i]) / 16.0, 2e-3 * scale)
                                                   : 3.0 / 254 + 1e-7;
      EXPECT_LE(std::fabs(back - x[i]), bound) << quant_format_name(f) << " x=" << x[i];
    }
    const std::vector<float> zeros(5, 0.0f);
    EXPECT_EQ(quantize_row(zeros.data(), 5, f, codes.data()), 1.0f);
    EXPECT_EQ(quant_code_value(f, codes[0]), 0.0f);
  }
}

// y = Σ_k code_x·code_w · s_x[m] · s_w[n] + bias in double, from codes made here.
Tensor reference_quantized_linear(const Tensor& x, const Tensor& w_codes, const Tensor& w_scale,
                                  const Tensor* bias, QuantFormat f) {
  const int64_t K = x.dim(-1), M = x.numel() / K, N = w_codes.dim(0);
  const Tensor xc = test::to_f32(x);
  Tensor y = Tensor::empty({M, N}, DType::kF32);
  std::vector<uint8_t> codes(static_cast<size_t>(K));
  for (int64_t m = 0; m < M; ++m) {
    const float sx = quantize_row(xc.data<float>() + m * K, K, f, codes.data());
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += double(quant_code_value(f, codes[size_t(k)])) *
               quant_code_value(f, w_codes.data<uint8_t>()[n * K + k]);
      y.data<float>()[m * N + n] =
          float(acc * sx * w_scale.data<float>()[n] + (bias ? bias->data<float>()[n] : 0.0));
    }
  }
  return y;
}

struct QuantWeights {
  Tensor codes, scale;
};
QuantWeights quantize_weights(const Tensor& w, QuantFormat f) {
  const int64_t N = w.dim(0), K = w.dim(1);
  QuantWeights q{Tensor::empty({N, K}, quant_storage_dtype(f)), Tensor::empty({N}, DType::kF32)};
  for (int64_t n = 0; n < N; ++n)
    q.scale.data<float>()[n] =
        quantize_row(w.data<float>() + n * K, K, f, q.codes.data<uint8_t>() + n * K);
  return q;
}

TEST(LinearQuantized, CpuMatchesTheCodesReferenceWithStridedRows) {
  CpuBackend& cpu = test::cpu_oracle();
  for (QuantFormat f : kFormats) {
    const Tensor w = random_tensor({48, 64}, DType::kF32, 3, -0.3f, 0.3f);
    const QuantWeights q = quantize_weights(w, f);
    const Tensor bias = random_tensor({48}, DType::kF32, 4);
    // x: rows 2..6 of each of 3 batch members of a [3, 9, 64] buffer (not one row stride).
    const Tensor parent = random_tensor({3, 9, 64}, DType::kF32, 5, -2.f, 2.f);
    const Tensor x = parent.slice(1, 2, 5);
    const Tensor y_parent = Tensor::empty({3, 7, 48}, DType::kF32);
    const Tensor y = y_parent.slice(1, 1, 5);
    cpu.linear_quantized(x, q.codes, q.scale, &bias, y);
    const Tensor want = reference_quantized_linear(x, q.codes, q.scale, &bias, f);
    const double err = test::max_rel_error(test::to_f32(y).reshape({15, 48}), want);
    EXPECT_LE(err, 1e-5) << quant_format_name(f);
  }
}

// How far W8A8 moves a linear layer from F32 (random data, K 512): the accuracy the format buys.
TEST(LinearQuantized, ErrorAgainstTheFloatLayerIsThatOfTheFormat) {
  CpuBackend& cpu = test::cpu_oracle();
  const Tensor x = random_tensor({32, 512}, DType::kF32, 7, -2.f, 2.f);
  const Tensor w = random_tensor({64, 512}, DType::kF32, 8, -0.1f, 0.1f);
  Tensor exact = Tensor::empty({32, 64}, DType::kF32);
  cpu.linear(x, w, nullptr, exact, 0.0f);
  for (QuantFormat f : kFormats) {
    const QuantWeights q = quantize_weights(w, f);
    Tensor y = Tensor::empty({32, 64}, DType::kF32);
    cpu.linear_quantized(x, q.codes, q.scale, nullptr, y);
    const double err = test::max_rel_error(y, exact);
    std::printf("[quant] %s W8A8 linear (K 512) vs F32: %.3e of the output's max\n",
                quant_format_name(f), err);
    EXPECT_GT(err, 0.0);
    EXPECT_LE(err, f == QuantFormat::kE4M3 ? 0.08 : 0.02);
  }
}

// conv3_quantized on the CPU is exactly linear_quantized over the rows [x[t−1] | x[t] | x[t+1]].
TEST(LinearQuantized, Conv3IsTheLinearOverShiftedRows) {
  CpuBackend& cpu = test::cpu_oracle();
  const Tensor x = random_tensor({2, 6, 32}, DType::kF32, 31, -2.f, 2.f);
  const QuantWeights q =
      quantize_weights(random_tensor({16, 96}, DType::kF32, 32, -0.2f, 0.2f), QuantFormat::kI8);
  Tensor cols = Tensor::empty({2, 6, 96}, DType::kF32);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 6; ++t)
      for (int64_t j = 0; j < 3; ++j)
        for (int64_t c = 0; c < 32; ++c) {
          const int64_t src = t + j - 1;
          cols.data<float>()[(b * 6 + t) * 96 + j * 32 + c] =
              src < 0 || src >= 6 ? 0.0f : x.data<float>()[(b * 6 + src) * 32 + c];
        }
  Tensor want = Tensor::empty({2, 6, 16}, DType::kF32), y = Tensor::empty({2, 6, 16}, DType::kF32);
  cpu.linear_quantized(cols, q.codes, q.scale, nullptr, want);
  cpu.conv3_quantized(x, q.codes, q.scale, nullptr, y);
  EXPECT_EQ(test::max_rel_error(y, want), 0.0);
}

TEST(LinearQuantized, RefusesFloatWeightsAndWrongScaleShapes) {
  CpuBackend& cpu = test::cpu_oracle();
  const Tensor x = random_tensor({4, 32}, DType::kF32, 1);
  const Tensor y = Tensor::empty({4, 16}, DType::kF32);
  const QuantWeights q =
      quantize_weights(random_tensor({16, 32}, DType::kF32, 2), QuantFormat::kI8);
  EXPECT_THROW(
      cpu.linear_quantized(x, random_tensor({16, 32}, DType::kF32, 2), q.scale, nullptr, y), Error);
  EXPECT_THROW(cpu.linear_quantized(x, q.codes, Tensor::empty({8}, DType::kF32), nullptr, y),
               Error);
}

// ---- the tiny DiT from quantised bundles --------------------------------------------------------

std::string quant_bundle(QuantFormat f) {
  const test::TinyDit* m = test::TinyDit::get();
  const std::string path = m->dir + "/bundle_" + quant_format_name(f) + ".safetensors";
  if (!std::filesystem::exists(path)) {
    OfficialFiles files;
    files.dit_checkpoint = m->checkpoint();
    files.dit_config = m->config();
    ConvertOptions opt;
    opt.dit_dtype = DType::kBF16;
    opt.dit_quant = f;
    convert_bundle(files, opt, path);
  }
  return path;
}

TEST(QuantizedBundle, BlockMatricesAreCodesWithScalesAndTheRestStaysBf16) {
  const test::TinyDit* m = test::TinyDit::get();
  ASSERT_NE(m, nullptr);
  for (QuantFormat f : kFormats) {
    const SafetensorsFile q = SafetensorsFile::open(quant_bundle(f));
    const SafetensorsFile ref = SafetensorsFile::open(m->bundle(DType::kF32));
    EXPECT_EQ(q.metadata().at("dit_dtype"), quant_format_name(f));
    // A plain linear, the single blocks' de-interleaved qkv and a k=3 convolution (taps side by
    // side): each row's codes times its scale give back the F32 bundle's weights.
    for (const std::string name :
         {"dit.triple_blocks.1.audio_mlp.fc1.weight", "dit.single_blocks.0.linear_qkv.weight",
          "dit.single_blocks.1.linear2.w2.weight"}) {
      const Tensor codes = q.tensor(name), scale = q.tensor(name + "_scale");
      const Tensor want = test::to_f32(ref.tensor(name));
      ASSERT_EQ(codes.dtype(), quant_storage_dtype(f)) << name;
      const bool taps = want.rank() == 3;
      const int64_t N = codes.dim(0), K = codes.dim(1);
      ASSERT_EQ(K, taps ? 3 * want.dim(2) : want.dim(1)) << name;
      double worst = 0;
      for (int64_t n = 0; n < N; ++n) {
        double row_max = 0, row_err = 0;
        for (int64_t k = 0; k < K; ++k) {
          const float w =
              taps ? want.data<float>()[((k / want.dim(2)) * N + n) * want.dim(2) + k % want.dim(2)]
                   : want.data<float>()[n * K + k];
          const double back = double(quant_code_value(f, codes.data<uint8_t>()[n * K + k])) *
                              scale.data<float>()[n];
          row_max = std::max(row_max, double(std::fabs(w)));
          row_err = std::max(row_err, std::fabs(back - w));
        }
        worst = std::max(worst, row_err / row_max);
      }
      EXPECT_LE(worst, half_step(f) + 1e-6) << name << " " << quant_format_name(f);
    }
    EXPECT_EQ(q.tensor("dit.final_layer.linear.weight").dtype(), DType::kBF16);
    EXPECT_EQ(q.tensor("dit.audio_embedder.proj.weight").dtype(), DType::kBF16);
  }
}

TEST(QuantizedBundle, UnknownQuantisationInTheConfigIsRefusedByName) {
  nlohmann::json j = MmditConfig{}.to_json();
  j["hidden_size"] = 64, j["num_heads"] = 2, j["head_dim"] = 32, j["depth_triple_blocks"] = 1;
  j["depth_single_blocks"] = 1, j["mlp_hidden"] = 256, j["conv_mlp_hidden"] = 256;
  j["sync_mlp_hidden"] = 256;
  j["weight_quant"] = "fp4_e2m1";
  try {
    MmditConfig::from_json(j);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("fp4_e2m1"), std::string::npos) << e.what();
  }
  j["weight_quant"] = "int8";
  EXPECT_EQ(MmditConfig::from_json(j).quant, QuantFormat::kI8);
}

// The tiny DiT's velocity from each bundle against its F32 bundle on the CPU (F32 activations):
// bf16 weights for scale, then W8A8 FP8 and INT8.
TEST(QuantizedDit, TinyForwardNearTheF32Bundle) {
  const test::TinyDit* m = test::TinyDit::get();
  ASSERT_NE(m, nullptr);
  Backend& cpu = test::cpu_oracle();
  const auto f32_store = WeightStore::open(m->bundle(DType::kF32));
  const Tensor exact = tiny_dit_forward(Mmdit(*f32_store, cpu), cpu);
  const auto bf16_store = WeightStore::open(m->bundle(DType::kBF16));
  const double bf16_err =
      test::max_rel_error(tiny_dit_forward(Mmdit(*bf16_store, cpu), cpu), exact);
  std::printf("[quant] tiny DiT forward vs F32 weights: bf16 %.3e\n", bf16_err);
  for (QuantFormat f : kFormats) {
    const auto store = WeightStore::open(quant_bundle(f));
    const Mmdit model(*store, cpu);
    ASSERT_EQ(model.config().quant, f);
    const Tensor v = tiny_dit_forward(model, cpu);
    EXPECT_EQ(test::count_nonfinite(v), 0);
    const double err = test::max_rel_error(v, exact);
    std::printf("[quant] tiny DiT forward vs F32 weights: %s %.3e (%.1fx bf16's)\n",
                quant_format_name(f), err, err / bf16_err);
    EXPECT_GT(err, bf16_err);  // the quantised path really ran
    EXPECT_LE(err, f == QuantFormat::kE4M3 ? 0.15 : 0.05) << quant_format_name(f);
  }
}

// ---- CUDA against the CPU oracle
// ------------------------------------------------------------------

// The GPU quantises the same rows to the same codes (bf16 x is exact in F32 on both), so the only
// differences are the GEMM's summation and the output rounding. INT8 sums exactly (int32): F32 y
// within 1e-4 of the output's max. Hopper's FP8 tensor cores accumulate with fewer mantissa bits
// than F32 (measured on an H100: 2.7e-4 here, 1.6e-4 for the conv), so FP8 gets 1e-3. bf16 y:
// half a bf16 ulp more (4e-3).
double gpu_tolerance(QuantFormat f, DType y) {
  if (y != DType::kF32) return 4e-3;
  return f == QuantFormat::kE4M3 ? 1e-3 : 1e-4;
}
TEST(CudaQuant, LinearMatchesTheCpuForBothFormatsAndOutputDtypes) {
  FOLEY_CUDA_OR_SKIP(be);
  CpuBackend& cpu = test::cpu_oracle();
  for (QuantFormat f : kFormats) {
    if (!be.supports_quantized(f)) {
      std::printf("[quant] %s not supported on this GPU: skipped\n", quant_format_name(f));
      continue;
    }
    for (const DType ydt : {DType::kF32, DType::kBF16}) {
      const Tensor w = random_tensor({96, 160}, DType::kF32, 11, -0.2f, 0.2f);
      const QuantWeights q = quantize_weights(w, f);
      const Tensor bias = random_tensor({96}, DType::kF32, 12);
      const Tensor x16 = random_tensor({2, 37, 160}, DType::kBF16, 13, -3.f, 3.f);
      Tensor want = Tensor::empty({2, 37, 96}, DType::kF32);
      cpu.linear_quantized(test::to_f32(x16), q.codes, q.scale, &bias, want);
      const Tensor y = test::device_empty(be, {2, 37, 96}, ydt);
      const Tensor bd = upload(be, bias);
      be.linear_quantized(upload(be, x16), upload(be, q.codes), upload(be, q.scale), &bd, y);
      test::expect_parity(test::to_f32(download(be, y)), want, gpu_tolerance(f, ydt),
                          (std::string(quant_format_name(f)) + " y " + dtype_name(ydt)).c_str());
    }
  }
}

// The k=3 convolution reads its three shifted rows straight from x (a slice of a longer buffer
// here) on the GPU and from an im2col copy on the CPU: same codes, same sums.
TEST(CudaQuant, Conv3MatchesTheCpu) {
  FOLEY_CUDA_OR_SKIP(be);
  CpuBackend& cpu = test::cpu_oracle();
  for (QuantFormat f : kFormats) {
    if (!be.supports_quantized(f)) continue;
    const Tensor w = random_tensor({80, 3 * 64}, DType::kF32, 21, -0.2f, 0.2f);
    const QuantWeights q = quantize_weights(w, f);
    const Tensor parent16 = random_tensor({2, 30, 64}, DType::kBF16, 22, -2.f, 2.f);
    const Tensor x16 = parent16.slice(1, 3, 25);
    Tensor want = Tensor::empty({2, 25, 80}, DType::kF32);
    cpu.conv3_quantized(test::to_f32(x16), q.codes, q.scale, nullptr, want);
    const Tensor dparent = upload(be, parent16);
    const Tensor y = test::device_empty(be, {2, 25, 80}, DType::kF32);
    be.conv3_quantized(dparent.slice(1, 3, 25), upload(be, q.codes), upload(be, q.scale), nullptr,
                       y);
    test::expect_parity(download(be, y), want, gpu_tolerance(f, DType::kF32),
                        (std::string("conv3 ") + quant_format_name(f)).c_str());
  }
}

// The tiny DiT from each quantised bundle on CUDA (bf16 activations) against the CPU (F32
// activations): the distance bf16 activations alone give (5e-2 in cuda_half_test) plus some.
TEST(CudaQuant, TinyDitMatchesTheCpu) {
  FOLEY_CUDA_OR_SKIP(be);
  const test::TinyDit* m = test::TinyDit::get();
  ASSERT_NE(m, nullptr);
  for (QuantFormat f : kFormats) {
    if (!be.supports_quantized(f)) continue;
    const auto store = WeightStore::open(quant_bundle(f));
    const Tensor cpu_v = tiny_dit_forward(Mmdit(*store, test::cpu_oracle()), test::cpu_oracle());
    const Tensor gpu_v = tiny_dit_forward(Mmdit(*store, be), be);
    const double err = test::max_rel_error(gpu_v, cpu_v);
    std::printf("[quant] tiny DiT %s, CUDA (bf16 activations) vs CPU: %.3e\n", quant_format_name(f),
                err);
    EXPECT_EQ(test::count_nonfinite(gpu_v), 0);
    EXPECT_LE(err, 8e-2) << quant_format_name(f);
  }
}

}  // namespace
}  // namespace foley
