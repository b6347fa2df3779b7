"""Autoencoders between videos and the latents the DiT works on. Latent scaling lives here and nowhere else.

Common interface (both are frozen ``nn.Module``s; move them with ``.to(device)``)::

    latents = ae.encode(video)    # (B, 3, T, H, W) in [-1, 1] -> (B, C', T / tf, H / sf, W / sf), already scaled
    video = ae.decode(latents)    # the inverse, (B, 3, T, H, W) in about [-1, 1]
    ae.latent_channels, ae.spatial_factor, ae.temporal_factor

* ``PixelAutoencoder``: the identity (C' = 3, factors 1); the default, needs no weights.
* ``DiffusersVAE(path)``: a user's diffusers ``AutoencoderKL`` (image VAE) from a local folder, applied frame by
  frame. Latents are ``(z - shift_factor) * scaling_factor`` so the DiT sees roughly unit variance; ``decode``
  undoes it. diffusers is optional and imported only here.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from flexivid.config import AutoencoderConfig, ConfigError

DIFFUSERS_PIP = "pip install diffusers"


def _check_video(x: torch.Tensor, what: str) -> None:
    if x.ndim != 5:
        raise ValueError(f"{what} expects a batch (B, C, T, H, W), got shape {tuple(x.shape)}")


class PixelAutoencoder(nn.Module):
    """Identity autoencoder: the DiT works directly on RGB pixels in [-1, 1]."""

    latent_channels = 3
    spatial_factor = 1
    temporal_factor = 1

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> the same tensor."""
        _check_video(video, "PixelAutoencoder.encode")
        return video

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> the same tensor."""
        _check_video(latents, "PixelAutoencoder.decode")
        return latents


class DiffusersVAE(nn.Module):
    """A diffusers ``AutoencoderKL`` loaded from a local folder, applied frame-wise (T folded into the batch).

    ``path`` is the VAE folder itself (``config.json`` + weights) or a pipeline folder with a ``vae/`` subfolder.
    ``scaling_factor`` overrides the VAE config's value (``autoencoder.scaling_factor``); a ``shift_factor`` in
    the VAE config (SD3/FLUX-style VAEs) is subtracted before scaling. ``encode`` uses the posterior mean
    (deterministic latents) unless ``sample=True``. ``frame_chunk`` bounds how many frames go through at once.
    """

    temporal_factor = 1

    def __init__(self, path: str, scaling_factor: float | None = None, frame_chunk: int = 32):
        super().__init__()
        try:
            from diffusers import AutoencoderKL
        except ImportError:
            raise ImportError(f"autoencoder.kind: vae needs the diffusers package: {DIFFUSERS_PIP} "
                              f"(or use autoencoder.kind: pixel)") from None
        if not os.path.isdir(path):
            raise FileNotFoundError(f"VAE folder not found: {path} (set 'autoencoder.path' to a local diffusers "
                                    f"AutoencoderKL folder)")
        subfolder = "vae" if not os.path.isfile(os.path.join(path, "config.json")) and os.path.isdir(
            os.path.join(path, "vae")) else None
        self.vae = AutoencoderKL.from_pretrained(path, subfolder=subfolder, local_files_only=True)
        self.vae.eval().requires_grad_(False)  # frozen: the DiT trains on its latents
        cfg = self.vae.config
        self.latent_channels = int(cfg.latent_channels)
        self.spatial_factor = 2 ** (len(cfg.block_out_channels) - 1)  # one 2x downsample per extra block
        scale = scaling_factor if scaling_factor is not None else getattr(cfg, "scaling_factor", None)
        if scale is None:
            raise ConfigError(f"config error: the VAE at {path} has no scaling_factor in its config; set "
                              f"'autoencoder.scaling_factor' (about 1 / std of its latents)")
        self.scaling_factor = float(scale)
        self.shift_factor = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.frame_chunk = frame_chunk

    def _frames(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), t  # (B*T, C, H, W)

    @staticmethod
    def _video(x: torch.Tensor, t: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4).contiguous()  # (B, C, T, H, W)

    @torch.no_grad()
    def encode(self, video: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> scaled latents (B, C', T, H / f, W / f)."""
        _check_video(video, "DiffusersVAE.encode")
        h, w = video.shape[-2:]
        if h % self.spatial_factor or w % self.spatial_factor:
            raise ValueError(f"VAE needs height and width divisible by {self.spatial_factor}, got {h}x{w}; "
                             f"change data.height/data.width")
        frames, t = self._frames(video.to(self.vae.dtype))
        out = []
        for chunk in frames.split(self.frame_chunk):
            dist = self.vae.encode(chunk).latent_dist
            out.append(dist.sample() if sample else dist.mode())
        z = torch.cat(out)
        return self._video((z - self.shift_factor) * self.scaling_factor, t).to(video.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, C', T, h, w) -> video (B, 3, T, h * f, w * f), about [-1, 1]."""
        _check_video(latents, "DiffusersVAE.decode")
        z, t = self._frames(latents.to(self.vae.dtype) / self.scaling_factor + self.shift_factor)
        out = [self.vae.decode(chunk).sample for chunk in z.split(self.frame_chunk)]
        return self._video(torch.cat(out), t).to(latents.dtype)


def build_autoencoder(ae_cfg: AutoencoderConfig) -> nn.Module:
    """The autoencoder named by ``autoencoder.kind`` (pixel | vae)."""
    if ae_cfg.kind == "pixel":
        return PixelAutoencoder()
    if ae_cfg.kind == "vae":
        if not ae_cfg.path:
            raise ConfigError("config error: 'autoencoder.path' is not set; autoencoder.kind: vae needs a local "
                              "diffusers AutoencoderKL folder")
        return DiffusersVAE(ae_cfg.path, ae_cfg.scaling_factor)
    raise ConfigError(f"config error: 'autoencoder.kind' is {ae_cfg.kind!r}; allowed: pixel, vae")
