// Where the time of one MMDiT denoising step (CFG batch 2) goes, op by op (bench/run_h100.sh part
// `profile`; table format in profile_backend.h).
//
//   dit_profile (--model BUNDLE | --synthetic xxl|xl|small|tiny) [--seconds 10] [--device cuda|cpu]
//               [--steps 3] [--warm 3] [--top 40] [--seed 1] [--network
//               dit|siglip2|synchformer|dac]
//
// --network other than dit profiles an encoder of the bundle instead; one "step" is then that
// network's device work for the whole clip, as the pipeline chunks it (SigLIP2: Tv frames, 8 per
// forward; Synchformer: every 16-frame window, 2 per forward; DAC: one decode of Ta frames), on
// random inputs already on the device (host preprocessing and copies are not included).
//
// The model is built twice on the same weights: once on the plain backend (the un-profiled step
// time, the reference the op sum is compared with) and once on a ProfilingBackend wrapping it.
// Sequence lengths follow a clip of --seconds like e2e_bench: Ta = 50/s, Tv = 8/s, 8 sync
// tokens per 16-frame window at stride 8 over 25 fps, 77 text tokens.
// Synthetic models have seeded random weights stored like `foley convert --dtype bf16` stores
// them (matrices BF16, vectors F32). On the CPU, tensors of one shape share one random tensor
// (as in mmdit_bench: XXL would otherwise need ~10 GB of host memory); on CUDA every tensor is
// its own, so no block reads another block's weights from L2.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>

#include "backend/backend.h"
#include "backend/device_upload.h"
#include "foley/error.h"
#include "models/dac_decoder.h"
#include "models/mmdit.h"
#include "models/siglip2_vision.h"
#include "models/synchformer.h"
#include "models/weight_store.h"
#include "profile_backend.h"

namespace foley::bench {
namespace {

using Clock = std::chrono::steady_clock;

double secs(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "dit_profile: %s\nusage: dit_profile (--model BUNDLE | --synthetic "
               "xxl|xl|small|tiny) [--seconds S] [--device cuda|cpu] [--steps N] [--warm N] "
               "[--top N] [--seed N] [--network dit|siglip2|synchformer|dac]\n",
               why);
  std::exit(2);
}

struct Options {
  std::string model, synthetic, device = "cuda", network = "dit";
  double seconds = 10;
  int steps = 3, warm = 3, top = 40;
  uint32_t seed = 1;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + a).c_str());
    const char* v = argv[++i];
    if (a == "--model")
      o.model = v;
    else if (a == "--synthetic")
      o.synthetic = v;
    else if (a == "--device")
      o.device = v;
    else if (a == "--seconds")
      o.seconds = std::atof(v);
    else if (a == "--steps")
      o.steps = std::atoi(v);
    else if (a == "--warm")
      o.warm = std::atoi(v);
    else if (a == "--top")
      o.top = std::atoi(v);
    else if (a == "--network")
      o.network = v;
    else if (a == "--seed")
      o.seed = uint32_t(std::strtoul(v, nullptr, 10));
    else
      usage(("unknown flag " + a).c_str());
  }
  if (o.model.empty() == o.synthetic.empty()) usage("give exactly one of --model, --synthetic");
  if (o.device != "cuda" && o.device != "cpu") usage("--device is cuda or cpu");
  // Below 0.64 s there is not one whole 16-frame sync window.
  if (!(o.seconds >= 0.64 && o.seconds <= 15.04)) usage("--seconds must be in [0.64, 15.04]");
  if (o.steps < 1 || o.warm < 0) usage("--steps >= 1, --warm >= 0");
  if (o.network != "dit" && o.network != "siglip2" && o.network != "synchformer" &&
      o.network != "dac")
    usage("--network is dit, siglip2, synchformer or dac");
  if (o.network != "dit" && o.model.empty()) usage("the encoders need --model");
  return o;
}

// e2e_bench's clip_shape (model-spec §1).
struct ClipShape {
  int64_t ta, tv, s8;
};
ClipShape clip_shape(double sec) {
  const int64_t t25 = std::min<int64_t>(int64_t(sec * 25 + 1e-9), 376);
  return {t25 * 2, std::min<int64_t>(int64_t(sec * 8 + 1e-9), 120), ((t25 - 16) / 8 + 1) * 8};
}

