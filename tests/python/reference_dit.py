#!/usr/bin/python3
"""Reference HunyuanVideo-Foley MMDiT forward and Euler CFG sampler, in float32.

Written from shared/docs/model-spec.md (sections 2, 3 and the section 6 checklist), not from the
upstream code, so that it is an independent reading of the spec: it is first checked against the
golden case produced by the official implementation, then used as the oracle for the C++ tests on
tiny models of any size.

It loads the official checkpoint format (a flat bf16 state dict with the official key names) and
the official config.yaml. Tensors are exchanged with the C++ tests as safetensors files; torch
1.13 has no safetensors module, so the format is read and written here with struct/json/numpy.

Usage:
  reference_dit.py golden CASE_DIR
      checks dit_in_* -> dit_out_v and the sample stage against the golden tensors
  reference_dit.py forward CKPT CONFIG IN.safetensors OUT.safetensors
      IN holds x [B,128,Ta], t [B], clip [B,Tv,C], sync [B,S8,C], text [B,L,C]; OUT gets v
  reference_dit.py sample CKPT CONFIG IN.safetensors OUT.safetensors STEPS GUIDANCE
      IN holds noise [1,128,Ta], clip, sync, text, uncond_text (batch 1); OUT gets latent
  reference_dit.py text-only-case GOLDEN_CASE_DIR OUT_CASE_DIR SECONDS
      writes a golden case in the shared layout with one "text_only" stage: sound from the prompt
      alone, the visual and sync conditions being the learned empty features in both CFG rows at
      the lengths a 25 fps clip of SECONDS has (Tv = (T25-1)*8//25 + 1, S8 = ((T25-16)//8+1)*8);
      the text features, steps and guidance are the golden case's, the checkpoints linked to it
"""

import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
import yaml

# ---------------------------------------------------------------------------------------------
# safetensors without the safetensors package

_ST_DTYPES = {
    "F32": np.float32,
    "F64": np.float64,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "U8": np.uint8,
    "I8": np.int8,
}


def st_load(path):
    """All tensors of a safetensors file as float32/int numpy arrays (BF16 widened to F32)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    blob = data[8 + n :]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = blob[b:end]
        if e["dtype"] == "BF16":
            u16 = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=_ST_DTYPES[e["dtype"]])
        out[name] = arr.reshape(e["shape"]).copy()
    return out


def st_save(path, tensors):
    """Writes float32 tensors (numpy or torch) as a plain safetensors file."""
    header, chunks, off = {}, [], 0
    for name, t in tensors.items():
        a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        a = np.ascontiguousarray(a.astype(np.float32))
        raw = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def rel_err(a, b):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max())


# ---------------------------------------------------------------------------------------------
# checkpoint and config


def load_weights(pth_path):
    sd = torch.load(pth_path, map_location="cpu")
    if "state_dict" in sd and not torch.is_tensor(sd["state_dict"]):
        sd = sd["state_dict"]
    return {k: v.float() for k, v in sd.items()}


def load_config(yaml_path):
    with open(yaml_path) as f:
        kw = yaml.safe_load(f)["model_config"]["model_kwargs"]
    hidden, heads = int(kw["hidden_size"]), int(kw["num_heads"])
    assert kw.get("patch_size", 1) == 1 and kw.get("interleaved_audio_visual_rope", True)
    return {
        "hidden": hidden,
        "heads": heads,
        "head_dim": hidden // heads,
        "depth_triple": int(kw["depth_triple_blocks"]),
        "depth_single": int(kw["depth_single_blocks"]),
        "latent_dim": int(kw.get("audio_vae_latent_dim", 128)),
    }


# ---------------------------------------------------------------------------------------------
# building blocks (section 2.2 - 2.6)


def linear(x, sd, name, bias=True):
    return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias") if bias else None)


def layer_norm(x, eps):
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


def rms_norm(x, weight, eps):
    x32 = x.float()
    return x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def swiglu_linear(x, sd, name):
    return F.linear(F.silu(F.linear(x, sd[name + ".w1.weight"])) * F.linear(x, sd[name + ".w3.weight"]),
                    sd[name + ".w2.weight"])


def conv1d_tokens(x, weight, bias, pad):
    """x [B,T,C] -> Conv1d over T with a PyTorch [Co,Ci,K] weight, zero padding `pad`."""
    return F.conv1d(x.transpose(1, 2), weight, bias, padding=pad).transpose(1, 2)


def conv_mlp(x, sd, name, pad):
    w = lambda k: sd[f"{name}.{k}.weight"]
    h = F.silu(conv1d_tokens(x, w("w1"), None, pad)) * conv1d_tokens(x, w("w3"), None, pad)
    return conv1d_tokens(h, w("w2"), None, pad)


def timestep_embedding(t, dim=256, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [cos | sin]


def nearest_exact_index(n_out, n_in):
    """torch 'nearest-exact': src = min(floor((i + 0.5) * (n_in / n_out)), n_in - 1), F32 scale."""
    scale = np.float32(n_in) / np.float32(n_out)
    i = np.arange(n_out, dtype=np.float32)
    src = np.floor((i + np.float32(0.5)) * scale).astype(np.int64)
    return torch.from_numpy(np.minimum(src, n_in - 1))


def rope_table(positions, head_dim, theta=10000.0):
    """cos/sin [L, D] for adjacent-pair RoPE, already repeat_interleave(2)'d, in F32."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    ang = torch.outer(positions.float(), freqs)
    return ang.cos().repeat_interleave(2, dim=1), ang.sin().repeat_interleave(2, dim=1)


