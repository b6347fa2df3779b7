"""Divergence stop: a run whose loss turns non-finite, or whose optimizer steps DeepSpeed keeps skipping, ends.

Checked after every optimizer step and before every checkpoint, so nothing non-finite is saved, exported or logged.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from ..errors import UserFacingError


class TrainingDiverged(UserFacingError):
    """The loss became non-finite or DeepSpeed skipped too many steps in a row; nothing of it was saved."""


class DivergenceGuard:
    """Counts skipped steps in a row and tests the loss; ``check`` says why the run must stop, or None."""

    def __init__(self, max_skipped: int):
        self.max_skipped, self.skipped_in_a_row = max_skipped, 0

    def check(self, loss: torch.Tensor, skipped: bool, world: int) -> str | None:
        """After one optimizer step: ``loss`` (0-dim, on device) and whether DeepSpeed skipped the update.

        Collective when ``world > 1`` (every rank calls it, so all stop together). One host sync per step;
        DeepSpeed's ZeRO optimizers already sync each step for their overflow check.
        """
        bad = (~torch.isfinite(loss)).float().reshape(1)
        if world > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        self.skipped_in_a_row = self.skipped_in_a_row + 1 if skipped else 0
        if bad.item():
            return "the loss is non-finite"
        if self.skipped_in_a_row >= self.max_skipped:
            return (f"DeepSpeed skipped {self.skipped_in_a_row} optimizer steps in a row (non-finite gradients; "
                    f"train.max_skipped_steps is {self.max_skipped})")
        return None


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors holding a NaN or an infinity."""
    return [n for n, v in tensors.items() if not torch.isfinite(v).all()]
