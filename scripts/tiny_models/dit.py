#!/usr/bin/python3
"""Tiny HunyuanVideo-Foley DiT in the official file formats.

  dit.py OUT_DIR [--seed N] [--hidden 128] [--heads 2] [--triple 2] [--single 2]
                 [--feat-dim 64] [--mlp-ratio 4] [--layout xxl|xl]
                 [--format pth|safetensors] [--dtype bf16|f8_e4m3|f8_e5m2] [--keep-vectors]
                 [--name FILE]

OUT_DIR gets hunyuanvideo_foley.pth (a flat bf16 state dict with the official key names and
shapes, torch.save zip format) and config.yaml (the official model config with these sizes): the
layout of the XXL model on the HF hub (the default, --layout xxl). --layout xl writes the XL
model's files instead, hunyuanvideo_foley_xl.pth and hunyuanvideo-foley-xl.yaml (the name of the
XL config in the code repository), with the same tiny sizes; the two layouts can share a
directory, as the XXL and XL DiTs share the encoders and the DAC.
--format safetensors writes the DiT as the community conversions do (phazei's
hunyuanvideo_foley.safetensors, hunyuanvideo_foley_fp8_e4m3fn.safetensors,
hunyuanvideo_foley_fp8_e5m2.safetensors; "_xl" after "hunyuanvideo_foley" for --layout xl): the
same keys, each tensor a plain cast of the .pth's bf16 value to --dtype (BF16, or F8_E4M3 /
F8_E5M2 encoded by tests/python/fp8_reference.py, round to nearest even, no scales), with
--keep-vectors leaving the 1-D tensors (biases, norm weights) BF16 as community files may.
--name overrides the file name.
make_tiny_models.py calls this script; other scripts and tests can import make_dit().

Values are seeded per tensor (the seed mixed with a CRC of the tensor's name), so the output
depends only on the arguments. Scales keep activations O(1) through the network like a trained
model's: matmul/conv weights ~ N(0, 1/fan_in), biases ~ N(0, 0.05²), norm weights ~ 1 + N(0, 0.1²),
learned embeddings ~ N(0, 0.1²). Unlike a freshly initialised official model (zero modulation and
final layer), every weight is non-zero, so each one influences the output a test compares.
"""

import argparse
import collections
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "python"))
import fp8_reference  # noqa: E402
from seeded import Maker, save_safetensors_raw  # noqa: E402

CONFIG_TEMPLATE = """\
model_config:
  model_name: {name}
  model_type: 1d
  model_precision: bf16
  model_kwargs:
    depth_triple_blocks: {triple}
    depth_single_blocks: {single}
    hidden_size: {hidden}
    num_heads: {heads}
    mlp_ratio: {mlp_ratio}
    mlp_act_type: "gelu_tanh"
    qkv_bias: True
    qk_norm: True
    qk_norm_type: "rms"
    attn_mode: "torch"
    embedder_type: "default"
    interleaved_audio_visual_rope: True
    enable_learnable_empty_visual_feat: True
    sync_modulation: False
    add_sync_feat_to_audio: True
    cross_attention: True
    use_attention_mask: False
    condition_projection: "linear"
    sync_feat_dim: {feat}
    condition_dim: {feat}
    clip_dim: {feat}
    audio_vae_latent_dim: 128
    audio_frame_rate: 50
    patch_size: 1
    rope_dim_list: null
    rope_theta: 10000
    text_length: 77
    clip_length: 64
    sync_length: 192
    depth_triple_ssl_encoder: null
    depth_single_ssl_encoder: 8
    use_repa_with_audiossl: True

diffusion_config:
  denoise_type: "flow"
  flow_path_type: "linear"
  flow_predict_type: "velocity"
  flow_reverse: True
  flow_solver: "euler"
  sample_flow_shift: 1.0
  sample_use_flux_shift: False
  flux_base_shift: 0.5
  flux_max_shift: 1.15
"""


