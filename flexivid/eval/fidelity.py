"""Prompt fidelity: measure what a generated clip shows and compare it with what the prompt asked for.

``measure_attributes`` is the inverse of the synthetic renderer (``flexivid.data.synthetic``): it recovers the
background, the object's colour, shape and size, and its direction and speed from pixels alone. Every step uses
robust statistics (medians over frames and pixels, a soft coverage mask measured along the object-background
colour axis) so blurry or noisy generated clips are still measured; an attribute that cannot be measured is
``None``, which ``prompt_fidelity`` counts as wrong.

Measured on the dataset itself (both splits, 16x64x64) every attribute is recovered on >= 98% of clips
(see tests/test_fidelity.py); pure noise clips are rejected (all ``None``), i.e. score at or below chance. Shape is
read against the renderer's own shapes drawn at the object's size and blurred as much as the clip
(``flexivid.eval.shape_model``), so blur alone does not cost shape: 100% of 200 clips at Gaussian sigma 0-2.5 px at
64x64 (tools/fidelity_blur.py; fixed fill cuts, used before, fell to 0.63-0.69 at 2 px). Colour is the next
attribute blur costs (0.92/0.88 on the train/test splits at 2 px), because a small blurred object never reaches
its full colour.
"""
from __future__ import annotations

import math
from concurrent.futures import Executor
from typing import Iterable, Sequence

import numpy as np
import torch

from flexivid.data.synthetic import (ATTRIBUTES, BACKGROUNDS, COLOURS, SIZE_RADIUS, SPEED_TRAVEL,
                                     HALF_EXTENT, parse_caption)
from flexivid.eval.shape_model import classify_shape, soft_mask as _soft_mask

__all__ = ["measure_attributes", "measure_clip", "clip_scores", "by_value", "prompt_fidelity", "parse_caption",
           "jump_threshold"]

# Colours in [0, 1] RGB. Object colours are >= 0.57 away from every background, so a pixel more than
# OBJECT_DISTANCE from the background is (mostly) object.
_COLOURS = {k: np.array(v, np.float32) / 255 for k, v in COLOURS.items()}
_BACKGROUNDS = {k: np.array(v, np.float32) / 255 for k, v in BACKGROUNDS.items()}
OBJECT_DISTANCE = 0.3
PALETTE_TOLERANCE = 0.3  # a measured colour further than this from every palette entry is "unmeasurable"
MAX_OBJECT_FRACTION = 0.4  # more "object" than this share of all pixels means no plain background (e.g. noise)

# Decision thresholds sit halfway between the renderer's classes (geometric mean for ratios).
_SMALL_AREA, _LARGE_AREA = (math.pi * SIZE_RADIUS[s] ** 2 for s in ("small", "large"))
SIZE_THRESHOLD = math.sqrt(_SMALL_AREA * _LARGE_AREA)  # object area / min(H, W)^2
SPEED_THRESHOLD = math.sqrt(SPEED_TRAVEL["slow"] * SPEED_TRAVEL["fast"])  # travel over the clip / min(H, W)
MIN_TRAVEL = 0.05  # below this (fraction of min(H, W)) the object is "not moving": direction unmeasurable


def _nearest(colour: np.ndarray, palette: dict[str, np.ndarray]) -> str | None:
    name, dist = min(((k, float(np.linalg.norm(colour - v))) for k, v in palette.items()), key=lambda kv: kv[1])
    return name if dist <= PALETTE_TOLERANCE else None


