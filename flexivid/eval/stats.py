"""Paired bootstrap intervals over prompts and seeds: is a schedule's score different from another's, or a tie?

Every quality score here is per sample: an array ``(P,)`` over prompts or ``(P, S)`` over prompts x seeds. The
resampled unit is the **prompt**: the seeds of one prompt stay together (they share the caption, so they are not
independent draws), and each prompt contributes the mean over its seeds. Two schedules compared on the same
prompts and seeds are resampled with the **same** prompt indices (paired), so the prompt-to-prompt spread that both
share cancels out of the difference; that is what makes small differences detectable at all.

Intervals are scipy's percentile bootstrap (``scipy.stats.bootstrap``); a difference whose interval contains 0 is
a tie. Non-finite entries (an attribute that does not apply to a prompt) are left out: a prompt counts only if at
least one of its seeds is finite (for a paired difference: finite in both schedules).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.stats

LEVEL = 0.95
N_RESAMPLES = 2000

__all__ = ["Interval", "mean_ci", "paired_diff_ci", "is_tie", "percentile_interval", "LEVEL", "N_RESAMPLES"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval; ``n`` is the number of prompts it rests on."""

    mean: float
    low: float
    high: float
    n: int
    level: float = LEVEL

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "level": self.level}

    def format(self, digits: int = 3) -> str:
        if not math.isfinite(self.mean):
            return "n/a"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _per_prompt(values) -> np.ndarray:
    """``(P,)`` or ``(P, S)`` -> ``(P,)`` seed means, NaN where a prompt has no finite seed."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"scores must be (prompts,) or (prompts, seeds), got shape {x.shape}")
    finite = np.isfinite(x)
    counts = finite.sum(axis=1)
    sums = np.where(finite, x, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _interval(per_prompt: np.ndarray, level: float, n_resamples: int, seed: int) -> Interval:
    x = per_prompt[np.isfinite(per_prompt)]
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, level)
    mean = float(x.mean())
    if x.size == 1 or np.ptp(x) == 0.0:  # no spread to resample: the interval is the point
        return Interval(mean, mean, mean, int(x.size), level)
    res = scipy.stats.bootstrap((x,), np.mean, confidence_level=level, n_resamples=n_resamples,
                                method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), int(x.size), level)


def mean_ci(values, level: float = LEVEL, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval:
    """Mean of one schedule's per-sample scores ``(P,)`` or ``(P, S)`` with a bootstrap interval over prompts."""
    return _interval(_per_prompt(values), level, n_resamples, seed)


def paired_diff_ci(a, b, level: float = LEVEL, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval:
    """Mean of ``a - b`` for two schedules scored on the same prompts (and seeds), with a paired interval.

    ``a`` and ``b`` must have the same shape: entry ``[p, s]`` of both is prompt ``p`` with seed ``s``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same prompts and seeds, got shapes {a.shape} and {b.shape}")
    diff = a - b  # NaN wherever either side is missing, so a pair counts only when both are measured
    return _interval(_per_prompt(diff), level, n_resamples, seed)


def is_tie(a, b, level: float = LEVEL, n_resamples: int = N_RESAMPLES, seed: int = 0) -> bool:
    """True when the paired interval of ``a - b`` contains 0: the data cannot tell the two schedules apart."""
    return paired_diff_ci(a, b, level, n_resamples, seed).contains(0.0)


def percentile_interval(point: float, resamples, n: int, level: float = LEVEL) -> Interval:
    """Percentile interval from bootstrap replicates of a statistic no closed form covers (e.g. FVD)."""
    r = np.asarray(resamples, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return Interval(float(point), math.nan, math.nan, n, level)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(r, [alpha, 1.0 - alpha])
    return Interval(float(point), float(low), float(high), n, level)
