"""The built-in text-to-video dataset: procedurally rendered moving shapes with exact ground truth.

Each clip shows one object (colour, shape, size) moving in a straight line (direction, speed) over a plain
background. The caption states every attribute, e.g. ``"a small red circle moves left slowly on a dark blue
background"``, and ``attrs`` records them as a dict, so prompt fidelity can be measured exactly
(``flexivid.eval.fidelity`` recovers the attributes from pixels).

Clips are rendered on the fly with numpy (no download; well under 1 ms for 16 frames at 64x64) and are a pure function
of ``(seed, split, index)``. The train/test split holds out whole attribute COMBINATIONS: a fixed ~12.5% of the
864 combinations only ever appear in ``split="test"``, while every single attribute value appears in train, so
the test split measures compositional generalisation to unseen captions.

Geometry (in units of ``S = min(height, width)``): all shapes of one size have the same area (a circle of
radius ``SIZE_RADIUS[size] * S``), so size is measurable independently of shape; over the clip (first to last
frame) the object travels ``SPEED_TRAVEL[speed] * S``; its start is planned so the whole path stays in frame.
"""
from __future__ import annotations

import itertools
import re

import numpy as np
import torch

from flexivid.config import DataConfig

# Attribute vocabularies. Object colours are far apart in RGB and all contrast with every background.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 210, 60),
    "blue": (50, 100, 255),
    "yellow": (240, 220, 40),
    "white": (240, 240, 240),
    "magenta": (220, 50, 220),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "dark blue": (20, 25, 90),
    "dark green": (15, 70, 30),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
DIRECTIONS = ("left", "right", "up", "down")
SPEEDS = ("slow", "fast")
SPEED_ADVERBS = {"slow": "slowly", "fast": "quickly"}

# Attribute name -> its values, in caption order. Ground-truth dicts use exactly these keys.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "size": SIZES,
    "direction": DIRECTIONS,
    "speed": SPEEDS,
    "background": tuple(BACKGROUNDS),
}

SIZE_RADIUS = {"small": 0.08, "large": 0.14}  # equal-area circle radius, fraction of min(H, W)
SPEED_TRAVEL = {"slow": 0.18, "fast": 0.40}  # distance from first to last frame, fraction of min(H, W)
DIRECTION_VECTORS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (dy, dx), y down

# Equal-area shape parameters relative to the circle radius r (area pi r^2 for all three):
SQUARE_HALF_SIDE = np.sqrt(np.pi) / 2  # ~0.886 r
TRIANGLE_INRADIUS = np.sqrt(np.pi / (3 * np.sqrt(3)))  # ~0.778 r; circumradius is twice this
# Half-extents (vertical, horizontal) of each shape's bounding box around its centre, relative to r.
HALF_EXTENT = {
    "circle": (1.0, 1.0),
    "square": (SQUARE_HALF_SIDE, SQUARE_HALF_SIDE),
    "triangle": (2 * TRIANGLE_INRADIUS, np.sqrt(3) * TRIANGLE_INRADIUS),  # apex is 2*inradius above centroid
}

TEST_FRACTION = 0.125
_SPLIT_SEED = 20261125  # fixed: the held-out combinations are a property of the dataset, not of data.seed
_SPLIT_IDS = {"train": 0, "test": 1}


def caption_for(attrs: dict) -> str:
    """The canonical caption of a ground-truth attribute dict."""
    return (f"a {attrs['size']} {attrs['colour']} {attrs['shape']} moves {attrs['direction']} "
            f"{SPEED_ADVERBS[attrs['speed']]} on a {attrs['background']} background")


