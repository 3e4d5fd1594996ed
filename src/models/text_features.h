// HunyuanVideo-Foley's text conditioning (feature_utils.encode_text_feat / feature_process,
// model-spec §1.4 and §6 item 3): the negative and the positive prompt are tokenised as ONE
// batch [negative, prompt] padded to the longer row, run through CLAP's text tower with the
// attention mask, and the last hidden states are split and truncated to 77 positions:
// text_feat = hidden[1:, :77], uncond_text_feat = hidden[:1, :77]. Because padding is shared,
// the conditional features depend on the negative prompt's length; pad positions are kept.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/arena.h"
#include "models/clap_text.h"
#include "models/weight_store.h"
#include "text/bpe_tokenizer.h"

namespace foley {

// The DiT's text_length: hidden states beyond it are dropped (after encoding in full context).
constexpr int64_t kTextFeatureLength = 77;
constexpr const char* kClapVocabTensor = "clap.tokenizer.vocab_json";
constexpr const char* kClapMergesTensor = "clap.tokenizer.merges_txt";

// The tokenizer stored in the bundle (the U8 tensors above, taken strictly).
std::unique_ptr<BpeTokenizer> load_clap_tokenizer(const WeightStore& weights);

struct TextFeatures {
  BpeTokenizer::Batch tokens;  // ids and mask [2, L], row 0 the negative prompt
  Tensor hidden;               // [2, L, H] on the backend's device (from the caller's arena)
  Tensor cond;                 // [1, min(L, 77), H]: a view of hidden's row 1
  Tensor uncond;               // [1, min(L, 77), H]: a view of hidden's row 0
};

// `out` holds the returned hidden states (allocated there, outside any scope); `work` gives the
// forward's activations and is rewound on return.
TextFeatures encode_text_features(const BpeTokenizer& tokenizer, const ClapTextModel& model,
                                  const std::string& prompt, const std::string& negative_prompt,
                                  Arena& out, Arena& work);

}  // namespace foley
