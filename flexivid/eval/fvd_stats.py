"""How far an FVD can be trusted: its floor, its interval, and its value at infinitely many clips.

FVD from N generated clips is biased upwards by roughly ``k / N`` (the covariance estimate's noise), so

* a **floor** is always reported beside it: real clips against the same real reference at the same N. Two
  identical distributions score the floor, not 0;
* **FVD-infinity** (Chong & Forsyth, "Effectively Unbiased FID and Inception Score", CVPR 2020): FVD is computed on
  random subsets of several sizes and the line through ``(1/N, FVD_N)`` is extrapolated to ``1/N = 0``;
* the **interval** comes from resampling prompts (all seeds of a prompt together, as in ``eval.stats``) and
  recomputing FVD against the fixed real reference; a difference of two schedules resamples the same prompts for
  both (paired), and a difference whose interval contains 0 is a tie. A resample repeats clips, which raises FVD
  by itself (fewer distinct clips), so the replicates are shifted by their mean's excess over the point estimate
  before the percentiles are taken (bias-corrected percentile interval).

All of it reuses one real-set matrix square root: ``tr sqrtm(S_r S_f) = tr sqrtm(S_r^1/2 S_f S_r^1/2)``, whose
argument is symmetric, so each resample costs one batched ``eigvalsh`` (float64, on the GPU when there is one).
"""
from __future__ import annotations

import numpy as np
import torch

from .stats import LEVEL, Interval, percentile_interval

__all__ = ["FrechetReference", "fvd_interval", "paired_fvd_diff", "fvd_by_size", "fvd_infinity"]


class FrechetReference:
    """A real set's feature statistics; ``distances`` gives the Frechet distance of weighted fake sets to it."""

    def __init__(self, real_features, device: str | torch.device = "cpu", chunk: int = 64):
        f = torch.as_tensor(np.asarray(real_features), dtype=torch.float64, device=device)
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"real features must be (N >= 2, D), got {tuple(f.shape)}")
        self.device, self.chunk, self.n = torch.device(device), chunk, f.shape[0]
        self.mu = f.mean(0)
        self.sigma = torch.cov(f.T).reshape(f.shape[1], f.shape[1])  # unbiased (N - 1), as eval.fvd
        w, v = torch.linalg.eigh(self.sigma)
        self.sqrt_sigma = (v * w.clamp(min=0).sqrt()) @ v.T
        self.trace = float(torch.trace(self.sigma))

    def distances(self, features, weights=None) -> np.ndarray:
        """Frechet distance of each weighted set of ``features (N, D)`` to the reference.

        ``weights (B, N)``: non-negative counts per clip (a bootstrap draw, a 0/1 subset); None = all clips once.
        Mean and unbiased covariance are the weighted ones (weights as frequencies).
        """
        f = torch.as_tensor(np.asarray(features), dtype=torch.float64, device=self.device)
        w = (torch.ones(1, f.shape[0], dtype=torch.float64, device=self.device) if weights is None else
             torch.as_tensor(np.asarray(weights), dtype=torch.float64, device=self.device))
        out = []
        for wb in w.split(self.chunk):
            n = wb.sum(1, keepdim=True)  # (b, 1)
            mu = (wb @ f) / n  # (b, D)
            second = torch.einsum("bn,nd,ne->bde", wb, f, f)  # (b, D, D)
            cov = (second - n[:, :, None] * mu[:, :, None] * mu[:, None, :]) / (n[:, :, None] - 1)
            inner = self.sqrt_sigma @ cov @ self.sqrt_sigma
            inner = (inner + inner.transpose(1, 2)) / 2  # exact symmetry for eigvalsh
            tr_sqrt = torch.linalg.eigvalsh(inner).clamp(min=0).sqrt().sum(1)
            diff = mu - self.mu
            d = (diff * diff).sum(1) + self.trace + torch.diagonal(cov, dim1=1, dim2=2).sum(1) - 2 * tr_sqrt
            out.append(d)
        return torch.cat(out).cpu().numpy()


def _prompt_draws(n_prompts: int, n_seeds: int, n_resamples: int, seed: int) -> np.ndarray:
    """``(B, P*S)`` clip weights: P prompts drawn with replacement, a prompt's seeds carried together."""
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n_prompts, n_prompts), minlength=n_prompts)
                       for _ in range(n_resamples)])  # (B, P)
    return np.repeat(counts, n_seeds, axis=1)  # clip order: prompt-major, (P, S) flattened


def _flat(features) -> tuple[np.ndarray, int, int]:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 3:
        raise ValueError(f"features must be (prompts, seeds, D), got shape {f.shape}")
    return f.reshape(-1, f.shape[-1]), f.shape[0], f.shape[1]


def _debiased(point: float, replicates: np.ndarray, n: int, level: float) -> Interval:
    return percentile_interval(point, replicates - (np.nanmean(replicates) - point), n, level)


def fvd_interval(ref: FrechetReference, features, n_resamples: int = 200, seed: int = 0,
                 level: float = LEVEL) -> Interval:
    """FVD of ``features (P, S, D)`` with a bootstrap interval over prompts."""
    flat, p, s = _flat(features)
    point = float(ref.distances(flat)[0])
    return _debiased(point, ref.distances(flat, _prompt_draws(p, s, n_resamples, seed)), p, level)


def paired_fvd_diff(ref: FrechetReference, features_a, features_b, n_resamples: int = 200, seed: int = 0,
                    level: float = LEVEL) -> Interval:
    """FVD(a) - FVD(b) for two schedules on the same prompts and seeds, the same prompt draws for both."""
    fa, p, s = _flat(features_a)
    fb, pb, sb = _flat(features_b)
    if (p, s) != (pb, sb):
        raise ValueError(f"paired FVD needs the same prompts and seeds, got {(p, s)} and {(pb, sb)}")
    w = _prompt_draws(p, s, n_resamples, seed)
    point = float(ref.distances(fa)[0] - ref.distances(fb)[0])
    return _debiased(point, ref.distances(fa, w) - ref.distances(fb, w), p, level)


def fvd_by_size(ref: FrechetReference, features, sizes, draws: int = 5, seed: int = 0) -> dict[int, float]:
    """Mean FVD over ``draws`` random subsets (without replacement) of each size in ``sizes``; all clips once
    for the full size."""
    f = np.asarray(features, dtype=np.float64).reshape(-1, np.shape(features)[-1])
    rng = np.random.default_rng(seed)
    out = {}
    for n in sizes:
        if not 2 <= n <= f.shape[0]:
            raise ValueError(f"subset size {n} must be in 2..{f.shape[0]} (the clips available)")
        k = 1 if n == f.shape[0] else draws
        w = np.zeros((k, f.shape[0]))
        for i in range(k):
            w[i, rng.choice(f.shape[0], n, replace=False)] = 1.0
        out[int(n)] = float(ref.distances(f, w).mean())
    return out


def fvd_infinity(by_size: dict[int, float]) -> dict:
    """Least-squares line ``FVD_N = FVD_inf + slope / N`` through ``fvd_by_size``'s points; needs >= 2 sizes."""
    if len(by_size) < 2:
        raise ValueError("FVD-infinity needs FVD at >= 2 subset sizes")
    x = np.array([1.0 / n for n in by_size])
    y = np.array(list(by_size.values()))
    slope, intercept = np.polyfit(x, y, 1)
    return {"fvd_inf": float(intercept), "slope": float(slope), "sizes": sorted(by_size)}
