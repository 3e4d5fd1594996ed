// The HF SigLIP2 folder (model.safetensors + config.json of a full SiglipModel) -> the bundle's
// "siglip2." tensors: the vision tower only, F32, names without the "vision_model." prefix.
//
// The official pipeline loads the whole SiglipModel but only ever calls get_image_features, so
// the text tower and the contrastive logit_scale/logit_bias are dropped here explicitly; any
// other key is reported. No layout work is needed: the patch conv weight [D, C, p, p] is already
// what Backend::patch_embed takes, and the pooling head's packed in_proj (q|k|v row blocks) is
// sliced at load time.
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "convert/convert.h"
#include "core/check.h"
#include "models/siglip2_vision.h"

namespace foley {
namespace {

// Every tensor of the HF vision tower (with its pooling head) and its shape, for this config.
std::map<std::string, Shape> expected_vision_keys(const Siglip2VisionConfig& c) {
  const int64_t h = c.hidden_size, m = c.intermediate_size, p = c.patch_size;
  std::map<std::string, Shape> k;
  auto linear = [&](const std::string& name, int64_t n, int64_t in) {
    k[name + ".weight"] = {n, in};
    k[name + ".bias"] = {n};
  };
  auto norm = [&](const std::string& name) {
    k[name + ".weight"] = {h};
    k[name + ".bias"] = {h};
  };
  k["embeddings.patch_embedding.weight"] = {h, c.num_channels, p, p};
  k["embeddings.patch_embedding.bias"] = {h};
  k["embeddings.position_embedding.weight"] = {c.num_patches(), h};
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string l = "encoder.layers." + std::to_string(i) + ".";
    norm(l + "layer_norm1");
    norm(l + "layer_norm2");
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"})
      linear(l + "self_attn." + proj, h, h);
    linear(l + "mlp.fc1", m, h);
    linear(l + "mlp.fc2", h, m);
  }
  norm("post_layernorm");
  k["head.probe"] = {1, 1, h};
  k["head.attention.in_proj_weight"] = {3 * h, h};
  k["head.attention.in_proj_bias"] = {3 * h};
  linear("head.attention.out_proj", h, h);
  norm("head.layernorm");
  linear("head.mlp.fc1", m, h);
  linear("head.mlp.fc2", h, m);
  return k;
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

}  // namespace

nlohmann::json convert_siglip2(const SafetensorsFile& weights, const nlohmann::json& hf_config,
                               SafetensorsWriter& out) {
  if (!hf_config.is_object() || !hf_config.contains("vision_config"))
    throw Error(ErrorKind::kInvalidInput,
                "SigLIP2 config.json has no \"vision_config\" (expected a SiglipModel config)");
  if (hf_config.value("model_type", std::string("siglip")) != "siglip")
    throw Error(ErrorKind::kUnsupported,
                "SigLIP2 config.json: model_type \"" + hf_config.value("model_type", "") +
                    "\"; only fixed-resolution SigLIP2 (model_type \"siglip\") is supported");
  const Siglip2VisionConfig config = Siglip2VisionConfig::from_json(hf_config["vision_config"]);
  const std::map<std::string, Shape> expected = expected_vision_keys(config);

  const std::string vp = "vision_model.";
  std::vector<std::string> problems;
  std::set<std::string> found;
  for (const SafetensorsEntry& e : weights.entries()) {
    if (starts_with(e.name, "vision_model.")) {
      const std::string name = e.name.substr(vp.size());
      // A non-persistent buffer in current transformers; older exports saved it. Not a weight.
      if (name == "embeddings.position_ids") continue;
      auto it = expected.find(name);
      if (it == expected.end()) {
        problems.push_back("unexpected tensor " + e.name + " " + e.shape.str());
      } else if (e.shape != it->second) {
        problems.push_back("tensor " + e.name + " has shape " + e.shape.str() + ", expected " +
                           it->second.str());
      } else if (!is_float_compute(e.dtype)) {
        problems.push_back("tensor " + e.name + " has dtype " + dtype_name(e.dtype));
      } else {
        found.insert(name);
      }
      continue;
    }
    // The text tower and the contrastive head: loaded by the official code, never used.
    if (starts_with(e.name, "text_model.") || e.name == "logit_scale" || e.name == "logit_bias")
      continue;
    problems.push_back("unexpected tensor " + e.name + " " + e.shape.str());
  }
  for (const auto& [name, shape] : expected)
    if (!found.count(name) && !weights.has(vp + name))
      problems.push_back("missing tensor " + vp + name + " " + shape.str());
  throw_if_key_problems(problems,
                        "SigLIP2 checkpoint does not match the vision tower of its config.json");

  for (const auto& [name, shape] : expected) {
    const Tensor src = weights.tensor(vp + name);  // keeps the mapping alive until written
    out.add("siglip2." + name, DType::kF32, shape, [src](void* dst) {
      float* d = static_cast<float*>(dst);
      const int64_t n = src.numel();
      switch (src.dtype()) {
        case DType::kF32:
          std::memcpy(d, src.raw(), static_cast<size_t>(n) * sizeof(float));
          break;
        case DType::kBF16:
          for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(src.data<uint16_t>()[i]);
          break;
        case DType::kF16:
          for (int64_t i = 0; i < n; ++i) d[i] = f16_to_f32(src.data<uint16_t>()[i]);
          break;
        default:
          FOLEY_CHECK(false, "unsupported source dtype");
      }
    });
  }
  return config.to_json();
}

}  // namespace foley
