#!/usr/bin/env python3
"""Writes corpus.json: hard strings for the byte-level BPE oracle test (run from this folder)."""
import json
import random

c = []
add = c.append

# Empty, trivial, whitespace only.
for s in ["", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "a", " a", "a ", " a ", "\n\n\n",
          " \t \n ", "   leading", "trailing   ", "  both  ", "\t\ttabs\tinside\t", "x\r\ny\r\n",
          "\r", "line1\nline2\n\nline4", "a\u00a0b", "a \u00a0 b", "\u00a0\u00a0lead nbsp",
          "trail nbsp\u00a0", "ideographic\u3000space\u3000\u3000here", "\u2003em\u2002en\u2009thin",
          "\u200bzero\u200bwidth", "\ufeffbom start", "\u2028line sep\u2029para sep",
          "\x0bvt\x0cff", "\x85nel", "mixed \t\n \r\n  \u00a0end  "]:
    add(s)

# Contractions, cases, curly apostrophes.
for s in ["it's", "don't", "you're", "we've", "I'm", "she'll", "he'd", "IT'S", "DON'T", "YOU'RE",
          "WE'VE", "I'M", "SHE'LL", "HE'D", "the dog's bark", "the dogS's", "it\u2019s", "don\u2019t",
          "we\u2019ve", "'s", "'t'", "''s", "'''", "' s", "rock 'n' roll", "'tis", "o'clock",
          "'S", "'Ll 'lL", "can't won't shan't y'all'd've", "it's  's  'd", "'re'm'll'd's't've",
          "\u2018quoted\u2019 \u201cdouble\u201d", "'123", "'\u00e9t\u00e9", " 's", "x's's's"]:
    add(s)

# Digits and numbers.
for s in ["0", "7", "42", "123456789", "3.14159265358979", "1,000,000", "1e-10", "-273.15",
          "2024-11-26T09:00:00Z", "0x7fffffff", "12345678901234567890123456789012345678901234567890",
          " 99 bottles", "v1.2.3-rc4", "44.1kHz 48000Hz 16-bit", "\u0661\u0662\u0663 arabic digits",
          "\u2460\u2461 circled \u00bd \u00b2 \u2153", "\uff11\uff12\uff13 fullwidth", "\u0968\u0966\u0968\u096a devanagari",
          "phone +1 (555) 010-9999", "1st 2nd 3rd 4th", "$19.99 \u20ac5 \u00a310 \u00a5100"]:
    add(s)

# Punctuation runs and symbols.
for s in ["!!!", "?!?!", "...", "\u2026", "---", "\u2014\u2013-", "!!  ", "(((nested)))", "[x]{y}<z>",
          "a,b;c:d", "#hashtag @mention", "e-mail: foo.bar+baz@example.com",
          "https://example.com/path?q=1&r=2#frag", "C:\\Windows\\System32", "~/.config/foley/x.json",
          "<s>not special</s>", "<|endoftext|>", "<mask> <pad> <unk>", "**bold** _it_ `code`",
          "==>  <==  <=>", "\u00a9\u00ae\u2122\u00b0\u00b1\u00d7\u00f7", "\u2190\u2191\u2192\u2193 arrows",
          "\u266a\u266b music \u266c", "!@#$%^&*()_+-=[]{}|;':\",./<>?", "   !!!   ", ".\n.\n.",
          "a--b", "\"quoted\"", "''\"\"``", "\u00bfQu\u00e9? \u00a1S\u00ed!"]:
    add(s)

