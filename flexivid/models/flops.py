"""Analytic FLOPs of one FlexiVideoDiT forward, any mode and shape.

Multiplies and adds are counted separately (2 FLOPs per multiply-accumulate), as in FlexiDiT (App. C.1) and
``torch.utils.flop_counter``. Counted: every matmul-like op (patch embed conv, linear layers, attention QK^T and AV,
unmerged LoRA). Not counted: element-wise ops (norms, RoPE, activations, softmax), which FLOP conventions ignore.

``python -m flexivid.models.flops --preset reference --latent 4 16 32 32`` prints each mode's FLOPs and its ratio
to the full mode.
"""
from __future__ import annotations

import argparse
import math

from ..config import ModelConfig
from ..presets import apply_preset, preset_modes
from .patching import check_divisible


def forward_flops(cfg: ModelConfig, patch, latent_shape, text_len: int, batch: int = 1, lora_rank: int = 0) -> int:
    """FLOPs of one forward.

    Args:
        cfg: model config (preset applied inside).
        patch: the mode's patch size ``(pt, ph, pw)``.
        latent_shape: ``(C, T, H, W)`` of one sample.
        text_len: number of text tokens attended to (valid tokens; the null branch has 1).
        batch: samples in the batch.
        lora_rank: rank of an *unmerged* LoRA on self-attention qkv/proj and MLP fc1/fc2 (0 = none or merged).
    """
    cfg = apply_preset(cfg)
    c, t, h, w = latent_shape
    check_divisible((t, h, w), tuple(patch), str(tuple(patch)))
    n = (t // patch[0]) * (h // patch[1]) * (w // patch[2])
    d, dt, f = cfg.hidden_size, cfg.text_dim, int(cfg.hidden_size * cfg.mlp_ratio)
    pv = c * math.prod(patch)
    mm = lambda rows, din, dout: 2 * rows * din * dout  # noqa: E731
    total = mm(n, pv, d)  # patch embed (conv with kernel = stride)
    total += mm(1, 256, d) + mm(1, d, d) + mm(1, d, 6 * d)  # timestep MLP + adaLN-single
    total += mm(text_len, dt, d) + mm(text_len, d, d)  # caption projection
    per_block = (mm(n, d, 3 * d) + 2 * 2 * n * n * d + mm(n, d, d)  # self-attn: qkv, QK^T + AV, out
                 + mm(n, d, d) + mm(text_len, d, 2 * d) + 2 * 2 * n * text_len * d + mm(n, d, d)  # cross-attn
                 + mm(n, d, f) + mm(n, f, d))  # MLP
    if lora_rank:
        r = lora_rank
        per_block += sum(mm(n, a, r) + mm(n, r, b) for a, b in ((d, 3 * d), (d, d), (d, f), (f, d)))
    total += cfg.depth * per_block
    total += mm(n, d, pv)  # de-embed
    return batch * total


def mode_flops_table(cfg: ModelConfig, modes: dict, latent_shape, text_len: int, lora_rank: int = 0) -> dict:
    """{mode: (tokens, flops, ratio_to_full)}; weak modes carry the unmerged-LoRA cost when ``lora_rank`` > 0."""
    full = forward_flops(cfg, modes["full"], latent_shape, text_len)
    out = {}
    for name, patch in modes.items():
        n = math.prod(s // p for s, p in zip(latent_shape[1:], patch))
        fl = forward_flops(cfg, patch, latent_shape, text_len, lora_rank=0 if name == "full" else lora_rank)
        out[name] = (n, fl, fl / full)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="Per-mode forward FLOPs of a FlexiVideoDiT preset.")
    ap.add_argument("--preset", default="reference")
    ap.add_argument("--latent", type=int, nargs=4, default=[4, 16, 32, 32], metavar=("C", "T", "H", "W"))
    ap.add_argument("--patch", type=int, nargs=3, default=[1, 2, 2])
    ap.add_argument("--text-len", type=int, default=32)
    ap.add_argument("--lora-rank", type=int, default=0)
    a = ap.parse_args(argv)
    cfg = ModelConfig(preset=a.preset, in_channels=a.latent[0], patch_size=tuple(a.patch))
    base = tuple(a.patch)
    modes = {"full": base, **preset_modes(base)}
    print(f"preset={a.preset} latent={tuple(a.latent)} text_len={a.text_len} lora_rank={a.lora_rank}")
    print(f"{'mode':14s} {'patch':10s} {'tokens':>7s} {'GFLOPs':>10s} {'ratio':>6s}")
    for name, (n, fl, r) in mode_flops_table(cfg, modes, a.latent, a.text_len, a.lora_rank).items():
        print(f"{name:14s} {str(modes[name]):10s} {n:7d} {fl / 1e9:10.2f} {r:6.3f}")


if __name__ == "__main__":
    main()
