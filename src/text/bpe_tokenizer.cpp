#include "text/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "foley/error.h"

namespace foley {
namespace {

// GPT-2's pre-tokeniser: contractions, letters, numbers, other symbols (each with an optional
// leading space), then whitespace runs that are not followed by a non-space.
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// \s is spelled out as Unicode's White_Space property, which is what the references mean by it
// (Python's `regex` module in GPT-2's encoder.py and the slow RoBERTa tokenizer; Oniguruma in HF
// tokenizers). PCRE2's own \s under UCP also matches U+180E MONGOLIAN VOWEL SEPARATOR (no longer
// White_Space since Unicode 6.3), which split "a \u180eb" as " " + "\u180e" instead of " \u180e".
#define FOLEY_WS R"(\t-\r \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000})"
constexpr const char* kPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^)" FOLEY_WS R"(\p{L}\p{N}]+|[)" FOLEY_WS
    R"(]+(?![^)" FOLEY_WS R"(])|[)" FOLEY_WS R"(]+)";
#undef FOLEY_WS

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xc0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    s += static_cast<char>(0xe0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorKind::kNotFound, path + ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

struct BpeTokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() { pcre2_code_free(code); }
};

BpeTokenizer::BpeTokenizer() = default;
BpeTokenizer::~BpeTokenizer() = default;

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_files(const std::string& vocab_path,
                                                       const std::string& merges_path) {
  return from_strings(read_file(vocab_path), read_file(merges_path));
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_strings(const std::string& vocab_json,
                                                         const std::string& merges_txt) {
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(vocab_json);
  } catch (const nlohmann::json::exception&) {
    throw Error(ErrorKind::kInvalidInput, "tokenizer vocabulary is not valid JSON");
  }
  if (!vocab.is_object() || vocab.empty())
    throw Error(ErrorKind::kInvalidInput, "tokenizer vocabulary must be a non-empty JSON object");
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      throw Error(ErrorKind::kInvalidInput, "tokenizer vocabulary id of '" + token + "' is invalid");
    t->vocab_.emplace(token, id.get<int32_t>());
  }

  std::istringstream lines(merges_txt);
  std::string line;
  int32_t rank = 0;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == line.size() ||
        line.find(' ', sp + 1) != std::string::npos)
      throw Error(ErrorKind::kInvalidInput, "tokenizer merges line " + std::to_string(rank + 1) +
                                                " is not two symbols: '" + line + "'");
    t->merge_ranks_.emplace(line, rank++);  // first occurrence wins, like the reference
  }

  // Bytes that are printable Latin-1 map to themselves; the rest to 256, 257, ... in order.
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
    append_utf8(t->byte_to_symbol_[b], printable ? static_cast<uint32_t>(b) : next++);
  }

  auto id_of = [&](const char* token, int32_t fallback) {
    auto it = t->vocab_.find(token);
    return it == t->vocab_.end() ? fallback : it->second;
  };
  t->bos_ = id_of("<s>", 0);
  t->pad_ = id_of("<pad>", 1);
  t->eos_ = id_of("</s>", 2);
  t->unk_ = id_of("<unk>", 3);
  for (const char* s : {"<s>", "<pad>", "</s>", "<unk>", "<mask>"}) {
    auto it = t->vocab_.find(s);
    if (it != t->vocab_.end()) t->specials_.emplace_back(s, it->second);
  }

  int err = 0;
  PCRE2_SIZE offset = 0;
  t->regex_ = std::make_unique<Regex>();
  t->regex_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                                  PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (!t->regex_->code) throw Error(ErrorKind::kInternal, "tokenizer regex failed to compile");
  return t;
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  std::vector<std::string> word;
  word.reserve(piece.size());
  for (unsigned char c : piece) word.push_back(byte_to_symbol_[c]);

  std::string key;
  while (word.size() > 1) {
    int32_t best_rank = INT32_MAX;
    size_t best = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      key.assign(word[i]).append(" ").append(word[i + 1]);
      auto it = merge_ranks_.find(key);
      if (it != merge_ranks_.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == INT32_MAX) break;
    // Merge every non-overlapping occurrence of the best pair, left to right.
    const std::string first = word[best], second = word[best + 1];
    std::vector<std::string> merged;
    merged.reserve(word.size());
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(std::move(word[i]));
        ++i;
      }
    }
    word = std::move(merged);
  }
  for (const auto& symbol : word) {
    auto it = vocab_.find(symbol);
    out.push_back(it == vocab_.end() ? unk_ : it->second);
  }
}

void BpeTokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(regex_->code, nullptr);
  size_t pos = 0;
  uint32_t options = 0;  // the first match validates the UTF-8 of the whole subject
  while (pos < text.size()) {
    const int rc = pcre2_match(regex_->code, reinterpret_cast<PCRE2_SPTR>(text.data()),
                               text.size(), pos, options, md, nullptr);
    options = PCRE2_NO_UTF_CHECK;
    if (rc < 0) {
      pcre2_match_data_free(md);
      if (rc == PCRE2_ERROR_NOMATCH) break;  // only possible for trailing input the regex skips
      throw Error(ErrorKind::kInvalidInput, "prompt is not valid UTF-8 text");
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[1] == ov[0]) {  // the pattern never matches empty; guard against looping anyway
      ++pos;
      continue;
    }
    encode_piece(text.substr(ov[0], ov[1] - ov[0]), out);
    pos = ov[1];
  }
  pcre2_match_data_free(md);
}

std::vector<int32_t> BpeTokenizer::encode_raw(std::string_view text) const {
  std::vector<int32_t> out;
  // Split on special-token literals first; <mask> also swallows whitespace to its left.
  size_t start = 0;
  while (start <= text.size()) {
    size_t hit = std::string_view::npos;
    const std::pair<std::string, int32_t>* special = nullptr;
    for (const auto& s : specials_) {
      const size_t p = text.find(s.first, start);
      if (p < hit) {
        hit = p;
        special = &s;
      }
    }
    if (!special) {
      encode_plain(text.substr(start), out);
      break;
    }
    size_t end = hit;
    if (special->first == "<mask>")
      while (end > start && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\n'))
        --end;
    encode_plain(text.substr(start, end - start), out);
    out.push_back(special->second);
    start = hit + special->first.size();
  }
  return out;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids{bos_};
  const auto body = encode_raw(text);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(eos_);
  return ids;
}

BpeTokenizer::Batch BpeTokenizer::encode_batch(const std::vector<std::string>& texts) const {
  std::vector<std::vector<int32_t>> rows;
  size_t longest = 0;
  for (const auto& text : texts) {
    rows.push_back(encode(text));
    longest = std::max(longest, rows.back().size());
  }
  Batch b;
  b.rows = static_cast<int64_t>(rows.size());
  b.length = static_cast<int64_t>(longest);
  b.ids.assign(rows.size() * longest, pad_);
  b.mask.assign(rows.size() * longest, 0);
  for (size_t r = 0; r < rows.size(); ++r)
    for (size_t i = 0; i < rows[r].size(); ++i) {
      b.ids[r * longest + i] = rows[r][i];
      b.mask[r * longest + i] = 1;
    }
  return b;
}

}  // namespace foley
