"""Precomputed training data: one safetensors file per clip with its latent and its text embedding.

This is how diffusion LoRAs are usually trained on large models: the autoencoder and the text encoder run once
(``tools/precompute_wan_latents.py`` for Wan, with the user's own VAE and T5), training reads only tensors. Every
``*.safetensors`` in ``data.root`` (sorted by name) is one clip with::

    latent     (C, T, H, W)  the autoencoder latent, normalised as the denoiser sees it
    text       (L, Dt)       text-encoder tokens, zero after the prompt (as the sampling pipeline pads them)
    text_mask  (L,)          bool, True for the prompt tokens
    metadata   {"caption": ...}
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from flexivid.config import ConfigError, DataConfig

KEYS = ("latent", "text", "text_mask")


def write_clip(path: str | Path, latent: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, caption: str,
               text_dtype: torch.dtype = torch.bfloat16) -> None:
    """Write one clip file atomically (a killed run never leaves a half-written clip). The latent is kept in float32
    (it is the regression target's source); the text embedding in ``text_dtype`` (the sampler feeds it in bf16)."""
    from safetensors.torch import save_file

    from flexivid.fileio import atomic_write

    tensors = {"latent": latent.detach().to("cpu", torch.float32).contiguous(),
               "text": text.detach().to("cpu", text_dtype).contiguous(),
               "text_mask": text_mask.detach().to("cpu", torch.bool).contiguous()}
    atomic_write(path, lambda p: save_file(tensors, p, metadata={"caption": caption}))


class LatentDataset(torch.utils.data.Dataset):
    """Items ``{"latent": float32 (C, T, H, W), "text": float32 (L, Dt), "text_mask": bool (L,), "caption": str}``."""

    def __init__(self, cfg: DataConfig):
        if not cfg.root:
            raise ConfigError("config error: 'data.root' is not set; set it to the folder of precomputed clips "
                              "(data.name: latents)")
        root = Path(cfg.root)
        if not root.is_dir():
            raise FileNotFoundError(f"data.root not found: {root} (write it with tools/precompute_wan_latents.py)")
        self.files = sorted(root.glob("*.safetensors"))
        if not self.files:
            raise FileNotFoundError(f"no *.safetensors clips in {root} (write them with "
                                    f"tools/precompute_wan_latents.py)")
        with safe_open(self.files[0], "pt") as f:
            missing = [k for k in KEYS if k not in f.keys()]
        if missing:
            raise ValueError(f"{self.files[0]} is not a precomputed clip: no {', '.join(missing)} "
                             f"(expected {', '.join(KEYS)}; see tools/precompute_wan_latents.py)")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        with safe_open(self.files[index], "pt") as f:
            item = {k: f.get_tensor(k) for k in KEYS}
            caption = (f.metadata() or {}).get("caption", "")
        return {"latent": item["latent"].float(), "text": item["text"].float(), "text_mask": item["text_mask"].bool(),
                "caption": caption}