def _locate(cov: np.ndarray, s: int, reach: int, weight: np.ndarray | None = None
            ) -> tuple[tuple[float, float], bool] | None:
    """Object centre (y, x) in pixels and whether it touches the frame edge, from one coverage map ``(H, W)``.

    ``weight`` (default ``cov``): the map whose centroid is the centre. The linear coverage (the renderer's
    anti-aliasing ramp is linear) gives exact sub-pixel centres; the soft mask's stretched ramp moves the centroid
    in uneven steps (up to 2.4x the true per-frame speed at 16x16).
    """
    h, w = cov.shape
    ys, xs = np.nonzero(cov > 0.5)
    if len(ys) < max(2, 0.25 * _SMALL_AREA * s * s):
        return None
    # The median of the object's pixels finds it despite stray blobs elsewhere; the centroid is then taken in a
    # window that fits the largest object, so far-away noise does not pull it.
    cy, cx = int(np.median(ys)), int(np.median(xs))
    y0, y1, x0, x1 = max(0, cy - reach), min(h, cy + reach + 1), max(0, cx - reach), min(w, cx + reach + 1)
    win = cov[y0:y1, x0:x1]
    mass_map = win if weight is None else weight[y0:y1, x0:x1]
    gy, gx = np.mgrid[y0:y1, x0:x1] + 0.5  # pixel centres
    mass = float(mass_map.sum())
    if not mass > 0:  # the median pixel fell between split blobs: no single object to locate
        return None
    touches = bool((y0 == 0 and win[0].max() > 0.5) or (y1 == h and win[-1].max() > 0.5)
                   or (x0 == 0 and win[:, 0].max() > 0.5) or (x1 == w and win[:, -1].max() > 0.5))
    return (float((mass_map * gy).sum() / mass), float((mass_map * gx).sum() / mass)), touches


def _aligned_mean(proj: np.ndarray, centres: list[tuple[float, float]], reach: int) -> np.ndarray:
    """Average of ``(2*reach+1)^2`` crops of ``proj (T', H, W)`` centred on the object in each frame.

    The object only translates, so aligning and averaging frames keeps its shape and divides pixel noise by
    ~sqrt(T); shape and size are measured on this template instead of on single noisy frames.
    """
    padded = np.pad(proj, ((0, 0), (reach, reach), (reach, reach)))
    crops = []
    for frame, (cy, cx) in zip(padded, centres):
        iy, ix = int(round(cy - 0.5)), int(round(cx - 0.5))  # pixel index of the centre (+reach from padding)
        crops.append(frame[iy:iy + 2 * reach + 1, ix:ix + 2 * reach + 1])
    return np.mean(crops, axis=0)


def jump_threshold(num_frames: int, height: int, width: int) -> float:
    """Pixels per frame above which a frame-to-frame centre step is a jump: twice the dataset's fastest speed."""
    return 2.0 * SPEED_TRAVEL["fast"] * min(height, width) / max(num_frames - 1, 1)


def _motion(found: list, t: int, h: int, w: int) -> dict:
    """Per-clip temporal coherence from the located centres ``[(frame, ((y, x), touches)), ...]``.

    ``max_step``: largest centre step between consecutive frames where the object was found (pixels);
    ``jump``: ``max_step`` above ``jump_threshold``; ``straightness``: distance from the first to the last centre
    over the length of the path through every centre (1 for a straight, monotone path; ~0 for back-and-forth);
    ``lost``: frames without a locatable object. Values are None where fewer than two frames were located.
    """
    out = {"max_step": None, "jump": None, "straightness": None, "lost": t - len(found)}
    if len(found) < 2:
        return out
    idx = np.array([i for i, _ in found])
    centres = np.array([c for _, (c, _) in found])  # (n, 2) (y, x)
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    consecutive = steps[np.diff(idx) == 1]
    out["max_step"] = float(consecutive.max()) if len(consecutive) else None
    out["jump"] = None if out["max_step"] is None else out["max_step"] > jump_threshold(t, h, w)
    path = float(steps.sum())
    out["straightness"] = float(np.linalg.norm(centres[-1] - centres[0]) / path) if path > 0 else None
    return out


def measure_attributes(video: torch.Tensor) -> dict:
    """Recover the synthetic attributes from one clip ``(3, T, H, W)`` float in ``[-1, 1]``.

    Returns a dict with every key of ``ATTRIBUTES`` (colour, shape, size, direction, speed, background); a value
    is ``None`` where it cannot be measured (no object, no plain background, no motion, one frame, ...).
    """
    return measure_clip(video)[0]