def conv_mlp_width(hidden_arg):
    """The official ConvMLP's hidden width: int(2·h/3) rounded up to a multiple of 256."""
    h = int(2 * hidden_arg / 3)
    return 256 * ((h + 255) // 256)


class _Maker(Maker):
    """seeded.Maker with the DiT's k-tap conv projections and bias-free RMS norms."""

    def linear(self, name, n_out, n_in, bias=True, k=None):
        shape = (n_out, n_in) if k is None else (n_out, n_in, k)
        self.normal(name + ".weight", shape, 1.0 / math.sqrt(n_in * (k or 1)))
        if bias:
            self.normal(name + ".bias", (n_out,), 0.05)

    def norm(self, name, n):
        self.normal(name + ".weight", (n,), 0.1, mean=1.0)


def make_state_dict(seed=1, hidden=128, heads=2, triple=2, single=2, feat_dim=64, mlp_ratio=4):
    """The official module tree's state dict (module order), float32."""
    assert hidden % heads == 0 and (hidden // heads) % 2 == 0
    H, D = hidden, hidden // heads
    mlp = int(H * mlp_ratio)
    conv_hidden = conv_mlp_width(H * mlp_ratio)
    sync_hidden = conv_mlp_width(4 * H)
    m = _Maker(seed)
    m.normal("sync_pos_emb", (1, 1, 8, feat_dim), 0.05)
    m.normal("empty_clip_feat", (1, feat_dim), 0.1)
    m.normal("empty_sync_feat", (1, feat_dim), 0.1)
    m.linear("audio_embedder.proj", H, 128, k=1)
    for w, n_in in (("w1", feat_dim), ("w2", H), ("w3", feat_dim)):
        m.linear("visual_proj." + w, H, n_in, bias=False)
    m.linear("cond_in.linear_1", H, feat_dim)
    m.linear("cond_in.linear_2", H, H)
    m.linear("time_in.mlp.0", H, 256)
    m.linear("time_in.mlp.2", H, H)
    m.linear("sync_in.0", H, feat_dim)
    m.linear("sync_in.2.w1", sync_hidden, H, bias=False, k=1)
    m.linear("sync_in.2.w2", H, sync_hidden, bias=False, k=1)
    m.linear("sync_in.2.w3", sync_hidden, H, bias=False, k=1)
    for i in range(triple):
        p = "triple_blocks.%d." % i
        m.linear(p + "audio_mod.linear", 9 * H, H)
        m.linear(p + "audio_self_attn_qkv", 3 * H, H)
        m.norm(p + "audio_self_q_norm", D)
        m.norm(p + "audio_self_k_norm", D)
        m.linear(p + "audio_self_proj", H, H)
        m.linear(p + "v_cond_mod.linear", 9 * H, H)
        m.linear(p + "v_cond_attn_qkv", 3 * H, H)
        m.norm(p + "v_cond_attn_q_norm", D)
        m.norm(p + "v_cond_attn_k_norm", D)
        m.linear(p + "v_cond_self_proj", H, H)
        m.linear(p + "audio_cross_q", H, H)
        m.linear(p + "v_cond_cross_q", H, H)
        m.linear(p + "text_cross_kv", 2 * H, H)
        m.norm(p + "audio_cross_q_norm", D)
        m.norm(p + "v_cond_cross_q_norm", D)
        m.norm(p + "text_cross_k_norm", D)
        m.linear(p + "audio_cross_proj", H, H)
        m.linear(p + "v_cond_cross_proj", H, H)
        for s in ("audio_mlp", "v_cond_mlp"):
            m.linear(p + s + ".fc1", mlp, H)
            m.linear(p + s + ".fc2", H, mlp)
    for i in range(single):
        p = "single_blocks.%d." % i
        m.linear(p + "modulation.linear", 6 * H, H)
        m.linear(p + "linear_qkv", 3 * H, H)
        m.linear(p + "linear1", H, H, k=3)
        m.linear(p + "linear2.w1", conv_hidden, H, bias=False, k=3)
        m.linear(p + "linear2.w2", H, conv_hidden, bias=False, k=3)
        m.linear(p + "linear2.w3", conv_hidden, H, bias=False, k=3)
        m.norm(p + "q_norm", D)
        m.norm(p + "k_norm", D)
    m.linear("final_layer.linear", 128, H)
    m.linear("final_layer.adaLN_modulation.1", 2 * H, H)
    return m.sd


# layout -> (checkpoint, config, model_name), as upstream names the two official DiTs' files.
LAYOUTS = {
    "xxl": ("hunyuanvideo_foley.pth", "config.yaml", "HunyuanVideo-Foley-tiny"),
    "xl": ("hunyuanvideo_foley_xl.pth", "hunyuanvideo-foley-xl.yaml",
           "HunyuanVideo-Foley-XL-tiny"),
}


# --dtype of a safetensors DiT -> (safetensors dtype, fp8 format or None, file name suffix).
ST_DTYPES = {
    "bf16": ("BF16", None, ""),
    "f8_e4m3": ("F8_E4M3", fp8_reference.E4M3, "_fp8_e4m3fn"),
    "f8_e5m2": ("F8_E5M2", fp8_reference.E5M2, "_fp8_e5m2"),
}


def safetensors_name(layout, dtype):
    """The community file name: hunyuanvideo_foley[_xl][_fp8_e4m3fn|_fp8_e5m2].safetensors."""
    return "hunyuanvideo_foley" + ("_xl" if layout == "xl" else "") + ST_DTYPES[dtype][2] + \
        ".safetensors"


def save_dit_safetensors(sd, path, dtype, keep_vectors):
    """`sd` (bf16 tensors) as a safetensors file like safetensors.torch.save_file writes: keys
    sorted, data packed in that order, header padded with spaces to a multiple of 8 bytes. Each
    tensor is cast to `dtype`; with keep_vectors, 1-D tensors stay BF16."""
    st_dtype, fmt, _ = ST_DTYPES[dtype]

    def encode(t):
        if fmt is None or (keep_vectors and t.dim() == 1):
            return "BF16", t.view(torch.int16).numpy().tobytes()
        return st_dtype, fp8_reference.encode(t.float().numpy(), fmt, saturate=False).tobytes()
    save_safetensors_raw(sd, path, encode, metadata={"format": "pt"})


def make_dit(out_dir, seed=1, hidden=128, heads=2, triple=2, single=2, feat_dim=64, mlp_ratio=4,
             layout="xxl", fmt="pth", dtype="bf16", keep_vectors=False, name=None):
    """Writes the checkpoint and config of LAYOUTS[layout] into OUT_DIR: the official bf16 .pth
    (fmt "pth") or a community-style safetensors of `dtype` (fmt "safetensors"). Returns the
    checkpoint's path."""
    checkpoint, config, model_name = LAYOUTS[layout]
    if fmt == "pth" and dtype != "bf16":
        raise ValueError("a .pth DiT is bf16 (the official file); fp8 needs --format safetensors")
    os.makedirs(out_dir, exist_ok=True)
    sd = make_state_dict(seed, hidden, heads, triple, single, feat_dim, mlp_ratio)
    sd = collections.OrderedDict((k, v.to(torch.bfloat16)) for k, v in sd.items())
    if fmt == "pth":
        path = os.path.join(out_dir, name or checkpoint)
        torch.save(sd, path)
    else:
        path = os.path.join(out_dir, name or safetensors_name(layout, dtype))
        save_dit_safetensors(sd, path, dtype, keep_vectors)
    with open(os.path.join(out_dir, config), "w") as f:
        f.write(CONFIG_TEMPLATE.format(triple=triple, single=single, hidden=hidden, heads=heads,
                                       mlp_ratio=mlp_ratio, feat=feat_dim, name=model_name))
    return path


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--triple", type=int, default=2)
    ap.add_argument("--single", type=int, default=2)
    ap.add_argument("--feat-dim", type=int, default=64)
    ap.add_argument("--mlp-ratio", type=int, default=4)
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="xxl",
                    help="xxl: hunyuanvideo_foley.pth + config.yaml (default); "
                         "xl: hunyuanvideo_foley_xl.pth + hunyuanvideo-foley-xl.yaml")
    ap.add_argument("--format", choices=("pth", "safetensors"), default="pth",
                    help="pth: the official torch.save file (default); safetensors: a community "
                         "conversion's file")
    ap.add_argument("--dtype", choices=sorted(ST_DTYPES), default="bf16",
                    help="tensor dtype of a safetensors DiT (plain casts of the bf16 values)")
    ap.add_argument("--keep-vectors", action="store_true",
                    help="leave the 1-D tensors of an fp8 safetensors DiT in BF16")
    ap.add_argument("--name", help="the checkpoint's file name (default: from layout and dtype)")
    a = ap.parse_args(argv[1:])
    if a.format == "pth" and a.dtype != "bf16":
        ap.error("--dtype %s needs --format safetensors" % a.dtype)
    make_dit(a.out_dir, a.seed, a.hidden, a.heads, a.triple, a.single, a.feat_dim, a.mlp_ratio,
             a.layout, a.format, a.dtype, a.keep_vectors, a.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
