"""Euler sampler for rectified flow, with the diffusers scheduler interface (``set_timesteps`` / ``step``)."""
from __future__ import annotations

import math

import torch

from .flow import shift_timesteps


class FlowEulerSampler:
    """Deterministic Euler integration of ``dx/dt = v`` from t = 1 (noise) to t = 0 (data).

    Usage::

        sampler = FlowEulerSampler(shift=1.0)
        sampler.set_timesteps(30)
        for i, t in enumerate(sampler.timesteps):
            x = sampler.step(model(x, t), i, x)
    """

    def __init__(self, shift: float = 1.0):
        if not (math.isfinite(shift) and shift > 0):  # NaN or <= 0 would turn every sample black
            raise ValueError(f"shift must be a finite number > 0, got {shift}")
        self.shift = shift
        self.timesteps = torch.empty(0)
        self.sigmas = torch.empty(0)

    def set_timesteps(self, num_steps: int, device=None) -> None:
        """Evenly spaced (then shifted) grid: ``timesteps (num_steps,)`` and ``sigmas (num_steps + 1,)`` ending at 0."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        grid = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
        self.sigmas = shift_timesteps(grid, self.shift).to(device=device, dtype=torch.float32)
        self.timesteps = self.sigmas[:-1]

    def step(self, model_output: torch.Tensor, step_index: int, sample: torch.Tensor) -> torch.Tensor:
        """One Euler step: ``x_{t_next} = x_t + (t_next - t) * v``; computed in float32, returned in sample's dtype."""
        dt = self.sigmas[step_index + 1] - self.sigmas[step_index]
        return (sample.float() + dt * model_output.float()).to(sample.dtype)
