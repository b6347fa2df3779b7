"""Rectified flow (flow matching): interpolation, velocity target, loss and timestep sampling.

Convention: ``x_t = (1 - t) * x0 + t * noise`` with ``t in [0, 1]`` and ``t = 1`` pure noise; the model predicts the
velocity ``v = noise - x0`` (SD3 / Open-Sora 2.0 style). Sampling integrates ``dx/dt = v`` from t = 1 to t = 0.
"""
from __future__ import annotations

import torch


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3's resolution shift ``t' = s t / (1 + (s - 1) t)``; ``shift > 1`` spends more steps at high noise."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def sample_timesteps(n: int, method: str = "logit_normal", device=None, generator: torch.Generator | None = None,
                     loc: float = 0.0, scale: float = 1.0, shift: float = 1.0) -> torch.Tensor:
    """Training timesteps ``(n,)`` in [0, 1]: ``logit_normal`` (SD3: sigmoid of N(loc, scale^2)) or ``uniform``,
    then SD3's ``shift_timesteps`` (``shift = 1``: off). The defaults draw exactly what they drew before the
    options existed (``0 + 1 * z`` is ``z`` in floating point)."""
    if method == "logit_normal":
        t = torch.sigmoid(loc + scale * torch.randn(n, generator=generator, device=device))
    elif method == "uniform":
        t = torch.rand(n, generator=generator, device=device)
    else:
        raise ValueError(f"unknown timestep sampling {method!r}; allowed: logit_normal, uniform")
    return shift_timesteps(t, shift)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x_t`` for clean ``x0 (B, C, T, H, W)``, ``noise`` like x0 and ``t (B,)``."""
    t = t.to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The flow-matching regression target ``noise - x0``."""
    return noise - x0


def flow_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error in float32 (bf16 predictions are upcast so the loss is not quantised)."""
    return torch.mean((pred.float() - target.float()) ** 2)


def predict_x0(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Clean-sample estimate from a velocity prediction: ``x0 = x_t - t * v``."""
    t = t.to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
    return x_t - t * v
