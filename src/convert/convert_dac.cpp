// vae_128d_48k.pth -> the bundle's "dac." tensors (decoder and post_quant_conv only).
//
// The official file is {"state_dict": fp32 tensors, "metadata": {"kwargs": {...}}} and uses
// old-style weight norm: each conv stores weight_g and weight_v, and the effective weight is
// W = g · v / ||v|| with the norm over every dim except dim 0 (model-spec §4). Dim 0 is C_out for
// Conv1d ([C_out, C_in, K]) but C_in for ConvTranspose1d ([C_in, C_out, K]), so g has a different
// meaning in the two. Folding happens here, once, in double precision; the bundle then holds plain
// F32 weights permuted to [K, C_out, C_in] and Snake alphas flattened to [C].
#include <cmath>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "convert/convert.h"
#include "core/check.h"
#include "core/host_values.h"
#include "models/dac_decoder.h"

namespace foley {
namespace {

// Element reader for a rank-3 source tensor of any float dtype and strides.
class Src3 {
 public:
  explicit Src3(const Tensor& t) : t_(t) {
    for (int d = 0; d < 3; ++d) s_[d] = t.stride(d);
  }
  double at(int64_t i, int64_t j, int64_t k) const {
    return host_element(t_, i * s_[0] + j * s_[1] + k * s_[2]);
  }
  int64_t dim(int d) const { return t_.dim(d); }

 private:
  Tensor t_;  // keeps the checkpoint mapping alive until the bundle is written
  int64_t s_[3];
};

class DacConverter {
 public:
  explicit DacConverter(const TorchCheckpoint& ckpt) : ckpt_(ckpt) {}

  // Conv1d: weight_v [c_out, c_in, k], weight_g [c_out, 1, 1], bias [c_out].
  void wn_conv(const std::string& prefix, int64_t c_out, int64_t c_in, int64_t k) {
    wn(prefix, {c_out, c_in, k}, /*transposed=*/false);
  }
  // ConvTranspose1d: weight_v [c_in, c_out, k], weight_g [c_in, 1, 1], bias [c_out].
  void wn_conv_transpose(const std::string& prefix, int64_t c_in, int64_t c_out, int64_t k) {
    wn(prefix, {c_in, c_out, k}, /*transposed=*/true);
  }
  // Plain Conv1d (no weight norm): weight [c_out, c_in, k], bias [c_out].
  void conv(const std::string& prefix, int64_t c_out, int64_t c_in, int64_t k) {
    std::optional<Tensor> w = take(prefix + ".weight", {c_out, c_in, k});
    bias(prefix + ".bias", c_out);
    if (!w) return;
    Src3 v(*w);
    queue(prefix + ".weight", {k, c_out, c_in}, [v, c_out, c_in, k](float* dst) {
      for (int64_t t = 0; t < k; ++t)
        for (int64_t o = 0; o < c_out; ++o)
          for (int64_t i = 0; i < c_in; ++i) *dst++ = static_cast<float>(v.at(o, i, t));
    });
  }
  // Snake alpha [1, c, 1] -> [c].
  void alpha(const std::string& name, int64_t c) {
    std::optional<Tensor> a = take(name, {1, c, 1});
    if (!a) return;
    Src3 v(*a);
    queue(name, {c}, [v, c](float* dst) {
      for (int64_t i = 0; i < c; ++i) dst[i] = static_cast<float>(v.at(0, i, 0));
    });
  }

  // After the walk: unexpected keys are errors (the encoder side is skipped on purpose: the
  // official loader keeps it, but decoding never uses it). Throws listing every problem.
  void finish(SafetensorsWriter& out) {
    for (const auto& e : ckpt_.entries()) {
      if (claimed_.count(e.name)) continue;
      if (e.name.rfind("encoder.", 0) == 0 || e.name.rfind("quant_conv.", 0) == 0) continue;
      problems_.push_back("unexpected tensor " + e.name + " " + e.shape.str());
    }
    throw_if_key_problems(problems_, "DAC checkpoint does not match the official decoder layout");
    for (auto& p : pending_) out.add("dac." + p.name, DType::kF32, p.shape, std::move(p.fill));
  }

 private:
  struct Pending {
    std::string name;
    Shape shape;
    std::function<void(void*)> fill;
  };

  // The source tensor if present with this shape and a float dtype; records a problem if not.
  std::optional<Tensor> take(const std::string& name, const Shape& shape) {
    claimed_.insert(name);
    if (!ckpt_.has(name)) {
      problems_.push_back("missing tensor " + name);
      return std::nullopt;
    }
    const TorchTensorEntry& e = ckpt_.entry(name);
    if (e.shape != shape) {
      problems_.push_back("tensor " + name + " has shape " + e.shape.str() + ", expected " +
                          shape.str());
      return std::nullopt;
    }
    if (!is_float_compute(e.dtype)) {
      problems_.push_back("tensor " + name + " has dtype " + dtype_name(e.dtype));
      return std::nullopt;
    }
    return ckpt_.tensor(name);
  }

  void queue(const std::string& name, const Shape& shape, std::function<void(float*)> fill) {
    pending_.push_back(
        {name, shape, [fill = std::move(fill)](void* dst) { fill(static_cast<float*>(dst)); }});
  }

