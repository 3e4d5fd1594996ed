// The DAC-VAE decoder of HunyuanVideo-Foley (vae_128d_48k): 128-d latents at 50 Hz -> mono
// 48 kHz audio (model-spec §1.5).
//
//   post_quant_conv (k1) -> conv k7 (latent_dim -> D)
//   -> 5 × [Snake -> ConvTranspose (k 2s, stride s, pad ceil(s/2), output_padding s%2), C -> C/2
//           -> 3 × ResidualUnit(dilation 1, 3, 9): x + conv_k1(Snake(conv_k7,d(Snake(x))))]
//   -> Snake -> conv k7 (D/32 -> 1) -> tanh
//
// Weights come from a bundle's "dac." tensors (F32, weight norm already folded, conv weights
// [K, C_out, C_in]); no latent scaling is applied, as in the official `dac.decode(z)`.
//
// Memory: activations live in a caller-owned Arena, so the immutable decoder can be shared by
// jobs. A decode holds two full-length buffers of the largest stage (ping-pong between residual
// units) plus small chunk temporaries: each residual unit is computed in time chunks, with the
// input's halo of 3·dilation samples on each side, so its two intermediate tensors never exist at
// full length. For the real model at 15 s (752 frames) the last stages are 721920 × 64 floats,
// 185 MB per buffer.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "models/weight_store.h"

namespace foley {

struct DacConfig {
  int latent_dim = 128;
  int decoder_dim = 2048;  // channels after the first conv; halved per block
  std::vector<int> decoder_rates = {8, 5, 4, 3, 2};
  int sample_rate = 48000;

  int hop() const;  // product of the rates: audio samples per latent frame (960)
  // Throws Error(kInvalidInput) naming the field for a missing or impossible value.
  static DacConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
};

// How residual units are split over time. The defaults suit every backend; tests shrink them to
// exercise chunk boundaries on tiny models.
struct DacTiling {
  int64_t chunk_elements = int64_t{1} << 20;  // per temporary (4 MB of F32): stays in cache
  int64_t min_chunk_rows = 256;               // keeps the GEMMs of wide stages efficient
};

class DacDecoder {
 public:
  // The longest latent the pipeline produces: 15.04 s at 50 Hz (model-spec §1.1).
  static constexpr int kMaxFrames = 752;

  // Takes every "dac." tensor of the bundle (strictly: missing, mis-shaped or unused tensors
  // throw). On a device backend the weights are copied to device memory once.
  DacDecoder(const WeightStore& weights, Backend& backend, const DacTiling& tiling = {});
  ~DacDecoder();
  DacDecoder(const DacDecoder&) = delete;
  DacDecoder& operator=(const DacDecoder&) = delete;

  const DacConfig& config() const { return config_; }
  // Latent frames on each side that one output sample can depend on (the receptive field's
  // half-width, rounded up): decoding a longer latent in pieces that each carry this many
  // frames of context beyond the samples kept gives the samples a whole decode would.
  int halo_frames() const;

  // latent [B, T, latent_dim] F32 (channel-last), audio [B, T·hop] F32, both on the backend's
  // device; T >= 1. Activations are taken from `arena` inside a scope (released on return).
  void decode(const Tensor& latent, const Tensor& audio, Arena& arena) const;

  // Makes `arena` able to hold a decode of up to `max_frames` frames (call before freezing it).
  void reserve(Arena& arena, int max_frames) const;
  // A frozen arena on the backend's device sized for `max_frames`.
  std::unique_ptr<Arena> make_workspace(int max_frames = kMaxFrames) const;

 private:
  struct Conv {
    Tensor w;  // [K, C_out, C_in]
    Tensor b;  // [C_out]
  };
  struct ResidualUnit {
    int dilation;
    Tensor alpha1;
    Conv conv7;
    Tensor alpha2;
    Conv conv1;
  };
  struct Block {
    int stride;
    int channels_in;
    Tensor alpha;
    Conv up;  // transposed conv, channels_in -> channels_in / 2
    ResidualUnit units[3];
  };
  struct Buffers;

  Tensor load(const WeightStore& weights, const std::string& name, const Shape& shape);
  Conv load_conv(const WeightStore& weights, const std::string& prefix, int k, int c_out, int c_in);
  int64_t chunk_rows(int64_t channels, int64_t length) const;
  Buffers allocate(Arena& arena, int frames) const;
  // One residual unit over the whole sequence: out = x + unit(x), in time chunks.
  void residual_unit(const ResidualUnit& u, const Tensor& x, const Tensor& out,
                     const Buffers& buf) const;
  // latent [1, T, latent_dim] -> audio [1, T·hop, 1].
  void decode_one(const Tensor& latent, const Tensor& audio, const Buffers& buf) const;

  DacConfig config_;
  DacTiling tiling_;
  Backend& backend_;
  std::unique_ptr<Arena> device_weights_;  // only on device backends
  Conv post_quant_conv_;
  Conv conv_in_;
  std::vector<Block> blocks_;
  Tensor alpha_out_;
  Conv conv_out_;
};

}  // namespace foley
