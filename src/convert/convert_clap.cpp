// The CLAP folder (laion/larger_clap_general: pytorch_model.bin and/or model.safetensors,
// config.json, vocab.json, merges.txt) -> the bundle's "clap." tensors: the RoBERTa text tower
// and its tokenizer. The hub ships the weights in both formats; clap_weights_file() picks
// model.safetensors when it is there (no pickle to parse, memory-mapped as is) and
// pytorch_model.bin otherwise. Both give the same bundle tensors.
//
// Only the text tower's last_hidden_state is used (model-spec §1.4), so:
// - text_model.embeddings.* and text_model.encoder.* are kept, with "text_model." replaced by
//   "clap."; each layer's query/key/value Linear become one fused [3H, H] projection
//   ("attention.qkv", rows [q | k | v]) so a layer runs one GEMM for all three.
// - text_model.pooler.*, text_projection.* (the 512-d projection HunyuanVideo-Foley discards)
//   and the position_ids/token_type_ids buffers are checked and dropped. The hub file holds the
//   whole ClapModel, so audio_model.*, audio_projection.* and logit_scale_* are dropped too.
//   Anything else is an error, as is any missing or mis-shaped tensor, each reported by name.
// - vocab.json and merges.txt are stored verbatim as U8 tensors, so a bundle is self-contained.
// All tensors stay F32 (the tower is small and the reference runs it in fp32).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "convert/convert.h"
#include "core/check.h"
#include "models/clap_text.h"
#include "models/text_features.h"

namespace foley {
namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kNotFound, "CLAP: cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

// Every element of a checkpoint tensor (F32, BF16 or F16, any strides) in row-major order, as F32.
std::vector<float> values_f32(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  std::vector<int64_t> idx(static_cast<size_t>(t.rank()), 0);
  for (size_t i = 0; i < out.size(); ++i) {
    int64_t off = 0;
    for (int d = 0; d < t.rank(); ++d) off += idx[static_cast<size_t>(d)] * t.stride(d);
    switch (t.dtype()) {
      case DType::kF32:
        out[i] = t.data<float>()[off];
        break;
      case DType::kBF16:
        out[i] = bf16_to_f32(t.data<uint16_t>()[off]);
        break;
      case DType::kF16:
        out[i] = f16_to_f32(t.data<uint16_t>()[off]);
        break;
      default:
        FOLEY_CHECK(false, "CLAP converter: unsupported dtype %s", dtype_name(t.dtype()));
    }
    for (int d = t.rank() - 1; d >= 0; --d) {
      if (++idx[static_cast<size_t>(d)] < t.dim(d)) break;
      idx[static_cast<size_t>(d)] = 0;
    }
  }
  return out;
}

// The text config from config.json: a ClapTextConfig file (model_type clap_text_model) or a full
// ClapConfig, whose text part sits under "text_config".
ClapTextConfig read_config(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::kInvalidInput, path + ": " + e.what());
  }
  if (j.contains("text_config") && j["text_config"].is_object()) j = j["text_config"];
  // HF defaults for fields a config may leave out (ClapTextConfig's constructor defaults).
  const ClapTextConfig defaults;
  nlohmann::json full = defaults.to_json();
  for (auto& [k, v] : j.items())
    if (full.contains(k)) full[k] = v;
  const std::string act = j.value("hidden_act", std::string("gelu"));
  if (act != "gelu")
    throw Error(ErrorKind::kUnsupported,
                path + ": hidden_act \"" + act + "\" (only exact \"gelu\" is supported)");
  const std::string pos = j.value("position_embedding_type", std::string("absolute"));
  if (pos != "absolute")
    throw Error(ErrorKind::kUnsupported,
                path + ": position_embedding_type \"" + pos + "\" (only \"absolute\")");
  return ClapTextConfig::from_json(full);
}

// Over a TorchCheckpoint or a SafetensorsFile: both have entries() (name, dtype, shape), has(),
// entry() and tensor().
template <typename Checkpoint>
class ClapConverter {
 public:
  explicit ClapConverter(const Checkpoint& ckpt) : ckpt_(ckpt) {}

  // Copies text_model.<name> to clap.<name>.
  void keep(const std::string& name, const Shape& shape) {
    std::optional<Tensor> t = take("text_model." + name, shape);
    if (!t) return;
    const Tensor src = *t;
    queue(name, shape, [src](float* dst) {
      const std::vector<float> v = values_f32(src);
      std::copy(v.begin(), v.end(), dst);
    });
  }
  // Concatenates the listed tensors (same trailing shape) along dim 0 into clap.<out_name>.
  void fuse(const std::vector<std::string>& names, const Shape& each, const std::string& out_name) {
    std::vector<Tensor> parts;
    for (const auto& n : names) {
      std::optional<Tensor> t = take("text_model." + n, each);
      if (t) parts.push_back(*t);
    }
    if (parts.size() != names.size()) return;
    Shape out = each;
    out[0] = each[0] * static_cast<int64_t>(names.size());
    queue(out_name, out, [parts](float* dst) {
      for (const Tensor& p : parts) {
        const std::vector<float> v = values_f32(p);
        dst = std::copy(v.begin(), v.end(), dst);
      }
    });
  }
  // Checked (if present, the shape must match) and not written.
  void drop_optional(const std::string& name, const Shape& shape) {
    claimed_.insert(name);
    if (!ckpt_.has(name)) return;
    if (ckpt_.entry(name).shape != shape)
      problems_.push_back("tensor " + name + " has shape " + ckpt_.entry(name).shape.str() +
                          ", expected " + shape.str());
  }