# Latin accents, combining marks, other scripts.
for s in ["caf\u00e9", "cafe\u0301", "na\u00efve r\u00e9sum\u00e9", "\u00fcber stra\u00dfe",
          "Cr\u00e8me br\u00fbl\u00e9e", "\u0141\u00f3d\u017a \u017c\u00f3\u0142w", "\u00c5ngstr\u00f6m",
          "e\u0301\u0302\u0303\u0304 stacked", "\u0300 leading combining", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333",
          "\u4f60\u597d\uff0c\u4e16\u754c", "\u73bb\u7483\u5728\u74f7\u7816\u5730\u677f\u4e0a\u7834\u788e",
          "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\u30ac\u30e9\u30b9\u304c\u5272\u308c\u308b\u97f3",
          "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u1100\u1161\u11a8 jamo", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
          "\u0627\u0644\u0639\u064e\u0631\u064e\u0628\u0650\u064a\u0651\u064e\u0629", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
          "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
          "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
          "\u1780\u1798\u17d2\u1796\u17bb\u1787\u17b6", "\u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8", "\u0540\u0561\u0575\u0565\u0580\u0565\u0576",
          "\u12a0\u121b\u122d\u129b", "\u0ba4\u0bae\u0bbf\u0bb4\u0bcd", "\u1f00\u1f10\u1f20 polytonic",
          "\U0001d400\U0001d401\U0001d402 math bold", "\U0001d504\U0001d505 fraktur", "\ufb01\ufb02 ligatures",
          "\u2160\u2161\u2162 roman", "\u00aa\u00ba ordinals", "\u02b0\u02b2 modifiers", "\U00010300\U00010301 old italic",
          "\U0002000b\U00020021 ext-B", "\u3042\u3044\u3046\u3048\u304a" * 5]:
    add(s)

# Emoji: ZWJ sequences, flags, skin tones, keycaps, variation selectors.
for s in ["\U0001f600", "\U0001f600\U0001f601\U0001f602", "hello \U0001f44b world",
          "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466", "\U0001f469\u200d\U0001f4bb coding",
          "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f3f4\u200d\u2620\ufe0f", "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5\U0001f1e9\U0001f1ea",
          "\U0001f1fa\U0001f1f8 flag", "\U0001f44d\U0001f3fb\U0001f44d\U0001f3fc\U0001f44d\U0001f3fd\U0001f44d\U0001f3fe\U0001f44d\U0001f3ff",
          "\U0001f9d1\U0001f3fd\u200d\U0001f692", "1\ufe0f\u20e3 #\ufe0f\u20e3 *\ufe0f\u20e3", "\u2764\ufe0f \u2764 \u2665",
          "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f scotland",
          "\U0001f4a5\U0001f4a5\U0001f4a5 BOOM", "thunder \u26a1\ufe0f rain \U0001f327\ufe0f", "\U0001f50a\U0001f509\U0001f508\U0001f507",
          " \U0001f600 ", "\U0001f600\n\U0001f600", "text\U0001f600text", "\u263a\ufe0e text style",
          "\U0001f9ea\U0001f52c lab", "\U0001f415\u200d\U0001f9ba", "\U0001f46e\u200d\u2640\ufe0f\U0001f46e\U0001f3ff\u200d\u2642\ufe0f"]:
    add(s)

# Sound-effect prompts (the real workload).
for s in ["glass shatters on a tiled floor", "Glass shatters on a tiled floor.",
          "a dog barks twice in the distance", "footsteps on gravel, slow, then running",
          "thunder rumbling, heavy rain on a tin roof", "door creaks open; wind howls",
          "A car engine revs -- then screeches to a halt!!!", "birds chirping at dawn (forest ambience)",
          "crackling campfire with occasional pops", "keyboard typing, mouse clicks, office hum",
          "ocean waves crashing on rocks, seagulls", "a baby laughs, then coughs", "explosion + debris falling",
          "metal pipe clang x3", "sword unsheathed, shing!", "cat meows: 'meow'... purring",
          "helicopter passing overhead at 200 ft", "A 440Hz sine tone, 3s", "clock ticking 60 bpm, tick-tock",
          "whoosh\u2014swoosh\u2014whoosh", "SIREN WAILING, POLICE CAR PASSES", "rain\u00a0on\u00a0leaves",
          "  ice cubes clinking in a glass  ", "\u52a8\u7269\u53eb\u58f0\uff1a\u72d7\u5420 dog barking",
          "Applause \U0001f44f\U0001f44f crowd cheering", "low-frequency rumble (20-40 Hz), sub-bass drone",
          "paper tearing,\tthen crumpling", "vinyl crackle\r\nand hiss", "bubbles popping underwater\n",
          "Caf\u00e9 ambience: espresso machine hiss, chatter, cups clinking"]:
    add(s)

