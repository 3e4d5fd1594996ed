"""PyTorch reference for CLAP's RoBERTa text tower (model-spec §1.4), written from the spec
(no transformers), for testing foley's ClapTextModel on configurations other than the golden one.

  reference_clap.py make DIR SEED HIDDEN LAYERS HEADS INTER [--drop KEY] [--reshape KEY]
      writes a CLAP folder in the HF layout: pytorch_model.bin (ClapTextModelWithProjection keys:
      text_model.*, text_projection.*, with seeded random values), config.json, and a byte-level
      vocab.json / merges.txt in the RoBERTa layout (<s>=0, <pad>=1, </s>=2, <unk>=3, then the 256
      byte symbols and a few merges). --drop leaves KEY out, --reshape gives it a wrong shape.
  reference_clap.py run DIR IDS_JSON OUT.f32
      IDS_JSON is [[id, ...], ...] (right-padded with <pad>); the attention mask is ids != pad.
      Writes last_hidden_state [B, L, H] as raw little-endian float32.
"""
import json
import math
import os
import sys

import torch


def byte_symbols():
    # GPT-2's reversible byte -> printable code point table: printable Latin-1 bytes map to
    # themselves, the others to 256, 257, ... in byte order.
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def make_vocab(dir_):
    sym = byte_symbols()
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for b in range(256):
        vocab[sym[b]] = len(vocab)
    space = sym[ord(" ")]
    # A few merges so the BPE path is exercised (" noisy", "harsh").
    merges = [("n", "o"), ("no", "i"), ("i", "s"), (space, "noi"), ("a", "r"), ("h", "ar")]
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    vocab["<mask>"] = len(vocab)
    with open(os.path.join(dir_, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(dir_, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(a + " " + b + "\n")
    return len(vocab)


def make(dir_, seed, hidden, layers, heads, inter, drop=None, reshape=None):
    os.makedirs(dir_, exist_ok=True)
    vocab_size = make_vocab(dir_)
    positions = 514
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.1, offset=0.0):
        return (torch.randn(*shape, generator=g) * scale + offset).float()

    sd = {}
    t = "text_model."
    sd[t + "embeddings.word_embeddings.weight"] = rnd(vocab_size, hidden, scale=0.5)
    sd[t + "embeddings.position_embeddings.weight"] = rnd(positions, hidden, scale=0.5)
    sd[t + "embeddings.token_type_embeddings.weight"] = rnd(1, hidden, scale=0.5)
    sd[t + "embeddings.LayerNorm.weight"] = rnd(hidden, offset=1.0)
    sd[t + "embeddings.LayerNorm.bias"] = rnd(hidden)
    sd[t + "embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    sd[t + "embeddings.token_type_ids"] = torch.zeros(1, positions, dtype=torch.long)
    w = 1.0 / math.sqrt(hidden)
    for i in range(layers):
        p = t + "encoder.layer.%d." % i
        for n in ("query", "key", "value"):
            sd[p + "attention.self.%s.weight" % n] = rnd(hidden, hidden, scale=w * 2)
            sd[p + "attention.self.%s.bias" % n] = rnd(hidden)
        sd[p + "attention.output.dense.weight"] = rnd(hidden, hidden, scale=w)
        sd[p + "attention.output.dense.bias"] = rnd(hidden)
        sd[p + "attention.output.LayerNorm.weight"] = rnd(hidden, offset=1.0)
        sd[p + "attention.output.LayerNorm.bias"] = rnd(hidden)
        sd[p + "intermediate.dense.weight"] = rnd(inter, hidden, scale=w)
        sd[p + "intermediate.dense.bias"] = rnd(inter)
        sd[p + "output.dense.weight"] = rnd(hidden, inter, scale=1.0 / math.sqrt(inter))
        sd[p + "output.dense.bias"] = rnd(hidden)
        sd[p + "output.LayerNorm.weight"] = rnd(hidden, offset=1.0)
        sd[p + "output.LayerNorm.bias"] = rnd(hidden)
    sd[t + "pooler.dense.weight"] = rnd(hidden, hidden)
    sd[t + "pooler.dense.bias"] = rnd(hidden)
    sd["text_projection.linear1.weight"] = rnd(32, hidden)
    sd["text_projection.linear1.bias"] = rnd(32)
    sd["text_projection.linear2.weight"] = rnd(32, 32)
    sd["text_projection.linear2.bias"] = rnd(32)
    if drop:
        del sd[drop]
    if reshape:
        sd[reshape] = torch.zeros(*[d + 1 for d in sd[reshape].shape])
    torch.save(sd, os.path.join(dir_, "pytorch_model.bin"))
    config = {
        "model_type": "clap_text_model",
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": inter,
        "hidden_act": "gelu",
        "max_position_embeddings": positions,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "projection_dim": 32,
    }
    with open(os.path.join(dir_, "config.json"), "w") as f:
        json.dump(config, f, indent=1)


def forward(dir_, ids):
    with open(os.path.join(dir_, "config.json")) as f:
        cfg = json.load(f)
    sd = torch.load(os.path.join(dir_, "pytorch_model.bin"), map_location="cpu")
    sd = {k[len("text_model."):]: v.double() for k, v in sd.items() if k.startswith("text_model.")}
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    d = H // nh
    eps, pad = cfg["layer_norm_eps"], cfg["pad_token_id"]
    ids = torch.tensor(ids, dtype=torch.long)
    mask = (ids != pad).long()
    # RoBERTa positions: running count of real tokens offset by pad; pads stay at pad.
    pos = torch.cumsum(mask, dim=1) * mask + pad
    x = sd["embeddings.word_embeddings.weight"][ids] + sd["embeddings.token_type_embeddings.weight"][0]
    x = x + sd["embeddings.position_embeddings.weight"][pos]
    ln = lambda v, p: torch.nn.functional.layer_norm(v, (H,), sd[p + ".weight"], sd[p + ".bias"], eps)
    lin = lambda v, p: v @ sd[p + ".weight"].T + sd[p + ".bias"]
    x = ln(x, "embeddings.LayerNorm")
    B, L = ids.shape
    # Extended mask: padded keys get the most negative value for every query.
    ext = (1.0 - mask[:, None, None, :].double()) * torch.finfo(torch.float64).min
    heads = lambda v: v.view(B, L, nh, d).transpose(1, 2)
    for i in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % i
        q = heads(lin(x, p + "attention.self.query"))
        k = heads(lin(x, p + "attention.self.key"))
        v = heads(lin(x, p + "attention.self.value"))
        s = q @ k.transpose(-1, -2) / math.sqrt(d) + ext
        ctx = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, L, H)
        x = ln(lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = torch.nn.functional.gelu(lin(x, p + "intermediate.dense"))
        x = ln(lin(h, p + "output.dense") + x, p + "output.LayerNorm")
    return x.float()


def main(argv):
    if len(argv) >= 8 and argv[1] == "make":
        drop = argv[argv.index("--drop") + 1] if "--drop" in argv else None
        reshape = argv[argv.index("--reshape") + 1] if "--reshape" in argv else None
        make(argv[2], int(argv[3]), int(argv[4]), int(argv[5]), int(argv[6]), int(argv[7]), drop, reshape)
        return 0
    if len(argv) == 5 and argv[1] == "run":
        out = forward(argv[2], json.loads(argv[3]))
        out.contiguous().numpy().astype("<f4").tofile(argv[4])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
