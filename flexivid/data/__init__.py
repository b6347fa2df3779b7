"""Datasets: the built-in synthetic text-to-video set, users' video folders, and precomputed latents
(``build_dataset`` picks one)."""
from __future__ import annotations

import torch

from flexivid.config import ConfigError, DataConfig


def build_dataset(data_cfg: DataConfig) -> torch.utils.data.Dataset:
    """The dataset named by ``data.name``: items ``{"video": (3, T, H, W) in [-1, 1], "caption", "attrs"}``, or for
    ``latents`` ``{"latent", "text", "text_mask", "caption"}`` (``flexivid.data.latents``)."""
    if data_cfg.name == "synthetic":
        from flexivid.data.synthetic import SyntheticVideoDataset

        return SyntheticVideoDataset(data_cfg)
    if data_cfg.name == "video_folder":
        from flexivid.data.video_folder import VideoFolderDataset

        return VideoFolderDataset(data_cfg)
    if data_cfg.name == "latents":
        from flexivid.data.latents import LatentDataset

        return LatentDataset(data_cfg)
    raise ConfigError(f"config error: 'data.name' is {data_cfg.name!r}; allowed: synthetic, video_folder, latents")
