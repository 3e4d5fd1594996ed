#include "models/clap_text.h"

#include <cmath>
#include <string>

#include "core/check.h"
#include "models/device_weights.h"

namespace foley {
namespace {

int json_int(const nlohmann::json& j, const char* field) {
  if (!j.contains(field) || !j.at(field).is_number_integer())
    throw Error(ErrorKind::kInvalidInput,
                std::string("CLAP text config: \"") + field + "\" missing or not an integer");
  return j.at(field).get<int>();
}

int64_t at(const Tensor& t, int64_t b, int64_t i) {
  return t.data<int64_t>()[b * t.stride(0) + i * t.stride(1)];
}

}  // namespace

ClapTextConfig ClapTextConfig::from_json(const nlohmann::json& j) {
  ClapTextConfig c;
  c.vocab_size = json_int(j, "vocab_size");
  c.hidden_size = json_int(j, "hidden_size");
  c.num_layers = json_int(j, "num_hidden_layers");
  c.num_heads = json_int(j, "num_attention_heads");
  c.intermediate_size = json_int(j, "intermediate_size");
  c.max_position_embeddings = json_int(j, "max_position_embeddings");
  c.type_vocab_size = json_int(j, "type_vocab_size");
  c.pad_token_id = json_int(j, "pad_token_id");
  if (!j.contains("layer_norm_eps") || !j.at("layer_norm_eps").is_number())
    throw Error(ErrorKind::kInvalidInput, "CLAP text config: \"layer_norm_eps\" missing");
  c.layer_norm_eps = j.at("layer_norm_eps").get<float>();
  if (c.vocab_size < 1 || c.hidden_size < 1 || c.num_layers < 1 || c.num_heads < 1 ||
      c.hidden_size % c.num_heads != 0 || c.intermediate_size < 1 || c.type_vocab_size < 1 ||
      c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size ||
      c.max_position_embeddings < c.pad_token_id + 2 || !(c.layer_norm_eps > 0))
    throw Error(ErrorKind::kInvalidInput,
                "CLAP text config: impossible sizes (hidden " + std::to_string(c.hidden_size) +
                    ", heads " + std::to_string(c.num_heads) + ", vocab " +
                    std::to_string(c.vocab_size) + ", pad " + std::to_string(c.pad_token_id) +
                    ", positions " + std::to_string(c.max_position_embeddings) + ")");
  return c;
}

nlohmann::json ClapTextConfig::to_json() const {
  return {{"vocab_size", vocab_size},
          {"hidden_size", hidden_size},
          {"num_hidden_layers", num_layers},
          {"num_attention_heads", num_heads},
          {"intermediate_size", intermediate_size},
          {"max_position_embeddings", max_position_embeddings},
          {"type_vocab_size", type_vocab_size},
          {"layer_norm_eps", layer_norm_eps},
          {"pad_token_id", pad_token_id}};
}

// ---- construction -----------------------------------------------------------------------------

Tensor ClapTextModel::load(const WeightStore& weights, const std::string& name,
                           const Shape& shape) {
  // A view of the bundle when it already is where the backend computes, else a device copy
  // (the embedding tables stay on the host, so they get no room in the device arena).
  return place_weight(
      backend_, weights.get("clap." + name, shape, {DType::kF32}), device_weights_, [&] {
        return weight_arena_bytes(weights, {"clap.embeddings.LayerNorm.", "clap.encoder."});
      });
}

ClapTextModel::ClapTextModel(const WeightStore& weights, Backend& backend)
    : config_(ClapTextConfig::from_json(weights.config("clap"))), backend_(backend) {
  const int64_t h = config_.hidden_size, inter = config_.intermediate_size;
  word_ = host_weight(weights, "clap.embeddings.word_embeddings.weight", {config_.vocab_size, h},
                      {DType::kF32});
  position_ = host_weight(weights, "clap.embeddings.position_embeddings.weight",
                          {config_.max_position_embeddings, h}, {DType::kF32});
  token_type_ = host_weight(weights, "clap.embeddings.token_type_embeddings.weight",
                            {config_.type_vocab_size, h}, {DType::kF32});
  emb_ln_w_ = load(weights, "embeddings.LayerNorm.weight", {h});
  emb_ln_b_ = load(weights, "embeddings.LayerNorm.bias", {h});
  for (int i = 0; i < config_.num_layers; ++i) {
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    Layer l;
    l.qkv_w = load(weights, p + "attention.qkv.weight", {3 * h, h});
    l.qkv_b = load(weights, p + "attention.qkv.bias", {3 * h});
    l.out_w = load(weights, p + "attention.output.dense.weight", {h, h});
    l.out_b = load(weights, p + "attention.output.dense.bias", {h});
    l.ln1_w = load(weights, p + "attention.output.LayerNorm.weight", {h});
    l.ln1_b = load(weights, p + "attention.output.LayerNorm.bias", {h});
    l.up_w = load(weights, p + "intermediate.dense.weight", {inter, h});
    l.up_b = load(weights, p + "intermediate.dense.bias", {inter});
    l.down_w = load(weights, p + "output.dense.weight", {h, inter});
    l.down_b = load(weights, p + "output.dense.bias", {h});
    l.ln2_w = load(weights, p + "output.LayerNorm.weight", {h});
    l.ln2_b = load(weights, p + "output.LayerNorm.bias", {h});
    layers_.push_back(std::move(l));
  }
  weights.expect_all_used("clap.embeddings.");
  weights.expect_all_used("clap.encoder.");
}

ClapTextModel::~ClapTextModel() = default;

// ---- activation memory ------------------------------------------------------------------------

ClapTextModel::Buffers ClapTextModel::allocate(Arena& arena, int64_t batch, int64_t length) const {
  const int64_t h = config_.hidden_size;
  Buffers b;
  b.qkv = arena.alloc({batch, length, 3 * h}, DType::kF32);
  b.ctx = arena.alloc({batch, length, h}, DType::kF32);
  b.tmp = arena.alloc({batch, length, h}, DType::kF32);
  b.inter = arena.alloc({batch, length, int64_t{config_.intermediate_size}}, DType::kF32);
  return b;
}

void ClapTextModel::reserve(Arena& arena, int64_t batch, int64_t length) const {
  FOLEY_CHECK(batch >= 1 && length >= 1, "CLAP reserve: [%lld, %lld]",
              static_cast<long long>(batch), static_cast<long long>(length));
  Arena::Scope scope(arena);
  allocate(arena, batch, length);
  // The pre-LayerNorm embedding sum, staged in the arena on the CPU backend.
  arena.alloc({batch, length, int64_t{config_.hidden_size}}, DType::kF32);
}

// ---- forward ----------------------------------------------------------------------------------

void ClapTextModel::embed(const Tensor& ids, const Tensor& out) const {
  const int64_t batch = ids.dim(0), length = ids.dim(1), h = config_.hidden_size;
  const int64_t pad = config_.pad_token_id;
  const float* type0 = token_type_.data<float>();  // token_type_ids are all zero
  for (int64_t b = 0; b < batch; ++b) {
    // RoBERTa's create_position_ids_from_input_ids: counts non-pad tokens, pads stay at `pad`.
    int64_t count = 0;
    for (int64_t i = 0; i < length; ++i) {
      const int64_t id = at(ids, b, i);
      const int64_t pos = id != pad ? ++count + pad : pad;
      const float* w = word_.data<float>() + id * h;
      const float* p = position_.data<float>() + pos * h;
      float* y = out.data<float>() + (b * length + i) * h;
      // Same association as the reference: (word + type) + position.
      for (int64_t c = 0; c < h; ++c) y[c] = (w[c] + type0[c]) + p[c];
    }
  }
}

void ClapTextModel::forward(const Tensor& ids, const Tensor& mask, const Tensor& hidden,
                            Arena& arena) const {
  const int64_t h = config_.hidden_size;
  if (ids.rank() != 2 || ids.dtype() != DType::kI64 || ids.device() != DeviceKind::kCPU ||
      mask.shape() != ids.shape() || mask.dtype() != DType::kI64 ||
      mask.device() != DeviceKind::kCPU)
    throw Error(ErrorKind::kInvalidInput, "CLAP text: ids and mask must be host I64 [B, L], got " +
                                              ids.describe() + " and " + mask.describe());
  const int64_t batch = ids.dim(0), length = ids.dim(1);
  if (batch < 1 || length < 1)
    throw Error(ErrorKind::kInvalidInput, "CLAP text: empty batch " + ids.describe());
  if (length > config_.max_length())
    throw Error(ErrorKind::kInvalidInput, "CLAP text: " + std::to_string(length) +
                                              " tokens exceed the model's " +
                                              std::to_string(config_.max_length()));
  expect_shape(hidden, {batch, length, h}, "CLAP text output");
  FOLEY_CHECK(hidden.is_contiguous() && hidden.dtype() == DType::kF32 &&
                  hidden.device() == backend_.device(),
              "CLAP text output must be contiguous F32 on the backend's device, got %s",
              hidden.describe().c_str());

  // Valid key range per row; padding must be on the right (see the header).
  std::vector<int64_t> keys(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    int64_t n = 0;
    while (n < length && at(mask, b, n) != 0) ++n;
    for (int64_t i = n; i < length; ++i)
      if (at(mask, b, i) != 0)
        throw Error(ErrorKind::kInvalidInput, "CLAP text: attention mask row " + std::to_string(b) +
                                                  " is not right padding (a 1 after a 0)");
    if (n == 0)
      throw Error(ErrorKind::kInvalidInput,
                  "CLAP text: attention mask row " + std::to_string(b) + " has no tokens");
    keys[static_cast<size_t>(b)] = n;
    for (int64_t i = 0; i < length; ++i) {
      const int64_t id = at(ids, b, i);
      if (id < 0 || id >= config_.vocab_size)
        throw Error(ErrorKind::kInvalidInput, "CLAP text: token id " + std::to_string(id) +
                                                  " outside the vocabulary of " +
                                                  std::to_string(config_.vocab_size));
    }
  }

  Arena::Scope scope(arena);
  const Buffers buf = allocate(arena, batch, length);
  const Tensor& x = hidden;  // the residual stream lives in the output
  {
    Tensor sum = arena.alloc({batch, length, h}, DType::kF32);
    if (backend_.device() == DeviceKind::kCPU) {
      embed(ids, sum);
    } else {
      Tensor host = Tensor::empty(sum.shape(), DType::kF32);
      embed(ids, host);
      backend_.copy_from_host(sum, host);
    }
    backend_.layer_norm(sum, &emb_ln_w_, &emb_ln_b_, config_.layer_norm_eps, x);
  }

  const int64_t heads = config_.num_heads, d = config_.head_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const Tensor qkv4 = buf.qkv.reshape({batch, length, 3 * heads, d});
  const Tensor q = qkv4.slice(2, 0, heads), k = qkv4.slice(2, heads, heads),
               v = qkv4.slice(2, 2 * heads, heads);
  const Tensor ctx4 = buf.ctx.reshape({batch, length, heads, d});
  const float eps = config_.layer_norm_eps;
  for (const Layer& l : layers_) {
    backend_.linear(x, l.qkv_w, &l.qkv_b, buf.qkv);
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t n = keys[static_cast<size_t>(b)];
      backend_.attention(q.slice(0, b, 1), k.slice(0, b, 1).slice(1, 0, n),
                         v.slice(0, b, 1).slice(1, 0, n), scale, ctx4.slice(0, b, 1));
    }
    backend_.linear(buf.ctx, l.out_w, &l.out_b, buf.tmp);
    backend_.add(buf.tmp, x, buf.tmp);
    backend_.layer_norm(buf.tmp, &l.ln1_w, &l.ln1_b, eps, x);
    backend_.linear(x, l.up_w, &l.up_b, buf.inter);
    backend_.activation(Activation::kGeluErf, buf.inter, buf.inter);
    backend_.linear(buf.inter, l.down_w, &l.down_b, buf.tmp);
    backend_.add(buf.tmp, x, buf.tmp);
    backend_.layer_norm(buf.tmp, &l.ln2_w, &l.ln2_b, eps, x);
  }
}

}  // namespace foley
