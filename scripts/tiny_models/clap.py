#!/usr/bin/python3
"""Tiny CLAP (laion/larger_clap_general layout) in the official HF file format.

  clap.py OUT_DIR [--seed N] [--hidden 64] [--heads 2] [--layers 2] [--inter 128]
                  [--merges 64] [--weights bin|safetensors|both]

OUT_DIR/clap/ gets
  pytorch_model.bin      a whole ClapModel state dict (fp32, torch.save zip format): the RoBERTa
                         text tower text_model.* (with the position_ids/token_type_ids buffers and
                         the pooler), text_projection.*, and a few audio_model.*,
                         audio_projection.* and logit_scale_a/_t tensors, which converters drop;
  model.safetensors      with --weights safetensors|both: the same state dict as a safetensors
                         file, the hub's other format of the same weights (default: bin only);
  config.json            a ClapConfig (model_type "clap") with text_config and audio_config, as on
                         the hub;
  vocab.json, merges.txt a byte-level BPE vocabulary in the RoBERTa layout: <s>=0, <pad>=1,
                         </s>=2, <unk>=3, the 256 byte symbols (GPT-2's bytes_to_unicode order),
                         the merges learned greedily from a small built-in Foley corpus, <mask>;
  tokenizer_config.json  RobertaTokenizer, model_max_length 512.
make_tiny_models.py imports make_clap(); tests call this script with other sizes.
"""

import argparse
import collections
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seeded import Maker  # noqa: E402

CORPUS = (
    "footsteps on a wooden floor. rain falling on a tin roof while thunder rumbles in the "
    "distance. a dog barks and the door creaks open. glass shatters on the kitchen floor. a car "
    "engine revs and tires screech. birds chirping in the morning. the crowd cheers and claps. "
    "keys jingle in a pocket. a noisy, harsh metal clang. water splashes and drips. wind howls "
    "through the trees. paper rustles, a pen scratches, footsteps fade. heavy footsteps on "
    "gravel. a cat meows. the fire crackles. waves crash on the shore. 100 people clapping."
)
POSITIONS = 514  # RoBERTa: 512 tokens + the padding offset of 2


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable symbol table, in its own order."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) +
            list(range(0xAE, 0xFF + 1)))
    table, extra = {b: chr(b) for b in keep}, 0
    order = list(keep)
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            order.append(b)
            extra += 1
    return [(b, table[b]) for b in order]


def learn_merges(n_merges):
    """Greedy BPE on CORPUS's words (" word" -> "Ġword"): the most frequent pair each round, ties
    broken by the pair's text, so the result is fixed."""
    sym = dict(bytes_to_unicode())
    words = collections.Counter()
    for i, w in enumerate(CORPUS.split(" ")):
        text = (" " if i else "") + w
        words[tuple(sym[b] for b in text.encode())] += 1
    merges = []
    while len(merges) < n_merges:
        pairs = collections.Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        merged = collections.Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


def write_tokenizer(d, n_merges):
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for _, s in bytes_to_unicode():
        vocab[s] = len(vocab)
    merges = learn_merges(n_merges)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<mask>"] = len(vocab)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(a + " " + b + "\n")
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "RobertaTokenizer", "model_max_length": 512}, f)
    return len(vocab)


def save_safetensors(sd, path):
    """The safetensors format written directly (Debian has no python3-safetensors): an 8-byte
    little-endian header length, the JSON header (dtype, shape, data_offsets), the raw bytes."""
    dtypes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int64: "I64", torch.int32: "I32"}
    header, blobs, offset = {}, [], 0
    for name, t in sd.items():
        t = t.detach().contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.dim() else \
            t.reshape(1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)


def make_clap(out_dir, seed=1, hidden=64, heads=2, layers=2, inter=128, n_merges=64,
              weights="bin"):
    if hidden % heads:
        raise ValueError("hidden must divide by heads")
    d = os.path.join(out_dir, "clap")
    os.makedirs(d, exist_ok=True)
    vocab_size = write_tokenizer(d, n_merges)
    proj = 32
    m = Maker(seed)
    t = "text_model."
    m.sd[t + "embeddings.position_ids"] = torch.arange(POSITIONS).unsqueeze(0)
    m.sd[t + "embeddings.token_type_ids"] = torch.zeros(1, POSITIONS, dtype=torch.long)
    m.normal(t + "embeddings.word_embeddings.weight", (vocab_size, hidden), 0.5)
    m.normal(t + "embeddings.token_type_embeddings.weight", (1, hidden), 0.1)
    m.norm(t + "embeddings.LayerNorm", hidden)
    m.normal(t + "embeddings.position_embeddings.weight", (POSITIONS, hidden), 0.5)
    for i in range(layers):
        p = t + "encoder.layer.%d." % i
        for n in ("query", "key", "value"):
            m.linear(p + "attention.self." + n, hidden, hidden)
        m.linear(p + "attention.output.dense", hidden, hidden)
        m.norm(p + "attention.output.LayerNorm", hidden)
        m.linear(p + "intermediate.dense", inter, hidden)
        m.linear(p + "output.dense", hidden, inter)
        m.norm(p + "output.LayerNorm", hidden)
    m.linear(t + "pooler.dense", hidden, hidden)
    m.linear("text_projection.linear1", proj, hidden)
    m.linear("text_projection.linear2", proj, proj)
    # A token of the HTSAT audio side (the real one has ~30M parameters).
    m.conv("audio_model.audio_encoder.patch_embed.proj", 16, (1, 4, 4))
    m.norm("audio_model.audio_encoder.norm", 16)
    m.linear("audio_projection.linear1", proj, 16)
    m.linear("audio_projection.linear2", proj, proj)
    m.normal("logit_scale_a", (), 0.1, mean=2.6)
    m.normal("logit_scale_t", (), 0.1, mean=2.6)
    if weights in ("bin", "both"):
        torch.save(m.sd, os.path.join(d, "pytorch_model.bin"))
    if weights in ("safetensors", "both"):
        save_safetensors(m.sd, os.path.join(d, "model.safetensors"))
    config = {
        "architectures": ["ClapModel"],
        "model_type": "clap",
        "projection_dim": proj,
        "projection_hidden_act": "relu",
        "logit_scale_init_value": 14.285714285714285,
        "text_config": {
            "model_type": "clap_text_model",
            "vocab_size": vocab_size,
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "intermediate_size": inter,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": POSITIONS,
            "type_vocab_size": 1,
            "layer_norm_eps": 1e-12,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "position_embedding_type": "absolute",
            "projection_dim": proj,
        },
        "audio_config": {"model_type": "clap_audio_model", "hidden_size": 16,
                         "projection_dim": proj},
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--inter", type=int, default=128)
    ap.add_argument("--merges", type=int, default=64)
    ap.add_argument("--weights", choices=("bin", "safetensors", "both"), default="bin",
                    help="pytorch_model.bin (default), model.safetensors or both")
    a = ap.parse_args(argv[1:])
    make_clap(a.out_dir, a.seed, a.hidden, a.heads, a.layers, a.inter, a.merges, a.weights)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
