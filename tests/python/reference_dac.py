#!/usr/bin/python3
"""Reference DAC-VAE decoder (HunyuanVideo-Foley's vae_128d_48k), float32.

Written from shared/docs/model-spec.md section 1.5 (and the DAC key list of section 4), not from
the upstream code: weight norm is applied with the explicit formula W = g * v / ||v|| (norm over
every dim except dim 0, which for ConvTranspose1d's [in, out, k] weight is `in`), and the network
is a plain sequence of torch.nn.functional calls. It is first checked against the golden case
produced by the official implementation, then used as the oracle for the C++ tests on tiny
models of any size.

Tensors are exchanged with the C++ tests as safetensors files; torch 1.13 has no safetensors
module, so the format is read and written here with struct/json/numpy.

Usage:
  reference_dac.py golden CASE_DIR
      decodes dac_in_latent with the case's vae_128d_48k.pth and compares with dac_out_audio
  reference_dac.py decode VAE.pth OUT.safetensors FRAMES SEED
      decodes a seeded random latent [1, 128, FRAMES] (standard normal); OUT gets
      "latent" [1, 128, FRAMES] and "audio" [1, 1, FRAMES * hop]
  reference_dac.py make-case VAE.pth CASE_DIR FRAMES SEED
      writes a golden case folder in the shared/golden layout with a "dac" stage (and an
      "unregistered" stage nobody implements), for testing the golden runner on any folder
"""

import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# safetensors without the safetensors package

_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "U8": np.uint8}


def st_load(path, names=None):
    """Tensors of a safetensors file as numpy arrays (only `names` if given)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    blob = data[8 + n :]
    out = {}
    for name, e in header.items():
        if name == "__metadata__" or (names is not None and name not in names):
            continue
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(blob[b:end], dtype=_ST_DTYPES[e["dtype"]]).reshape(e["shape"])
    return out


def st_save(path, tensors):
    """Writes float32 numpy arrays as a safetensors file (tensor data 8-byte aligned)."""
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)


# ---------------------------------------------------------------------------------------------
# the decoder


def load_vae(path):
    """(state_dict, kwargs) of an official vae_128d_48k.pth."""
    ckpt = torch.load(path, map_location="cpu")
    return ckpt["state_dict"], ckpt["metadata"]["kwargs"]


def wn_weight(sd, prefix):
    """Weight-norm reconstruction W = g * v / ||v||, the norm over all dims except dim 0."""
    g = sd[prefix + ".weight_g"]
    v = sd[prefix + ".weight_v"]
    dtype = v.dtype
    g, v = g.double(), v.double()
    norm = v.reshape(v.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))
    return (g * v / norm).to(dtype)


def snake(x, alpha):
    """x + 1/(alpha + 1e-9) * sin(alpha x)^2, alpha [1, C, 1]."""
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


def wn_conv(sd, prefix, x, dilation=1, padding=0):
    return F.conv1d(x, wn_weight(sd, prefix), sd[prefix + ".bias"], dilation=dilation, padding=padding)


def residual_unit(sd, prefix, x, dilation):
    y = snake(x, sd[prefix + ".block.0.alpha"])
    y = wn_conv(sd, prefix + ".block.1", y, dilation=dilation, padding=3 * dilation)
    y = snake(y, sd[prefix + ".block.2.alpha"])
    y = wn_conv(sd, prefix + ".block.3", y)
    # The official unit crops x symmetrically when y is shorter; with "same" padding the lengths
    # always match, so the crop never happens here.
    crop = (x.shape[-1] - y.shape[-1]) // 2
    if crop > 0:
        x = x[..., crop:-crop]
    return x + y


def decode(sd, kwargs, z):
    """z [B, latent_dim, T] float32 -> audio [B, 1, T * prod(rates)]."""
    x = F.conv1d(z, sd["post_quant_conv.weight"], sd["post_quant_conv.bias"])
    x = wn_conv(sd, "decoder.model.0", x, padding=3)
    for i, s in enumerate(kwargs["decoder_rates"]):
        p = "decoder.model.%d.block" % (i + 1)
        x = snake(x, sd[p + ".0.alpha"])
        x = F.conv_transpose1d(
            x,
            wn_weight(sd, p + ".1"),
            sd[p + ".1.bias"],
            stride=s,
            padding=math.ceil(s / 2),
            output_padding=s % 2,
        )
        for j, d in enumerate((1, 3, 9)):
            x = residual_unit(sd, "%s.%d" % (p, j + 2), x, d)
    n = len(kwargs["decoder_rates"])
    x = snake(x, sd["decoder.model.%d.alpha" % (n + 1)])
    x = wn_conv(sd, "decoder.model.%d" % (n + 2), x, padding=3)
    return torch.tanh(x)


def max_rel(ours, ref):
    return float(np.abs(ours.astype(np.float64) - ref).max() / np.abs(ref).max())


def main(argv):
    torch.set_grad_enabled(False)
    torch.set_num_threads(2)
    if len(argv) >= 2 and argv[1] == "golden":
        case = argv[2]
        sd, kwargs = load_vae(case + "/checkpoints/vae_128d_48k.pth")
        t = st_load(case + "/tensors.safetensors", {"dac_in_latent", "dac_out_audio"})
        audio = decode(sd, kwargs, torch.from_numpy(t["dac_in_latent"].copy())).numpy()
        err = max_rel(audio, t["dac_out_audio"])
        print("dac_out_audio rel %.3g (shape %s)" % (err, list(audio.shape)))
        return 0 if err <= 1e-4 else 1
    if len(argv) == 6 and argv[1] == "decode":
        sd, kwargs = load_vae(argv[2])
        frames, seed = int(argv[4]), int(argv[5])
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(1, kwargs["latent_dim"], frames, generator=gen)
        audio = decode(sd, kwargs, z)
        st_save(argv[3], {"latent": z.numpy(), "audio": audio.numpy()})
        return 0
    if len(argv) == 6 and argv[1] == "make-case":
        vae, case, frames, seed = argv[2], argv[3], int(argv[4]), int(argv[5])
        sd, kwargs = load_vae(vae)
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(1, kwargs["latent_dim"], frames, generator=gen)
        audio = decode(sd, kwargs, z)
        os.makedirs(case + "/checkpoints", exist_ok=True)
        shutil.copyfile(vae, case + "/checkpoints/vae_128d_48k.pth")
        st_save(case + "/tensors.safetensors", {"dac_in_latent": z.numpy(), "dac_out_audio": audio.numpy()})
        stages = {
            "unregistered": {"in": [], "check": {"unregistered_out": "rel 1e-4"}},
            "dac": {"in": ["dac_in_latent"], "check": {"dac_out_audio": "rel 1e-4"}},
        }
        with open(case + "/case.json", "w") as f:
            json.dump({"case": os.path.basename(case), "Ta": frames, "stages": stages}, f, indent=1)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
