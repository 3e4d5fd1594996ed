"""PyTorch reference for the SigLIP2 semantic branch (model-spec §1.2), written from the spec
(no transformers), for testing foley's Siglip2Vision on configurations other than the golden one.

  reference_siglip2.py run SIGLIP2_DIR FRAMES.u8 T H W OUT.f32
      SIGLIP2_DIR holds model.safetensors + config.json (a SiglipModel, HF layout); FRAMES.u8 is
      raw RGB uint8 [T, H, W, 3]. Each frame: PIL bilinear stretch to image_size², /255,
      (x-0.5)/0.5; the vision tower (pre-LN layers, gelu_tanh MLP) -> post_layernorm -> MAP head
      (probe attends to the tokens, out_proj, residual LN MLP, token 0). Computed in float64;
      writes clip features [1, T, hidden] as raw little-endian float32.
  reference_siglip2.py golden CASE_DIR
      Runs the golden case's frames8_rgb through its checkpoints/siglip2 and prints
      max|ref - golden| / max|golden| for siglip2_pixels_first2 and siglip2_features.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

_NP = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "U8": np.uint8, "F16": np.float16}


def load_safetensors(path):
    """name -> torch tensor (F32/F64/I64/U8/F16/BF16) of a .safetensors file, read by hand."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    base, out = 8 + n, {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        raw = blob[base + a:base + b]
        if e["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            t = torch.from_numpy(u.view(np.float32).copy())
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=_NP[e["dtype"]]).copy())
        out[name] = t.reshape(e["shape"])
    return out


def preprocess(frames, size):
    """[T, H, W, 3] uint8 -> [T, 3, size, size] float64 in [-1, 1] (PIL bilinear stretch)."""
    out = []
    for f in frames:
        img = Image.fromarray(f).convert("RGB").resize((size, size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).double() / 255.0
        out.append((x - 0.5) / 0.5)
    return torch.stack(out)


def mha(q, k, v, heads):
    """Scaled dot-product attention over [B, L, D] inputs split into `heads` heads."""
    B, Lq, D = q.shape
    d = D // heads
    split = lambda t: t.view(B, t.shape[1], heads, d).transpose(1, 2)
    s = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d)
    return (torch.softmax(s, dim=-1) @ split(v)).transpose(1, 2).reshape(B, Lq, D)


def vision_tower(sd, cfg, pixels):
    H, heads, eps, p = cfg["hidden_size"], cfg["num_attention_heads"], cfg.get(
        "layer_norm_eps", 1e-6), cfg["patch_size"]
    w = lambda name: sd["vision_model." + name]
    ln = lambda x, name: F.layer_norm(x, (H,), w(name + ".weight"), w(name + ".bias"), eps)
    lin = lambda x, name: x @ w(name + ".weight").T + w(name + ".bias")
    gelu = lambda x: F.gelu(x, approximate="tanh")
    x = F.conv2d(pixels, w("embeddings.patch_embedding.weight"),
                 w("embeddings.patch_embedding.bias"), stride=p)
    x = x.flatten(2).transpose(1, 2) + w("embeddings.position_embedding.weight")
    for i in range(cfg["num_hidden_layers"]):
        l = "encoder.layers.%d." % i
        h = ln(x, l + "layer_norm1")
        a = mha(lin(h, l + "self_attn.q_proj"), lin(h, l + "self_attn.k_proj"),
                lin(h, l + "self_attn.v_proj"), heads)
        x = x + lin(a, l + "self_attn.out_proj")
        x = x + lin(gelu(lin(ln(x, l + "layer_norm2"), l + "mlp.fc1")), l + "mlp.fc2")
    x = ln(x, "post_layernorm")
    # MAP head: nn.MultiheadAttention(probe, x, x) with the packed [q; k; v] in_proj.
    wi, bi = w("head.attention.in_proj_weight"), w("head.attention.in_proj_bias")
    probe = w("head.probe").expand(x.shape[0], 1, H)
    q = probe @ wi[:H].T + bi[:H]
    k = x @ wi[H:2 * H].T + bi[H:2 * H]
    v = x @ wi[2 * H:].T + bi[2 * H:]
    h = lin(mha(q, k, v, heads), "head.attention.out_proj")
    h = h + lin(gelu(lin(ln(h, "head.layernorm"), "head.mlp.fc1")), "head.mlp.fc2")
    return h[:, 0]


def load(dir_):
    with open(os.path.join(dir_, "config.json")) as f:
        cfg = json.load(f)["vision_config"]
    sd = {k: v.double() for k, v in load_safetensors(os.path.join(dir_, "model.safetensors")).items()
          if k.startswith("vision_model.")}
    return sd, cfg


def features(dir_, frames):
    sd, cfg = load(dir_)
    pixels = preprocess(frames, cfg["image_size"])
    with torch.no_grad():
        return vision_tower(sd, cfg, pixels)[None], pixels


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def main(argv):
    if len(argv) == 8 and argv[1] == "run":
        T, H, W = int(argv[4]), int(argv[5]), int(argv[6])
        frames = np.fromfile(argv[3], dtype=np.uint8).reshape(T, H, W, 3)
        out, _ = features(argv[2], frames)
        out.float().contiguous().numpy().astype("<f4").tofile(argv[7])
        return 0
    if len(argv) == 3 and argv[1] == "golden":
        g = load_safetensors(os.path.join(argv[2], "tensors.safetensors"))
        out, pixels = features(os.path.join(argv[2], "checkpoints", "siglip2"),
                              g["frames8_rgb"].numpy())
        print("siglip2_pixels_first2 max abs %.3g" %
              float((pixels[:2] - g["siglip2_pixels_first2"].double()).abs().max()))
        print("siglip2_features rel %.3g" % rel(out, g["siglip2_features"]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