def parse_caption(caption: str) -> dict:
    """Attributes a caption asks for, as a dict with only the keys it names (unknown words are ignored).

    Works on canonical captions (``parse_caption(caption_for(a)) == a``) and on free prompts such as
    ``"a red square moving up"`` -> ``{"colour": "red", "shape": "square", "direction": "up"}``. An attribute
    named ambiguously (two different values) is left out.
    """
    text = " " + re.sub(r"[^a-z ]", " ", caption.lower()) + " "
    found: dict = {}
    # Background first, and remove it, so "on a dark blue background" does not count as the colour "blue".
    bg = re.search(r" on an? (.+?) background ", text)
    if bg and bg.group(1).strip() in BACKGROUNDS:
        found["background"] = bg.group(1).strip()
        text = text[:bg.start()] + " " + text[bg.end():]
    words = {
        "colour": {c: [c] for c in COLOURS},
        "shape": {s: [s] for s in SHAPES},
        "size": {"small": ["small", "tiny"], "large": ["large", "big"]},
        "direction": {d: [d] for d in DIRECTIONS},
        "speed": {"slow": ["slow", "slowly"], "fast": ["fast", "quickly", "quick"]},
    }
    for attr, options in words.items():
        hits = {value for value, forms in options.items() if any(f" {f} " in text for f in forms)}
        if len(hits) == 1:
            found[attr] = hits.pop()
    return {k: found[k] for k in ATTRIBUTES if k in found}


def _all_combinations() -> list[tuple[str, ...]]:
    return list(itertools.product(*ATTRIBUTES.values()))


def _split_combinations() -> dict[str, list[tuple[str, ...]]]:
    combos = _all_combinations()
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(combos))
    n_test = round(TEST_FRACTION * len(combos))
    test = {combos[i] for i in order[:n_test]}
    splits = {"train": [c for c in combos if c not in test], "test": [c for c in combos if c in test]}
    # Every single attribute value must still be seen in training, or the test split would test vocabulary.
    for pos, (name, values) in enumerate(ATTRIBUTES.items()):
        assert {c[pos] for c in splits["train"]} == set(values), f"train split lacks a value of {name}"
    return splits


SPLIT_COMBINATIONS = _split_combinations()


def _check_split(split: str) -> None:
    if split not in SPLIT_COMBINATIONS:
        raise ValueError(f"unknown split '{split}' for data.split (allowed: {', '.join(SPLIT_COMBINATIONS)})")


def all_captions(split: str | None = None) -> list[str]:
    """Every caption the dataset can produce for ``split`` ('train', 'test', or None for both), sorted.

    The list is finite (864 in all), so a text-embedding cache built from ``all_captions()`` covers the dataset.
    """
    splits = list(SPLIT_COMBINATIONS) if split is None else [split]
    for s in splits:
        _check_split(s)
    return sorted(caption_for(dict(zip(ATTRIBUTES, c))) for s in splits for c in SPLIT_COMBINATIONS[s])


def shape_coverage(shape: str, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] from a signed distance (pixels; negative inside) to the shape's edge."""
    if shape == "circle":
        sd = np.sqrt(dy * dy + dx * dx) - r
    elif shape == "square":
        sd = np.maximum(np.abs(dy), np.abs(dx)) - SQUARE_HALF_SIDE * r
    elif shape == "triangle":  # equilateral, apex up, centred on its centroid; max over the 3 edge half-planes
        s3 = np.sqrt(3) / 2
        sd = np.maximum(np.maximum(dy, -0.5 * dy + s3 * dx), -0.5 * dy - s3 * dx) - TRIANGLE_INRADIUS * r
    else:
        raise ValueError(f"unknown shape '{shape}' (allowed: {', '.join(SHAPES)})")
    # A 1-pixel linear ramp across the edge: a cheap, good-enough box-filter anti-aliasing.
    return np.clip(0.5 - sd, 0.0, 1.0)


