// CPU time of the Synchformer visual branch at the official size (ViT-B "divided_224_16x4": dim
// 768, depth 12, 12 heads, 224², 16-frame segments of 8 temporal tokens), random weights.
//
//   synchformer_bench [segments=1] [chunk=1] [frame_w=640 frame_h=360]
//
// Writes a random bundle straight from the model's config (the official checkpoint is a torch
// pickle the converter reads; its key checks are tested elsewhere), then times
//   1. preprocessing of one frame_w×frame_h frame (AA bicubic to 224 on the short side, crop),
//   2. one forward of one segment (after a warm-up forward), and
//   3. encode_frames over a clip of (segments − 1)·8 + 16 frames (a 10 s clip at 25 fps has
//      250 frames = 30 segments), which is preprocessing plus `chunk` segments per forward.
// Threads: FOLEY_THREADS (default: all cores).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "convert/convert.h"
#include "image/resize.h"
#include "io/safetensors.h"
#include "models/synchformer.h"
#include "models/weight_store.h"

namespace foley {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A bundle with random "synchformer." tensors for `c` (every tensor the model loads).
void write_random_bundle(const SynchformerConfig& c, const std::string& path) {
  SafetensorsWriter w;
  uint32_t seed = 1;
  auto add = [&](const std::string& name, const Shape& s) {
    const float scale = s.rank() >= 2 ? 2.0f / std::sqrt(float(s.dim(-1))) : 0.1f;
    w.add("synchformer." + name, DType::kF32, s, [s, scale, st = seed++](void* dst) {
      uint32_t state = st;
      float* d = static_cast<float*>(dst);
      for (int64_t i = 0; i < s.numel(); ++i) {
        state = state * 1664525u + 1013904223u;
        d[i] = scale * (float(state >> 8) / float(1 << 24) - 0.5f);
      }
    });
  };
  const int64_t d = c.dim, m = c.mlp_hidden, p = c.patch_size;
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    add(name + ".weight", {out, in});
    add(name + ".bias", {out});
  };
  auto norm = [&](const std::string& name) {
    add(name + ".weight", {d});
    add(name + ".bias", {d});
  };
  add("cls_token", {1, 1, d});
  add("pos_embed", {1, 1 + int64_t{c.spatial_tokens()}, d});
  add("temp_embed", {1, c.num_frames, d});
  add("patch_embed_3d.proj.weight", {d, 3, c.tubelet, p, p});
  add("patch_embed_3d.proj.bias", {d});
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    for (const char* n : {"norm1", "norm2", "norm3"}) norm(b + n);
    linear(b + "attn.qkv", 3 * d, d);
    linear(b + "attn.proj", d, d);
    linear(b + "timeattn.qkv", 3 * d, d);
    linear(b + "timeattn.proj", d, d);
    linear(b + "mlp.fc1", m, d);
    linear(b + "mlp.fc2", d, m);
  }
  norm("norm");
  add("spatial_attn_agg.cls_token", {1, 1, d});
  add("spatial_attn_agg.self_attn.in_proj_weight", {3 * d, d});
  add("spatial_attn_agg.self_attn.in_proj_bias", {3 * d});
  linear("spatial_attn_agg.self_attn.out_proj", d, d);
  linear("spatial_attn_agg.linear1", c.agg_ff, d);
  linear("spatial_attn_agg.linear2", d, c.agg_ff);
  norm("spatial_attn_agg.norm1");
  norm("spatial_attn_agg.norm2");
  w.set_metadata("format", "foley");
  w.set_metadata("format_version", std::to_string(kBundleFormatVersion));
  w.set_metadata("config", nlohmann::json({{"synchformer", c.to_json()}}).dump());
  w.write(path);
}

int run(int argc, char** argv) {
  const int segments = argc > 1 ? std::atoi(argv[1]) : 1;
  const int chunk = argc > 2 ? std::atoi(argv[2]) : 1;
  const int fw = argc > 4 ? std::atoi(argv[3]) : 640, fh = argc > 4 ? std::atoi(argv[4]) : 360;
  if (segments < 1 || chunk < 1 || fw < 1 || fh < 1) {
    std::fprintf(stderr, "usage: synchformer_bench [segments>=1] [chunk>=1] [frame_w frame_h]\n");
    return 2;
  }
  const SynchformerConfig c;  // the official sizes are the defaults
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("synchformer-bench-" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  write_random_bundle(c, dir + "/bundle.safetensors");
  auto weights = WeightStore::open(dir + "/bundle.safetensors");
  auto backend = make_cpu_backend();
  const Synchformer model(*weights, *backend);

  const int64_t T = int64_t{segments - 1} * c.stride + c.segment;
  Tensor frames = Tensor::empty({T, fh, fw, 3}, DType::kU8);
  for (int64_t i = 0; i < frames.numel(); ++i) frames.data<uint8_t>()[i] = uint8_t(i * 37 % 251);
  std::vector<float> px(size_t{3} * c.image_size * c.image_size);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) synchformer_preprocess(frames.select(0, 0), c.image_size, px.data());
  std::printf("preprocess %dx%d -> %dx%d: %.2f ms per frame\n", fw, fh, c.image_size, c.image_size,
              1e3 * seconds_since(t0) / 10);

  {
    Arena arena(backend->block_allocator(), model.workspace_bytes(1));
    Tensor pixels = Tensor::empty({1, 3, c.segment, c.image_size, c.image_size}, DType::kF32);
    for (int64_t i = 0; i < pixels.numel(); ++i)
      pixels.data<float>()[i] = px[size_t(i) % px.size()];
    Tensor features = Tensor::empty({1, c.num_frames, c.dim}, DType::kF32);
    model.forward(pixels, features, arena);  // warm-up (primitive caches, page faults)
    t0 = std::chrono::steady_clock::now();
    model.forward(pixels, features, arena);
    std::printf(
        "one segment (dim %d, depth %d, %d heads, %d tokens): forward %.3f s; arena "
        "%.1f MB\n",
        c.dim, c.depth, c.num_heads, c.tokens(), seconds_since(t0), arena.high_water() / 1e6);
  }
  Arena arena(backend->block_allocator(), model.workspace_bytes(chunk));
  t0 = std::chrono::steady_clock::now();
  const Tensor out = model.encode_frames(frames, arena, chunk);
  const double s = seconds_since(t0);
  std::printf(
      "encode_frames: %lld frames %dx%d = %d segments in chunks of %d: %.2f s, %.3f s per "
      "segment, output [1, %lld, %lld]; arena %.1f MB\n",
      (long long)T, fw, fh, segments, chunk, s, s / segments, (long long)out.dim(1),
      (long long)out.dim(2), arena.high_water() / 1e6);
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace foley

int main(int argc, char** argv) {
  return foley::run(argc, argv);
}