# Mixed scripts and tricky boundaries.
for s in ["Hello\u4e16\u754c123!!", "abc\u0627\u0628\u062cdef", "\u043f\u0440\u0438\u0432\u0435\u0442hello",
          "Tokyo\u6771\u4eac2024\u5e74", "a1b2c3", "ABC123def456", "foo_bar_baz", "camelCaseWord",
          "snake_case__double", "x\u0301y\u0302z", "\u00e9\u00e9\u00e9\u00e9\u00e9", "\u00a0\u00a0\u00a0",
          "word\u00a0\u00a0word", "a  b   c    d", "end with spaces   ", "   ", "\t \t", "\n \n",
          " \n", "\n ", "a \n b", "a\t\tb", "1 2  3   4", "!!a!!", " !a", "  !a", "a's  b", "a\n\n\nb",
          "\u200d", "\u200d\u200d", "\ufe0f", "\u20e3", "\U0001f3fb", "\U000e0067", "\u2063invisible sep",
          "\u061c\u200e\u200f bidi marks", "\u202eRTL override\u202c", "a\u0000b", "tab\x01ctrl\x1f",
          "\x7f del", "\u00ad soft\u00adhyphen", "\u3002\u3001\u300c\u300d", "\uff08\uff09\uff01",
          "\u2028", "x\u0085y", "multi\n\nparagraph\n\n\ntext  with \t mixed\r\n\r\nbreaks",
          "Sch\u00f6ne Gr\u00fc\u00dfe aus M\u00fcnchen \u2013 \u00bbZitat\u00ab"]:
    add(s)

# Whitespace-class boundaries: characters on which regex engines disagree about \s (U+0085 and
# U+FEFF differ between JavaScript and Unicode White_Space; U+001C..U+001F are space to Python's
# str but not to PCRE2, Oniguruma or JavaScript), each placed where the split depends on it.
for ch in ["\x85", "\ufeff", "\x1c", "\x1d", "\x1e", "\x1f", "\u180e", "\u2028", "\u00a0",
           "\u3000", "\u1680", "\u202f", "\u205f", "\u200b", "\x0b", "\x0c"]:
    for pattern in ["a {c}b", "a{c} b", "{c}{c}x", "x {c}", "x  {c}{c}  y"]:
        add(pattern.replace("{c}", ch))

# Very long prompts (> 2000 chars).
rng = random.Random(1234)
words = ["glass", "shatters", "on", "a", "tiled", "floor", "it's", "rain", "\u00e9t\u00e9", "\u4e16\u754c",
         "\U0001f4a5", "123", "!!", "don't", "  ", "\t", "\n", "\u00a0", "caf\u00e9", "\u0645\u0631\u062d\u0628\u0627",
         "\U0001f468\u200d\U0001f469\u200d\U0001f467", "WE'VE", "3.14", "---", "\u3000", "\r\n"]
for n in range(4):
    parts = [rng.choice(words) for _ in range(500 + 150 * n)]
    add(" ".join(parts))
add("glass shatters on a tiled floor. " * 80)
add("a" * 3000)
add(" " * 2500 + "x")
add("1234567890" * 250)
add("\U0001f600" * 600)
add("\u4f60\u597d" * 1100)
add("!?" * 1200)

# Random strings over a hard alphabet.
alphabet = list("aZ09 \t\n'sdtm.,!?-_") + ["\u00a0", "\u3000", "\u00e9", "e\u0301", "\u4e2d", "\u0639",
                                          "\U0001f600", "\u200d", "\U0001f3fd", "\U0001f1fa", "\r\n", "'S",
                                          "\u2019", "\u0661", "\u00bd", "\u2003", "\u0300"]
for n in range(40):
    add("".join(rng.choice(alphabet) for _ in range(rng.randint(5, 60))))

assert len(c) >= 200, len(c)
for s in c:
    s.encode("utf-8")  # no lone surrogates
with open("corpus.json", "w", encoding="utf-8") as f:
    json.dump(c, f, ensure_ascii=True, indent=0)
print(len(c), "strings")
