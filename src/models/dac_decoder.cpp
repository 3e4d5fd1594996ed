#include "models/dac_decoder.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/check.h"
#include "models/device_weights.h"

namespace foley {
namespace {

constexpr int kDilations[3] = {1, 3, 9};
constexpr int kMaxHalo = 3 * 9;  // k7 conv with dilation 9 reaches 27 samples to each side

int json_int(const nlohmann::json& j, const char* field) {
  if (!j.contains(field) || !j.at(field).is_number_integer())
    throw Error(ErrorKind::kInvalidInput,
                std::string("DAC config: \"") + field + "\" missing or not an integer");
  return j.at(field).get<int>();
}

}  // namespace

int DacDecoder::halo_frames() const {
  // Each layer's reach in samples at its own rate, divided by that rate's samples per frame.
  double frames = 3.0;  // conv_in, k7 at the latent rate (post_quant_conv is k1)
  double rate = 1.0;
  for (int s : config_.decoder_rates) {
    frames += 2.0 / rate;  // the transposed conv (k 2s, stride s) reads two input samples
    rate *= s;
    frames += 3.0 * (1 + 3 + 9) / rate;  // three k7 residual units, dilations 1, 3, 9
  }
  frames += 3.0 / rate;  // conv_out, k7
  return static_cast<int>(std::ceil(frames));
}

int DacConfig::hop() const {
  int h = 1;
  for (int r : decoder_rates) h *= r;
  return h;
}

DacConfig DacConfig::from_json(const nlohmann::json& j) {
  DacConfig c;
  c.latent_dim = json_int(j, "latent_dim");
  c.decoder_dim = json_int(j, "decoder_dim");
  c.sample_rate = json_int(j, "sample_rate");
  if (!j.contains("decoder_rates") || !j.at("decoder_rates").is_array())
    throw Error(ErrorKind::kInvalidInput, "DAC config: \"decoder_rates\" missing or not a list");
  c.decoder_rates.clear();
  for (const auto& r : j.at("decoder_rates")) {
    if (!r.is_number_integer() || r.get<int>() < 1)
      throw Error(ErrorKind::kInvalidInput, "DAC config: \"decoder_rates\" must be integers >= 1");
    c.decoder_rates.push_back(r.get<int>());
  }
  const int halvings = static_cast<int>(c.decoder_rates.size());
  if (c.latent_dim < 1 || c.sample_rate < 1 || halvings < 1 || halvings > 20 ||
      c.decoder_dim < (1 << halvings) || c.decoder_dim % (1 << halvings) != 0)
    throw Error(ErrorKind::kInvalidInput,
                "DAC config: decoder_dim " + std::to_string(c.decoder_dim) +
                    " must be a positive multiple of 2^" + std::to_string(halvings) +
                    " (one halving per rate), latent_dim and sample_rate positive");
  return c;
}

nlohmann::json DacConfig::to_json() const {
  return {{"latent_dim", latent_dim},
          {"decoder_dim", decoder_dim},
          {"decoder_rates", decoder_rates},
          {"sample_rate", sample_rate}};
}

// ---- construction -----------------------------------------------------------------------------

Tensor DacDecoder::load(const WeightStore& weights, const std::string& name, const Shape& shape) {
  // A view of the bundle when it already is where the backend computes, else a device copy.
  return place_weight(backend_, weights.get("dac." + name, shape, {DType::kF32}), device_weights_,
                      [&] { return weight_arena_bytes(weights, {"dac."}); });
}

DacDecoder::Conv DacDecoder::load_conv(const WeightStore& weights, const std::string& prefix, int k,
                                       int c_out, int c_in) {
  return {load(weights, prefix + ".weight", {k, c_out, c_in}),
          load(weights, prefix + ".bias", {c_out})};
}

DacDecoder::DacDecoder(const WeightStore& weights, Backend& backend, const DacTiling& tiling)
    : config_(DacConfig::from_json(weights.config("dac"))), tiling_(tiling), backend_(backend) {
  FOLEY_CHECK(tiling_.chunk_elements >= 1 && tiling_.min_chunk_rows >= 1, "bad DAC tiling");
  const int latent = config_.latent_dim;
  int c = config_.decoder_dim;
  post_quant_conv_ = load_conv(weights, "post_quant_conv", 1, latent, latent);
  conv_in_ = load_conv(weights, "decoder.model.0", 7, c, latent);
  // Official module paths: decoder.model.{1..n} are DecoderBlocks whose .block is
  // [Snake, ConvTranspose, ResidualUnit × 3]; each unit's .block is [Snake, conv k7, Snake, conv
  // k1].
  for (size_t i = 0; i < config_.decoder_rates.size(); ++i) {
    const std::string p = "decoder.model." + std::to_string(i + 1) + ".block.";
    Block b;
    b.stride = config_.decoder_rates[i];
    b.channels_in = c;
    b.alpha = load(weights, p + "0.alpha", {c});
    b.up = load_conv(weights, p + "1", 2 * b.stride, c / 2, c);
    c /= 2;
    for (int j = 0; j < 3; ++j) {
      const std::string u = p + std::to_string(j + 2) + ".block.";
      b.units[j].dilation = kDilations[j];
      b.units[j].alpha1 = load(weights, u + "0.alpha", {c});
      b.units[j].conv7 = load_conv(weights, u + "1", 7, c, c);
      b.units[j].alpha2 = load(weights, u + "2.alpha", {c});
      b.units[j].conv1 = load_conv(weights, u + "3", 1, c, c);
    }
    blocks_.push_back(std::move(b));
  }
  const std::string n = std::to_string(config_.decoder_rates.size() + 1);
  const std::string n2 = std::to_string(config_.decoder_rates.size() + 2);
  alpha_out_ = load(weights, "decoder.model." + n + ".alpha", {c});
  conv_out_ = load_conv(weights, "decoder.model." + n2, 7, 1, c);
  weights.expect_all_used("dac.");
}

DacDecoder::~DacDecoder() = default;

// ---- activation memory ------------------------------------------------------------------------

int64_t DacDecoder::chunk_rows(int64_t channels, int64_t length) const {
  return std::min(length, std::max(tiling_.min_chunk_rows, tiling_.chunk_elements / channels));
}

// Raw device memory; views of any shape are cut from it per stage.
struct DacDecoder::Buffers {
  void* big[2];  // ping-pong, each the largest stage's [T_s, C_s]
  void* window;  // snake(x) over one chunk plus halos
  void* mid;     // conv k7 output of one chunk (then its snake, in place)
  void* delta;   // conv k1 output of one chunk
};

DacDecoder::Buffers DacDecoder::allocate(Arena& arena, int frames) const {
  int64_t big = int64_t{frames} * std::max(config_.latent_dim, config_.decoder_dim);
  int64_t window = 0, chunk = 0;
  int64_t t = frames;
  for (const Block& b : blocks_) {
    t *= b.stride;
    const int64_t c = b.channels_in / 2;
    big = std::max(big, t * c);
    const int64_t rows = chunk_rows(c, t);
    window = std::max(window, (rows + 2 * kMaxHalo) * c);
    chunk = std::max(chunk, rows * c);
  }
  auto bytes = [](int64_t elements) { return static_cast<size_t>(elements) * sizeof(float); };
  Buffers buf;
  buf.big[0] = arena.alloc_bytes(bytes(big));
  buf.big[1] = arena.alloc_bytes(bytes(big));
  buf.window = arena.alloc_bytes(bytes(window));
  buf.mid = arena.alloc_bytes(bytes(chunk));
  buf.delta = arena.alloc_bytes(bytes(chunk));
  return buf;
}

void DacDecoder::reserve(Arena& arena, int max_frames) const {
  FOLEY_CHECK(max_frames >= 1, "DAC reserve: max_frames %d", max_frames);
  Arena::Scope scope(arena);
  allocate(arena, max_frames);
}

std::unique_ptr<Arena> DacDecoder::make_workspace(int max_frames) const {
  auto arena = std::make_unique<Arena>(backend_.block_allocator());
  reserve(*arena, max_frames);
  arena->freeze();
  return arena;
}

// ---- forward ----------------------------------------------------------------------------------

void DacDecoder::residual_unit(const ResidualUnit& u, const Tensor& x, const Tensor& out,
                               const Buffers& buf) const {
  // out = x + conv_k1(Snake(conv_k7,d(Snake(x)))), with zero padding 3d applied to Snake(x).
  // The official unit crops x when the branch comes out shorter; with this padding the lengths
  // always match, so there is nothing to crop.
  const int64_t length = x.dim(1), channels = x.dim(2);
  const int64_t halo = 3 * u.dilation;
  const int64_t rows = chunk_rows(channels, length);
  const DeviceKind dev = backend_.device();
  for (int64_t t0 = 0; t0 < length; t0 += rows) {
    const int64_t n = std::min(rows, length - t0);
    // Window [t0 − halo, t0 + n + halo) of Snake(x); positions outside [0, length) are the
    // conv's zero padding (Snake(0) = 0 would give the same, but the padding is explicit).
    const int64_t lo = std::max<int64_t>(t0 - halo, 0);
    const int64_t hi = std::min(t0 + n + halo, length);
    const int64_t left_pad = lo - (t0 - halo), right_pad = (t0 + n + halo) - hi;
    Tensor window(buf.window, DType::kF32, {1, n + 2 * halo, channels}, dev);
    if (left_pad > 0) backend_.fill(window.slice(1, 0, left_pad), 0.0f);
    if (right_pad > 0) backend_.fill(window.slice(1, n + 2 * halo - right_pad, right_pad), 0.0f);
    backend_.snake(x.slice(1, lo, hi - lo), u.alpha1, window.slice(1, left_pad, hi - lo));
    Tensor mid(buf.mid, DType::kF32, {1, n, channels}, dev);
    backend_.conv1d(window, u.conv7.w, &u.conv7.b, u.dilation, 0, mid);
    backend_.snake(mid, u.alpha2, mid);
    Tensor delta(buf.delta, DType::kF32, {1, n, channels}, dev);
    backend_.conv1d(mid, u.conv1.w, &u.conv1.b, 1, 0, delta);
    backend_.add(x.slice(1, t0, n), delta, out.slice(1, t0, n));
  }
}

void DacDecoder::decode_one(const Tensor& latent, const Tensor& audio, const Buffers& buf) const {
  const DeviceKind dev = backend_.device();
  auto view = [&](void* p, int64_t t, int64_t c) { return Tensor(p, DType::kF32, {1, t, c}, dev); };
  int64_t t = latent.dim(1);
  int64_t c = config_.decoder_dim;
  int cur = 0;  // which big buffer holds x
  backend_.conv1d(latent, post_quant_conv_.w, &post_quant_conv_.b, 1, 0,
                  view(buf.big[1], t, config_.latent_dim));
  backend_.conv1d(view(buf.big[1], t, config_.latent_dim), conv_in_.w, &conv_in_.b, 1, 3,
                  view(buf.big[0], t, c));
  for (const Block& b : blocks_) {
    Tensor x = view(buf.big[cur], t, c);
    backend_.snake(x, b.alpha, x);  // x is not needed afterwards
    // Exactly ×stride: (t−1)·s − 2·ceil(s/2) + 2s + s%2 = t·s.
    const int s = b.stride;
    Tensor y = view(buf.big[1 - cur], t * s, c / 2);
    backend_.conv_transpose1d(x, b.up.w, &b.up.b, s, (s + 1) / 2, s % 2, y);
    t *= s;
    c /= 2;
    cur = 1 - cur;
    for (const ResidualUnit& u : b.units) {
      residual_unit(u, view(buf.big[cur], t, c), view(buf.big[1 - cur], t, c), buf);
      cur = 1 - cur;
    }
  }
  Tensor x = view(buf.big[cur], t, c);
  backend_.snake(x, alpha_out_, x);
  backend_.conv1d(x, conv_out_.w, &conv_out_.b, 1, 3, audio);
  backend_.activation(Activation::kTanh, audio, audio);
}

void DacDecoder::decode(const Tensor& latent, const Tensor& audio, Arena& arena) const {
  const DeviceKind dev = backend_.device();
  if (latent.dtype() != DType::kF32 || latent.rank() != 3 || latent.dim(2) != config_.latent_dim ||
      latent.dim(1) < 1 || !latent.is_contiguous())
    throw Error(ErrorKind::kInvalidInput, "DAC decode: latent must be a contiguous F32 [B, T, " +
                                              std::to_string(config_.latent_dim) +
                                              "] tensor with T >= 1, got " + latent.describe());
  const int64_t batch = latent.dim(0), frames = latent.dim(1);
  expect_shape(audio, {batch, frames * config_.hop()}, "DAC decode audio");
  FOLEY_CHECK(audio.dtype() == DType::kF32 && audio.is_contiguous() && latent.device() == dev &&
                  audio.device() == dev,
              "DAC decode: audio %s / latent %s on the wrong device or layout",
              audio.describe().c_str(), latent.describe().c_str());
  Arena::Scope scope(arena);
  const Buffers buf = allocate(arena, static_cast<int>(frames));
  for (int64_t i = 0; i < batch; ++i) {
    decode_one(latent.slice(0, i, 1), audio.slice(0, i, 1).reshape({1, audio.dim(1), 1}), buf);
  }
}

}  // namespace foley