// The official sizes (xxl), the XL variant, make_full_model.py's `small`, mmdit_bench's `tiny`.
MmditConfig synthetic_config(const std::string& size) {
  MmditConfig c;
  if (size == "xxl") {
    c.hidden = 1536, c.heads = 12, c.depth_triple = 18, c.depth_single = 36;
  } else if (size == "xl") {
    c.hidden = 1408, c.heads = 11, c.depth_triple = 12, c.depth_single = 24;
  } else if (size == "small") {
    c.hidden = 256, c.heads = 2, c.depth_triple = 2, c.depth_single = 2;
    c.clip_dim = c.sync_dim = c.text_dim = 64;
  } else if (size == "tiny") {
    c.hidden = 128, c.heads = 2, c.depth_triple = 2, c.depth_single = 2;
    c.clip_dim = c.sync_dim = c.text_dim = 64;
  } else {
    usage(("unknown --synthetic size " + size).c_str());
  }
  c.head_dim = c.hidden / c.heads;
  c.mlp_hidden = 4 * c.hidden;
  c.conv_mlp_hidden = MmditConfig::conv_mlp_width(4 * c.hidden);
  c.sync_mlp_hidden = c.conv_mlp_hidden;
  return c;
}

// Uniform in [-scale/2, scale/2), from a counter hash so any tensor's values depend only on its
// seed (not on construction order).
Tensor host_random(const Shape& s, DType dtype, float scale, uint64_t seed) {
  Tensor t = Tensor::empty(s, dtype);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < t.numel(); ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
    const float v = scale * (float(x >> 40) / float(1 << 24) - 0.5f);
    if (dtype == DType::kF32)
      t.data<float>()[i] = v;
    else
      t.data<uint16_t>()[i] = f32_to_bf16(v);
  }
  return t;
}

Tensor to_device(Backend& be, const Tensor& host) {
  if (be.device() == DeviceKind::kCPU) return host;
  BlockAllocator a = be.block_allocator();
  void* p = a.allocate(host.nbytes());
  Tensor d(p, host.dtype(), host.shape(), be.device(), std::shared_ptr<void>(p, a.release));
  be.copy_from_host(d, host);
  return d;
}

uint64_t name_seed(const std::string& s, uint32_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;  // FNV-1a
  for (char c : s) h = (h ^ uint8_t(c)) * 1099511628211ull;
  return h;
}

// Both models get the same tensors: the getter caches what it made.
DitWeightGetter synthetic_getter(Backend& be, uint32_t seed, bool share_by_shape) {
  auto cache = std::make_shared<std::map<std::string, Tensor>>();
  return [&be, seed, share_by_shape, cache](const std::string& name, const Shape& shape,
                                            DitWeight kind) {
    if (kind == DitWeight::kQuantized)
      throw Error(ErrorKind::kUnsupported, "dit_profile: synthetic weights are bf16 only");
    const bool matrix = kind == DitWeight::kMatrix;
    const std::string key = share_by_shape ? shape.str() + (matrix ? "m" : "v") : name;
    Tensor& t = (*cache)[key];
    if (!t.defined() || t.numel() == 0) {
      // Matrices ~ U(±1/sqrt(K)) keep activations O(1) through the blocks; vectors are small.
      const float scale = matrix ? 2.0f / std::sqrt(float(shape.dim(-1))) : 0.1f;
      t = to_device(
          be, host_random(shape, matrix ? DType::kBF16 : DType::kF32, scale, name_seed(key, seed)));
    }
    return t;
  };
}

