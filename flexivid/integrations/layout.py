"""Token layout of a weak mode on a causal video VAE's latent, shared by the diffusers integrations.

Causal video VAEs (Wan, LTX-Video) encode the first pixel frame alone into latent frame 0 and every later group of
frames into one latent frame, so ``T`` is odd for the usual clip lengths (Wan: 81 frames -> 21). Coarse-time tokens
leave latent frame 0 out: it keeps a temporal patch of 1 (with the mode's spatial patch) and frames ``1..T-1`` are
grouped by ``pt``, so every coarse token spans frames of equal length and no token is spent on a padded copy. This
applies when ``(T - 1) % pt == 0``; otherwise ``T % pt == 0`` groups all frames (latents not from a causal VAE);
otherwise the error names valid frame counts.

A layout is a tuple of segments ``(start, stop, kind)``: latent frames ``start..stop-1`` embedded with the mode's
``"body"`` patch, or with the ``"first"`` patch ``(1, ph, pw)``. Tokens are ordered segment by segment, each in
(t, h, w) raster order.
"""
from __future__ import annotations

import torch

from ..models.positions import token_coordinates

Patch = tuple[int, int, int]
Layout = tuple[tuple[int, int, str], ...]


def temporal_layout(shape: tuple[int, int, int], patch: Patch, mode: str) -> Layout:
    """The segments of a latent ``(T, H, W)`` in a mode with ``patch``; a one-line ValueError when it does not fit."""
    t, h, w = shape
    pt, ph, pw = patch
    for ax, n, p in (("H", h, ph), ("W", w, pw)):
        if n % p:
            raise ValueError(f"latent {ax}={n} is not divisible by mode '{mode}' patch {p}; use a height/width whose "
                             f"latent size is a multiple of {p} (Wan's VAE: pixel multiples of {8 * p})")
    if pt == 1 or (t - 1) % pt and t % pt == 0:
        return ((0, t, "body"),)
    if (t - 1) % pt == 0:
        return tuple(s for s in ((0, 1, "first"), (1, t, "body")) if s[1] > s[0])
    ok = ", ".join(str(k * pt + 1) for k in range(1, 4))
    raise ValueError(f"latent frames T={t} do not fit mode '{mode}' temporal patch {pt}: T-1 or T must be a multiple "
                     f"of {pt} (e.g. T={ok}; Wan's VAE gives T=(num_frames-1)/4+1, so num_frames=81 gives T=21)")


def segment_patch(patch: Patch, kind: str) -> Patch:
    return tuple(patch) if kind == "body" else (1, *patch[1:])


def segment_sizes(layout: Layout, patch: Patch, hw: tuple[int, int]) -> list[int]:
    """Tokens of each segment of a latent with spatial size ``hw``."""
    return [(e - s) // segment_patch(patch, k)[0] * (hw[0] // patch[1]) * (hw[1] // patch[2]) for s, e, k in layout]


def num_tokens(patch: Patch, thw: tuple[int, int, int], mode: str = "") -> int:
    """Tokens of one sample with latent ``(T, H, W)`` in a mode with ``patch``."""
    return sum(segment_sizes(temporal_layout(tuple(thw), tuple(patch), mode or str(patch)), patch, thw[1:]))


def layout_coordinates(layout: Layout, patch: Patch, base: Patch, hw: tuple[int, int]) -> torch.Tensor:
    """``(N, 3)`` float64 coordinates of the layout's tokens in base tokens: each token at the centre of the base
    tokens it covers (``positions.token_coordinates``); with the base patch they are the base grid's integers."""
    coords = []
    for start, stop, kind in layout:
        p = segment_patch(patch, kind)
        grid = ((stop - start) // p[0], hw[0] // p[1], hw[1] // p[2])
        c = token_coordinates(grid, tuple(a // b for a, b in zip(p, base))).double()
        c[:, 0] += start / base[0]
        coords.append(c)
    return torch.cat(coords)
