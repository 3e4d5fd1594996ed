#!/usr/bin/python3
"""Weight files for the C++ reader tests, made with Debian's torch 1.13 (no safetensors package:
that format is read and written here with struct + json).

Usage:
  make_torch_files.py write DIR
      torch.save files and what torch says about them:
        flat.pth      flat state dict: bf16/f16/f32/f64/int/bool, non-contiguous, shared storage,
                      0-dim, empty, expanded (stride 0) and nn.Parameter values
        nested.pth    {"state_dict": OrderedDict, "metadata": {...}} (DAC's layout)
        module.pth    nn.Module.state_dict(), whose OrderedDict carries `_metadata` (BUILD)
        legacy.pth    the pre-1.6 non-zip format
        X.expected    for each X.pth: the exact stdout of `foley inspect X.pth`, with @FILE@ in
                      place of the path
        X.values.safetensors   contiguous copies of every tensor, for byte comparisons
        nested.extra.json      the non-tensor content as the C++ reader should render it
  make_torch_files.py zip64 SRC.pth DST.pth
      DST = SRC re-laid out with its storages past 4 GiB (a sparse hole) and ZIP64 records,
      checked with zipfile and torch.load
  make_torch_files.py golden FILE...
      for each file (.pth/.bin via torch.load, .safetensors via struct + json): one line
      "name<TAB>dtype<TAB>[shape]<TAB>bytes<TAB>sum<TAB>sum_abs" per tensor, after a "== FILE" line
  make_torch_files.py check_safetensors FILE OUT.pth
      checks FILE against the safetensors rules and foley's alignment (blob at 4096, tensors at
      256 within it), then torch.saves its tensors in file order to OUT.pth
"""
import collections
import json
import os
import struct
import sys

import torch

DTYPES = {
    torch.float32: ("F32", 4), torch.float64: ("F64", 8), torch.float16: ("F16", 2),
    torch.bfloat16: ("BF16", 2), torch.int64: ("I64", 8), torch.int32: ("I32", 4),
    torch.int16: ("I16", 2), torch.int8: ("I8", 1), torch.uint8: ("U8", 1),
    torch.bool: ("BOOL", 1),
}
BY_NAME = {name: (dtype, size) for dtype, (name, size) in DTYPES.items()}


def listing_line(name, t):
    dtype, size = DTYPES[t.dtype]
    shape = "[" + ", ".join(str(d) for d in t.shape) + "]"
    return f"{name}\t{dtype}\t{shape}\t{t.numel() * size}"


def tensor_bytes(t):
    # Through a byte view: numpy has no bfloat16.
    c = t.detach().contiguous()
    return c.view(-1).view(torch.uint8).numpy().tobytes() if c.numel() else b""