// Warm-up, the un-profiled reference, the profiled steps, the report. `plain_step` and
// `profiled_step` run the same work on the plain backend and on `prof`.
int measure(const Options& o, Backend& plain, ProfilingBackend& prof,
            const std::function<void()>& plain_step, const std::function<void()>& profiled_step) {
  for (int i = 0; i < o.warm; ++i) plain_step();
  profiled_step();  // first-call costs of the second model (lazy descriptors, caches)
  plain.synchronize();
  auto t0 = Clock::now();
  for (int i = 0; i < o.steps; ++i) plain_step();
  plain.synchronize();
  ProfileSummary sum;
  sum.steps = o.steps;
  sum.top = o.top;
  sum.unprofiled_step = secs(t0) / o.steps;

  prof.set_enabled(true);
  t0 = Clock::now();
  for (int i = 0; i < o.steps; ++i) profiled_step();
  plain.synchronize();
  sum.profiled_wall_step = secs(t0) / o.steps;
  prof.set_enabled(false);
  sum.sync_floor = prof.measure_sync_floor();
  print_profile(stdout, prof.stats(), sum);
  return 0;
}

std::shared_ptr<WeightStore> open_store(const Options& o) {
  return o.device == "cuda" ? WeightStore::open_on_cuda(o.model) : WeightStore::open(o.model);
}

int run_dit(const Options& o, Backend& plain, ProfilingBackend& prof) {
  const auto t_build = Clock::now();
  std::shared_ptr<WeightStore> store;
  std::unique_ptr<Mmdit> base, profiled;
  if (!o.model.empty()) {
    store = open_store(o);
    base = std::make_unique<Mmdit>(*store, plain);
    profiled = std::make_unique<Mmdit>(*store, prof);
  } else {
    const MmditConfig c = synthetic_config(o.synthetic);
    const DitWeightGetter get = synthetic_getter(plain, o.seed, o.device == "cpu");
    base = std::make_unique<Mmdit>(c, get, plain);
    profiled = std::make_unique<Mmdit>(c, get, prof);
  }
  plain.synchronize();
  const MmditConfig& c = base->config();
  const ClipShape s = clip_shape(o.seconds);
  const int64_t B = 2, L = 77;
  std::printf("config hidden %lld heads %lld triple %lld single %lld\n", (long long)c.hidden,
              (long long)c.heads, (long long)c.depth_triple, (long long)c.depth_single);
  std::printf("shape seconds %.2f B %lld Ta %lld Tv %lld sync %lld text %lld\n", o.seconds,
              (long long)B, (long long)s.ta, (long long)s.tv, (long long)s.s8, (long long)L);
  std::printf("build_s %.2f\n", secs(t_build));

  Tensor clip = to_device(plain, host_random({B, s.tv, c.clip_dim}, DType::kF32, 2.f, 11));
  Tensor sync = to_device(plain, host_random({B, s.s8, c.sync_dim}, DType::kF32, 2.f, 12));
  Tensor text = to_device(plain, host_random({B, L, c.text_dim}, DType::kF32, 1.f, 13));
  Tensor x = to_device(plain, host_random({B, c.latent_dim, s.ta}, DType::kF32, 3.f, 14));
  Tensor v = to_device(plain, host_random({B, c.latent_dim, s.ta}, DType::kF32, 0.f, 15));
  // The per-request context is not part of a step; it is built unprofiled for each model.
  auto ctx_base = base->prepare(clip, sync, text, s.ta);
  auto ctx_prof = profiled->prepare(clip, sync, text, s.ta);
  Arena step(plain.block_allocator(), base->step_arena_bytes(B, s.ta, s.tv));
  const float t[2] = {735.f, 735.f};
  return measure(
      o, plain, prof, [&] { base->forward(*ctx_base, x, t, v, step); },
      [&] { profiled->forward(*ctx_prof, x, t, v, step); });
}

// Random pixels in [-1, 1] for every batch row the encoder's chunks use.
Tensor device_pixels(Backend& be, Arena& arena, const Shape& shape) {
  const Tensor t = arena.alloc(shape, DType::kF32);
  be.copy_from_host(t, host_random(shape, DType::kF32, 2.f, 21));
  return t;
}

