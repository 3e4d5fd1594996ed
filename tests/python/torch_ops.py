#!/usr/bin/python3
"""PyTorch references for the CPU backend's ops (tests/cpu_torch_test.cpp).

Usage: torch_ops.py DIR. DIR/manifest.json lists cases:
  {"cases": [{"name": ..., "op": ..., "params": {...},
              "inputs": {"x": {"file": "x.bin", "shape": [...]}, ...}, "out": "name.out.bin"}]}
Inputs are raw little-endian float32 in foley's layouts (channel-last sequences, [B, L, H, D]
attention tensors, conv weights [K, Co, Ci]). Each case's output is written as float32, and
DIR/results.json maps case names to output shapes. The formulas are the ones the upstream model
code uses (torch.nn.functional where it exists), run in float32 on the CPU.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F


def rope(x, cos, sin):
    """Adjacent-pair ("interleaved") RoPE as in the reference's apply_rotary_emb: x [B, L, H, D],
    tables [>=L, D/2], repeat_interleave(2) then x·cos + rotate_half(x)·sin."""
    L = x.shape[1]
    c = cos[:L].repeat_interleave(2, dim=-1)[None, :, None, :]
    s = sin[:L].repeat_interleave(2, dim=-1)[None, :, None, :]
    x_pairs = x.reshape(*x.shape[:-1], -1, 2)
    rotated = torch.stack([-x_pairs[..., 1], x_pairs[..., 0]], dim=-1).flatten(-2)
    return x * c + rotated * s


def op_linear(t, p):
    x, w, b = t["x"], t["w"], t.get("b")
    mode = p.get("mode", "f32")
    if mode == "bf16_emulated":  # what a bf16 x bf16 -> f32 GEMM computes
        return F.linear(x.bfloat16().float(), w, b)
    if mode == "bf16_native":  # torch's own bf16 linear, output rounded to bf16
        return F.linear(x.bfloat16(), w.bfloat16(), None if b is None else b.bfloat16()).float()
    out = F.linear(x, w, b)
    if "beta" in p:
        out = out + p["beta"] * t["y0"]
    return out


def op_layer_norm(t, p):
    x = t["x"]
    return F.layer_norm(x, (x.shape[-1],), t.get("w"), t.get("b"), eps=p["eps"])


def op_rms_norm(t, p):
    x = t["x"]
    out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + p["eps"])
    return out * t["w"] if "w" in t else out


def op_layer_norm_modulate(t, p):
    x, shift, scale = t["x"], t["shift"], t["scale"]
    if shift.dim() == 2:  # per-sample modulation [B, C]
        shift, scale = shift.unsqueeze(1), scale.unsqueeze(1)
    return F.layer_norm(x, (x.shape[-1],), eps=p["eps"]) * (1 + scale) + shift


def op_activation(t, p):
    x, kind = t["x"], p["kind"]
    if kind == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if kind == "gelu_erf":
        return F.gelu(x)
    if kind == "silu":
        return F.silu(x)
    return torch.tanh(x)


def op_swiglu(t, p):
    return F.silu(t["a"]) * t["b"]


def op_snake(t, p):
    # DAC's snake on [B, C, T] with alpha [1, C, 1].
    x = t["x"].transpose(1, 2)
    alpha = t["alpha"].reshape(1, -1, 1)
    y = x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)
    return y.transpose(1, 2)


def op_softmax(t, p):
    return torch.softmax(t["x"], dim=-1)


def op_rope(t, p):
    return rope(t["x"], t["cos"], t["sin"])


def op_attention(t, p):
    q, k, v = t["q"], t["k"], t["v"]
    if "q_cos" in t:
        q = rope(q, t["q_cos"], t["q_sin"])
    if "k_cos" in t:
        k = rope(k, t["k_cos"], t["k_sin"])
    q, k, v = (a.transpose(1, 2) for a in (q, k, v))  # [B, H, L, D]
    attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * p["scale"], dim=-1)
    return torch.matmul(attn, v).transpose(1, 2)


def op_conv1d(t, p):
    w = t["w"].permute(1, 2, 0)  # [K, Co, Ci] -> [Co, Ci, K]
    y = F.conv1d(t["x"].transpose(1, 2), w, t.get("b"), padding=p["pad"], dilation=p["dilation"])
    return y.transpose(1, 2)


def op_conv_transpose1d(t, p):
    w = t["w"].permute(2, 1, 0)  # [K, Co, Ci] -> [Ci, Co, K]
    y = F.conv_transpose1d(t["x"].transpose(1, 2), w, t.get("b"), stride=p["stride"],
                           padding=p["pad"], output_padding=p["output_padding"])
    return y.transpose(1, 2)


def op_resample(t, p):
    y = F.interpolate(t["x"].transpose(1, 2), size=p["size"], mode="nearest-exact")
    return y.transpose(1, 2)


def op_patch_embed(t, p):
    x, w = t["x"], t["w"]
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    y = conv(x, w, t.get("b"), stride=tuple(w.shape[2:]))
    return y.flatten(2).transpose(1, 2)


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def main():
    directory = sys.argv[1]
    torch.set_num_threads(1)
    with open(os.path.join(directory, "manifest.json")) as f:
        manifest = json.load(f)
    results = {}
    for case in manifest["cases"]:
        tensors = {}
        for name, spec in case["inputs"].items():
            data = np.fromfile(os.path.join(directory, spec["file"]), dtype="<f4")
            tensors[name] = torch.from_numpy(data.reshape(spec["shape"]).copy())
        with torch.no_grad():
            out = OPS[case["op"]](tensors, case.get("params", {}))
        out = out.contiguous().float().numpy()
        out.astype("<f4").tofile(os.path.join(directory, case["out"]))
        results[case["name"]] = list(out.shape)
    with open(os.path.join(directory, "results.json"), "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
