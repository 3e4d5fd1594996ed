#!/usr/bin/python3
"""Tiny SigLIP2 (google/siglip2-base-patch16-512 layout) in the official HF file format.

  siglip2.py OUT_DIR [--seed N] [--hidden 64] [--heads 2] [--layers 2] [--inter 128]
                     [--image-size 64] [--patch 16]

OUT_DIR/siglip2/ gets model.safetensors (a whole SiglipModel, fp32: vision_model.* with its
attention-pooling head, plus the text tower text_model.* and logit_scale/logit_bias, which
converters must drop) and config.json (model_type "siglip", vision_config and text_config).
Only the vision tower's sizes are options; the text tower is fixed and small. make_tiny_models.py
imports make_siglip2(); tests call this script with other sizes.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seeded import Maker, save_safetensors  # noqa: E402

TEXT = {"hidden": 32, "inter": 64, "layers": 1, "heads": 2, "vocab": 100, "positions": 16}


def encoder_layers(m, prefix, layers, hidden, inter):
    for i in range(layers):
        p = "%s.encoder.layers.%d." % (prefix, i)
        m.norm(p + "layer_norm1", hidden)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            m.linear(p + "self_attn." + proj, hidden, hidden)
        m.norm(p + "layer_norm2", hidden)
        m.linear(p + "mlp.fc1", inter, hidden)
        m.linear(p + "mlp.fc2", hidden, inter)


def make_siglip2(out_dir, seed=1, hidden=64, heads=2, layers=2, inter=128, image_size=64,
                 patch=16):
    if hidden % heads or image_size % patch:
        raise ValueError("hidden must divide by heads and image_size by patch")
    d = os.path.join(out_dir, "siglip2")
    os.makedirs(d, exist_ok=True)
    m = Maker(seed)
    v = "vision_model"
    m.conv(v + ".embeddings.patch_embedding", hidden, (3, patch, patch))
    m.normal(v + ".embeddings.position_embedding.weight", ((image_size // patch) ** 2, hidden), 0.1)
    encoder_layers(m, v, layers, hidden, inter)
    m.norm(v + ".post_layernorm", hidden)
    m.normal(v + ".head.probe", (1, 1, hidden), 0.5)
    m.normal(v + ".head.attention.in_proj_weight", (3 * hidden, hidden), hidden ** -0.5)
    m.normal(v + ".head.attention.in_proj_bias", (3 * hidden,), 0.05)
    m.linear(v + ".head.attention.out_proj", hidden, hidden)
    m.norm(v + ".head.layernorm", hidden)
    m.linear(v + ".head.mlp.fc1", inter, hidden)
    m.linear(v + ".head.mlp.fc2", hidden, inter)
    t = "text_model"
    m.normal(t + ".embeddings.token_embedding.weight", (TEXT["vocab"], TEXT["hidden"]), 0.5)
    m.normal(t + ".embeddings.position_embedding.weight", (TEXT["positions"], TEXT["hidden"]), 0.1)
    encoder_layers(m, t, TEXT["layers"], TEXT["hidden"], TEXT["inter"])
    m.norm(t + ".final_layer_norm", TEXT["hidden"])
    m.linear(t + ".head", TEXT["hidden"], TEXT["hidden"])
    m.normal("logit_scale", (1,), 0.1, mean=2.3)
    m.normal("logit_bias", (1,), 0.1, mean=-10.0)
    save_safetensors(m.sd, os.path.join(d, "model.safetensors"), {"format": "pt"})
    config = {
        "initializer_factor": 1.0,
        "model_type": "siglip",
        "text_config": {
            "attention_dropout": 0.0,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": TEXT["hidden"],
            "intermediate_size": TEXT["inter"],
            "layer_norm_eps": 1e-06,
            "max_position_embeddings": TEXT["positions"],
            "model_type": "siglip_text_model",
            "num_attention_heads": TEXT["heads"],
            "num_hidden_layers": TEXT["layers"],
            "projection_size": TEXT["hidden"],
            "vocab_size": TEXT["vocab"],
        },
        "vision_config": {
            "attention_dropout": 0.0,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": hidden,
            "image_size": image_size,
            "intermediate_size": inter,
            "layer_norm_eps": 1e-06,
            "model_type": "siglip_vision_model",
            "num_attention_heads": heads,
            "num_channels": 3,
            "num_hidden_layers": layers,
            "patch_size": patch,
        },
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--inter", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--patch", type=int, default=16)
    a = ap.parse_args(argv[1:])
    make_siglip2(a.out_dir, a.seed, a.hidden, a.heads, a.layers, a.inter, a.image_size, a.patch)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
