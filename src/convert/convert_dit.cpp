// Official HunyuanVideo-Foley DiT checkpoint (flat bf16 state dict) -> "dit." bundle tensors.
// The source may also be a .safetensors of the same keys (community casts: BF16, F16, or F8_E4M3 /
// F8_E5M2 with some tensors left BF16/F32, no scales); every value is decoded exactly to float
// (core/host_values), so an fp8 input gives exactly its fp8 values in the bundle.
//
// Layout work done here so the model never does it at run time:
// - single_blocks.*.linear_qkv is element-interleaved "(H D K)" (row h·3D + 3d + k holds
//   q/k/v = k of head h, dim d); it is rewritten to the block layout [q | k | v], each (H D),
//   that the triple blocks already use.
// - The single blocks' k=3 Conv1d weights [C_out, C_in, 3] become [C_out, 3·C_in], the taps side
//   by side (row o = [w[o,:,0] | w[o,:,1] | w[o,:,2]]): one Linear weight over the three shifted
//   input rows (dit_conv3), in every storage dtype (bundle format 2; format 1 kept [3, C_out,
//   C_in] for 16/32-bit weights). The k=1 convolutions (audio_embedder.proj, sync_in.2.w*) become
//   plain Linear weights [C_out, C_in].
// - sync_pos_emb [1,1,8,C] -> [8,C], empty_*_feat [1,C] -> [C].
// - final_layer.adaLN_modulation.1.* is checked and dropped: the official FinalLayer1D passes
//   its per-token shift/scale to `modulate`, which ignores 3-D modulation tensors, so these
//   weights never affect the output (confirmed by the golden case).
// Matmul/conv weights are stored in options.dit_dtype; biases, norm weights and the learned
// embeddings in F32.
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "convert/convert.h"
#include "core/check.h"
#include "core/host_values.h"
#include "core/thread_pool.h"
#include "models/mmdit.h"

