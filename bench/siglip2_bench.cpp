// CPU time of the SigLIP2 vision tower (base-patch16-512 sizes by default), random weights.
//
//   siglip2_bench [frames=1] [chunk=frames] [base|tiny]
//
// Writes a random SiglipModel-layout vision tower to a temporary folder, converts it with the
// real converter, loads it and times forward passes over `frames` frames in chunks of `chunk`
// (after one warm-up chunk); preprocessing of a 128×96 frame is timed separately. Threads:
// FOLEY_THREADS (default: all cores).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "backend/backend.h"
#include "convert/convert.h"
#include "image/resize.h"
#include "models/siglip2_vision.h"
#include "models/weight_store.h"

namespace foley {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run(int argc, char** argv) {
  const int frames = argc > 1 ? std::atoi(argv[1]) : 1;
  const int chunk = argc > 2 ? std::atoi(argv[2]) : frames;
  const bool tiny = argc > 3 && std::string(argv[3]) == "tiny";
  const int64_t h = tiny ? 64 : 768, m = tiny ? 128 : 3072, layers = tiny ? 2 : 12, p = 16;
  const int64_t heads = tiny ? 2 : 12, n = 1024;
  const nlohmann::json hf = {{"model_type", "siglip"},
                             {"vision_config",
                              {{"hidden_size", h},
                               {"intermediate_size", m},
                               {"num_hidden_layers", layers},
                               {"num_attention_heads", heads},
                               {"image_size", 512},
                               {"patch_size", p},
                               {"layer_norm_eps", 1e-6}}}};

  const std::string dir =
      (std::filesystem::temp_directory_path() / ("siglip2-bench-" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  {
    SafetensorsWriter w;
    uint32_t seed = 1;
    auto add = [&](const std::string& name, const Shape& s) {
      const float scale = s.rank() >= 2 ? 2.0f / std::sqrt(float(s.dim(-1))) : 0.1f;
      w.add("vision_model." + name, DType::kF32, s, [s, scale, st = seed++](void* dst) {
        uint32_t state = st;
        float* d = static_cast<float*>(dst);
        for (int64_t i = 0; i < s.numel(); ++i) {
          state = state * 1664525u + 1013904223u;
          d[i] = scale * (float(state >> 8) / float(1 << 24) - 0.5f);
        }
      });
    };
    auto linear = [&](const std::string& name, int64_t out, int64_t in) {
      add(name + ".weight", {out, in});
      add(name + ".bias", {out});
    };
    auto norm = [&](const std::string& name) {
      add(name + ".weight", {h});
      add(name + ".bias", {h});
    };
    add("embeddings.patch_embedding.weight", {h, 3, p, p});
    add("embeddings.patch_embedding.bias", {h});
    add("embeddings.position_embedding.weight", {n, h});
    for (int i = 0; i < layers; ++i) {
      const std::string l = "encoder.layers." + std::to_string(i) + ".";
      norm(l + "layer_norm1");
      norm(l + "layer_norm2");
      for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"})
        linear(l + "self_attn." + proj, h, h);
      linear(l + "mlp.fc1", m, h);
      linear(l + "mlp.fc2", h, m);
    }
    norm("post_layernorm");
    add("head.probe", {1, 1, h});
    add("head.attention.in_proj_weight", {3 * h, h});
    add("head.attention.in_proj_bias", {3 * h});
    linear("head.attention.out_proj", h, h);
    norm("head.layernorm");
    linear("head.mlp.fc1", m, h);
    linear("head.mlp.fc2", h, m);
    w.write(dir + "/model.safetensors");
  }
  {
    const SafetensorsFile src = SafetensorsFile::open(dir + "/model.safetensors");
    SafetensorsWriter out;
    const nlohmann::json config = convert_siglip2(src, hf, out);
    out.set_metadata("format", "foley");
    out.set_metadata("format_version", std::to_string(kBundleFormatVersion));
    out.set_metadata("config", nlohmann::json({{"siglip2", config}}).dump());
    out.write(dir + "/bundle.safetensors");
  }
  auto weights = WeightStore::open(dir + "/bundle.safetensors");
  auto backend = make_cpu_backend();
  const Siglip2Vision model(*weights, *backend);

  Tensor frame = Tensor::empty({96, 128, 3}, DType::kU8);
  for (int64_t i = 0; i < frame.numel(); ++i) frame.data<uint8_t>()[i] = uint8_t(i * 37 % 251);
  std::vector<float> px(3 * 512 * 512);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) siglip2_preprocess(frame, 512, px.data());
  std::printf("preprocess 128x96 -> 512x512: %.2f ms per frame\n", 1e3 * seconds_since(t0) / 10);

  Arena arena(backend->block_allocator(), model.workspace_bytes(chunk));
  Tensor pixels = Tensor::empty({chunk, 3, 512, 512}, DType::kF32);
  for (int64_t i = 0; i < pixels.numel(); ++i) pixels.data<float>()[i] = px[size_t(i % px.size())];
  Tensor features = Tensor::empty({chunk, h}, DType::kF32);
  model.forward(pixels, features, arena);  // warm-up (primitive caches, page faults)
  t0 = std::chrono::steady_clock::now();
  int done = 0;
  while (done < frames) {
    model.forward(pixels, features, arena);
    done += chunk;
  }
  const double s = seconds_since(t0);
  std::printf(
      "%s tower (hidden %lld, %lld layers, %lld patches): %d frames in chunks of %d: "
      "%.3f s, %.1f ms per frame; arena %.1f MB\n",
      tiny ? "tiny" : "base", (long long)h, (long long)layers, (long long)n, done, chunk, s,
      1e3 * s / done, arena.high_water() / 1e6);
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace foley

int main(int argc, char** argv) {
  return foley::run(argc, argv);
}
