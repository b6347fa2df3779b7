"""3D rotary position embedding (RoPE) at base-grid coordinates.

Every mode shares one coordinate system: the base token grid. A coarse token that covers ``s`` base tokens along an
axis sits at the centre of the base tokens it covers, ``i * s + (s - 1) / 2`` (FlexiDiT places each patch
at its coordinates in the original grid; RoPE takes fractional positions without any table interpolation).
"""
from __future__ import annotations

import functools

import torch


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Split ``head_dim`` into even (t, h, w) rotary sizes; time gets the remainder after equal h/w shares."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dim, got {head_dim}")
    pairs = head_dim // 2
    hw = pairs // 3
    return (2 * (pairs - 2 * hw), 2 * hw, 2 * hw)


def token_coordinates(grid: tuple[int, int, int], scale: tuple[int, int, int], device=None) -> torch.Tensor:
    """Base-grid coordinates of every token of a (T', H', W') grid whose tokens span ``scale`` base tokens.

    Returns:
        ``(N, 3)`` float32, tokens in (t, h, w) raster order.
    """
    axes = [torch.arange(n, device=device, dtype=torch.float32) * s + (s - 1) / 2 for n, s in zip(grid, scale)]
    tt, hh, ww = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3)


def rope_angles(coords: torch.Tensor, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for coordinates ``(N, 3)`` -> two ``(N, head_dim // 2)`` float32 tensors."""
    angles = []
    for axis, d in enumerate(axis_dims(head_dim)):
        if d == 0:
            continue
        freqs = theta ** (-torch.arange(0, d, 2, device=coords.device, dtype=torch.float32) / d)
        angles.append(coords[:, axis:axis + 1] * freqs)
    ang = torch.cat(angles, dim=-1)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of ``x (B, N, H, Dh)`` by tables ``(N, Dh/2)`` or ``(B, N, Dh/2)``; keeps x's dtype."""
    if cos.dim() == 2:
        cos, sin = cos[None], sin[None]
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    xf = x.float().unflatten(-1, (-1, 2))
    x1, x2 = xf[..., 0], xf[..., 1]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return out.to(x.dtype)


@torch.compiler.assume_constant_result
def rope_tables(grid: tuple[int, int, int], scale: tuple[int, int, int], head_dim: int, theta: float,
                device: str) -> torch.Tensor:
    """Cached cos/sin tables of a token grid, stacked ``(2, N, head_dim // 2)`` (``cos, sin = table.unbind(0)``):
    built once per (mode, shape, device) instead of on every forward (a sampler calls the model with the same few
    shapes many times). A function of its arguments only, so ``torch.compile`` takes the table as a constant of the
    graph instead of tracing its construction into every step (Dynamo does not see through the cache).

    Built outside inference mode so a table first made while sampling can still be used in training.
    """
    return _rope_tables(grid, scale, head_dim, theta, device)


@functools.lru_cache(maxsize=64)
def _rope_tables(grid, scale, head_dim, theta, device):
    with torch.inference_mode(False), torch.no_grad():
        return torch.stack(rope_angles(token_coordinates(grid, scale, torch.device(device)), head_dim, theta))


def sincos_embedding(pos: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer/DiT sin-cos features of positions ``(N,)`` -> ``(N, dim)`` float32, ``[sin | cos]``."""
    half = dim // 2
    freqs = max_period ** (-torch.arange(half, device=pos.device, dtype=torch.float32) / half)
    ang = pos.float()[:, None] * freqs
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


@torch.compiler.assume_constant_result
def abs_pos_table(grid: tuple[int, int, int], scale: tuple[int, int, int], dim: int, axes: str,
                  device: str) -> torch.Tensor:
    """Fixed absolute position embedding ``(N, dim)`` of a token grid at base-grid coordinates (patch centres),
    cached and a compile-time constant as ``rope_tables``.

    ``axes="t"``: every channel encodes the frame coordinate; ``"thw"``: channels split over (t, h, w) as
    ``axis_dims``. RoPE alone makes attention depend on relative offsets only; this tells each token where it is.
    """
    return _abs_pos_table(grid, scale, dim, axes, device)


@functools.lru_cache(maxsize=64)
def _abs_pos_table(grid, scale, dim, axes, device):
    if dim % 2:
        raise ValueError(f"absolute position embedding needs an even hidden size, got {dim}")
    with torch.inference_mode(False), torch.no_grad():
        coords = token_coordinates(grid, scale, torch.device(device))
        if axes == "t":
            return sincos_embedding(coords[:, 0], dim)
        if axes == "thw":
            return torch.cat([sincos_embedding(coords[:, a], d) for a, d in enumerate(axis_dims(dim))], dim=-1)
        raise ValueError(f"unknown absolute position axes {axes!r}; allowed: none, t, thw")