namespace foley {
namespace {

enum class Layout {
  kSame,          // element order unchanged (only a reshape and a dtype change)
  kConvTaps,      // [Co, Ci, 3] -> [Co, 3·Ci], tap-major
  kDeinterleave,  // rows of a (H D K) fused qkv -> [q | k | v]
  kDrop,          // checked, not written
};

struct Expected {
  std::string name;  // official key
  Shape shape;       // official shape
  Layout layout = Layout::kSame;
  Shape out_shape;  // bundle shape
  bool matrix = false;
};

void store(void* dst, DType dtype, size_t i, float v) {
  switch (dtype) {
    case DType::kF32:
      static_cast<float*>(dst)[i] = v;
      return;
    case DType::kBF16:
      static_cast<uint16_t*>(dst)[i] = f32_to_bf16(v);
      return;
    case DType::kF16:
      static_cast<uint16_t*>(dst)[i] = f32_to_f16(v);
      return;
    default:
      break;
  }
  FOLEY_CHECK(false, "dit converter: unsupported storage dtype %s", dtype_name(dtype));
}

// Fills `dst` (out_shape, dtype) from the official tensor `src` with the given layout change.
void convert_tensor(const Tensor& src, const Expected& e, int64_t head_dim, DType dtype,
                    void* dst) {
  const std::vector<float> v = host_values_f32(src);
  switch (e.layout) {
    case Layout::kSame:
      for (size_t i = 0; i < v.size(); ++i) store(dst, dtype, i, v[i]);
      return;
    case Layout::kConvTaps: {
      const int64_t co = e.shape[0], ci = e.shape[1], k = e.shape[2];
      for (int64_t o = 0; o < co; ++o)
        for (int64_t i = 0; i < ci; ++i)
          for (int64_t t = 0; t < k; ++t)
            store(dst, dtype, static_cast<size_t>((o * k + t) * ci + i),
                  v[static_cast<size_t>((o * ci + i) * k + t)]);
      return;
    }
    case Layout::kDeinterleave: {
      const int64_t rows = e.shape[0], cols = e.shape.rank() > 1 ? e.shape[1] : 1;
      const int64_t hidden = rows / 3, heads = hidden / head_dim;
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t d = 0; d < head_dim; ++d)
          for (int64_t q = 0; q < 3; ++q) {
            const int64_t from = h * 3 * head_dim + d * 3 + q;
            const int64_t to = q * hidden + h * head_dim + d;
            for (int64_t c = 0; c < cols; ++c)
              store(dst, dtype, static_cast<size_t>(to * cols + c),
                    v[static_cast<size_t>(from * cols + c)]);
          }
      return;
    }
    case Layout::kDrop:
      return;
  }
}

// ---- quantised blocks (--dtype fp8|int8) -----------------------------------------------------
//
// Every matrix inside the triple and single blocks (~96 % of the weights) becomes 8-bit codes
// with one F32 scale per output channel ("<name>_scale", [N]). Per output channel rather than
// per tensor: cuBLASLt applies a scale vector at no cost (outer-vector scaling), and one
// channel's outliers then cost only that channel its resolution. The embedders, the final layer
// and the conditioning MLPs stay in dit_dtype: they are small and sit where errors are not
// averaged over many blocks.

bool is_block_matrix(const std::string& name) {
  return name.rfind("triple_blocks.", 0) == 0 || name.rfind("single_blocks.", 0) == 0;
}

// The layer in its run-time layout as rows [N, K] (a k=3 convolution's taps side by side, as
// convert_tensor lays them out), each row quantised with its own scale.
void add_quantized(SafetensorsWriter& out, const Tensor& src, const Expected& e, int64_t head_dim,
                   QuantFormat format) {
  const int64_t n = e.out_shape[0], k = e.out_shape[1];
  auto scales = std::make_shared<std::vector<float>>();
  const std::string name = "dit." + e.name;
  out.add(name, quant_storage_dtype(format), {n, k}, [=](void* dst) {
    std::vector<float> rows(static_cast<size_t>(n * k));
    convert_tensor(src, e, head_dim, DType::kF32, rows.data());
    scales->resize(static_cast<size_t>(n));
    // Rows in parallel: the FP8 encoder is exact but not cheap (5 G weights for XXL).
    parallel_for(n, 16, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o)
        (*scales)[static_cast<size_t>(o)] =
            quantize_row(rows.data() + o * k, k, format, static_cast<uint8_t*>(dst) + o * k);
    });
  });
  // Written right after the codes (the writer fills tensors in the order added).
  out.add(name + "_scale", DType::kF32, {n}, [scales, n, name](void* dst) {
    FOLEY_CHECK(static_cast<int64_t>(scales->size()) == n, "%s: scales before codes", name.c_str());
    std::memcpy(dst, scales->data(), static_cast<size_t>(n) * sizeof(float));
  });
}

