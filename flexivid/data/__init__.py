"""Datasets: the built-in synthetic text-to-video set and users' video folders (``build_dataset`` picks one)."""
from __future__ import annotations

import torch

from flexivid.config import ConfigError, DataConfig


def build_dataset(data_cfg: DataConfig) -> torch.utils.data.Dataset:
    """The dataset named by ``data.name``; every item is ``{"video": (3, T, H, W) in [-1, 1], "caption", "attrs"}``."""
    if data_cfg.name == "synthetic":
        from flexivid.data.synthetic import SyntheticVideoDataset

        return SyntheticVideoDataset(data_cfg)
    if data_cfg.name == "video_folder":
        from flexivid.data.video_folder import VideoFolderDataset

        return VideoFolderDataset(data_cfg)
    raise ConfigError(f"config error: 'data.name' is {data_cfg.name!r}; allowed: synthetic, video_folder")
