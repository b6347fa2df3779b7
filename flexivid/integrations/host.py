"""What every flexified diffusers transformer shares: the wrapped model's diffusers attributes, the mode table and
the layers each weak mode adds beside its LoRA (embeddings, de-embeddings, mode embedding)."""
from __future__ import annotations

import torch
from torch import nn

from ..models.modes import FULL, ModeSpec
from .layout import Patch


class FlexiHost(nn.Module):
    """Base of the wrappers: subclasses set ``transformer``, ``base`` (its patch) and ``specs`` (the mode table)."""

    transformer: nn.Module
    base: Patch
    specs: dict[str, ModeSpec]

    @property
    def config(self):
        return self.transformer.config

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def modes(self) -> dict[str, Patch]:
        return {FULL: self.base, **{m: s.patch for m, s in self.specs.items()}}

    def _mode_layers(self, mode: str) -> dict[str, nn.Parameter]:
        """This wrapper's own parameters of ``mode``: embeddings, de-embeddings and mode embedding."""
        return {n: p for n, p in self.named_parameters()
                if n == f"mode_embed.{mode}" or n.startswith((f"embed.{mode}.", f"deembed.{mode}."))}
