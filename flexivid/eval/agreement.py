"""Weak-vs-full agreement: how closely each weak mode reproduces the full mode's prediction (the distillation target).

Measured on held-out clips (test split: unseen caption combinations) noised with a fixed generator, so "before"
(the flexify initialisation) and "after" (trained adapters) see identical inputs.
"""
from __future__ import annotations

import torch

from ..config import DataConfig
from ..data.synthetic import SyntheticVideoDataset
from ..models.dit import FlexiVideoDiT
from ..training.losses import DiffusionObjective


def held_out_batch(text_encoder, num_clips: int, num_frames: int, height: int, width: int, seed: int = 0):
    """``num_clips`` test-split clips -> x0 ``(N, 3, T, H, W)``, text ``(N, L, D)``, mask ``(N, L)``."""
    ds = SyntheticVideoDataset(DataConfig(split="test", num_frames=num_frames, height=height, width=width,
                                          num_clips=num_clips, seed=seed))
    items = [ds[i] for i in range(num_clips)]
    text, mask = text_encoder.encode([it["caption"] for it in items])
    return torch.stack([it["video"] for it in items]), text, mask


@torch.no_grad()
def weak_vs_full_mse(model: FlexiVideoDiT, x0, text, mask, modes, seed: int = 0, batch_size: int = 8) -> dict:
    """Per weak mode: mean MSE between ``model(x_t, mode)`` and ``model(x_t, full)``, t ~ U(0, 1), fixed noise."""
    objective = DiffusionObjective(model, "distill", "uniform", caption_dropout=0.0)
    out = {}
    for mode in modes:
        g = torch.Generator().manual_seed(seed)
        losses = [objective(x0[i:i + batch_size], text[i:i + batch_size], mask[i:i + batch_size], g, mode).item()
                  * len(x0[i:i + batch_size]) for i in range(0, len(x0), batch_size)]
        out[mode] = sum(losses) / len(x0)
    return out
