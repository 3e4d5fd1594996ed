#!/usr/bin/env python3
"""PyTorch baselines for BENCHMARKS.md, run on the same GPU in the same device call as foley's.

  torch_baseline.py MODEL_DIR [--compile] [--no-cold]

1. Loading: torch.load of MODEL_DIR/hunyuanvideo_foley.pth (what the official pipeline does),
   from a warm page cache and after evicting the file (posix_fadvise DONTNEED), then moving every
   tensor to the GPU.
2. The MMDiT forward in PyTorch bf16 with F.scaled_dot_product_attention: the reference written
   from the spec (tests/python/reference_dit.py) with its float32 oracle helpers swapped for the
   official dtype behaviour (RMSNorm and RoPE in fp32, cast back with type_as), weights and
   activations bf16, CFG batch 2, at Ta = 250 / 500 / 750 (5 / 10 / 15 s). Eager, and with
   --compile also torch.compile (compile time reported separately).
Output: "key value" lines, like bench/e2e_bench.
"""

import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))
import reference_dit as rd  # noqa: E402

DEV = "cuda"


def rms_norm(x, weight, eps):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


def apply_rope(x, table):
    cos, sin = table
    x32 = x.float()
    x0, x1 = x32.unflatten(-1, (-1, 2)).unbind(-1)
    rot = torch.stack([-x1, x0], dim=-1).flatten(3)
    return (x32 * cos[None, :, None, :] + rot * sin[None, :, None, :]).type_as(x)


def sdpa(q, k, v):
    # The single blocks' v is a stride-3 view of the interleaved qkv: flash attention needs a
    # contiguous last dim (the official code gets one from its rearrange).
    v = v if v.stride(-1) == 1 else v.contiguous()
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return o.transpose(1, 2).flatten(2)


_rope_table = rd.rope_table


def rope_table(positions, head_dim, theta=10000.0):
    return tuple(t.to(DEV) for t in _rope_table(positions, head_dim, theta))


def timestep_embedding(t, dim=256, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) *
                      torch.arange(0, half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(torch.bfloat16)


rd.rms_norm, rd.apply_rope, rd.sdpa = rms_norm, apply_rope, sdpa
rd.rope_table, rd.timestep_embedding = rope_table, timestep_embedding


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def out(key, value):
    print("%s %s" % (key, value), flush=True)


def timed_load(path, tag):
    t0 = time.perf_counter()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    t1 = time.perf_counter()
    sd = {k: v.to(DEV, non_blocking=False) for k, v in sd.items()}
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    out("torch_load_%s_s" % tag, "%.3f" % (t1 - t0))
    out("torch_to_cuda_%s_s" % tag, "%.3f" % (t2 - t1))
    return sd


def step_time(fn, n=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-cold", action="store_true")
    a = ap.parse_args()
    pth = os.path.join(a.model_dir, "hunyuanvideo_foley.pth")
    out("torch_version", torch.__version__)
    out("device", torch.cuda.get_device_name(0).replace(" ", "_"))
    t0 = time.perf_counter()
    torch.zeros(1, device=DEV)
    out("torch_cuda_init_s", "%.3f" % (time.perf_counter() - t0))
    if not a.no_cold:
        evict(pth)
        sd = timed_load(pth, "cold")
        del sd
        torch.cuda.empty_cache()
    sd = timed_load(pth, "warm")
    sd = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    cfg = rd.load_config(os.path.join(a.model_dir, "config.yaml"))
    model = rd.ReferenceDiT(sd, cfg)
    feat = sd["empty_clip_feat"].shape[-1]
    g = torch.Generator(device=DEV).manual_seed(0)
    bf = dict(device=DEV, dtype=torch.bfloat16, generator=g)
    for sec, ta, tv, s8 in ((5, 250, 40, 112), (10, 500, 80, 240), (15, 750, 120, 368)):
        with torch.no_grad():
            clip = torch.randn(2, tv, feat, **bf)
            sync = torch.randn(2, s8, feat, **bf)
            text = torch.randn(2, 77, feat, **bf)
            x = torch.randn(2, 128, ta, **bf)
            t = torch.full((2,), 735.0, device=DEV)
            ctx = model.context(clip, sync, text, ta)
            eager = step_time(lambda: model.forward(x, t, None, None, None, ctx))
            out("torch_eager_step_%ds_ms" % sec, "%.2f" % (eager * 1e3))
            if a.compile:
                fwd = torch.compile(model.forward)
                t0 = time.perf_counter()
                fwd(x, t, None, None, None, ctx)
                torch.cuda.synchronize()
                out("torch_compile_time_%ds_s" % sec, "%.1f" % (time.perf_counter() - t0))
                out("torch_compiled_step_%ds_ms" % sec,
                    "%.2f" % (step_time(lambda: fwd(x, t, None, None, None, ctx)) * 1e3))
    out("torch_peak_allocated_GB", "%.2f" % (torch.cuda.max_memory_allocated() / 1e9))
    return 0


if __name__ == "__main__":
    sys.exit(main())