def apply_rope(x, table):
    """x [B,L,H,D]; pairs (x0,x1) -> (x0 c - x1 s, x1 c + x0 s)."""
    cos, sin = table
    x0, x1 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    rot = torch.stack([-x1, x0], dim=-1).flatten(3)
    return x.float() * cos[None, :, None, :] + rot * sin[None, :, None, :]


def sdpa(q, k, v):
    """q [B,Lq,H,D], k/v [B,Lk,H,D] -> [B,Lq,H*D], no mask, scale 1/sqrt(D)."""
    q, k, v = (a.transpose(1, 2) for a in (q, k, v))
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    o = (w @ v).transpose(1, 2)
    return o.flatten(2)


# ---------------------------------------------------------------------------------------------
# the model


class ReferenceDiT:
    def __init__(self, sd, cfg):
        self.sd, self.cfg = sd, cfg
        self.H, self.nh, self.D = cfg["hidden"], cfg["heads"], cfg["head_dim"]

    def heads(self, x):
        return x.unflatten(-1, (self.nh, self.D))

    def sync_path(self, sync, Ta):
        sd = self.sd
        B, S8, C = sync.shape
        s = (sync.view(B, S8 // 8, 8, C) + sd["sync_pos_emb"]).view(B, S8, C)
        s = F.silu(linear(s, sd, "sync_in.0"))
        s = conv_mlp(s, sd, "sync_in.2", pad=0)
        return s[:, nearest_exact_index(Ta, S8)]

    def triple_block(self, i, A, V, ctx_k, ctx_v, vec, ropes):
        sd, H = self.sd, self.H
        p = f"triple_blocks.{i}."
        Ta, Tv = A.shape[1], V.shape[1]
        ma = linear(F.silu(vec), sd, p + "audio_mod.linear")[:, None].chunk(9, dim=-1)
        mv = linear(F.silu(vec), sd, p + "v_cond_mod.linear")[:, None].chunk(9, dim=-1)

        # joint self-attention, token order [visual; audio]; qkv layout (K H D)
        def self_qkv(x, m, qkv, qn, kn):
            h = linear(modulate(layer_norm(x, 1e-6), m[0], m[1]), sd, p + qkv)
            q, k, v = (self.heads(c) for c in h.chunk(3, dim=-1))
            q = rms_norm(q, sd[p + qn + ".weight"], 1e-6)
            k = rms_norm(k, sd[p + kn + ".weight"], 1e-6)
            return q, k, v

        qa, ka, va = self_qkv(A, ma, "audio_self_attn_qkv", "audio_self_q_norm", "audio_self_k_norm")
        qv, kv, vv = self_qkv(V, mv, "v_cond_attn_qkv", "v_cond_attn_q_norm", "v_cond_attn_k_norm")
        qa, ka = apply_rope(qa, ropes["self_a"]), apply_rope(ka, ropes["self_a"])
        qv, kv = apply_rope(qv, ropes["self_v"]), apply_rope(kv, ropes["self_v"])
        o = sdpa(torch.cat([qv, qa], 1), torch.cat([kv, ka], 1), torch.cat([vv, va], 1))
        A = A + ma[2] * linear(o[:, Tv:], sd, p + "audio_self_proj")
        V = V + mv[2] * linear(o[:, :Tv], sd, p + "v_cond_self_proj")

        # cross-attention to text, queries [visual; audio]
        def cross_q(x, m, qname, nname, table):
            q = self.heads(linear(modulate(layer_norm(x, 1e-6), m[3], m[4]), sd, p + qname))
            return apply_rope(rms_norm(q, sd[p + nname + ".weight"], 1e-6), table)

        qa = cross_q(A, ma, "audio_cross_q", "audio_cross_q_norm", ropes["lin_a"])
        qv = cross_q(V, mv, "v_cond_cross_q", "v_cond_cross_q_norm", ropes["lin_v"])
        o = sdpa(torch.cat([qv, qa], 1), ctx_k[i], ctx_v[i])
        A = A + ma[5] * linear(o[:, Tv:], sd, p + "audio_cross_proj")
        V = V + mv[5] * linear(o[:, :Tv], sd, p + "v_cond_cross_proj")

        def mlp(x, m, name):
            h = modulate(layer_norm(x, 1e-6), m[6], m[7])
            h = F.gelu(linear(h, sd, p + name + ".fc1"), approximate="tanh")
            return m[8] * linear(h, sd, p + name + ".fc2")

        return A + mlp(A, ma, "audio_mlp"), V + mlp(V, mv, "v_cond_mlp")

    def single_block(self, i, x, vec_tok, rope):
        sd, nh, D = self.sd, self.nh, self.D
        p = f"single_blocks.{i}."
        m = linear(F.silu(vec_tok), sd, p + "modulation.linear").chunk(6, dim=-1)
        h = modulate(layer_norm(x, 1e-5), m[0], m[1])
        qkv = linear(h, sd, p + "linear_qkv")
        B, L, _ = qkv.shape
        qkv = qkv.view(B, L, nh, D, 3)  # (H D K): element-interleaved q/k/v
        q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
        eps = float(np.finfo(np.float32).eps)  # torch.nn.RMSNorm default, measured (spec 2.5)
        q = apply_rope(rms_norm(q, sd[p + "q_norm.weight"], eps), rope)
        k = apply_rope(rms_norm(k, sd[p + "k_norm.weight"], eps), rope)
        o = sdpa(q, k, v)
        x = x + m[2] * conv1d_tokens(o, sd[p + "linear1.weight"], sd[p + "linear1.bias"], 1)
        h = modulate(layer_norm(x, 1e-5), m[3], m[4])
        return x + m[5] * conv_mlp(h, sd, p + "linear2", pad=1)

    def context(self, clip, sync, text, Ta):
        """Timestep-independent work: text K/V per triple block, visual tokens, sync, RoPE."""
        sd, cfg = self.sd, self.cfg
        Tv, L = clip.shape[1], text.shape[1]
        cond = linear(F.silu(linear(text, sd, "cond_in.linear_1")), sd, "cond_in.linear_2")
        ks, vs = [], []
        for i in range(cfg["depth_triple"]):
            p = f"triple_blocks.{i}."
            k, v = (self.heads(c) for c in linear(cond, sd, p + "text_cross_kv").chunk(2, dim=-1))
            k = rms_norm(k, sd[p + "text_cross_k_norm.weight"], 1e-6)
            ks.append(apply_rope(k, rope_table(torch.arange(L), self.D)))
            vs.append(v)
        # interleaved audio-visual RoPE: audio i at 2i, visual j at 2*floor((j+.5)*Ta/Tv)+1
        vis_pos = 2 * nearest_exact_index(Tv, Ta) + 1
        ropes = {
            "self_a": rope_table(2 * torch.arange(Ta), self.D),
            "self_v": rope_table(vis_pos, self.D),
            "lin_a": rope_table(torch.arange(Ta), self.D),
            "lin_v": rope_table(torch.arange(Tv), self.D),
        }
        visual = swiglu_linear(clip, sd, "visual_proj")
        sync_a = self.sync_path(sync, Ta)
        return {"k": ks, "v": vs, "visual": visual, "sync_a": sync_a, "ropes": ropes}

    def forward(self, x, t, clip, sync, text, ctx=None):
        sd, cfg = self.sd, self.cfg
        Ta = x.shape[2]
        if ctx is None:
            ctx = self.context(clip, sync, text, Ta)
        vec = linear(F.silu(linear(timestep_embedding(t), sd, "time_in.mlp.0")), sd, "time_in.mlp.2")
        A = linear(x.transpose(1, 2), {"w.weight": sd["audio_embedder.proj.weight"][..., 0],
                                       "w.bias": sd["audio_embedder.proj.bias"]}, "w")
        A = A + ctx["sync_a"]
        V = ctx["visual"]
        for i in range(cfg["depth_triple"]):
            A, V = self.triple_block(i, A, V, ctx["k"], ctx["v"], vec, ctx["ropes"])
        vec_tok = ctx["sync_a"] + vec[:, None, :]
        for i in range(cfg["depth_single"]):
            A = self.single_block(i, A, vec_tok, ctx["ropes"]["lin_a"])
        # FinalLayer1D computes shift/scale from the per-token vec_tok ([B,Ta,H]) but passes them
        # to the official `modulate`, which silently drops 3-D shift/scale (it only unsqueezes 2-D
        # ones and sets anything else to None). The final layer is therefore LN -> Linear, and
        # final_layer.adaLN_modulation is dead weight. Found against the golden case: applying
        # the modulation as spec section 2.3 step 8 says gives 0.28 relative error.
        out = linear(layer_norm(A, 1e-6), sd, "final_layer.linear")
        return out.transpose(1, 2).contiguous()  # [B, 128, Ta]

    def sample(self, noise, clip, sync, text, uncond_text, steps, guidance):
        """Euler flow matching with CFG; batch [uncond, cond]; fp32 latent throughout."""
        sd = self.sd
        Tv, S8 = clip.shape[1], sync.shape[1]
        clip2 = torch.cat([sd["empty_clip_feat"][None].expand(1, Tv, -1), clip])
        sync2 = torch.cat([sd["empty_sync_feat"][None].expand(1, S8, -1), sync])
        text2 = torch.cat([uncond_text, text])
        ctx = self.context(clip2, sync2, text2, noise.shape[2])
        sigmas = torch.linspace(1, 0, steps + 1, dtype=torch.float32)
        x = noise.float()
        for i in range(steps):
            t = (sigmas[i] * 1000).expand(2)
            v = self.forward(torch.cat([x, x]), t, None, None, None, ctx)
            v = v[:1] + guidance * (v[1:] - v[:1])
            x = x + (sigmas[i + 1] - sigmas[i]) * v
        return x


# ---------------------------------------------------------------------------------------------
# command line


def _t(d, name):
    return torch.from_numpy(d[name]).float()


def run_golden(case_dir):
    case = json.load(open(f"{case_dir}/case.json"))
    g = st_load(f"{case_dir}/tensors.safetensors")
    ck = f"{case_dir}/checkpoints"
    model = ReferenceDiT(load_weights(f"{ck}/hunyuanvideo_foley.pth"), load_config(f"{ck}/config.yaml"))
    with torch.no_grad():
        v = model.forward(_t(g, "dit_in_x"), _t(g, "dit_in_t"), _t(g, "dit_in_clip"),
                          _t(g, "dit_in_sync"), _t(g, "dit_in_text"))
        e_dit = rel_err(v, g["dit_out_v"])
        lat = model.sample(_t(g, "sample_noise"), _t(g, "siglip2_features"), _t(g, "sync_features"),
                           _t(g, "text_feat"), _t(g, "uncond_text_feat"), case["steps"],
                           case["guidance"])
        e_sample = rel_err(lat, g["sample_latent"])
    print(f"dit_out_v rel {e_dit:.3e} (tol 1e-4); sample_latent rel {e_sample:.3e} (tol 1e-3)")
    return 0 if e_dit <= 1e-4 and e_sample <= 1e-3 else 1


def text_only_case(golden_dir, out_dir, seconds):
    import os
    case = json.load(open(f"{golden_dir}/case.json"))
    g = st_load(f"{golden_dir}/tensors.safetensors")
    ck = f"{golden_dir}/checkpoints"
    model = ReferenceDiT(load_weights(f"{ck}/hunyuanvideo_foley.pth"), load_config(f"{ck}/config.yaml"))
    t25 = int(round(seconds * 25))
    ta, tv, s8 = int(t25 / 25.0 * 50.0), (t25 - 1) * 8 // 25 + 1, ((t25 - 16) // 8 + 1) * 8
    gen = torch.Generator().manual_seed(1234)
    noise = torch.randn(1, 128, ta, generator=gen).to(torch.bfloat16).float()
    sd = model.sd
    clip = sd["empty_clip_feat"][None].expand(1, tv, -1).contiguous()
    sync = sd["empty_sync_feat"][None].expand(1, s8, -1).contiguous()
    with torch.no_grad():
        lat = model.sample(noise, clip, sync, _t(g, "text_feat"), _t(g, "uncond_text_feat"),
                           case["steps"], case["guidance"])
    os.makedirs(out_dir, exist_ok=True)
    if not os.path.exists(f"{out_dir}/checkpoints"):
        os.symlink(os.path.abspath(ck), f"{out_dir}/checkpoints")
    st_save(f"{out_dir}/tensors.safetensors",
            {"text_only_noise": noise, "text_feat": _t(g, "text_feat"),
             "uncond_text_feat": _t(g, "uncond_text_feat"), "text_only_latent": lat})
    out = {k: case[k] for k in ("seed", "steps", "guidance", "prompt", "negative_prompt")}
    out.update({"case": os.path.basename(out_dir), "text_only_seconds": seconds,
                "text_only_Tv": tv, "text_only_sync_len": s8, "text_only_Ta": ta,
                "made_by": "tests/python/reference_dit.py (from the spec), not the official code",
                "stages": {"text_only": {
                    "in": ["text_only_noise", "text_feat", "uncond_text_feat"],
                    "check": {"text_only_latent": "rel 1e-3"},
                    "what": "Euler CFG sampling with no video: empty_clip_feat [Tv] and "
                            "empty_sync_feat [S8] in both rows, the prompt's and the negative "
                            "prompt's text features"}}})
    json.dump(out, open(f"{out_dir}/case.json", "w"), indent=1)
    return 0


def main(argv):
    torch.set_num_threads(2)
    mode = argv[1]
    if mode == "golden":
        return run_golden(argv[2])
    if mode == "text-only-case":
        return text_only_case(argv[2], argv[3], float(argv[4]))
    model = ReferenceDiT(load_weights(argv[2]), load_config(argv[3]))
    d = st_load(argv[4])
    with torch.no_grad():
        if mode == "forward":
            out = {"v": model.forward(_t(d, "x"), _t(d, "t"), _t(d, "clip"), _t(d, "sync"), _t(d, "text"))}
        elif mode == "sample":
            out = {"latent": model.sample(_t(d, "noise"), _t(d, "clip"), _t(d, "sync"), _t(d, "text"),
                                          _t(d, "uncond_text"), int(argv[6]), float(argv[7]))}
        else:
            raise SystemExit(f"unknown mode {mode}")
    st_save(argv[5], out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
