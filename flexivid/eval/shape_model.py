"""Shape from a soft object template, read against the renderer's own shapes blurred as much as the template.

A template's fill (area over the product of its soft extents) separates the clean shapes well (triangle ~0.55,
circle ~0.78, square ~1.0), but blur rounds corners and moves every shape's fill towards the circle's: at a Gaussian
sigma of 2 px a small square or triangle at 64x64 has the fill a sharp circle has. Fixed fill cuts therefore read
blur as a shape error. Instead, each of the three shapes is drawn with the dataset's renderer at the template's size,
blurred over a grid of sigmas, and turned into a template the way ``fidelity`` makes one (sub-pixel alignment, soft
mask). The template's blur is read from its soft rim (``softness``) separately for each candidate shape, and the
shape whose model at that blur has the nearest fill wins. Models are cached per (shape, size bucket), so a clip
costs two descriptors and a few interpolations.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

from flexivid.data.synthetic import HALF_EXTENT, SHAPES, shape_coverage

__all__ = ["soft_mask", "descriptors", "classify_shape", "SIGMAS"]

SIGMAS = np.linspace(0.0, 3.5, 15)  # blur grid of the models, pixels (Gaussian sigma)
RADIUS_STEP = 0.25  # size bucket of the models: equal-area circle radius, pixels
# The template averages frames aligned to the nearest pixel, so the object sits anywhere within +-0.5 px of the
# crop centre; the models average the same spread of sub-pixel positions.
_OFFSETS = (np.arange(4) + 0.5) / 4 - 0.5


def soft_mask(proj: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] from the position along the background->object colour axis (0 = bg, 1 = object).

    The middle half of the axis is stretched to [0, 1]: faint noise reads 0 and full object 1, while a linear
    anti-aliased edge keeps its total area (the ramp is symmetric about 0.5).
    """
    return np.clip((proj - 0.25) / 0.5, 0.0, 1.0)


def _peak_template(linear: np.ndarray) -> np.ndarray:
    """Soft mask of a linear template rescaled so its peak (mean of its 4 highest pixels, robust to noise) is 1.

    ``fidelity`` scales its template by the object colour, taken from the object's brightest half; blur dims that
    half, so a blurred template comes out brighter, wider and sharper-edged by an amount that depends on the clip's
    contrast. Rescaling by the template's own peak removes that gain and applies equally to the models.
    """
    peak = float(np.mean(np.partition(linear.ravel(), -4)[-4:]))
    return soft_mask(linear / max(peak, 1e-6))


def descriptors(template: np.ndarray) -> tuple[float, float, float]:
    """``(area, fill, softness)`` of a soft template in [0, 1].

    fill: area over the product of the soft extents (a column's max coverage is its share of the object's width,
    exact for anti-aliased edges). softness: the partly covered rim, ``sum(4 c (1 - c))``, over sqrt(area); it
    grows with blur and, being scaled by size, hardly depends on the exact radius within a bucket.
    """
    area = float(template.sum())
    fill = area / max(float(template.max(axis=0).sum() * template.max(axis=1).sum()), 1e-6)
    softness = float((4 * template * (1 - template)).sum()) / max(np.sqrt(area), 1e-6)
    return area, fill, softness


@lru_cache(maxsize=1024)
def _model(shape: str, bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fill, softness)`` over ``SIGMAS`` of ``shape`` with equal-area radius ``bucket * RADIUS_STEP`` px."""
    r = bucket * RADIUS_STEP
    half = int(np.ceil(max(HALF_EXTENT[shape]) * r + 4 * SIGMAS[-1] + 2))
    grid = np.arange(-half, half + 1, dtype=np.float64)  # pixel centres relative to the crop centre
    cov = np.mean([shape_coverage(shape, grid[:, None] - oy, grid[None, :] - ox, r)
                   for oy in _OFFSETS for ox in _OFFSETS], axis=0)
    fills, softs = [], []
    for sigma in SIGMAS:
        blurred = gaussian_filter(cov, sigma, mode="constant") if sigma > 0 else cov
        _, fill, soft = descriptors(_peak_template(blurred))
        fills.append(fill)
        softs.append(soft)
    return np.array(fills), np.array(softs)


def _blur_and_fill(shape: str, bucket: int, softness: float) -> tuple[float, float]:
    """The sigma at which ``shape``'s model has ``softness`` (clamped to the grid), and its fill there."""
    fills, softs = _model(shape, bucket)
    order = np.argsort(softs)  # softness grows with sigma; sorting guards against a flat step at the grid's ends
    sigma = float(np.interp(softness, softs[order], SIGMAS[order]))
    return sigma, float(np.interp(sigma, SIGMAS, fills))


def classify_shape(linear: np.ndarray) -> str:
    """The renderer's shape whose blurred model best matches the fill of ``linear`` (an aligned template along the
    background->object axis, before the soft mask) at the template's own blur."""
    area, fill, softness = descriptors(_peak_template(linear))
    bucket = max(1, int(round(np.sqrt(area / np.pi) / RADIUS_STEP)))
    gaps = {shape: abs(fill - _blur_and_fill(shape, bucket, softness)[1]) for shape in SHAPES}
    return min(gaps, key=gaps.get)