// The official module tree's state-dict keys for a config, with what becomes of each.
std::vector<Expected> expected_keys(const MmditConfig& c) {
  std::vector<Expected> k;
  const int64_t H = c.hidden, D = c.head_dim;
  auto add = [&](const std::string& name, const Shape& shape, bool matrix, Layout layout,
                 const Shape& out) {
    k.push_back({name, shape, layout, out, matrix});
  };
  auto vec = [&](const std::string& name, int64_t n) { add(name, {n}, false, Layout::kSame, {n}); };
  auto lin = [&](const std::string& name, int64_t n, int64_t in, bool bias = true) {
    add(name + ".weight", {n, in}, true, Layout::kSame, {n, in});
    if (bias) vec(name + ".bias", n);
  };
  auto conv1 = [&](const std::string& name, int64_t co, int64_t ci) {  // k=1 conv as Linear
    add(name + ".weight", {co, ci, 1}, true, Layout::kSame, {co, ci});
  };
  auto conv3 = [&](const std::string& name, int64_t co, int64_t ci) {
    add(name + ".weight", {co, ci, 3}, true, Layout::kConvTaps, {co, 3 * ci});
  };

  add("sync_pos_emb", {1, 1, 8, c.sync_dim}, false, Layout::kSame, {8, c.sync_dim});
  add("empty_clip_feat", {1, c.clip_dim}, false, Layout::kSame, {c.clip_dim});
  add("empty_sync_feat", {1, c.sync_dim}, false, Layout::kSame, {c.sync_dim});
  conv1("audio_embedder.proj", H, c.latent_dim);
  vec("audio_embedder.proj.bias", H);
  lin("visual_proj.w1", H, c.clip_dim, false);
  lin("visual_proj.w2", H, H, false);
  lin("visual_proj.w3", H, c.clip_dim, false);
  lin("cond_in.linear_1", H, c.text_dim);
  lin("cond_in.linear_2", H, H);
  lin("time_in.mlp.0", H, 256);
  lin("time_in.mlp.2", H, H);
  lin("sync_in.0", H, c.sync_dim);
  conv1("sync_in.2.w1", c.sync_mlp_hidden, H);
  conv1("sync_in.2.w2", H, c.sync_mlp_hidden);
  conv1("sync_in.2.w3", c.sync_mlp_hidden, H);
  for (int64_t i = 0; i < c.depth_triple; ++i) {
    const std::string p = "triple_blocks." + std::to_string(i) + ".";
    for (const std::string s : {"audio", "v_cond"}) {
      const bool a = s == "audio";
      lin(p + s + "_mod.linear", 9 * H, H);
      lin(p + (a ? "audio_self_attn_qkv" : "v_cond_attn_qkv"), 3 * H, H);
      vec(p + (a ? "audio_self_q_norm" : "v_cond_attn_q_norm") + ".weight", D);
      vec(p + (a ? "audio_self_k_norm" : "v_cond_attn_k_norm") + ".weight", D);
      lin(p + s + "_self_proj", H, H);
      lin(p + s + "_cross_q", H, H);
      vec(p + s + "_cross_q_norm.weight", D);
      lin(p + s + "_cross_proj", H, H);
      lin(p + s + "_mlp.fc1", c.mlp_hidden, H);
      lin(p + s + "_mlp.fc2", H, c.mlp_hidden);
    }
    lin(p + "text_cross_kv", 2 * H, H);
    vec(p + "text_cross_k_norm.weight", D);
  }
  for (int64_t i = 0; i < c.depth_single; ++i) {
    const std::string p = "single_blocks." + std::to_string(i) + ".";
    lin(p + "modulation.linear", 6 * H, H);
    add(p + "linear_qkv.weight", {3 * H, H}, true, Layout::kDeinterleave, {3 * H, H});
    add(p + "linear_qkv.bias", {3 * H}, false, Layout::kDeinterleave, {3 * H});
    conv3(p + "linear1", H, H);
    vec(p + "linear1.bias", H);
    conv3(p + "linear2.w1", c.conv_mlp_hidden, H);
    conv3(p + "linear2.w2", H, c.conv_mlp_hidden);
    conv3(p + "linear2.w3", c.conv_mlp_hidden, H);
    vec(p + "q_norm.weight", D);
    vec(p + "k_norm.weight", D);
  }
  lin("final_layer.linear", c.latent_dim, H);
  add("final_layer.adaLN_modulation.1.weight", {2 * H, H}, true, Layout::kDrop, {});
  add("final_layer.adaLN_modulation.1.bias", {2 * H}, false, Layout::kDrop, {});
  return k;
}

// ---- sizes: from the tensors, cross-checked with config.yaml -----------------------------------

template <typename Checkpoint>
int64_t dim_of(const Checkpoint& ckpt, const std::string& key, int d) {
  if (!ckpt.has(key))
    throw Error(ErrorKind::kInvalidInput, "dit checkpoint: missing tensor " + key +
                                              " (is this a HunyuanVideo-Foley DiT checkpoint?)");
  const Shape& s = ckpt.entry(key).shape;
  if (d >= s.rank())
    throw Error(ErrorKind::kInvalidInput,
                "dit checkpoint: tensor " + key + " has shape " + s.str());
  return s[d];
}

