// How far quantised DiT weights move the output (issue 12), on the GPU, for BENCHMARKS.md
// (driven by bench/run_h100.sh PARTS=quant). The first bundle is the reference (bf16); each other
// bundle (fp8, int8) is compared with it:
// - one DiT forward (CFG batch 2, 10-s shapes: Ta 500, Tv 80, sync 240, 77 text tokens) from the
//   same seeded inputs and timestep: max and RMS error relative to the reference's max;
// - a whole 10-s request (same clip, prompt, seed; 50 steps, CFG 4.5): the waveform's relative
//   L2 error and SNR, and the log-mel spectral distance (mean |Δ| in dB of an 80-band mel
//   spectrogram, 2048-point FFT, hop 480) against the reference's audio.
// And how far --precision fast (TF32 video encoders) moves them from the exact path, with one
// bundle: the SigLIP2 and Synchformer features of the clip (max and RMS error relative to the
// exact features' max), the whole request's audio as above, and the encoder stage times of both
// (median of 3 requests).
// Result lines are "key value".
//
//   quant_quality VIDEO_10S REF_BUNDLE BUNDLE...
//   quant_quality --precision VIDEO_10S BUNDLE
#include <algorithm>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/backend.h"
#include "foley/foley.h"
#include "models/mmdit.h"
#include "models/weight_store.h"
#include "pipeline/pipeline.h"