def plan_path(attrs: dict, num_frames: int, height: int, width: int,
              rng: np.random.Generator) -> np.ndarray:
    """Object centre per frame, ``float (T, 2)`` as (y, x) in pixels, chosen so the path stays inside the frame.

    Along the motion axis the start is drawn from the positions that keep the whole path in frame; if the
    travel is longer than the frame allows, the path is centred (the object then stays mostly inside).
    """
    s = min(height, width)
    r = SIZE_RADIUS[attrs["size"]] * s
    travel = SPEED_TRAVEL[attrs["speed"]] * s
    half = np.array(HALF_EXTENT[attrs["shape"]]) * r + 1.0  # +1 px: keep the anti-aliased rim in frame
    dvec = np.array(DIRECTION_VECTORS[attrs["direction"]], dtype=np.float64)
    size = np.array([height, width], dtype=np.float64)
    start = np.empty(2)
    for axis in range(2):
        lo, hi = half[axis], size[axis] - half[axis]
        if dvec[axis] != 0:
            slack = hi - lo - travel
            offset = rng.uniform(0, slack) if slack > 0 else slack / 2
            start[axis] = lo + offset if dvec[axis] > 0 else hi - offset
        else:
            start[axis] = rng.uniform(lo, hi) if hi > lo else size[axis] / 2
    frac = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    return start[None, :] + frac[:, None] * travel * dvec[None, :]


def render_clip(attrs: dict, centres: np.ndarray, height: int, width: int) -> np.ndarray:
    """Render ``attrs`` with the object at ``centres`` (T, 2) as float32 ``(3, T, H, W)`` in [-1, 1]."""
    r = SIZE_RADIUS[attrs["size"]] * min(height, width)
    ys = np.arange(height, dtype=np.float32) + 0.5  # pixel centres
    xs = np.arange(width, dtype=np.float32) + 0.5
    dy = ys[None, :, None] - centres[:, 0, None, None].astype(np.float32)  # (T, H, 1)
    dx = xs[None, None, :] - centres[:, 1, None, None].astype(np.float32)  # (T, 1, W)
    cov = shape_coverage(attrs["shape"], dy, dx, r).astype(np.float32)  # (T, H, W)
    bg = np.asarray(BACKGROUNDS[attrs["background"]], dtype=np.float32) / 127.5 - 1.0
    fg = np.asarray(COLOURS[attrs["colour"]], dtype=np.float32) / 127.5 - 1.0
    return bg[:, None, None, None] + cov[None] * (fg - bg)[:, None, None, None]


class SyntheticVideoDataset(torch.utils.data.Dataset):
    """``num_clips`` procedurally rendered clips of one split; item ``i`` is a pure function of (seed, split, i).

    ``__getitem__`` returns ``{"video": float32 (3, T, H, W) in [-1, 1], "caption": str, "attrs": dict}``.
    """

    def __init__(self, cfg: DataConfig):
        _check_split(cfg.split)
        if min(cfg.height, cfg.width) < 16 or cfg.num_frames < 1 or cfg.num_clips < 1:
            raise ValueError(f"synthetic data needs data.height and data.width >= 16, data.num_frames >= 1 and "
                             f"data.num_clips >= 1, got {cfg.height}x{cfg.width}, {cfg.num_frames}, {cfg.num_clips}")
        self.cfg = cfg
        self.combinations = SPLIT_COMBINATIONS[cfg.split]

    def __len__(self) -> int:
        return self.cfg.num_clips

    def attrs(self, index: int) -> dict:
        """Ground-truth attributes of clip ``index`` (no rendering)."""
        return self._sample(index)[0]

    def _sample(self, index: int) -> tuple[dict, np.random.Generator]:
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips (data.num_clips)")
        rng = np.random.default_rng([self.cfg.seed, _SPLIT_IDS[self.cfg.split], index])
        combo = self.combinations[rng.integers(len(self.combinations))]
        return dict(zip(ATTRIBUTES, combo)), rng

    def __getitem__(self, index: int) -> dict:
        attrs, rng = self._sample(index)
        c = self.cfg
        centres = plan_path(attrs, c.num_frames, c.height, c.width, rng)
        video = torch.from_numpy(render_clip(attrs, centres, c.height, c.width))
        return {"video": video, "caption": caption_for(attrs), "attrs": attrs}
