"""Users' own text-to-video data: a folder of video files plus a captions file.

The captions file is either CSV with the header ``path,caption`` or JSONL with one ``{"path": ..., "caption": ...}``
object per line; ``path`` is relative to ``data.root`` (absolute paths also work). Each item decodes
``data.num_frames`` frames ``data.frame_stride`` apart from a random start that is seeded by ``(data.seed, index)``
(so an index always gives the same clip), resizes the short side with an antialiased filter and centre-crops to
``(data.height, data.width)``.

Only real video files are used: ``scan_video_folder`` opens every listed file (by its content, whatever its name)
and keeps those that are a video container (mp4/mov, mkv/webm, avi, gif, mpeg, flv, ogg, asf) with a video stream
and enough frames for one clip. Text or image files that ffmpeg would happily render as "video" are left out. The
files left out and why are the dataset's ``skipped`` list (the trainer logs them in log.jsonl and its summary); a
folder without one usable video is a ``ValueError`` when the dataset is built, before training.

A file that passes the scan but fails to decode later never stops a run: it is logged as a warning with the
running count, remembered, and the next valid index is returned instead. ``num_skipped`` counts those per process
(each DataLoader worker keeps its own count and its own list of bad files).
"""
from __future__ import annotations

import csv
import functools
import json
import logging
import os

import numpy as np
import torch
import torch.nn.functional as F

from flexivid.config import ConfigError, DataConfig
from flexivid.video_io import VideoReadError, num_video_frames, read_video

logger = logging.getLogger(__name__)


def _require_path(value: str | None, key: str, what: str, is_dir: bool) -> str:
    if not value:
        raise ConfigError(f"config error: '{key}' is not set; set it to the {what} (video_folder dataset)")
    if not (os.path.isdir(value) if is_dir else os.path.isfile(value)):
        raise FileNotFoundError(f"{what} not found: {value} (set '{key}' to an existing "
                                f"{'folder' if is_dir else 'file'})")
    return value


def read_captions(path: str) -> list[tuple[str, str]]:
    """``(video path, caption)`` pairs from a CSV (header ``path,caption``) or JSONL captions file, in file order."""
    entries: list[tuple[str, str]] = []
    if path.lower().endswith((".jsonl", ".json")):
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    entries.append((str(row["path"]), str(row["caption"])))
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(f"captions file {path}, line {lineno}: expected a JSON object with keys "
                                     f"'path' and 'caption' ({type(e).__name__}: {e})") from None
    else:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"path", "caption"} <= set(reader.fieldnames):
                raise ValueError(f"captions file {path}: CSV needs the header 'path,caption', "
                                 f"got {reader.fieldnames}")
            entries = [(row["path"], row["caption"] or "") for row in reader]
    return entries


# ffmpeg demuxer names (a demuxer may list several, comma-separated) of video containers.
VIDEO_CONTAINERS = frozenset({"mov", "mp4", "matroska", "webm", "avi", "gif", "mpeg", "mpegts", "flv", "ogg", "asf"})


def probe_video(path: str) -> str | None:
    """Why ``path`` is not a video file (missing, not a video container, no video stream), or None when it is."""
    import av

    if not os.path.isfile(path):
        return "file not found"
    try:
        with av.open(path) as container:
            names = set(container.format.name.split(","))
            if not names & VIDEO_CONTAINERS:
                return f"not a video container (ffmpeg reads it as '{container.format.name}')"
            if not container.streams.video:
                return "no video stream"
    except (av.FFmpegError, OSError, UnicodeError) as e:
        return f"not a readable video ({type(e).__name__})"
    return None


@functools.lru_cache(maxsize=4)
def _scan(root: str, captions: str, captions_mtime: float, span: int) -> tuple[tuple, tuple]:
    entries, good, skipped = read_captions(captions), [], []
    if not entries:
        raise ValueError(f"captions file {captions} lists no videos (set 'data.captions' to a non-empty file)")
    for rel, caption in entries:
        path = os.path.join(root, rel)  # join keeps absolute paths as they are
        why = probe_video(path)
        if why is None:
            try:
                total = num_video_frames(path)
                why = None if total >= span else f"too short: {total} frames, a clip needs {span}"
            except VideoReadError as e:
                why = str(e)
        if why is None:
            good.append((rel, caption))
        else:
            skipped.append((path, why))
    if not good:
        first = "; ".join(f"{p}: {w}" for p, w in skipped[:2])
        raise ValueError(f"no usable video among the {len(entries)} listed in {captions} ({first}"
                         f"{'; ...' if len(skipped) > 2 else ''}); fix data.root / data.captions")
    return tuple(good), tuple(skipped)


