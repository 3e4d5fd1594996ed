"""Per-tensor seeded random state dicts and a dependency-free safetensors writer, shared by the
tiny encoder generators (siglip2.py, clap.py, synchformer.py).

Each tensor's values come from its own generator, seeded with the run's seed mixed with a CRC of
the tensor's name (the scheme of make_tiny_models.py and dit.py), so a tensor does not change
when others are added or removed. Scales keep activations O(1) like a trained model's: matmul and
conv weights ~ N(0, 1/fan_in), biases ~ N(0, 0.05²), norm weights ~ 1 + N(0, 0.1²), learned
embeddings and tokens ~ N(0, 0.1²) (token tables 0.5 so that tokens differ visibly).
"""

import collections
import json
import math
import struct
import zlib

import torch


class Maker:
    def __init__(self, seed):
        self.seed = seed
        self.sd = collections.OrderedDict()

    def _gen(self, name):
        return torch.Generator().manual_seed(self.seed * 1000003 + zlib.crc32(name.encode()))

    def normal(self, name, shape, std, mean=0.0):
        self.sd[name] = torch.randn(tuple(shape), generator=self._gen(name)) * std + mean

    def linear(self, name, n_out, n_in, bias=True):
        self.normal(name + ".weight", (n_out, n_in), 1.0 / math.sqrt(n_in))
        if bias:
            self.normal(name + ".bias", (n_out,), 0.05)

    def conv(self, name, n_out, in_shape):
        """A conv weight [n_out, *in_shape] (fan-in scaled) and its bias."""
        fan_in = 1
        for d in in_shape:
            fan_in *= d
        self.normal(name + ".weight", (n_out,) + tuple(in_shape), 1.0 / math.sqrt(fan_in))
        self.normal(name + ".bias", (n_out,), 0.05)

    def norm(self, name, n, bias=True):
        self.normal(name + ".weight", (n,), 0.1, mean=1.0)
        if bias:
            self.normal(name + ".bias", (n,), 0.05)


_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int64: "I64"}


def save_safetensors(state_dict, path, metadata=None):
    """Writes a safetensors file like safetensors.torch.save_file: keys sorted, data packed in
    that order, header padded with spaces to a multiple of 8 bytes."""
    def encode(t):
        raw = t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else \
            t.numpy().tobytes()
        return _ST_DTYPES[t.dtype], raw
    save_safetensors_raw(state_dict, path, encode, metadata)


def save_safetensors_raw(state_dict, path, encode, metadata=None):
    """save_safetensors with the bytes of each tensor from encode(tensor) -> (dtype name, bytes),
    for dtypes torch cannot hold (FP8)."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in sorted(state_dict):
        t = state_dict[name].contiguous()
        kind, raw = encode(t)
        header[name] = {"dtype": kind, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
