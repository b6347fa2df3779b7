"""Distilling a diffusers Wan through flexivid's trainer (``tools/train.py`` with ``distill.diffusers_class``).

``build_wan_student(distill_cfg)`` loads the user's Wan (or builds one from ``distill.diffusers_config``), adds the
weak modes with one LoRA each, and returns a ``WanDenoiser``: the denoiser interface flexivid's training objective
calls, ``model(x_t, t, text, text_mask, mode)`` with flow time ``t`` in [0, 1] and the velocity ``noise - x0`` as
output. Wan uses the same flow convention with ``timestep = 1000 t`` (its FlowMatch / UniPC schedulers).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..models.modes import lora_specs
from .wan import FlexiWanTransformer
from .wan_export import save_flexified_wan


def load_wan(path: str | None, config: dict | None = None) -> nn.Module:
    """``WanTransformer3DModel`` from a local folder (a transformer folder, or a pipeline folder holding
    ``transformer/``), or built from ``config`` with random weights from seed 0 (tests, benchmarks)."""
    from diffusers import WanTransformer3DModel

    if path:
        root = Path(path)
        sub = "transformer" if (root / "transformer" / "config.json").is_file() else None
        if not ((root / sub) if sub else root).joinpath("config.json").is_file():
            raise FileNotFoundError(f"distill.diffusers_path {root} holds no Wan transformer (expected config.json "
                                    f"there or in transformer/, as in Wan-AI/Wan2.1-T2V-1.3B-Diffusers)")
        return WanTransformer3DModel.from_pretrained(root, subfolder=sub, local_files_only=True,
                                                     torch_dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return WanTransformer3DModel(**(config or {}))


class WanDenoiser(nn.Module):
    """A flexified Wan behind flexivid's denoiser interface (see the module docstring)."""

    def __init__(self, flexi: FlexiWanTransformer, base_path: str | None = None):
        super().__init__()
        self.flexi = flexi
        self.base_path = base_path

    @property
    def config(self):
        return self.flexi.config

    @property
    def modes(self) -> dict:
        return self.flexi.modes

    @property
    def mode_adapters(self):
        return self.flexi.mode_adapters

    def forward(self, x, t, text, text_mask=None, mode: str = "full") -> torch.Tensor:
        """``x (B, C, T, H, W)``, ``t (B,)`` in [0, 1], ``text (B, L, Dt)`` -> velocity ``(B, C, T, H, W)``."""
        if text_mask is not None:  # WanPipeline feeds zeros after the prompt
            text = text * text_mask[..., None].to(text.dtype)
        timestep = (torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1) * 1000).expand(x.shape[0])
        return self.flexi(x, timestep, text, mode=mode, return_dict=False)[0]

    def drop_text(self, text, text_mask, drop):
        """Caption dropout: a dropped sample gets an all-zero text (no prompt token; WanPipeline's padding).

        Wan has no learned null embedding; its guidance branch is a negative prompt, which distillation on captions
        covers. ``drop (B,)`` bool; returns ``(text, text_mask)``.
        """
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        drop = drop.to(text.device).bool()
        return (torch.where(drop[:, None, None], torch.zeros_like(text), text),
                text_mask.bool() & ~drop[:, None])

    def compile_blocks(self) -> None:
        """Regional ``torch.compile`` of the block stacks."""
        self.flexi.compile_blocks()

    def forward_flops(self, mode: str, latent_shape, text_len: int, batch: int = 1, lora_rank: int = 0) -> int:
        """FLOPs of one forward; ``lora_rank`` is ignored (the wrapper knows whether its adapters are merged)."""
        return self.flexi.forward_flops(mode, latent_shape, text_len, batch)

    def mode_parameters(self, mode: str) -> dict[str, nn.Parameter]:
        return {f"flexi.{n}": p for n, p in self.flexi.mode_parameters(mode).items()}

    def export(self, out_dir, spec) -> Path:
        """Write the weak modes (never Wan's own weights) for ``wan_export.load_flexified_wan``; of the run's
        ``ExportSpec`` only the provenance applies (the text encoder and VAE are the user's Wan's)."""
        return save_flexified_wan(self.flexi, out_dir, self.base_path, extra={"provenance": spec.provenance})


def build_wan_student(d) -> WanDenoiser:
    """The distillation student for ``distill`` config ``d`` (``diffusers_path`` / ``diffusers_config``, modes,
    LoRA rank/alpha); only the weak modes' parameters train."""
    if d.shared_weights:
        raise ValueError("distill.shared_weights is not supported for diffusers models (they are distilled with "
                         "one LoRA per mode); set it to false")
    flexi = FlexiWanTransformer(load_wan(d.diffusers_path, d.diffusers_config),
                                lora_specs(d.modes, d.lora_rank, d.lora_alpha))
    return WanDenoiser(flexi, d.diffusers_path)
