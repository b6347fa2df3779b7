"""Exponential moving average of the trainable parameters, kept as a float32 copy.

``ema = d * ema + (1 - d) * param`` after optimizer step ``n`` (1-based), with the warm-up
``d = min(decay, (1 + n) / (10 + n))``: without it a short run (e.g. a 300-step distillation at decay 0.999) exports
weights that moved only 1 - 0.999^300 = 26% of the way from their initial values. The source is the optimizer's float32
master weight: under DeepSpeed bf16 (or ZeRO-3) the module only holds a bf16 copy (or a shard), so the full fp32
value is assembled with ``deepspeed.utils.safe_get_full_fp32_param`` (a collective: every rank calls
``update``). In fp32 with ZeRO-0/1/2 the module's parameters are the master weights and are read directly.
"""
from __future__ import annotations

import torch
from torch import nn


def full_fp32(param: nn.Parameter) -> torch.Tensor:
    """The full float32 value of a (possibly bf16 or ZeRO-3-partitioned) parameter."""
    if param.dtype == torch.float32 and not hasattr(param, "ds_id"):
        return param.detach()
    from deepspeed.utils import safe_get_full_fp32_param

    value = safe_get_full_fp32_param(param)
    if value is None:  # not managed by a DeepSpeed optimizer: the module copy is all there is
        return param.detach().float()
    return value.detach()


class EMA:
    """Float32 EMA of the named parameters ``params`` (name -> parameter), stored on the parameters' device."""

    def __init__(self, params: dict[str, nn.Parameter], decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.params = params
        self.shadow = {n: full_fp32(p).clone().float() for n, p in params.items()}

    def decay_at(self, step: int) -> float:
        """Decay used after optimizer step ``step`` (1-based): warm-up, then ``self.decay``."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the parameters after optimizer step ``step`` (1-based; a pure function of it, so resume is exact)."""
        d = self.decay_at(step)
        for n, p in self.params.items():
            self.shadow[n].lerp_(full_fp32(p).to(self.shadow[n].device), 1.0 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """CPU copies (checkpoints must not depend on the device they were written from)."""
        return {n: v.detach().cpu().clone() for n, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            diff = sorted(set(state) ^ set(self.shadow))[:4]
            raise ValueError(f"checkpoint EMA does not match this model's trainable parameters: {diff}")
        for n, v in state.items():
            self.shadow[n].copy_(v.to(self.shadow[n].device))
