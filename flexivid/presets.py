"""The one table of named sizes: model presets (trunk width, depth, heads) and weak-mode presets (patch multiples).

A mode preset is a multiple of the base patch, so ``coarse_time`` doubles the temporal patch of any base:
``preset_modes((1, 4, 4))`` is ``{"coarse_time": (2, 4, 4), "coarse_space": (1, 8, 8)}``.
"""
from __future__ import annotations

import dataclasses

# (hidden size, depth, heads). "reference" is DiT-XL's trunk; "paper_video" the FlexiDiT paper's latency-reference
# trunk (24 blocks, d=2048).
MODEL_PRESETS = {
    "tiny": dict(hidden_size=64, depth=2, num_heads=4),
    "small": dict(hidden_size=384, depth=6, num_heads=6),  # the shipped model: < 40 MB in bf16 with adapters
    "base": dict(hidden_size=768, depth=12, num_heads=12),
    "reference": dict(hidden_size=1152, depth=28, num_heads=16),
    "paper_video": dict(hidden_size=2048, depth=24, num_heads=16),
}

# Weak modes as multiples of the base patch (t, h, w): half the tokens in time, or a quarter in space.
MODE_PRESETS = {"coarse_time": (2, 1, 1), "coarse_space": (1, 2, 2)}


def apply_preset(cfg):
    """Return a copy of a ``ModelConfig`` with the preset's sizes filled in (a preset overrides the sizes)."""
    if cfg.preset is None:
        return dataclasses.replace(cfg)
    if cfg.preset not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {cfg.preset!r}; allowed: {', '.join(MODEL_PRESETS)}")
    return dataclasses.replace(cfg, **MODEL_PRESETS[cfg.preset])


def preset_modes(base, names=None) -> dict[str, tuple[int, int, int]]:
    """``{name: patch}`` of the mode presets ``names`` (default: all) for the base patch ``base``."""
    names = list(MODE_PRESETS) if names is None else list(names)
    unknown = [n for n in names if n not in MODE_PRESETS]
    if unknown:
        raise ValueError(f"unknown mode preset(s) {', '.join(unknown)}; allowed: {', '.join(MODE_PRESETS)} "
                         f"or name=t,h,w")
    return {n: tuple(b * k for b, k in zip(base, MODE_PRESETS[n])) for n in names}