def measure_clip(video: torch.Tensor | np.ndarray) -> tuple[dict, dict]:
    """``(attributes, motion)`` of one clip ``(3, T, H, W)`` (a tensor or a numpy array): ``measure_attributes``'s
    dict and ``_motion``'s."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"measure_attributes expects a clip (3, T, H, W), got {tuple(video.shape)}")
    t, h, w = video.shape[1:]
    found: list = []
    attrs = _measure(video, found)
    return attrs, _motion(found, t, h, w)


def _measure(video: torch.Tensor | np.ndarray, found: list) -> dict:
    """``measure_attributes``; appends the located centres ``(frame, ((y, x), touches))`` to ``found``."""
    out: dict = {k: None for k in ATTRIBUTES}
    # numpy from here on: per-clip arrays are small, and torch's thread pool only adds overhead at this size.
    px = video.detach().cpu().float().numpy() if isinstance(video, torch.Tensor) else np.asarray(video, np.float32)
    px = (np.clip(px, -1, 1) + 1) / 2
    px = np.ascontiguousarray(px.transpose(1, 2, 3, 0))  # (T, H, W, 3) in [0, 1]
    t, h, w, _ = px.shape
    s = min(h, w)
    b = max(1, s // 32)
    border = np.concatenate([px[:, :b].reshape(-1, 3), px[:, -b:].reshape(-1, 3),
                             px[:, :, :b].reshape(-1, 3), px[:, :, -b:].reshape(-1, 3)])
    bg = np.median(border, axis=0)  # the object covers little of the border, so the median is background
    out["background"] = _nearest(bg, _BACKGROUNDS)

    dist = np.linalg.norm(px - bg, axis=-1)  # (T, H, W)
    far = dist > OBJECT_DISTANCE
    if far.mean() > MAX_OBJECT_FRACTION or far.sum() < 0.25 * _SMALL_AREA * s * s * t:
        return out  # no plain background to measure against, or no object at all
    # Object colour from the farther half of the object pixels: small objects are mostly anti-aliased rim,
    # whose background-tinted colours would otherwise pull the median off the palette.
    core = dist >= np.median(dist[far])
    fg = np.median(px[core], axis=0)
    out["colour"] = _nearest(fg, _COLOURS)

    # Position of every pixel along the background->object colour axis (drops off-axis noise).
    axis = fg - bg
    proj = ((px - bg) @ axis) / float(axis @ axis)  # (T, H, W)
    cov = _soft_mask(proj)
    reach = int(np.ceil(max(HALF_EXTENT["triangle"]) * SIZE_RADIUS["large"] * s * 1.3)) + 2
    linear = np.clip(proj, 0.0, 1.0)
    found.extend((i, m) for i in range(t) if (m := _locate(cov[i], s, reach, linear[i])) is not None)
    if not found:
        return out
    # Shape and size from frames where the object is whole (all frames if it always touches the edge).
    whole = [(i, c) for i, (c, touches) in found if not touches] or [(i, c) for i, (c, _) in found]
    linear_template = _aligned_mean(proj[[i for i, _ in whole]], [c for _, c in whole], reach)
    template = _soft_mask(linear_template)
    area = float(template.sum())
    out["size"] = "large" if area / (s * s) > SIZE_THRESHOLD else "small"
    out["shape"] = classify_shape(linear_template)  # read against the renderer's shapes at the template's own blur

    if len(found) >= 2:
        # Least-squares line through the centres: robust to per-frame jitter, unlike last-minus-first.
        idx = np.array([i for i, _ in found], np.float64)
        centres = np.array([c for _, (c, _) in found])
        slope = np.polyfit(idx, centres, 1)[0]  # (2,) pixels per frame, (dy, dx)
        travel = slope * (t - 1) / s
        ax = int(np.argmax(np.abs(travel)))
        if abs(travel[ax]) >= MIN_TRAVEL:
            out["direction"] = (("up", "down"), ("left", "right"))[ax][int(travel[ax] > 0)]
            out["speed"] = "fast" if abs(travel[ax]) > SPEED_THRESHOLD else "slow"
    return out


def clip_scores(videos: torch.Tensor | Iterable[torch.Tensor], attrs_list: Sequence[dict | str],
                executor: Executor | None = None) -> dict:
    """Per-clip scores, as float arrays ``(N,)`` (the input of ``eval.stats`` bootstrap intervals).

    ``<attribute>``: 1.0 where the measured value is the requested one, 0.0 where not (unmeasurable counts as wrong),
    NaN where the clip does not request it. ``jump``: 1.0 where a frame-to-frame centre step exceeds twice the
    dataset's fastest speed, or where the object cannot be tracked over two consecutive frames. ``straightness``:
    ``_motion``'s, 0.0 where untrackable. ``lost``: frames without a locatable object. Also ``wanted``: the parsed
    requests, a list of dicts. ``executor``: measure the clips there (e.g. a process pool: the measurement is
    single-threaded numpy), results in input order.
    """
    wanted = [parse_caption(a) if isinstance(a, str) else a for a in attrs_list]
    if executor is None:
        measured = map(measure_clip, videos)
    else:  # numpy arrays travel to worker processes without torch's shared-memory machinery
        arrays = [v.detach().cpu().float().numpy() if isinstance(v, torch.Tensor) else v for v in videos]
        measured = executor.map(measure_clip, arrays, chunksize=max(1, len(arrays) // 64))
    rows = []
    for (got, motion), want in zip(measured, wanted, strict=True):
        row = {k: (float(got[k] == want[k]) if want.get(k) is not None else math.nan) for k in ATTRIBUTES}
        row["jump"] = 0.0 if motion["jump"] is False else 1.0
        row["straightness"] = motion["straightness"] or 0.0
        row["lost"] = float(motion["lost"])
        rows.append(row)
    keys = (*ATTRIBUTES, "jump", "straightness", "lost")
    out = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in keys}
    out["wanted"] = wanted
    return out


def by_value(scores: dict) -> dict:
    """Accuracy per requested value of every attribute, e.g. ``{"direction": {"left": 0.9, ...}}``, from
    ``clip_scores``'s output; a value no clip requests is left out."""
    out: dict = {}
    for attr, values in ATTRIBUTES.items():
        per = {v: [s for s, w in zip(scores[attr], scores["wanted"]) if w.get(attr) == v] for v in values}
        per = {v: float(np.mean(h)) for v, h in per.items() if h}
        if per:
            out[attr] = per
    return out


