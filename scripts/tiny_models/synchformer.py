#!/usr/bin/python3
"""Tiny Synchformer in the official file format (synchformer_state_dict.pth).

  synchformer.py OUT_DIR [--seed N] [--dim 64] [--depth 2] [--mlp 256] [--agg-ff 256]
                         [--image-size 64] [--patch 16] [--tubelet 2] [--frames 8]

OUT_DIR/synchformer_state_dict.pth is a flat fp32 state dict (torch.save zip format) of the whole
Synchformer: the visual MotionFormer vfeat_extractor.* (with its unused 2-D patch_embed), plus a
few tensors of the audio branch afeat_extractor.*, the projections vproj/aproj and the global
transformer.*, which converters must drop. There is no config file: the shapes carry the sizes
(pos_embed: 1 + (image/patch)² tokens; temp_embed: frames; patch_embed_3d: tubelet), except the
head count, which the converter guesses (heads of 32 below dim 768) or takes from
`foley convert --synchformer-heads`. The defaults keep the official 16-frame segments
(tubelet 2 × 8 frames), so the DiT's 8 sync tokens per segment still line up.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seeded import Maker  # noqa: E402


def make_synchformer(out_dir, seed=1, dim=64, depth=2, mlp=256, agg_ff=256, image_size=64,
                     patch=16, tubelet=2, frames=8):
    if image_size % patch:
        raise ValueError("image_size must divide by patch")
    os.makedirs(out_dir, exist_ok=True)
    m = Maker(seed)
    v = "vfeat_extractor."
    m.normal(v + "cls_token", (1, 1, dim), 0.1)
    m.normal(v + "pos_embed", (1, 1 + (image_size // patch) ** 2, dim), 0.1)
    m.normal(v + "temp_embed", (1, frames, dim), 0.1)
    m.conv(v + "patch_embed.proj", dim, (3, patch, patch))
    m.conv(v + "patch_embed_3d.proj", dim, (3, tubelet, patch, patch))
    for i in range(depth):
        b = v + "blocks.%d." % i
        m.norm(b + "norm1", dim)
        m.linear(b + "attn.qkv", 3 * dim, dim)
        m.linear(b + "attn.proj", dim, dim)
        m.linear(b + "timeattn.qkv", 3 * dim, dim)
        m.linear(b + "timeattn.proj", dim, dim)
        m.norm(b + "norm2", dim)
        m.linear(b + "mlp.fc1", mlp, dim)
        m.linear(b + "mlp.fc2", dim, mlp)
        m.norm(b + "norm3", dim)
    m.norm(v + "norm", dim)
    a = v + "spatial_attn_agg."
    m.normal(a + "cls_token", (1, 1, dim), 0.5)
    m.normal(a + "self_attn.in_proj_weight", (3 * dim, dim), dim ** -0.5)
    m.normal(a + "self_attn.in_proj_bias", (3 * dim,), 0.05)
    m.linear(a + "self_attn.out_proj", dim, dim)
    m.linear(a + "linear1", agg_ff, dim)
    m.linear(a + "linear2", dim, agg_ff)
    m.norm(a + "norm1", dim)
    m.norm(a + "norm2", dim)
    # The parts the pipeline never runs (a few tensors each, small widths).
    m.conv("afeat_extractor.patch_embed.proj", 8, (1, 4, 4))
    m.normal("afeat_extractor.pos_embed", (1, 5, 8), 0.1)
    m.norm("afeat_extractor.blocks.0.norm1", 8)
    m.linear("vproj", 4, dim)
    m.linear("aproj", 4, 8)
    m.normal("transformer.tok_emb", (1, 3, 4), 0.1)
    m.linear("transformer.blocks.0.attn.qkv", 12, 4)
    torch.save(dict(m.sd), os.path.join(out_dir, "synchformer_state_dict.pth"))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--mlp", type=int, default=256)
    ap.add_argument("--agg-ff", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--tubelet", type=int, default=2)
    ap.add_argument("--frames", type=int, default=8)
    a = ap.parse_args(argv[1:])
    make_synchformer(a.out_dir, a.seed, a.dim, a.depth, a.mlp, a.agg_ff, a.image_size, a.patch,
                     a.tubelet, a.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
