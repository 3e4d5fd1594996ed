"""PyTorch reference for the Synchformer sync branch (model-spec §1.3), written from the spec
(no Synchformer/MotionFormer code), for testing foley's Synchformer on configurations other than
the golden one.

  reference_synchformer.py run CKPT HEADS FRAMES.u8 T H W OUT.f32
      CKPT is a synchformer_state_dict.pth (only vfeat_extractor.* is read; the sizes come from
      the shapes); HEADS is the head count (no tensor carries it); FRAMES.u8 is raw RGB uint8
      [T, H, W, 3] at 25 fps. Each frame: antialiased bicubic (a = -0.5) resize of the shorter
      side to image_size on uint8 (the long side int(size·long/short)), centre crop, /255,
      (x-0.5)/0.5; 16-frame windows with stride 8; MotionFormer with divided space-time attention
      and per-frame attention aggregation. Computed in float64; writes sync features
      [1, S·frames, dim] as raw little-endian float32.
  reference_synchformer.py golden CASE_DIR HEADS
      Runs the golden case's frames25_rgb through its checkpoint and prints
      max|ref - golden| / max|golden| for sync_pixels_first2 and sync_features.

The uint8 resize is written out in numpy as torch (>= 2.0) computes it for uint8 inputs: int16
fixed-point taps, a rounded and clamped uint8 image after each pass. torch 1.13 (installed here)
has no uint8 antialias kernel, and its float interpolate, rounded after each pass
(torch_bicubic_resize.py), differs from the integer kernel by up to 2 levels.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

P = "vfeat_extractor."


def cubic(x, a=-0.5):
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    return (((x - 5.0) * x + 8.0) * x - 4.0) * a if x < 2.0 else 0.0


def taps_int16(in_size, out_size):
    """torch's uint8 antialiased bicubic taps (UpSampleKernel.cpp, torch >= 2.0): float64
    weights over a support of 2·scale (on downscale), normalised, then quantised to int16 with
    the most fractional bits that keep the largest weight below 2^15. Returns (first, weights
    as an int64 [out, in] matrix, precision)."""
    scale = in_size / out_size
    support = 2.0 * max(scale, 1.0)
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    m = np.zeros((out_size, in_size))
    for o in range(out_size):
        center = scale * (o + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        w = np.array([cubic((j + lo - center + 0.5) * inv) for j in range(hi - lo)])
        m[o, lo:hi] = w / w.sum() if w.sum() != 0 else w
    precision = 0
    while precision < 22 and int(0.5 + m.max() * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    v = m * (1 << precision)
    q = np.where(v < 0, np.trunc(-0.5 + v), np.trunc(0.5 + v)).astype(np.int64)
    return q, precision


def resize_pass(x, axis, out_size):
    """One axis of the uint8 kernel on an int64 [H, W, C] image: rounded, shifted, clamped."""
    q, prec = taps_int16(x.shape[axis], out_size)
    acc = np.tensordot(q, x, axes=([1], [axis]))  # out axis first
    acc = np.moveaxis(acc, 0, axis) + (1 << (prec - 1))
    return np.clip(acc >> prec, 0, 255)


def resize_shorter_bicubic_u8(frame, size):
    """torchvision v2.Resize(size, BICUBIC, antialias=True) on a uint8 [H, W, 3] frame: torch's
    uint8 kernel, horizontal pass then vertical, an unchanged axis skipped."""
    h, w = frame.shape[:2]
    oh, ow = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    x = frame.astype(np.int64)
    if ow != w:
        x = resize_pass(x, 1, ow)
    if oh != h:
        x = resize_pass(x, 0, oh)
    return torch.from_numpy(x).permute(2, 0, 1).double()  # [3, oh, ow] integer-valued


def preprocess(frames, size):
    out = []
    for f in frames:
        x = resize_shorter_bicubic_u8(f, size)
        h, w = x.shape[1:]
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
        x = x[:, top:top + size, left:left + size] / 255.0
        out.append((x - 0.5) / 0.5)
    return torch.stack(out)  # [T, 3, size, size]


def config(sd):
    c = {"dim": sd[P + "pos_embed"].shape[2]}
    w3 = sd[P + "patch_embed_3d.proj.weight"]
    c["tubelet"], c["patch"] = w3.shape[2], w3.shape[3]
    c["grid"] = int(round(math.sqrt(sd[P + "pos_embed"].shape[1] - 1)))
    c["image_size"] = c["grid"] * c["patch"]
    c["frames"] = sd[P + "temp_embed"].shape[1]
    c["depth"] = 0
    while P + "blocks.%d.norm1.weight" % c["depth"] in sd:
        c["depth"] += 1
    return c


def attend(q, k, v):
    return torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v  # q is pre-scaled


def divided_attention(x, w, b, pw, pb, heads, frames, time):
    """DividedAttention: CLS query over all tokens; patch queries over their time group (same
    spatial position) or space group (same frame), each plus the CLS key/value."""
    B, L, D = x.shape
    d, n = D // heads, (L - 1) // frames
    q, k, v = (x @ w.T + b).chunk(3, dim=-1)
    to_heads = lambda t: t.reshape(B, L, heads, d).transpose(1, 2).reshape(B * heads, L, d)
    q, k, v = to_heads(q) * d ** -0.5, to_heads(k), to_heads(v)
    cls_out = attend(q[:, :1], k, v)
    group = lambda t: (t[:, 1:].reshape(B * heads, frames, n, d).transpose(1, 2)
                       .reshape(B * heads * n, frames, d)) if time else \
        t[:, 1:].reshape(B * heads * frames, n, d)
    r = n if time else frames
    ck = k[:, :1].repeat_interleave(r, dim=0)
    cv = v[:, :1].repeat_interleave(r, dim=0)
    out = attend(group(q), torch.cat([ck, group(k)], 1), torch.cat([cv, group(v)], 1))
    if time:
        out = out.reshape(B * heads, n, frames, d).transpose(1, 2)
    out = out.reshape(B * heads, frames * n, d)
    y = torch.cat([cls_out, out], 1).reshape(B, heads, L, d).transpose(1, 2).reshape(B, L, D)
    return y @ pw.T + pb


def motionformer(sd, c, heads, pixels):
    """pixels [B, 3, segment, S, S] -> features [B, frames, dim]."""
    D, eps, F_ = c["dim"], 1e-6, c["frames"]
    w = lambda name: sd[P + name]
    ln = lambda x, name: F.layer_norm(x, (D,), w(name + ".weight"), w(name + ".bias"), eps)
    lin = lambda x, name: x @ w(name + ".weight").T + w(name + ".bias")
    x = F.conv3d(pixels, w("patch_embed_3d.proj.weight"), w("patch_embed_3d.proj.bias"),
                 stride=(c["tubelet"], c["patch"], c["patch"]))
    B = x.shape[0]
    x = x.flatten(2).transpose(1, 2)  # [B, F·N, D], (t, h, w) order
    N = c["grid"] ** 2
    pos = w("pos_embed")
    tok_pos = pos[:, 1:].repeat(1, F_, 1) + w("temp_embed").repeat_interleave(N, dim=1)
    cls = (w("cls_token") + pos[:, :1]).expand(B, 1, D)
    x = torch.cat([cls, x + tok_pos], 1)
    for i in range(c["depth"]):
        p = "blocks.%d." % i
        x = x + divided_attention(ln(x, p + "norm3"), w(p + "timeattn.qkv.weight"),
                                  w(p + "timeattn.qkv.bias"), w(p + "timeattn.proj.weight"),
                                  w(p + "timeattn.proj.bias"), heads, F_, True)
        x = x + divided_attention(ln(x, p + "norm1"), w(p + "attn.qkv.weight"),
                                  w(p + "attn.qkv.bias"), w(p + "attn.proj.weight"),
                                  w(p + "attn.proj.bias"), heads, F_, False)
        x = x + lin(F.gelu(lin(ln(x, p + "norm2"), p + "mlp.fc1")), p + "mlp.fc2")
    x = ln(x[:, 1:], "norm").reshape(B * F_, N, D)
    # spatial_attn_agg: pre-LN nn.TransformerEncoderLayer over [agg CLS; N tokens] per frame.
    a = "spatial_attn_agg."
    x = torch.cat([w(a + "cls_token").expand(B * F_, 1, D), x], 1)
    h = ln(x, a + "norm1")
    wi, bi = w(a + "self_attn.in_proj_weight"), w(a + "self_attn.in_proj_bias")
    q, k, v = [h @ wi[j * D:(j + 1) * D].T + bi[j * D:(j + 1) * D] for j in range(3)]
    d = D // heads
    split = lambda t: t.reshape(B * F_, N + 1, heads, d).transpose(1, 2)
    s = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d)
    att = (torch.softmax(s, -1) @ split(v)).transpose(1, 2).reshape(B * F_, N + 1, D)
    x = x + lin(att, a + "self_attn.out_proj")
    x = x + lin(F.gelu(lin(ln(x, a + "norm2"), a + "linear1")), a + "linear2")
    return x[:, 0].reshape(B, F_, D)


def load(path):
    sd = torch.load(path, map_location="cpu")
    return {k: v.double() for k, v in sd.items() if k.startswith(P)}


def features(ckpt, heads, frames):
    sd = load(ckpt)
    c = config(sd)
    seg = c["tubelet"] * c["frames"]
    stride = seg // 2
    pixels = preprocess(frames, c["image_size"])
    S = (len(frames) - seg) // stride + 1
    outs = []
    with torch.no_grad():
        for s in range(S):
            clip = pixels[s * stride:s * stride + seg].permute(1, 0, 2, 3)[None]
            outs.append(motionformer(sd, c, heads, clip)[0])
    return torch.cat(outs, 0)[None], pixels


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def main(argv):
    if len(argv) == 9 and argv[1] == "run":
        T, H, W = int(argv[5]), int(argv[6]), int(argv[7])
        frames = np.fromfile(argv[4], dtype=np.uint8).reshape(T, H, W, 3)
        out, _ = features(argv[2], int(argv[3]), frames)
        out.float().contiguous().numpy().astype("<f4").tofile(argv[8])
        return 0
    if len(argv) == 4 and argv[1] == "golden":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from reference_siglip2 import load_safetensors
        g = load_safetensors(os.path.join(argv[2], "tensors.safetensors"))
        out, pixels = features(os.path.join(argv[2], "checkpoints", "synchformer_state_dict.pth"),
                              int(argv[3]), g["frames25_rgb"].numpy())
        print("sync_pixels_first2 max abs %.3g" %
              float((pixels[:2] - g["sync_pixels_first2"].double()).abs().max()))
        print("sync_features rel %.3g" % rel(out, g["sync_features"]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