int run_encoder(const Options& o, Backend& plain, ProfilingBackend& prof) {
  const std::shared_ptr<WeightStore> store = open_store(o);
  const ClipShape s = clip_shape(o.seconds);
  const int64_t t25 = s.ta / 2;
  std::printf("shape seconds %.2f frames8 %lld frames25 %lld latent %lld\n", o.seconds,
              (long long)s.tv, (long long)t25, (long long)s.ta);
  // Runs `forward(rows, offset)` over `n` items `chunk` at a time, like encode_frames.
  auto chunks = [](int64_t n, int64_t chunk, const std::function<void(int64_t)>& forward) {
    for (int64_t i = 0; i < n; i += chunk) forward(std::min(chunk, n - i));
  };
  if (o.network == "siglip2") {
    const Siglip2Vision a(*store, plain), b(*store, prof);
    const Siglip2VisionConfig& c = a.config();
    const int64_t chunk = Siglip2Vision::kDefaultChunk, S = c.image_size;
    std::printf("config siglip2 hidden %d layers %d image %d chunk %lld\n", c.hidden_size,
                c.num_hidden_layers, c.image_size, (long long)chunk);
    Arena ws(plain.block_allocator(), a.workspace_bytes(int(chunk)));
    const Tensor px = device_pixels(plain, ws, {chunk, c.num_channels, S, S});
    const Tensor feat = ws.alloc({chunk, c.hidden_size}, DType::kF32);
    auto step = [&](const Siglip2Vision& m) {
      chunks(s.tv, chunk,
             [&](int64_t n) { m.forward(px.slice(0, 0, n), feat.slice(0, 0, n), ws); });
    };
    return measure(
        o, plain, prof, [&] { step(a); }, [&] { step(b); });
  }
  if (o.network == "synchformer") {
    const Synchformer a(*store, plain), b(*store, prof);
    const SynchformerConfig& c = a.config();
    const int64_t chunk = Synchformer::kDefaultChunk, S = c.image_size;
    const int64_t windows = (t25 - c.segment) / c.stride + 1;
    std::printf("config synchformer dim %d depth %d windows %lld chunk %lld\n", c.dim, c.depth,
                (long long)windows, (long long)chunk);
    Arena ws(plain.block_allocator(), a.workspace_bytes(int(chunk)));
    const Tensor px = device_pixels(plain, ws, {chunk, 3, c.segment, S, S});
    const Tensor feat = ws.alloc({chunk, c.num_frames, c.dim}, DType::kF32);
    auto step = [&](const Synchformer& m) {
      chunks(windows, chunk,
             [&](int64_t n) { m.forward(px.slice(0, 0, n), feat.slice(0, 0, n), ws); });
    };
    return measure(
        o, plain, prof, [&] { step(a); }, [&] { step(b); });
  }
  const DacDecoder a(*store, plain), b(*store, prof);
  const DacConfig& c = a.config();
  std::printf("config dac decoder_dim %d hop %d\n", c.decoder_dim, c.hop());
  const std::unique_ptr<Arena> ws = a.make_workspace(int(s.ta));
  Arena io(plain.block_allocator());
  const Tensor latent = device_pixels(plain, io, {1, s.ta, c.latent_dim});
  const Tensor audio = io.alloc({1, s.ta * c.hop()}, DType::kF32);
  return measure(
      o, plain, prof, [&] { a.decode(latent, audio, *ws); }, [&] { b.decode(latent, audio, *ws); });
}

int run(const Options& o) {
  std::unique_ptr<Backend> plain = o.device == "cuda" ? make_cuda_backend() : make_cpu_backend();
  if (!plain) {
    std::fprintf(stderr, "dit_profile: no CUDA device (or built without CUDA); try --device cpu\n");
    return 2;
  }
  ProfilingBackend prof(*plain);
  std::printf("network %s\n", o.network.c_str());
  std::printf("model %s\n",
              o.model.empty() ? ("synthetic-" + o.synthetic).c_str() : o.model.c_str());
  std::printf("backend %s\n", plain->name().c_str());
  if (o.device == "cuda") std::printf("device %s\n", cuda_device_name(0).c_str());
  return o.network == "dit" ? run_dit(o, *plain, prof) : run_encoder(o, *plain, prof);
}

}  // namespace
}  // namespace foley::bench

int main(int argc, char** argv) {
  try {
    return foley::bench::run(foley::bench::parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dit_profile: %s\n", e.what());
    return 1;
  }
}