def write_safetensors(path, tensors, metadata=None):
    """Plain contiguous safetensors, as the reference writer lays it out."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        data = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype][0], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def expected_inspect(state, extra):
    # The tests put the file's final path in place of @FILE@ (the directory is a cache).
    lines = [f"# @FILE@ (torch-zip), {len(state)} tensors"]
    lines += [listing_line(k, v) for k, v in state.items()]
    total = sum(v.numel() * DTYPES[v.dtype][1] for v in state.values())
    lines.append(f"# total {total} bytes")
    for k in sorted(extra):
        lines.append(f"# metadata {k} = " + json.dumps(extra[k], sort_keys=True, ensure_ascii=False,
                                                        separators=(",", ":")))
    return "\n".join(lines) + "\n"


def flat_state():
    g = torch.Generator().manual_seed(7)
    base = torch.randn(64, generator=g)
    sd = collections.OrderedDict()
    sd["w_bf16"] = torch.randn(4, 6, generator=g).bfloat16()
    sd["w_f16"] = torch.randn(3, 5, generator=g).half()
    sd["w_f32"] = torch.randn(2, 3, 4, generator=g)
    sd["w_f64"] = torch.randn(5, generator=g).double()
    sd["idx_i64"] = torch.arange(-3, 4)
    sd["i32"] = torch.tensor([1, -2, 2**31 - 1], dtype=torch.int32)
    sd["i16"] = torch.tensor([-7, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127, 0], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    sd["mask_bool"] = torch.tensor([True, False, True, True])
    sd["transposed"] = torch.randn(5, 7, generator=g).t()
    sd["strided_slice"] = torch.randn(6, 8, generator=g)[:, 1::3]
    sd["view_a"] = base[4:20].view(4, 4)  # view_a and view_b share one storage
    sd["view_b"] = base[30:40]
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g).bfloat16())
    sd["rank5"] = torch.randn(2, 1, 2, 3, 2, generator=g).permute(4, 3, 2, 1, 0)
    return sd


def write_case(out, name, obj, state, extra):
    path = os.path.join(out, name + ".pth")
    torch.save(obj, path)
    with open(os.path.join(out, name + ".expected"), "w") as f:
        f.write(expected_inspect(state, extra))
    write_safetensors(os.path.join(out, name + ".values.safetensors"), state)


def write(out):
    flat = flat_state()
    write_case(out, "flat", flat, flat, {})

    g = torch.Generator().manual_seed(11)
    inner = collections.OrderedDict(
        [("encoder.weight_g", torch.randn(4, 1, 1, generator=g)),
         ("encoder.weight_v", torch.randn(4, 2, 3, generator=g))])
    meta = {"kwargs": {"rates": [2, 4, 8], "sample_rate": 48000, "continuous": True,
                       "none": None, "name": "dac", "ratio": 0.5, "pair": (1, 2),
                       "big": 2**40, "neg": -5, "unicode": "h\u00e9llo"}}
    write_case(out, "nested", {"state_dict": inner, "metadata": meta}, inner, {"metadata": meta})
    with open(os.path.join(out, "nested.extra.json"), "w") as f:
        json.dump({"metadata": meta}, f)

    torch.manual_seed(3)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    sd = module.state_dict()
    write_case(out, "module", sd, sd, {})

    torch.save(flat, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)


def make_zip64(src, dst, hole=(9 << 29)):
    """Rewrites a torch zip with its storages beyond 4 GiB (a sparse hole) and ZIP64 records.

    Every central entry past 4 GiB gets a ZIP64 extra field for its local header offset; the
    first storage also has its sizes moved there (placeholders 0xffffffff) to exercise the full
    field order; the end record defers to the ZIP64 end record with 0xffff/0xffffffff values.
    """
    import zipfile
    entries = []
    with zipfile.ZipFile(src) as z:
        for info in z.infolist():
            entries.append((info.filename, z.read(info.filename), info.CRC))
    central = b""
    with open(dst, "wb") as f:
        moved_sizes = False
        for name, data, crc in entries:
            if "/data/" in name and f.tell() < hole:
                f.seek(hole)
            offset = f.tell()
            raw = name.encode()
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, 0, 0, 0, crc, len(data),
                                len(data), len(raw), 0) + raw + data)
            extra, size_field, off_field = b"", len(data), offset
            if offset >= 1 << 32:
                values = []
                if not moved_sizes:
                    moved_sizes, size_field = True, 0xffffffff
                    values += [len(data), len(data)]
                values.append(offset)
                off_field = 0xffffffff
                extra = struct.pack("<HH", 1, 8 * len(values)) + struct.pack(
                    "<" + "Q" * len(values), *values)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 0, 0, 0, crc,
                                   size_field, size_field, len(raw), len(extra), 0, 0, 0, 0,
                                   off_field) + raw + extra
        cd_offset = f.tell()
        f.write(central)
        z64 = f.tell()
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, len(entries),
                            len(entries), len(central), cd_offset))
        f.write(struct.pack("<IIQI", 0x07064b50, 0, z64, 1))
        f.write(struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 0xffff, 0xffff, 0xffffffff,
                            0xffffffff, 0))
    # The archive must be a valid zip for an independent reader, and load in torch.
    with zipfile.ZipFile(dst) as z:
        assert z.testzip() is None
    reloaded = torch.load(dst)
    for k, v in torch.load(src).items():
        assert torch.equal(reloaded[k], v), k


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    return data, n, header


def golden(files):
    for path in files:
        print("==", path)
        if path.endswith(".safetensors"):
            data, n, header = read_safetensors(path)
            items = []
            for name, e in header.items():
                if name == "__metadata__":
                    continue
                dtype, _ = BY_NAME[e["dtype"]]
                b, end = e["data_offsets"]
                t = torch.frombuffer(bytearray(data[8 + n + b:8 + n + end]), dtype=dtype) \
                    if end > b else torch.zeros(0, dtype=dtype)
                items.append((b, name, t.reshape(e["shape"])))
            state = {name: t for _, name, t in sorted(items, key=lambda x: (x[0], x[1]))}
        else:
            obj = torch.load(path, map_location="cpu")
            state = obj["state_dict"] if "state_dict" in obj else obj
        for name, t in state.items():
            d = t.double()
            print(f"{listing_line(name, t)}\t{d.sum().item():.17g}\t{d.abs().sum().item():.17g}")


def check_safetensors(path, out):
    data, n, header = read_safetensors(path)
    assert (8 + n) % 4096 == 0, "blob not 4096-aligned"
    text = data[8:8 + n].decode()
    assert text.startswith("{") and text.rstrip(" ").endswith("}"), "header padding not spaces"
    meta = header.pop("__metadata__", {})
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    order = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    state, last = collections.OrderedDict(), 0
    for name, e in order:
        dtype, size = BY_NAME[e["dtype"]]
        b, end = e["data_offsets"]
        assert b % 256 == 0 and b >= last, f"{name}: misplaced at {b}"
        count = 1
        for d in e["shape"]:
            count *= d
        assert end - b == count * size, f"{name}: extent"
        raw = bytearray(data[8 + n + b:8 + n + end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.zeros(0, dtype=dtype)
        state[name] = t.reshape(e["shape"]).clone()
        last = end
    assert len(data) == 8 + n + last, "file length"
    torch.save(state, out)
    print("ok", len(state), json.dumps(meta, sort_keys=True))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "write":
        write(sys.argv[2])
    elif cmd == "zip64":
        make_zip64(sys.argv[2], sys.argv[3])
    elif cmd == "golden":
        golden(sys.argv[2:])
    elif cmd == "check_safetensors":
        check_safetensors(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