template <typename Checkpoint>
int64_t count_blocks(const Checkpoint& ckpt, const std::string& prefix) {
  std::set<int64_t> ids;
  for (const auto& e : ckpt.entries()) {
    if (e.name.compare(0, prefix.size(), prefix) != 0) continue;
    const size_t dot = e.name.find('.', prefix.size());
    const std::string id = e.name.substr(prefix.size(), dot - prefix.size());
    if (!id.empty() && id.find_first_not_of("0123456789") == std::string::npos)
      ids.insert(std::stoll(id));
  }
  // Block indices must be 0..n−1; a gap shows up as missing keys of the absent block.
  return ids.empty() ? 0 : *ids.rbegin() + 1;
}

template <typename Checkpoint>
MmditConfig sizes_from_tensors(const Checkpoint& ckpt) {
  MmditConfig c;
  c.hidden = dim_of(ckpt, "audio_embedder.proj.weight", 0);
  c.latent_dim = dim_of(ckpt, "audio_embedder.proj.weight", 1);
  c.clip_dim = dim_of(ckpt, "visual_proj.w1.weight", 1);
  c.text_dim = dim_of(ckpt, "cond_in.linear_1.weight", 1);
  c.sync_dim = dim_of(ckpt, "sync_in.0.weight", 1);
  c.sync_mlp_hidden = dim_of(ckpt, "sync_in.2.w1.weight", 0);
  c.depth_triple = count_blocks(ckpt, "triple_blocks.");
  c.depth_single = count_blocks(ckpt, "single_blocks.");
  c.head_dim = c.depth_triple > 0 ? dim_of(ckpt, "triple_blocks.0.audio_self_q_norm.weight", 0)
                                  : dim_of(ckpt, "single_blocks.0.q_norm.weight", 0);
  if (c.head_dim <= 0 || c.hidden % c.head_dim != 0)
    throw make_error(ErrorKind::kInvalidInput, "dit checkpoint: head dim %lld does not divide %lld",
                     (long long)c.head_dim, (long long)c.hidden);
  c.heads = c.hidden / c.head_dim;
  c.mlp_hidden =
      c.depth_triple > 0 ? dim_of(ckpt, "triple_blocks.0.audio_mlp.fc1.weight", 0) : 4 * c.hidden;
  c.conv_mlp_hidden = c.depth_single > 0 ? dim_of(ckpt, "single_blocks.0.linear2.w1.weight", 0)
                                         : MmditConfig::conv_mlp_width(4 * c.hidden);
  return c;
}

// ---- the official variants ----------------------------------------------------------------------

struct OfficialDit {
  const char* name;  // bundle metadata "variant"
  const char* label;
  int64_t hidden, heads, depth_triple, depth_single;
};
// configs/hunyuanvideo-foley-xxl.yaml (hunyuanvideo_foley.pth) and -xl.yaml
// (hunyuanvideo_foley_xl.pth); both: head dim 128, mlp_ratio 4, 768-wide SigLIP2 / Synchformer /
// CLAP features, 128 latent channels.
constexpr OfficialDit kOfficialDits[] = {
    {"xxl", "XXL", 1536, 12, 18, 36},
    {"xl", "XL", 1408, 11, 12, 24},
};

MmditConfig official_sizes(const OfficialDit& v) {
  MmditConfig c;
  c.hidden = v.hidden;
  c.heads = v.heads;
  c.head_dim = v.hidden / v.heads;
  c.depth_triple = v.depth_triple;
  c.depth_single = v.depth_single;
  c.latent_dim = 128;
  c.clip_dim = c.sync_dim = c.text_dim = 768;
  c.mlp_hidden = 4 * v.hidden;
  c.conv_mlp_hidden = MmditConfig::conv_mlp_width(4 * v.hidden);
  c.sync_mlp_hidden = MmditConfig::conv_mlp_width(4 * v.hidden);
  return c;
}

const OfficialDit* official_dit_of(const MmditConfig& c) {
  for (const OfficialDit& v : kOfficialDits)
    if (official_sizes(v).to_json() == c.to_json()) return &v;
  return nullptr;
}

std::string describe(const OfficialDit& v) {
  return std::string(v.label) + " DiT (hidden " + std::to_string(v.hidden) + ", " +
         std::to_string(v.heads) + " heads, " + std::to_string(v.depth_triple) + "+" +
         std::to_string(v.depth_single) + " blocks)";
}