def prompt_fidelity(videos: torch.Tensor | Iterable[torch.Tensor], attrs_list: Sequence[dict | str]) -> dict:
    """Share of clips whose measured attributes match the requested ones, and their temporal coherence.

    ``videos``: ``(B, 3, T, H, W)`` or an iterable of ``(3, T, H, W)`` clips in ``[-1, 1]``. ``attrs_list``: per
    clip a ground-truth dict (``dataset[i]["attrs"]``) or a prompt string (parsed with ``parse_caption``); only
    the attributes a clip requests are scored for it. Returns ``{attribute: accuracy, ..., "mean": mean over the
    scored attributes, "jump_rate": share of clips with a jump, "straightness": mean path straightness,
    "by_value": {attribute: {value: accuracy}}, "num_clips": B}``; attributes no clip requests are left out.
    """
    scores = clip_scores(videos, attrs_list)
    result = {k: float(np.nanmean(scores[k])) for k in ATTRIBUTES if np.isfinite(scores[k]).any()}
    result["mean"] = float(np.mean(list(result.values()))) if result else float("nan")
    n = len(scores["jump"])
    result["jump_rate"] = float(scores["jump"].mean()) if n else float("nan")
    result["straightness"] = float(scores["straightness"].mean()) if n else float("nan")
    result["by_value"] = by_value(scores)
    result["num_clips"] = n
    return result