namespace foley {
namespace {

std::vector<float> random_values(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

Tensor upload(Backend& be, const Shape& shape, const std::vector<float>& v) {
  Tensor host = Tensor::empty(shape, DType::kF32);
  std::copy(v.begin(), v.end(), host.data<float>());
  const BlockAllocator a = be.block_allocator();
  void* p = a.allocate(v.size() * 4);
  Tensor d(p, DType::kF32, shape, be.device(),
           std::shared_ptr<void>(p, [a](void* q) { a.release(q); }));
  be.copy_from_host(d, host);
  return d;
}

std::vector<float> dit_forward(const std::string& bundle, Backend& be) {
  const auto store = WeightStore::open(bundle);
  const Mmdit model(*store, be);
  const MmditConfig& c = model.config();
  const int64_t B = 2, Ta = 500, Tv = 80, S8 = 240, L = 77;
  const Tensor clip =
      upload(be, {B, Tv, c.clip_dim}, random_values(size_t(B * Tv * c.clip_dim), 1, 1.f));
  const Tensor sync =
      upload(be, {B, S8, c.sync_dim}, random_values(size_t(B * S8 * c.sync_dim), 2, 1.f));
  const Tensor text =
      upload(be, {B, L, c.text_dim}, random_values(size_t(B * L * c.text_dim), 3, 1.f));
  const Tensor x =
      upload(be, {B, c.latent_dim, Ta}, random_values(size_t(B * c.latent_dim * Ta), 4, 1.f));
  const float t[2] = {500.0f, 500.0f};
  const auto ctx = model.prepare(clip, sync, text, Ta);
  Arena arena(be.block_allocator(), model.step_arena_bytes(B, Ta, Tv));
  const Tensor v = upload(be, x.shape(), std::vector<float>(size_t(x.numel()), 0.0f));
  model.forward(*ctx, x, t, v, arena);
  Tensor host = Tensor::empty(v.shape(), DType::kF32);
  be.copy_to_host(host, v);
  return std::vector<float>(host.data<float>(), host.data<float>() + host.numel());
}

struct Distance {
  double max_rel = 0, rms_rel = 0, l2_rel = 0, snr_db = 0;
};
Distance distance(const std::vector<float>& x, const std::vector<float>& ref) {
  Distance d;
  double ref_max = 0, e2 = 0, r2 = 0, emax = 0;
  const size_t n = std::min(x.size(), ref.size());
  for (size_t i = 0; i < n; ++i) {
    const double e = double(x[i]) - ref[i];
    ref_max = std::max(ref_max, std::fabs(double(ref[i])));
    emax = std::max(emax, std::fabs(e));
    e2 += e * e;
    r2 += double(ref[i]) * ref[i];
  }
  d.max_rel = emax / ref_max;
  d.rms_rel = std::sqrt(e2 / double(n)) / ref_max;
  d.l2_rel = std::sqrt(e2 / r2);
  d.snr_db = 10.0 * std::log10(r2 / e2);
  return d;
}

// 80-band log-mel spectrogram (HTK mel, 0..24 kHz, Hann 2048, hop 480) in dB.
std::vector<std::vector<double>> log_mel(const std::vector<float>& audio) {
  const int n_fft = 2048, hop = 480, bands = 80, bins = n_fft / 2 + 1;
  const double sr = 48000;
  auto mel = [](double f) { return 2595.0 * std::log10(1.0 + f / 700.0); };
  auto hz = [](double m) { return 700.0 * (std::pow(10.0, m / 2595.0) - 1.0); };
  std::vector<double> edges(bands + 2);
  for (int i = 0; i < bands + 2; ++i) edges[size_t(i)] = hz(mel(sr / 2) * i / (bands + 1));
  std::vector<std::vector<double>> out;
  std::vector<std::complex<double>> buf(n_fft);
  for (size_t start = 0; start + n_fft <= audio.size(); start += hop) {
    for (int i = 0; i < n_fft; ++i)
      buf[size_t(i)] = audio[start + size_t(i)] * (0.5 - 0.5 * std::cos(2 * M_PI * i / n_fft));
    // Iterative radix-2 FFT.
    for (int i = 1, j = 0; i < n_fft; ++i) {
      int bit = n_fft >> 1;
      for (; j & bit; bit >>= 1) j ^= bit;
      j ^= bit;
      if (i < j) std::swap(buf[size_t(i)], buf[size_t(j)]);
    }
    for (int len = 2; len <= n_fft; len <<= 1) {
      const std::complex<double> w = std::polar(1.0, -2 * M_PI / len);
      for (int i = 0; i < n_fft; i += len) {
        std::complex<double> wk = 1;
        for (int k = 0; k < len / 2; ++k, wk *= w) {
          const auto a = buf[size_t(i + k)], b = buf[size_t(i + k + len / 2)] * wk;
          buf[size_t(i + k)] = a + b;
          buf[size_t(i + k + len / 2)] = a - b;
        }
      }
    }
    std::vector<double> frame(bands, 0.0);
    for (int b = 0; b < bins; ++b) {
      const double f = b * sr / n_fft, p = std::norm(buf[size_t(b)]);
      for (int m = 0; m < bands; ++m) {
        const double lo = edges[size_t(m)], mid = edges[size_t(m + 1)], hi = edges[size_t(m + 2)];
        if (f > lo && f < hi)
          frame[size_t(m)] += p * (f < mid ? (f - lo) / (mid - lo) : (hi - f) / (hi - mid));
      }
    }
    for (double& v : frame) v = 10.0 * std::log10(v + 1e-10);
    out.push_back(frame);
  }
  return out;
}

double log_mel_distance(const std::vector<float>& a, const std::vector<float>& ref) {
  const auto x = log_mel(a), y = log_mel(ref);
  double sum = 0;
  size_t n = 0;
  for (size_t f = 0; f < std::min(x.size(), y.size()); ++f)
    for (size_t m = 0; m < x[f].size(); ++m, ++n) sum += std::fabs(x[f][m] - y[f][m]);
  return n ? sum / double(n) : 0.0;
}

GenerationParams request_params() {
  GenerationParams gp;
  gp.prompt = "footsteps on gravel";
  gp.seed = 1;
  return gp;
}

std::unique_ptr<Generator> cuda_generator(const std::shared_ptr<const Model>& model,
                                          Precision precision = Precision::kExact) {
  GeneratorOptions go;
  go.device = DeviceType::kCuda;
  go.precision = precision;
  return Generator::create(model, go);
}

std::vector<float> generate(const std::string& bundle, const std::string& video) {
  return cuda_generator(Model::load({bundle}))->generate(video, request_params()).audio;
}

std::vector<float> values(const Tensor& host) {
  return std::vector<float>(host.data<float>(), host.data<float>() + host.numel());
}

// The median over 3 requests of each stage's time, and of the whole request ("total").
std::map<std::string, double> median_stages(Generator& gen, const std::string& video) {
  std::map<std::string, std::vector<double>> s;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    for (const StageTiming& t : gen.generate(video, request_params()).timings)
      s[t.stage].push_back(t.seconds);
    s["total"].push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::map<std::string, double> out;
  for (auto& [stage, v] : s) {
    std::sort(v.begin(), v.end());
    out[stage] = v[v.size() / 2];
  }
  return out;
}

int run_precision(const std::string& video, const std::string& bundle) {
  const auto model = Model::load({bundle});
  auto exact = cuda_generator(model), fast = cuda_generator(model, Precision::kFast);
  exact->warm_up();
  fast->warm_up();
  auto& e = dynamic_cast<pipeline::GeneratorImpl&>(*exact);
  auto& f = dynamic_cast<pipeline::GeneratorImpl&>(*fast);
  const pipeline::ClipFrames frames = e.decode(video, 15.0);
  const pipeline::ClipFeatures fe = e.features_of(frames, request_params());
  const pipeline::ClipFeatures ff = f.features_of(frames, request_params());
  for (const auto& [name, a, b] : {std::tuple{"siglip2", &ff.cond.clip, &fe.cond.clip},
                                   std::tuple{"synchformer", &ff.cond.sync, &fe.cond.sync}}) {
    const Distance d = distance(values(*a), values(*b));
    std::printf("fast_features_10s %s max_rel %.4e rms_rel %.4e l2_rel %.4e\n", name, d.max_rel,
                d.rms_rel, d.l2_rel);
  }
  const std::vector<float> ref = exact->generate(video, request_params()).audio;
  const std::vector<float> audio = fast->generate(video, request_params()).audio;
  const Distance da = distance(audio, ref);
  std::printf("fast_audio_10s l2_rel %.4e snr_db %.2f log_mel_db %.3f\n", da.l2_rel, da.snr_db,
              log_mel_distance(audio, ref));
  auto e_times = median_stages(*exact, video), f_times = median_stages(*fast, video);
  for (const auto& [stage, seconds] : e_times)
    std::printf("precision_stage_10s %s exact_s %.4f fast_s %.4f\n", stage.c_str(), seconds,
                f_times[stage]);
  std::fflush(stdout);
  return 0;
}

int run(int argc, char** argv) {
  if (std::string(argv[1]) == "--precision") return run_precision(argv[2], argv[3]);
  const std::string video = argv[1];
  std::vector<std::string> bundles(argv + 2, argv + argc);
  auto be = make_cuda_backend();
  if (!be) {
    std::printf("error no CUDA device\n");
    return 1;
  }
  const std::vector<float> ref_v = dit_forward(bundles[0], *be);
  const std::vector<float> ref_audio = generate(bundles[0], video);
  std::printf("reference %s\n", bundles[0].c_str());
  for (size_t i = 1; i < bundles.size(); ++i) {
    const Distance dv = distance(dit_forward(bundles[i], *be), ref_v);
    std::printf("quant_dit_forward %s max_rel %.4e rms_rel %.4e l2_rel %.4e\n", bundles[i].c_str(),
                dv.max_rel, dv.rms_rel, dv.l2_rel);
    const std::vector<float> audio = generate(bundles[i], video);
    const Distance da = distance(audio, ref_audio);
    std::printf("quant_audio_10s %s l2_rel %.4e snr_db %.2f log_mel_db %.3f\n", bundles[i].c_str(),
                da.l2_rel, da.snr_db, log_mel_distance(audio, ref_audio));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace foley

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: quant_quality VIDEO_10S REF_BUNDLE BUNDLE...\n"
                 "       quant_quality --precision VIDEO_10S BUNDLE\n");
    return 2;
  }
  try {
    return foley::run(argc, argv);
  } catch (const std::exception& e) {
    std::printf("error %s\n", e.what());
    return 1;
  }
}
