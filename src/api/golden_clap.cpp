// Golden-case stage of the text branch: "clap" ([negative, prompt] tokenised as one batch, CLAP's
// RoBERTa text tower, then the 77-position split into text_feat / uncond_text_feat).
#include <algorithm>
#include <vector>

#include "api/golden.h"
#include "core/check.h"
#include "models/clap_text.h"
#include "models/text_features.h"

namespace foley::golden {
namespace {

std::vector<StageOutput> run_clap(const StageContext& ctx) {
  Backend& be = ctx.backend;
  const auto tokenizer = load_clap_tokenizer(ctx.weights);
  const ClapTextModel model(ctx.weights, be);
  Arena out(be.block_allocator());
  Arena work(be.block_allocator());
  const TextFeatures f = encode_text_features(*tokenizer, model, ctx.gcase.string("prompt"),
                                              ctx.gcase.string("negative_prompt"), out, work);
  const int64_t rows = f.tokens.rows, length = f.tokens.length;
  Tensor ids = Tensor::empty({rows, length}, DType::kI64);
  Tensor mask = Tensor::empty({rows, length}, DType::kI64);
  std::copy(f.tokens.ids.begin(), f.tokens.ids.end(), ids.data<int64_t>());
  std::copy(f.tokens.mask.begin(), f.tokens.mask.end(), mask.data<int64_t>());
  Tensor hidden = Tensor::empty(f.hidden.shape(), DType::kF32);
  be.copy_to_host(hidden, f.hidden);
  be.synchronize();
  // text_feat and uncond_text_feat are views of the hidden states (strided when L > 77), so
  // they are cut from the host copy rather than copied off the device one by one.
  const int64_t keep = f.cond.dim(1);
  return {{"clap_input_ids", ids},
          {"clap_attention_mask", mask},
          {"clap_hidden", hidden},
          {"text_feat", hidden.slice(0, 1, 1).slice(1, 0, keep)},
          {"uncond_text_feat", hidden.slice(0, 0, 1).slice(1, 0, keep)}};
}

}  // namespace

void register_clap_stages(std::vector<Stage>& stages) {
  stages.push_back({"clap", {"clap"}, run_clap});
}

}  // namespace foley::golden
