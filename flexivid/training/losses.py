"""Training objectives, as one module DeepSpeed can wrap: ``loss = objective(x0, text, text_mask, generator, mode)``.

* ``flow`` (pretraining, and the shared-weights distillation variant): rectified-flow velocity regression,
  ``x_t = (1 - t) x0 + t noise``, target ``noise - x0``, MSE (``flexivid.diffusion.flow``).
* ``distill`` (FlexiDiT LoRA variant): the same network in ``full`` mode (adapters off,
  no gradient) is the teacher; the student is ``mode``; loss ``MSE(student(x_t), teacher(x_t))`` on training
  clips noised to a sampled t.

Both apply caption dropout per sample (``FlexiVideoDiT.drop_text``). In distillation the same dropped text goes to
teacher and student, so the unconditional (null-text) branch is distilled too: guidance runs the weak mode on
both branches.

Caption dropout runs inside ``forward`` (not before calling the engine) so that under ZeRO-3 the null-text
parameter is gathered like every other parameter (the engine registers it as an external parameter).
"""
from __future__ import annotations

import torch
from torch import nn

from ..diffusion.flow import add_noise, flow_loss, sample_timesteps, velocity_target
from ..models.dit import FlexiVideoDiT

OBJECTIVES = ("flow", "distill")


def draw_noise(x0: torch.Tensor, generator: torch.Generator, timestep_sampling: str, caption_dropout: float,
               **timestep_kw):
    """Per-sample randomness of one micro-batch, in a fixed order from ``generator``; ``timestep_kw``: ``loc``,
    ``scale``, ``shift`` of ``sample_timesteps``.

    Returns ``drop (B,) bool``, ``t (B,) float32`` in (0, 1) and ``noise`` float32 shaped like ``x0 (B, C, T, H, W)``.
    """
    b, dev = x0.shape[0], x0.device
    drop = torch.rand(b, generator=generator, device=dev) < caption_dropout
    t = sample_timesteps(b, timestep_sampling, device=dev, generator=generator, **timestep_kw)
    noise = torch.randn(x0.shape, generator=generator, device=dev, dtype=torch.float32)
    return drop, t, noise


class DiffusionObjective(nn.Module):
    """Wraps a ``FlexiVideoDiT``; ``forward`` returns the scalar float32 loss of one micro-batch.

    Args:
        model: the network (its parameters are this module's parameters, under the ``model.`` prefix).
        objective: ``flow`` or ``distill`` (see the module docstring).
        timestep_sampling: ``logit_normal`` or ``uniform`` (``flexivid.diffusion.flow.sample_timesteps``).
        timestep_loc, timestep_scale: the logit-normal's mean and standard deviation (SD3's m and s).
        timestep_shift: SD3's shift applied to every draw (1: off).
        caption_dropout: probability of replacing a sample's caption by the null text.
        compute_dtype: dtype of the model's inputs (bf16 when DeepSpeed trains in bf16).
    """

    def __init__(self, model: FlexiVideoDiT, objective: str, timestep_sampling: str, caption_dropout: float,
                 compute_dtype: torch.dtype = torch.float32, timestep_loc: float = 0.0, timestep_scale: float = 1.0,
                 timestep_shift: float = 1.0):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
        self.model = model
        self.objective = objective
        self.timestep_sampling = timestep_sampling
        self.timestep_kw = {"loc": timestep_loc, "scale": timestep_scale, "shift": timestep_shift}
        self.caption_dropout = caption_dropout
        self.compute_dtype = compute_dtype

    def forward(self, x0: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, generator: torch.Generator,
                mode: str = "full") -> torch.Tensor:
        """``x0 (B, C, T, H, W)`` clean latents (float32), ``text (B, L, Dt)``, ``text_mask (B, L)`` bool."""
        drop, t, noise = draw_noise(x0, generator, self.timestep_sampling, self.caption_dropout, **self.timestep_kw)
        text, text_mask = self.model.drop_text(text.to(self.compute_dtype), text_mask, drop)
        x_t = add_noise(x0.float(), noise, t).to(self.compute_dtype)
        if self.objective == "flow":
            target = velocity_target(x0.float(), noise)
        else:
            with torch.no_grad():
                target = self.model(x_t, t, text, text_mask, mode="full")
        pred = self.model(x_t, t, text, text_mask, mode=mode)
        return flow_loss(pred, target)
