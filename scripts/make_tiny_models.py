#!/usr/bin/python3
"""Generates a tiny model directory in the official HunyuanVideo-Foley file formats.

  make_tiny_models.py OUT_DIR [--seed N] [--decoder-dim 64] [--encoder-dim 8] [--no-dit]
                      [--no-encoders] [--dit-layout xxl|xl] [--dit-format pth|safetensors]
                      [--dit-dtype bf16|f8_e4m3|f8_e5m2] [--dit-keep-vectors]
                      [--clap-weights bin|safetensors|both]

--no-dit writes only the DAC-VAE; --no-encoders leaves the three encoders out; --dit-layout xl
writes the DiT as the XL model's files (hunyuanvideo_foley_xl.pth + hunyuanvideo-foley-xl.yaml)
instead of the XXL's (the default), same tiny sizes. --dit-format safetensors writes the DiT as a
community conversion instead of the .pth (dit.py --format safetensors: hunyuanvideo_foley.safetensors
or, with --dit-dtype f8_e4m3 / f8_e5m2, hunyuanvideo_foley_fp8_e4m3fn.safetensors /
hunyuanvideo_foley_fp8_e5m2.safetensors of F8 plain casts, 1-D tensors BF16 with
--dit-keep-vectors). --clap-weights picks clap/'s weight files (default pytorch_model.bin).

OUT_DIR gets:
  vae_128d_48k.pth   {"state_dict": fp32 DAC-VAE weights with the official key names (old-style
                     weight norm: weight_g / weight_v), "metadata": {"kwargs": {...}}}, the real
                     rates [8,5,4,3,2] (hop 960, 48 kHz, 128-d latents) at a small width. The
                     encoder and quant_conv are included, so converters are tested on skipping them.
  hunyuanvideo_foley.pth + config.yaml
                     from scripts/tiny_models/dit.py (the DiT's generator) when that file exists,
                     called as `dit.py OUT_DIR --seed N [--layout xl]` (with --dit-layout xl:
                     hunyuanvideo_foley_xl.pth + hunyuanvideo-foley-xl.yaml).
  siglip2/           model.safetensors + config.json (scripts/tiny_models/siglip2.py): a whole
                     SiglipModel, text tower included; vision hidden 64, 64x64 images, 16 patches.
  clap/              pytorch_model.bin, config.json, vocab.json, merges.txt, tokenizer_config.json
                     (scripts/tiny_models/clap.py): a whole ClapModel (audio side as a token),
                     RoBERTa text tower hidden 64, a byte-level BPE vocabulary with 64 merges.
  synchformer_state_dict.pth
                     (scripts/tiny_models/synchformer.py): MotionFormer dim 64 (2 heads of 32),
                     64x64 images, the official 16-frame segments (tubelet 2 x 8 frames), plus
                     audio-branch / projection / global-transformer tensors to be dropped.
The three encoders' widths (64) equal the DiT's clip_dim / sync_feat_dim / condition_dim, so
`foley convert --model-dir OUT_DIR --dtype f32` gives a complete, consistent five-network bundle.

Values are seeded per tensor (the seed mixed with a CRC of the tensor's name), so the output
depends only on the arguments. The DAC weights are scaled so that activations stay O(1..10):
random weight-norm gains of ~1 make activations grow ~x2 per residual unit, and a float32 decoder
then amplifies rounding noise to ~1e-4 of the output, which would hide real errors in tests.
"""

import argparse
import math
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "tiny_models"))
from seeded import Maker  # noqa: E402


class DacMaker(Maker):
    """seeded.Maker plus uniform draws, old-style weight-normed convs and Snake alphas."""

    def uniform(self, name, shape, lo, hi):
        self.sd[name] = torch.rand(*shape, generator=self._gen(name)) * (hi - lo) + lo

    def wn_conv(self, prefix, c_in, c_out, k, gain, transpose=False):
        """Weight-normed conv: v random, g = gain·U(0.8, 1.2) per dim-0 row, small bias.

        For ConvTranspose1d the weight is [in, out, k] and weight norm's dim 0 is `in`, so g is
        [in, 1, 1] there (that is what torch.nn.utils.weight_norm stores)."""
        shape = (c_in, c_out, k) if transpose else (c_out, c_in, k)
        self.normal(prefix + ".weight_v", shape, 1.0)
        self.uniform(prefix + ".weight_g", (shape[0], 1, 1), 0.8 * gain, 1.2 * gain)
        self.uniform(prefix + ".bias", (c_out,), -0.05, 0.05)

    def snake(self, prefix, c):
        self.uniform(prefix + ".alpha", (1, c, 1), 0.5, 1.5)

    def residual_unit(self, prefix, c):
        self.snake(prefix + ".block.0", c)
        self.wn_conv(prefix + ".block.1", c, c, 7, 0.5)
        self.snake(prefix + ".block.2", c)
        self.wn_conv(prefix + ".block.3", c, c, 1, 0.3)