// Checks config.yaml's model_kwargs against the sizes read from the tensors, and refuses
// options this implementation does not have.
void cross_check_yaml(const std::string& path, const MmditConfig& c) {
  YAML::Node kw;
  try {
    kw = YAML::LoadFile(path)["model_config"]["model_kwargs"];
  } catch (const YAML::Exception& e) {
    throw Error(ErrorKind::kInvalidInput, path + ": " + e.what());
  }
  if (!kw || !kw.IsMap())
    throw Error(ErrorKind::kInvalidInput, path + ": no model_config.model_kwargs map");
  std::vector<std::string> bad;
  auto num = [&](const char* key, double expect) {
    if (!kw[key]) return;
    const double v = kw[key].as<double>();
    if (v != expect)
      bad.push_back(std::string(key) + " is " + kw[key].as<std::string>() +
                    " but the tensors say " + std::to_string(static_cast<long long>(expect)));
  };
  num("hidden_size", static_cast<double>(c.hidden));
  num("num_heads", static_cast<double>(c.heads));
  num("depth_triple_blocks", static_cast<double>(c.depth_triple));
  num("depth_single_blocks", static_cast<double>(c.depth_single));
  num("audio_vae_latent_dim", static_cast<double>(c.latent_dim));
  num("clip_dim", static_cast<double>(c.clip_dim));
  num("sync_feat_dim", static_cast<double>(c.sync_dim));
  num("condition_dim", static_cast<double>(c.text_dim));
  num("patch_size", 1);
  const double ratio = kw["mlp_ratio"] ? kw["mlp_ratio"].as<double>() : 4.0;
  const double mlp_in = static_cast<double>(c.hidden) * ratio;
  if (static_cast<int64_t>(mlp_in) != c.mlp_hidden && c.depth_triple > 0)
    bad.push_back("mlp_ratio does not match the triple-block MLP width");
  if (MmditConfig::conv_mlp_width(static_cast<int64_t>(mlp_in)) != c.conv_mlp_hidden &&
      c.depth_single > 0)
    bad.push_back("mlp_ratio does not match the single-block ConvMLP width");
  if (MmditConfig::conv_mlp_width(4 * c.hidden) != c.sync_mlp_hidden)
    bad.push_back("sync_in ConvMLP width is not that of ConvMLP(H, 4H)");
  auto flag = [&](const char* key, bool want, bool dflt) {
    const bool v = kw[key] ? kw[key].as<bool>() : dflt;
    if (v != want)
      bad.push_back(std::string(key) + " = " + (v ? "true" : "false") + " is not supported");
  };
  flag("interleaved_audio_visual_rope", true, false);
  flag("add_sync_feat_to_audio", true, false);
  flag("sync_modulation", false, false);
  flag("use_attention_mask", false, false);
  flag("qk_norm", true, true);
  flag("qkv_bias", true, true);
  flag("cross_attention", true, true);
  auto str = [&](const char* key, const char* want) {
    if (kw[key] && kw[key].as<std::string>() != want)
      bad.push_back(std::string(key) + " = " + kw[key].as<std::string>() + " is not supported");
  };
  str("mlp_act_type", "gelu_tanh");
  str("qk_norm_type", "rms");
  str("condition_projection", "linear");
  if (kw["sync_in_ksz"] && kw["sync_in_ksz"].as<int>() != 1)
    bad.push_back("sync_in_ksz other than 1 is not supported");
  if (kw["rope_dim_list"] && !kw["rope_dim_list"].IsNull())
    bad.push_back("rope_dim_list other than null is not supported");
  if (!bad.empty()) {
    std::string msg = path + ": ";
    for (size_t i = 0; i < bad.size(); ++i) msg += (i ? "; " : "") + bad[i];
    // The usual cause: the other official variant's config next to a checkpoint. Say so.
    const OfficialDit* tensors = official_dit_of(c);
    const OfficialDit* yaml = nullptr;
    for (const OfficialDit& v : kOfficialDits)
      if (kw["hidden_size"] && kw["hidden_size"].as<std::string>() == std::to_string(v.hidden))
        yaml = &v;
    if (tensors && yaml && tensors != yaml)
      msg += " (the checkpoint is the " + describe(*tensors) + ", the config is the " +
             yaml->label + "'s)";
    else if (tensors)
      msg += " (the checkpoint is the " + describe(*tensors) + ")";
    throw Error(ErrorKind::kUnsupported, msg);
  }
}

}  // namespace

