#include <gtest/gtest.h>

#include <filesystem>

#include "foley/error.h"
#include "test_util.h"
#include "text/bpe_tokenizer.h"

namespace foley {
namespace {

// A hand-made vocabulary: every byte symbol of ASCII letters plus a few merges.
std::unique_ptr<BpeTokenizer> tiny() {
  std::string vocab = R"({"<s>":0,"<pad>":1,"</s>":2,"<unk>":3,"<mask>":4,"a":5,"b":6,"c":7,)"
                      R"("Ġ":8,"ab":9,"Ġab":10,"abc":11,"!":12})";
  std::string merges = "#version: 0.2\na b\nĠ ab\nab c\n";
  return BpeTokenizer::from_strings(vocab, merges);
}

TEST(BpeTokenizer, MergesByRankAndFrames) {
  auto t = tiny();
  EXPECT_EQ(t->encode("ab abc!"), (std::vector<int32_t>{0, 9, 10, 7, 12, 2}));
  EXPECT_EQ(t->encode(""), (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(t->encode_raw("zz"), (std::vector<int32_t>{3, 3}));  // unknown symbols -> <unk>
  EXPECT_EQ(t->encode_raw("ab<mask>"), (std::vector<int32_t>{9, 4}));
  EXPECT_EQ(t->encode_raw("ab <mask>"), (std::vector<int32_t>{9, 4}));  // <mask> eats the space
}

TEST(BpeTokenizer, BatchPadsToLongestWithoutTruncation) {
  auto t = tiny();
  auto b = t->encode_batch({"ab", "ab ab ab"});
  EXPECT_EQ(b.rows, 2);
  EXPECT_EQ(b.length, 5);
  EXPECT_EQ(b.ids, (std::vector<int64_t>{0, 9, 2, 1, 1, 0, 9, 10, 10, 2}));
  EXPECT_EQ(b.mask, (std::vector<int64_t>{1, 1, 1, 0, 0, 1, 1, 1, 1, 1}));
}

TEST(BpeTokenizer, RejectsBadInput) {
  auto t = tiny();
  EXPECT_THROW(t->encode("\xff\xfe"), Error);
  EXPECT_THROW(BpeTokenizer::from_strings("[1,2]", ""), Error);
  EXPECT_THROW(BpeTokenizer::from_strings(R"({"a":0})", "a b c\n"), Error);
}

// \s means Unicode White_Space, as in the references: U+0085 is a space, U+180E (PCRE2's \s
// under UCP) and U+FEFF (JavaScript's \s) are not, so " \u180e" stays one piece and merges.
TEST(BpeTokenizer, WhitespaceIsUnicodeWhiteSpace) {
  auto t = BpeTokenizer::from_strings(
      R"({"\u0120":0,"\u00e1":1,"\u0120\u00e1":2,"\u0142":3,"\u0130":4,"a":5,"b":6,"\u00c2":7,"\u0127":8})",
      "\u0120 \u00e1\n");
  EXPECT_EQ(t->encode_raw("a \xe1\xa0\x8e" "b"), (std::vector<int32_t>{5, 2, 3, 4, 6}));  // U+180E
  EXPECT_EQ(t->encode_raw("a \xc2\x85" "b"), (std::vector<int32_t>{5, 0, 7, 8, 6}));     // U+0085
}

// The official tokenizer's ids for the golden prompt pair (tiny vocabulary in RoBERTa layout).
TEST(BpeTokenizer, MatchesGoldenCase) {
  const std::string dir = test::source_path("../shared/golden/tiny-a/checkpoints/clap");
  if (!std::filesystem::exists(dir + "/vocab.json")) FOLEY_SKIP_MISSING("no golden case");
  auto t = BpeTokenizer::from_files(dir + "/vocab.json", dir + "/merges.txt");
  auto b = t->encode_batch({"noisy, harsh", "On a noisy 2 on a \xe2\x80\x94 \xc3\xbc" "ber 3 caf\xc3\xa9S!!  "});
  const std::vector<int64_t> expected = {
      0, 81, 82, 367, 15, 224, 344, 2,  1,   1,   1,   1,   1,  1,   1,   1,   1,
      1, 1,  1,  1,   1,  1,   1,   1,  1,   1,   1,   1,   1,  1,   1,   1,   1,
      0, 50, 81, 268, 224, 81, 82, 367, 224, 21, 303, 268, 224, 162, 226, 246, 224,
      131, 124, 69, 262, 224, 22, 281, 68, 73, 131, 106, 54, 4, 4, 224, 224, 2};
  EXPECT_EQ(b.length, 34);
  EXPECT_EQ(b.ids, expected);
}

}  // namespace
}  // namespace foley
