#!/usr/bin/env python3
"""Writes a HunyuanVideo-Foley model directory at the official sizes, seeded random weights, in the
official file formats, for the benchmarks (bench/run_h100.sh).

  make_full_model.py OUT_DIR [--size xxl|small] [--seed N] [--with-xl]
  (--with-xl also writes the XL DiT, hunyuanvideo_foley_xl.pth + its config, beside the XXL one:
  the two official DiTs share the encoder and DAC files)

It reuses the tiny-model generators (scripts/make_tiny_models.py, scripts/tiny_models/*.py) with
their size arguments set to the official values, and draws each tensor on the GPU when there is
one (same per-tensor seeding scheme, a CUDA generator instead of the CPU one): the XXL DiT has
5.1 G parameters, which the CPU generator takes minutes to draw.

Official sizes (model-spec): DiT XXL hidden 1536, 12 heads, 18 triple + 36 single blocks, feature
widths 768; DAC decoder_dim 2048 (encoder_dim 128); SigLIP2 base patch16-512 (768, 12 layers,
MLP 3072); CLAP text tower RoBERTa-base (768, 12 layers, MLP 3072; its BPE vocabulary stays tiny,
which changes only the size of an embedding table); Synchformer ViT-B (768, depth 12, MLP 3072,
224 px, 16 px patches, tubelet 2, 8 temporal positions). `--size small` gives a quick smoke-test
model (DiT hidden 256, 2+2 blocks; encoders at tiny sizes).
"""

import argparse
import os
import sys
import time
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
sys.path.insert(0, os.path.join(HERE, "..", "scripts", "tiny_models"))

import clap  # noqa: E402
import dit  # noqa: E402
import make_tiny_models  # noqa: E402
import seeded  # noqa: E402
import siglip2  # noqa: E402
import synchformer  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _gen(seed, name):
    return torch.Generator(device=DEVICE).manual_seed(seed * 1000003 + zlib.crc32(name.encode()))


def _normal(self, name, shape, std, mean=0.0):
    t = torch.randn(tuple(shape), generator=_gen(self.seed, name), device=DEVICE)
    self.sd[name] = (t * std + mean).cpu()


def _uniform(self, name, shape, lo, hi):
    t = torch.rand(tuple(shape), generator=_gen(self.seed, name), device=DEVICE)
    self.sd[name] = (t * (hi - lo) + lo).cpu()


def _normal_bf16(self, name, shape, std, mean=0.0):
    # The DiT is saved in bf16 anyway: converting on the GPU halves the host memory it takes.
    t = torch.randn(tuple(shape), generator=_gen(self.seed, name), device=DEVICE)
    self.sd[name] = (t * std + mean).to(torch.bfloat16).cpu()


dit._Maker.normal = _normal_bf16
for maker in (seeded.Maker, make_tiny_models.Maker):
    maker.normal = _normal
make_tiny_models.Maker.uniform = _uniform


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--size", choices=["xxl", "small"], default="xxl")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--with-xl", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    t0 = time.time()
    if a.size == "xxl":
        dit.make_dit(a.out_dir, a.seed, hidden=1536, heads=12, triple=18, single=36, feat_dim=768,
                     mlp_ratio=4)
        print("dit written %.1f s" % (time.time() - t0), flush=True)
        if a.with_xl:
            dit.make_dit(a.out_dir, a.seed + 1, hidden=1408, heads=11, triple=12, single=24,
                         feat_dim=768, mlp_ratio=4, layout="xl")
            print("xl dit written %.1f s" % (time.time() - t0), flush=True)
        make_tiny_models.make_vae(os.path.join(a.out_dir, "vae_128d_48k.pth"), a.seed, 128, 2048)
        siglip2.make_siglip2(a.out_dir, a.seed, 768, 12, 12, 3072, 512, 16)
        clap.make_clap(a.out_dir, a.seed, 768, 12, 12, 3072, 64)
        synchformer.make_synchformer(a.out_dir, a.seed, 768, 12, 3072, 3072, 224, 16, 2, 8)
    else:
        dit.make_dit(a.out_dir, a.seed, hidden=256, heads=2, triple=2, single=2, feat_dim=64)
        make_tiny_models.make_vae(os.path.join(a.out_dir, "vae_128d_48k.pth"), a.seed, 8, 64)
        siglip2.make_siglip2(a.out_dir, a.seed)
        clap.make_clap(a.out_dir, a.seed)
        synchformer.make_synchformer(a.out_dir, a.seed)
    print("model written in %.1f s (%s)" % (time.time() - t0, DEVICE), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