  void finish(SafetensorsWriter& out) {
    for (const auto& e : ckpt_.entries()) {
      if (claimed_.count(e.name)) continue;
      // Unused by the text features: the projection head, the pooler and the audio side of a
      // full ClapModel file.
      if (starts_with(e.name, "text_projection.") || starts_with(e.name, "text_model.pooler.") ||
          starts_with(e.name, "audio_model.") || starts_with(e.name, "audio_projection.") ||
          starts_with(e.name, "logit_scale"))
        continue;
      problems_.push_back("unexpected tensor " + e.name + " " + e.shape.str());
    }
    throw_if_key_problems(problems_,
                          "CLAP checkpoint does not match the RoBERTa text tower layout");
    for (auto& p : pending_) out.add("clap." + p.name, DType::kF32, p.shape, std::move(p.fill));
  }

 private:
  struct Pending {
    std::string name;
    Shape shape;
    std::function<void(void*)> fill;
  };

  std::optional<Tensor> take(const std::string& name, const Shape& shape) {
    claimed_.insert(name);
    if (!ckpt_.has(name)) {
      problems_.push_back("missing tensor " + name);
      return std::nullopt;
    }
    const auto& e = ckpt_.entry(name);
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

  const Checkpoint& ckpt_;
  std::set<std::string> claimed_;
  std::vector<std::string> problems_;
  std::vector<Pending> pending_;
};

void add_bytes(SafetensorsWriter& out, const char* name, const std::string& text) {
  auto bytes = std::make_shared<std::string>(text);
  out.add(name, DType::kU8, {static_cast<int64_t>(bytes->size())},
          [bytes](void* dst) { std::copy(bytes->begin(), bytes->end(), static_cast<char*>(dst)); });
}

template <typename Checkpoint>
nlohmann::json convert_clap_from(const Checkpoint& ckpt, const std::string& clap_dir,
                                 SafetensorsWriter& out) {
  const fs::path dir(clap_dir);
  const ClapTextConfig config = read_config((dir / "config.json").string());
  const std::string vocab = read_text((dir / "vocab.json").string());
  const std::string merges = read_text((dir / "merges.txt").string());
  // Parsed once here so that a damaged vocabulary fails the conversion, not the first request;
  // the model's embedding table must cover every id the tokenizer can produce.
  const auto tokenizer = BpeTokenizer::from_strings(vocab, merges);
  if (tokenizer->vocab_size() > static_cast<size_t>(config.vocab_size))
    throw Error(ErrorKind::kInvalidInput,
                "CLAP: vocab.json has " + std::to_string(tokenizer->vocab_size()) +
                    " tokens but the model's vocab_size is " + std::to_string(config.vocab_size));
  if (tokenizer->pad_id() != config.pad_token_id)
    throw Error(ErrorKind::kInvalidInput,
                "CLAP: the tokenizer's <pad> is " + std::to_string(tokenizer->pad_id()) +
                    " but config.json's pad_token_id is " + std::to_string(config.pad_token_id));

  ClapConverter c(ckpt);
  const int64_t h = config.hidden_size, inter = config.intermediate_size;
  c.keep("embeddings.word_embeddings.weight", {config.vocab_size, h});
  c.keep("embeddings.position_embeddings.weight", {config.max_position_embeddings, h});
  c.keep("embeddings.token_type_embeddings.weight", {config.type_vocab_size, h});
  c.keep("embeddings.LayerNorm.weight", {h});
  c.keep("embeddings.LayerNorm.bias", {h});
  // Buffers some transformers versions save; the model recomputes both.
  c.drop_optional("text_model.embeddings.position_ids", {1, config.max_position_embeddings});
  c.drop_optional("text_model.embeddings.token_type_ids", {1, config.max_position_embeddings});
  for (int i = 0; i < config.num_layers; ++i) {
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    const std::string a = p + "attention.self.";
    c.fuse({a + "query.weight", a + "key.weight", a + "value.weight"}, {h, h},
           p + "attention.qkv.weight");
    c.fuse({a + "query.bias", a + "key.bias", a + "value.bias"}, {h}, p + "attention.qkv.bias");
    c.keep(p + "attention.output.dense.weight", {h, h});
    c.keep(p + "attention.output.dense.bias", {h});
    c.keep(p + "attention.output.LayerNorm.weight", {h});
    c.keep(p + "attention.output.LayerNorm.bias", {h});
    c.keep(p + "intermediate.dense.weight", {inter, h});
    c.keep(p + "intermediate.dense.bias", {inter});
    c.keep(p + "output.dense.weight", {h, inter});
    c.keep(p + "output.dense.bias", {h});
    c.keep(p + "output.LayerNorm.weight", {h});
    c.keep(p + "output.LayerNorm.bias", {h});
  }
  c.finish(out);
  add_bytes(out, kClapVocabTensor, vocab);
  add_bytes(out, kClapMergesTensor, merges);
  return config.to_json();
}

}  // namespace

std::string clap_weights_file(const std::string& clap_dir) {
  for (const char* name : {"model.safetensors", "pytorch_model.bin"}) {
    const fs::path p = fs::path(clap_dir) / name;
    if (fs::is_regular_file(p)) return p.string();
  }
  return "";
}

nlohmann::json convert_clap(const TorchCheckpoint& ckpt, const std::string& clap_dir,
                            SafetensorsWriter& out) {
  return convert_clap_from(ckpt, clap_dir, out);
}

nlohmann::json convert_clap(const SafetensorsFile& weights, const std::string& clap_dir,
                            SafetensorsWriter& out) {
  return convert_clap_from(weights, clap_dir, out);
}

}  // namespace foley
