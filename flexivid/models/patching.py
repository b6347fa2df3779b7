"""Flexible 3D patch embedding and de-embedding (FlexiDiT for video).

The base kernel has patch size ``(pt, ph, pw)``. Every other mode (e.g. coarse-time ``(2,2,2)`` or coarse-space
``(1,4,4)``) gets its own Conv3d embed and de-embed linear, initialised from the base ones by a linear projection
built from the trilinear resize matrix:

* ``"paper"`` (FlexiDiT, the default): ``w' = B_{mode->base}^T w``. Invariant: ``<x, w'> = <B_{mode->base} x, w>``,
  i.e. a weak token of a mode-size patch equals the base token of its average-pooled copy.
* ``"pinv"`` (FlexiViT's PI-resize): ``w' = pinv(B_{base->mode}^T) w``. Invariant: ``<B_{base->mode} x, w'> = <x, w>``
  for every base-size patch ``x`` (exact when upsampling).

In time (1 -> 2 frames) both forms halve and duplicate the kernel. The de-embedding of a mode is initialised as
``W_de' = U_{base->mode} W_de`` (per output channel), so a weak token's output patch starts as the trilinear
upsample of the base output patch of the same token.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

Patch = tuple[int, int, int]


@functools.lru_cache(maxsize=None)
def _resize_matrix_1d(n_src: int, n_dst: int) -> torch.Tensor:
    """(n_dst, n_src) float64 matrix of 1D linear resize (align_corners=False, no antialias)."""
    eye = torch.eye(n_src, dtype=torch.float64).view(n_src, 1, n_src)
    out = F.interpolate(eye, size=n_dst, mode="linear", align_corners=False)  # (n_src, 1, n_dst): row i = resize(e_i)
    # Rebuild from values: a transposed (n, 1) view keeps odd strides that torch.kron cannot view.
    return torch.tensor(out[:, 0, :].T.tolist(), dtype=torch.float64)


@functools.lru_cache(maxsize=None)
def resize_matrix(src: Patch, dst: Patch) -> torch.Tensor:
    """Trilinear resize of a patch from shape ``src`` to ``dst`` as a matrix.

    Returns:
        ``B`` of shape ``(prod(dst), prod(src))``, float64, acting on patches flattened in (t, h, w) order.
        Built separably (``B_t ⊗ B_h ⊗ B_w``); equal to ``F.interpolate(..., mode="trilinear",
        align_corners=False)`` applied to every basis patch.
    """
    bt, bh, bw = (_resize_matrix_1d(s, d) for s, d in zip(src, dst))
    return torch.kron(bt, torch.kron(bh, bw))


@functools.lru_cache(maxsize=None)
def embed_projection(base: Patch, mode: Patch, form: str = "paper") -> torch.Tensor:
    """Matrix ``P`` of shape ``(prod(mode), prod(base))`` with ``w_mode = P @ w_base`` (per in-channel, per output dim).

    Computed once per (base, mode, form) and cached.
    """
    if form == "paper":
        return resize_matrix(mode, base).T.contiguous()
    if form == "pinv":
        return torch.linalg.pinv(resize_matrix(base, mode).T).contiguous()
    raise ValueError(f"unknown projection form {form!r}; allowed: 'paper', 'pinv'")


def project_embed_kernel(weight: torch.Tensor, base: Patch, mode: Patch, form: str = "paper") -> torch.Tensor:
    """Project a Conv3d embed kernel ``(D, C, *base)`` to ``(D, C, *mode)`` (computed in float64)."""
    d, c = weight.shape[:2]
    p = embed_projection(tuple(base), tuple(mode), form).to(weight.device)  # the cached matrix lives on the CPU
    w = weight.detach().to(torch.float64).reshape(d, c, -1)
    return torch.einsum("mb,dcb->dcm", p, w).reshape(d, c, *mode).to(weight.dtype)


def project_deembed(weight: torch.Tensor, bias: torch.Tensor, channels: int, base: Patch, mode: Patch):
    """Project the de-embed linear ``(C*prod(base), D)`` + bias to the mode patch by trilinear upsampling.

    Output features are ordered ``(c, pt, ph, pw)``. Returns ``(weight (C*prod(mode), D), bias (C*prod(mode),))``.
    """
    u = resize_matrix(tuple(base), tuple(mode)).to(weight.device)  # (n_mode, n_base)
    w = weight.detach().to(torch.float64).reshape(channels, -1, weight.shape[1])
    b = bias.detach().to(torch.float64).reshape(channels, -1)
    w_new = torch.einsum("mb,cbd->cmd", u, w).reshape(-1, weight.shape[1])
    b_new = torch.einsum("mb,cb->cm", u, b).reshape(-1)
    return w_new.to(weight.dtype), b_new.to(bias.dtype)


def check_divisible(shape: tuple[int, int, int], patch: Patch, mode: str) -> None:
    """Raise a ValueError naming the shape, mode and allowed sizes when (T, H, W) is not divisible by ``patch``."""
    bad = [(ax, n, p) for ax, n, p in zip("THW", shape, patch) if n % p]
    if bad:
        ax, n, p = bad[0]
        raise ValueError(
            f"latent (T, H, W) = {tuple(shape)} is not divisible by mode '{mode}' patch (t, h, w) = {tuple(patch)}: "
            f"{ax}={n} must be a multiple of {p} (e.g. {ax}={max(p, n - n % p)})")


class FlexiPatchEmbed(nn.Module):
    """3D patch embedding with one Conv3d per named mode; the ``full`` mode holds the base kernel.

    ``forward(x (B, C, T, H, W), mode) -> (tokens (B, N, D), grid (T', H', W'))``.
    """

    def __init__(self, in_channels: int, dim: int, base: Patch):
        super().__init__()
        self.in_channels, self.dim, self.base = in_channels, dim, tuple(base)
        self.proj = nn.ModuleDict({"full": nn.Conv3d(in_channels, dim, self.base, stride=self.base)})

    def add_mode(self, name: str, patch: Patch, form: str = "paper") -> None:
        """Add a mode whose kernel is the projection of the current base kernel."""
        patch = tuple(int(p) for p in patch)
        if any(p % b for p, b in zip(patch, self.base)):
            raise ValueError(f"mode '{name}' patch {patch} must be an integer multiple of the base patch {self.base}")
        base = self.proj["full"]
        conv = nn.Conv3d(self.in_channels, self.dim, patch, stride=patch).to(base.weight.device, base.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(project_embed_kernel(base.weight, self.base, patch, form))
            conv.bias.copy_(base.bias)
        self.proj[name] = conv

    def forward(self, x: torch.Tensor, mode: str):
        # kernel == stride, so the conv is one matmul over flattened patches; computing it that way avoids slow
        # Conv3d paths (CPU kernels with pt > 1) and gives the same numbers as F.conv3d.
        conv = self.proj[mode]
        pt, ph, pw = conv.kernel_size
        grid = (x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw)
        patches = rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)
        return F.linear(patches, conv.weight.flatten(1), conv.bias), grid


class FlexiDeEmbed(nn.Module):
    """Per-mode final linear + unpatchify: tokens ``(B, N, D)`` -> video ``(B, C, T, H, W)``."""

    def __init__(self, dim: int, out_channels: int, base: Patch):
        super().__init__()
        self.dim, self.out_channels, self.base = dim, out_channels, tuple(base)
        self.linear = nn.ModuleDict({"full": nn.Linear(dim, out_channels * math.prod(self.base))})

    def add_mode(self, name: str, patch: Patch) -> None:
        patch = tuple(int(p) for p in patch)
        base = self.linear["full"]
        lin = nn.Linear(self.dim, self.out_channels * math.prod(patch)).to(base.weight.device, base.weight.dtype)
        with torch.no_grad():
            w, b = project_deembed(base.weight, base.bias, self.out_channels, self.base, patch)
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        self.linear[name] = lin

    def forward(self, tokens: torch.Tensor, mode: str, grid: tuple[int, int, int], patch: Patch) -> torch.Tensor:
        """``patch``: the mode's patch (the model's mode table holds it)."""
        pt, ph, pw = patch
        x = self.linear[mode](tokens)
        t, h, w = grid
        return rearrange(x, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)",
                         t=t, h=h, w=w, pt=pt, ph=ph, pw=pw)