def scan_video_folder(cfg: DataConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(usable (path, caption) entries, skipped (file, reason) pairs)``; ValueError when none is usable.

    Opens every listed file once per process and configuration (cached: the preflight check and the dataset
    share it).
    """
    root = _require_path(cfg.root, "data.root", "video folder", is_dir=True)
    captions = _require_path(cfg.captions, "data.captions", "captions file (CSV path,caption or JSONL)",
                             is_dir=False)
    if cfg.num_frames < 1 or cfg.frame_stride < 1:
        raise ConfigError(f"config error: data.num_frames and data.frame_stride must be >= 1, "
                          f"got {cfg.num_frames} and {cfg.frame_stride}")
    span = (cfg.num_frames - 1) * cfg.frame_stride + 1
    good, skipped = _scan(root, captions, os.path.getmtime(captions), span)
    return list(good), list(skipped)


def resize_center_crop(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """``uint8 (T, H0, W0, 3)`` -> float32 ``(3, T, height, width)`` in [-1, 1].

    Scales so the frame just covers the target (the short side relative to the target aspect), with
    antialiasing so downscaling does not alias, then crops the centre.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, H0, W0)
    h0, w0 = x.shape[-2:]
    scale = max(height / h0, width / w0)
    new_h, new_w = max(height, round(h0 * scale)), max(width, round(w0 * scale))
    if (new_h, new_w) != (h0, w0):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    x = x[:, :, top:top + height, left:left + width]
    return (x / 127.5 - 1.0).clamp(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()


class VideoFolderDataset(torch.utils.data.Dataset):
    """Videos listed in ``data.captions`` under ``data.root``; items are the same dicts as the synthetic dataset.

    ``__getitem__`` returns ``{"video": float32 (3, T, H, W) in [-1, 1], "caption": str, "attrs": {}}``.
    """

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.entries, self.skipped = scan_video_folder(cfg)
        self.root = cfg.root
        if self.skipped:
            logger.warning("video folder: %d of %d listed files skipped (first: %s: %s)", len(self.skipped),
                           len(self.skipped) + len(self.entries), *self.skipped[0])
        self.num_skipped = 0
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.entries)

    def video_path(self, index: int) -> str:
        return os.path.join(self.root, self.entries[index][0])  # join keeps absolute paths as they are

    def _load(self, index: int) -> torch.Tensor:
        c = self.cfg
        path = self.video_path(index)
        span = (c.num_frames - 1) * c.frame_stride + 1  # frames covered by one clip
        total = num_video_frames(path)
        if total < span:
            raise VideoReadError(f"video too short: {path} has {total} frames, need {span} "
                                 f"(data.num_frames={c.num_frames}, data.frame_stride={c.frame_stride})")
        rng = np.random.default_rng([c.seed, index])
        start = int(rng.integers(0, total - span + 1))
        frames = read_video(path, num_frames=c.num_frames, stride=c.frame_stride, start=start)
        return resize_center_crop(frames, c.height, c.width)

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} videos")
        index %= n
        # Fall through to the next index on a bad file so one broken video never stops training.
        for j in (index + k for k in range(n)):
            j %= n
            if j in self._bad:
                continue
            try:
                video = self._load(j)
            except VideoReadError as e:
                self._bad.add(j)
                self.num_skipped += 1
                logger.warning("skipping video (%d skipped so far): %s", self.num_skipped, e)
                continue
            return {"video": video, "caption": self.entries[j][1], "attrs": {}}
        raise VideoReadError(f"no readable video among the {n} listed in {self.cfg.captions} "
                           f"(all {len(self._bad)} failed to decode or are shorter than "
                           f"{(self.cfg.num_frames - 1) * self.cfg.frame_stride + 1} frames; see the warnings above)")