  void bias(const std::string& name, int64_t c) {
    std::optional<Tensor> b = take(name, {c});
    if (!b) return;
    const Tensor t = *b;
    queue(name, {c}, [t, c](float* dst) {
      Src3 v(t.reshape({1, 1, c}));
      for (int64_t i = 0; i < c; ++i) dst[i] = static_cast<float>(v.at(0, 0, i));
    });
  }

  // v has shape `vs` = [d0, d1, k]; g is [d0, 1, 1]; W = g·v/||v|| over dims 1, 2. The output
  // is [k, c_out, c_in], where (c_out, c_in) = (d0, d1) for a conv, (d1, d0) for a transposed one.
  void wn(const std::string& prefix, const Shape& vs, bool transposed) {
    std::optional<Tensor> v = take(prefix + ".weight_v", vs);
    std::optional<Tensor> g = take(prefix + ".weight_g", {vs[0], 1, 1});
    const int64_t c_out = transposed ? vs[1] : vs[0];
    bias(prefix + ".bias", c_out);
    if (!v || !g) return;
    const Src3 sv(*v), sg(*g);
    const int64_t d0 = vs[0], d1 = vs[1], k = vs[2];
    // The norms are computed now, so a degenerate row fails the conversion rather than the write.
    std::vector<double> scale(static_cast<size_t>(d0));
    for (int64_t a = 0; a < d0; ++a) {
      double ss = 0;
      for (int64_t b = 0; b < d1; ++b)
        for (int64_t t = 0; t < k; ++t) ss += sv.at(a, b, t) * sv.at(a, b, t);
      if (!(ss > 0) || !std::isfinite(ss)) {
        problems_.push_back("tensor " + prefix + ".weight_v has a zero or non-finite norm at row " +
                            std::to_string(a));
        return;
      }
      scale[static_cast<size_t>(a)] = sg.at(a, 0, 0) / std::sqrt(ss);
    }
    const Shape out = transposed ? Shape{k, d1, d0} : Shape{k, d0, d1};
    queue(prefix + ".weight", out, [sv, scale, d0, d1, k, transposed](float* dst) {
      for (int64_t t = 0; t < k; ++t) {
        if (!transposed) {
          for (int64_t o = 0; o < d0; ++o)
            for (int64_t i = 0; i < d1; ++i)
              *dst++ = static_cast<float>(sv.at(o, i, t) * scale[static_cast<size_t>(o)]);
        } else {
          for (int64_t o = 0; o < d1; ++o)
            for (int64_t i = 0; i < d0; ++i)
              *dst++ = static_cast<float>(sv.at(i, o, t) * scale[static_cast<size_t>(i)]);
        }
      }
    });
  }

  const TorchCheckpoint& ckpt_;
  std::set<std::string> claimed_;
  std::vector<std::string> problems_;
  std::vector<Pending> pending_;
};

}  // namespace

nlohmann::json convert_dac(const TorchCheckpoint& ckpt, const ConvertOptions& options,
                           SafetensorsWriter& out) {
  (void)options;  // the decoder stays F32: it is small and the official decode runs in fp32
  const nlohmann::json& extra = ckpt.extra();
  if (!extra.contains("metadata") || !extra["metadata"].contains("kwargs") ||
      !extra["metadata"]["kwargs"].is_object())
    throw Error(ErrorKind::kInvalidInput,
                "DAC checkpoint has no metadata.kwargs: expected the official vae_128d_48k.pth "
                "layout {\"state_dict\": ..., \"metadata\": {\"kwargs\": ...}}");
  const nlohmann::json& kwargs = extra["metadata"]["kwargs"];
  if (kwargs.contains("continuous") && kwargs["continuous"] != true)
    throw Error(ErrorKind::kUnsupported,
                "DAC checkpoint is not the continuous VAE (metadata.kwargs.continuous is not "
                "true); only HunyuanVideo-Foley's vae_128d_48k is supported");
  const DacConfig config = DacConfig::from_json(kwargs);

  DacConverter c(ckpt);
  const int64_t latent = config.latent_dim;
  int64_t ch = config.decoder_dim;
  c.conv("post_quant_conv", latent, latent, 1);
  c.wn_conv("decoder.model.0", ch, latent, 7);
  const size_t n = config.decoder_rates.size();
  for (size_t i = 0; i < n; ++i) {
    const int64_t s = config.decoder_rates[i];
    const std::string p = "decoder.model." + std::to_string(i + 1) + ".block.";
    c.alpha(p + "0.alpha", ch);
    c.wn_conv_transpose(p + "1", ch, ch / 2, 2 * s);
    ch /= 2;
    for (int j = 2; j <= 4; ++j) {
      const std::string u = p + std::to_string(j) + ".block.";
      c.alpha(u + "0.alpha", ch);
      c.wn_conv(u + "1", ch, ch, 7);
      c.alpha(u + "2.alpha", ch);
      c.wn_conv(u + "3", ch, ch, 1);
    }
  }
  c.alpha("decoder.model." + std::to_string(n + 1) + ".alpha", ch);
  c.wn_conv("decoder.model." + std::to_string(n + 2), 1, ch, 7);
  c.finish(out);
  return config.to_json();
}

}  // namespace foley
