// Byte-level BPE (GPT-2 / RoBERTa family), as CLAP's text tower expects it.
//
// Pipeline, matching the reference tokenizer: special tokens (<s>, </s>, <pad>, <unk>, <mask>)
// are split out of the raw text first; the rest is cut by the GPT-2 pre-tokenisation regex
// (PCRE2, Unicode properties); each piece's UTF-8 bytes are mapped to printable code points
// (the byte-to-unicode table), merged by merge rank, and looked up in the vocabulary.
// RoBERTa framing adds <s> ... </s>. There is no normalisation and no truncation here: the
// pipeline encodes the full prompt and truncates hidden states afterwards (model-spec §1.4).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace foley {

class BpeTokenizer {
 public:
  // vocab_json: {"token": id, ...}; merges_txt: "#version" line optional, then "a b" per line.
  // Throws Error(kInvalidInput) on malformed data.
  static std::unique_ptr<BpeTokenizer> from_strings(const std::string& vocab_json,
                                                    const std::string& merges_txt);
  static std::unique_ptr<BpeTokenizer> from_files(const std::string& vocab_path,
                                                  const std::string& merges_path);
  ~BpeTokenizer();

  // Token ids of `text` without framing. Throws Error(kInvalidInput) if text is not UTF-8.
  std::vector<int32_t> encode_raw(std::string_view text) const;
  // <s> text </s>
  std::vector<int32_t> encode(std::string_view text) const;

  struct Batch {
    int64_t rows = 0, length = 0;
    std::vector<int64_t> ids;   // [rows, length], padded with pad_id
    std::vector<int64_t> mask;  // 1 for real tokens, 0 for padding
  };
  // Encodes each text with framing and pads all rows to the longest (the reference's
  // `padding=True` with no truncation).
  Batch encode_batch(const std::vector<std::string>& texts) const;

  int32_t bos_id() const { return bos_; }
  int32_t eos_id() const { return eos_; }
  int32_t pad_id() const { return pad_; }
  size_t vocab_size() const { return vocab_.size(); }

 private:
  BpeTokenizer();
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<std::string, int32_t> merge_ranks_;  // "left right" -> rank
  std::vector<std::pair<std::string, int32_t>> specials_;  // literal text -> id
  std::string byte_to_symbol_[256];
  int32_t bos_ = 0, eos_ = 2, pad_ = 1, unk_ = 3;
  struct Regex;
  std::unique_ptr<Regex> regex_;
};

}  // namespace foley