def make_vae(path, seed, encoder_dim, decoder_dim):
    kwargs = {
        "encoder_dim": encoder_dim,
        "encoder_rates": [2, 3, 4, 5, 8],
        "latent_dim": 128,
        "decoder_dim": decoder_dim,
        "decoder_rates": [8, 5, 4, 3, 2],
        "sample_rate": 48000,
        "continuous": True,
    }
    m = DacMaker(seed)
    # Encoder (unused at inference; present so converters must skip it).
    d = encoder_dim
    m.wn_conv("encoder.block.0", 1, d, 7, 1.0)
    for i, s in enumerate(kwargs["encoder_rates"]):
        p = "encoder.block.%d.block" % (i + 1)
        for j in range(3):
            m.residual_unit("%s.%d" % (p, j), d)
        m.snake(p + ".3", d)
        m.wn_conv(p + ".4", d, 2 * d, 2 * s, 1.0)
        d *= 2
    n = len(kwargs["encoder_rates"])
    m.snake("encoder.block.%d" % (n + 1), d)
    m.wn_conv("encoder.block.%d" % (n + 2), d, kwargs["latent_dim"], 3, 1.0)
    # Plain convs around the latent (no weight norm). quant_conv yields mean and log-variance.
    lat = kwargs["latent_dim"]
    m.normal("quant_conv.weight", (2 * lat, lat, 1), 1.0 / math.sqrt(lat))
    m.uniform("quant_conv.bias", (2 * lat,), -0.05, 0.05)
    m.normal("post_quant_conv.weight", (lat, lat, 1), 1.0 / math.sqrt(lat))
    m.uniform("post_quant_conv.bias", (lat,), -0.05, 0.05)
    # Decoder.
    c = decoder_dim
    m.wn_conv("decoder.model.0", lat, c, 7, 1.0)
    for i, s in enumerate(kwargs["decoder_rates"]):
        p = "decoder.model.%d.block" % (i + 1)
        m.snake(p + ".0", c)
        m.wn_conv(p + ".1", c, c // 2, 2 * s, 1.0, transpose=True)
        c //= 2
        for j in range(3):
            m.residual_unit("%s.%d" % (p, j + 2), c)
    n = len(kwargs["decoder_rates"])
    m.snake("decoder.model.%d" % (n + 1), c)
    m.wn_conv("decoder.model.%d" % (n + 2), c, 1, 7, 0.3)
    torch.save({"state_dict": m.sd, "metadata": {"kwargs": kwargs}}, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--decoder-dim", type=int, default=64)
    ap.add_argument("--encoder-dim", type=int, default=8)
    ap.add_argument("--no-dit", action="store_true",
                    help="only the DAC-VAE (no DiT and no encoders; what the DAC tests use)")
    ap.add_argument("--no-encoders", action="store_true",
                    help="leave SigLIP2, CLAP and Synchformer out")
    ap.add_argument("--dit-layout", choices=("xxl", "xl"), default="xxl",
                    help="file names of the DiT: the XXL model's (default) or the XL model's")
    ap.add_argument("--dit-format", choices=("pth", "safetensors"), default="pth",
                    help="the DiT as the official .pth (default) or a community safetensors")
    ap.add_argument("--dit-dtype", choices=("bf16", "f8_e4m3", "f8_e5m2"), default="bf16",
                    help="tensor dtype of a safetensors DiT (default bf16)")
    ap.add_argument("--dit-keep-vectors", action="store_true",
                    help="leave the 1-D tensors of an fp8 safetensors DiT in BF16")
    ap.add_argument("--clap-weights", choices=("bin", "safetensors", "both"), default="bin",
                    help="clap/pytorch_model.bin (default), clap/model.safetensors or both")
    args = ap.parse_args()
    if args.dit_format == "pth" and args.dit_dtype != "bf16":
        ap.error("--dit-dtype %s needs --dit-format safetensors" % args.dit_dtype)
    if args.decoder_dim % 32:
        ap.error("--decoder-dim must be a multiple of 32 (five halvings)")
    os.makedirs(args.out_dir, exist_ok=True)
    make_vae(os.path.join(args.out_dir, "vae_128d_48k.pth"), args.seed, args.encoder_dim,
             args.decoder_dim)
    dit = os.path.join(HERE, "tiny_models", "dit.py")
    if not args.no_dit and os.path.exists(dit):
        cmd = [sys.executable, dit, args.out_dir, "--seed", str(args.seed), "--layout",
               args.dit_layout, "--format", args.dit_format, "--dtype", args.dit_dtype]
        subprocess.run(cmd + (["--keep-vectors"] if args.dit_keep_vectors else []), check=True)
    if not args.no_dit and not args.no_encoders:
        import clap
        import siglip2
        import synchformer

        siglip2.make_siglip2(args.out_dir, args.seed)
        clap.make_clap(args.out_dir, args.seed, weights=args.clap_weights)
        synchformer.make_synchformer(args.out_dir, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