std::string dit_variant(const nlohmann::json& dit_config) {
  const OfficialDit* v = official_dit_of(MmditConfig::from_json(dit_config));
  return v ? v->name : "custom";
}

// Over a TorchCheckpoint (the official .pth) or a SafetensorsFile (community conversions, fp8
// ones included): both have entries(), has(), entry() (name, dtype, shape) and tensor().
template <typename Checkpoint>
static nlohmann::json convert_dit_from(const Checkpoint& ckpt, const std::string& config_yaml_path,
                                       const ConvertOptions& options, SafetensorsWriter& out);

nlohmann::json convert_dit(const TorchCheckpoint& ckpt, const std::string& config_yaml_path,
                           const ConvertOptions& options, SafetensorsWriter& out) {
  return convert_dit_from(ckpt, config_yaml_path, options, out);
}
nlohmann::json convert_dit(const SafetensorsFile& file, const std::string& config_yaml_path,
                           const ConvertOptions& options, SafetensorsWriter& out) {
  return convert_dit_from(file, config_yaml_path, options, out);
}

template <typename Checkpoint>
static nlohmann::json convert_dit_from(const Checkpoint& ckpt, const std::string& config_yaml_path,
                                       const ConvertOptions& options, SafetensorsWriter& out) {
  if (!is_float_compute(options.dit_dtype))
    throw make_error(ErrorKind::kInvalidInput, "dit storage dtype %s is not F32, BF16 or F16",
                     dtype_name(options.dit_dtype));
  const MmditConfig c = sizes_from_tensors(ckpt);
  if (!config_yaml_path.empty()) cross_check_yaml(config_yaml_path, c);

  // The key set must be exactly the official module tree's: report every difference by name.
  const std::vector<Expected> keys = expected_keys(c);
  std::vector<std::string> problems;
  std::set<std::string> known;
  for (const Expected& e : keys) {
    known.insert(e.name);
    if (!ckpt.has(e.name)) {
      problems.push_back("missing " + e.name);
    } else if (ckpt.entry(e.name).shape != e.shape) {
      problems.push_back(e.name + " has shape " + ckpt.entry(e.name).shape.str() + ", expected " +
                         e.shape.str());
    } else if (!is_float_source(ckpt.entry(e.name).dtype)) {
      problems.push_back(e.name + " has dtype " + dtype_name(ckpt.entry(e.name).dtype));
    }
  }
  for (const auto& e : ckpt.entries())
    if (!known.count(e.name)) problems.push_back("unexpected " + e.name);
  if (!problems.empty()) {
    std::string msg = "dit checkpoint does not match the HunyuanVideo-Foley module tree (" +
                      std::to_string(problems.size()) + " problems): ";
    for (size_t i = 0; i < problems.size() && i < 12; ++i) msg += (i ? "; " : "") + problems[i];
    if (problems.size() > 12) msg += "; ...";
    throw Error(ErrorKind::kInvalidInput, msg);
  }

  for (const Expected& e : keys) {
    if (e.layout == Layout::kDrop) continue;
    const DType dtype = e.matrix ? options.dit_dtype : DType::kF32;
    const Tensor src = ckpt.tensor(e.name);
    const int64_t head_dim = c.head_dim;
    if (options.dit_quant && e.matrix && is_block_matrix(e.name)) {
      add_quantized(out, src, e, head_dim, *options.dit_quant);
      continue;
    }
    out.add("dit." + e.name, dtype, e.out_shape,
            [src, e, head_dim, dtype](void* dst) { convert_tensor(src, e, head_dim, dtype, dst); });
  }
  MmditConfig written = c;
  written.quant = options.dit_quant;
  return written.to_json();
}

}  // namespace foley
