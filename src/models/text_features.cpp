#include "models/text_features.h"

#include <algorithm>
#include <string>

#include "core/check.h"
#include "models/device_weights.h"

namespace foley {
namespace {

std::string bundle_text(const WeightStore& weights, const char* name) {
  if (!weights.file().has(name))
    throw Error(ErrorKind::kInvalidInput, std::string("weight bundle is missing tensor ") + name +
                                              " (the CLAP tokenizer); reconvert with `foley "
                                              "convert`");
  const Shape shape = weights.file().entry(name).shape;
  const Tensor t = host_weight(weights, name, shape, {DType::kU8});
  if (t.rank() != 1)
    throw Error(ErrorKind::kInvalidInput, std::string("weight bundle tensor ") + name +
                                              " must be 1-D bytes, is " + t.describe());
  return std::string(t.data<char>(), static_cast<size_t>(t.numel()));
}

}  // namespace

std::unique_ptr<BpeTokenizer> load_clap_tokenizer(const WeightStore& weights) {
  return BpeTokenizer::from_strings(bundle_text(weights, kClapVocabTensor),
                                    bundle_text(weights, kClapMergesTensor));
}

TextFeatures encode_text_features(const BpeTokenizer& tokenizer, const ClapTextModel& model,
                                  const std::string& prompt, const std::string& negative_prompt,
                                  Arena& out, Arena& work) {
  TextFeatures f;
  // One batch, negative first (feature_process: prompts = [neg_prompt, prompt]).
  f.tokens = tokenizer.encode_batch({negative_prompt, prompt});
  FOLEY_CHECK(f.tokens.rows == 2, "CLAP batch has %lld rows",
              static_cast<long long>(f.tokens.rows));
  const int64_t length = f.tokens.length;
  const Tensor ids(f.tokens.ids.data(), DType::kI64, {2, length}, DeviceKind::kCPU);
  const Tensor mask(f.tokens.mask.data(), DType::kI64, {2, length}, DeviceKind::kCPU);
  f.hidden = out.alloc({2, length, int64_t{model.config().hidden_size}}, DType::kF32);
  model.forward(ids, mask, f.hidden, work);
  const int64_t keep = std::min(length, kTextFeatureLength);
  f.cond = f.hidden.slice(0, 1, 1).slice(1, 0, keep);
  f.uncond = f.hidden.slice(0, 0, 1).slice(1, 0, keep);
  return f;
}

}  // namespace foley
