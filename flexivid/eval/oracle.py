"""The Bayes-optimal denoiser of the synthetic data: ``E[x0 | x_t, caption]`` computed by enumerating trajectories.

Given its caption, a synthetic clip (``flexivid.data.synthetic``) is fixed by the object's start position alone;
given only colour, shape, size and background, by (start, direction, speed). So the posterior mean of the clean clip
can be computed exactly, for a prior whose start positions lie on a lattice of spacing ``1 / subpixel`` pixels
(uniform over the starts ``plan_path`` can draw, and uniform over the (direction, speed) hypotheses allowed).

For ``x_t = (1 - t) x0 + t eps`` the log-likelihood of a trajectory is

    log p(x_t | x0) = ((1 - t) / t^2) <x_t, x0> - (1 - t)^2 |x0|^2 / (2 t^2) + const,

and ``x0 = bg + cov * (fg - bg)``, where ``cov`` is the object's coverage. So only ``<y_f, cov_f>`` varies between
trajectories, with ``y_f`` frame f of ``x_t`` projected on the colour axis ``fg - bg``. A start on the lattice is a
sub-pixel residue ``r`` plus an integer shift ``m``; for each hypothesis, frame and residue one template (the object
rendered at start ``(r + 0.5) / subpixel`` plus the frame's offset, on a circular grid) gives every shift ``m`` at
once by FFT cross-correlation, and the posterior-mean coverage is the posterior weights convolved with the same
templates. Templates are exact renders (``render_clip``'s coverage), so no interpolation is involved.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from flexivid.data.synthetic import (BACKGROUNDS, COLOURS, DIRECTIONS, SIZE_RADIUS, SPEEDS, plan_path, render_clip,
                                     shape_coverage)

__all__ = ["MotionOracle", "start_interval"]


class _Edge:
    """A stand-in for ``np.random.Generator`` whose ``uniform(a, b)`` returns one end: ``plan_path`` with it gives
    the extreme starts of its own prior, so the oracle's prior cannot drift from the sampler's."""

    def __init__(self, high: bool):
        self.high = high

    def uniform(self, low: float, high: float) -> float:
        return high if self.high else low


def start_interval(attrs: dict, num_frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)``, each ``(2,)`` (y, x) in pixels: the box of starts ``plan_path`` draws uniformly from."""
    a = plan_path(attrs, num_frames, height, width, _Edge(False))[0]
    b = plan_path(attrs, num_frames, height, width, _Edge(True))[0]
    return np.minimum(a, b), np.maximum(a, b)


def _lattice_mask(low: float, high: float, size: int, k: int) -> np.ndarray:
    """``(k, size)`` bool: whether the lattice start ``m + (r + 0.5) / k`` lies in ``[low, high]``; if none does
    (a path longer than the frame, centred by ``plan_path``), the lattice point nearest ``low``."""
    pos = np.arange(size)[None, :] + (np.arange(k)[:, None] + 0.5) / k
    eps = 1e-9
    mask = (pos >= low - eps) & (pos <= high + eps)
    if not mask.any():
        mask = np.abs(pos - low) == np.abs(pos - low).min()
    return mask


@dataclass
class _Hypothesis:
    """One (direction, speed): per frame and residue the template FFT, and the lattice starts it allows."""

    direction: str
    speed: str
    spectra: torch.Tensor  # (F, K, K, H, W//2+1) complex128: rfft2 of the circular coverage of frame f for the
    #   start residue (ry, rx) at shift 0
    log_prior: torch.Tensor  # (K, K, H, W) float64: log prior of each lattice start, -inf outside the support
    sq_cov: torch.Tensor  # (K, K) float64: sum over frames of (2 <bg, d> sum cov + |d|^2 sum cov^2)


class MotionOracle:
    """``E[x0 | x_t, caption]`` for one clip's attributes, with direction and/or speed unknown if asked.

    ``attrs``: a ground-truth dict (colour, shape, size, background, direction, speed). ``directions`` / ``speeds``:
    the hypotheses the prior allows, uniformly (default: the caption's own; ``DIRECTIONS`` marginalises direction).
    ``subpixel``: lattice points per pixel of the start prior. Real clips start anywhere, so at low noise, where the
    posterior is far narrower than a pixel, the lattice's spacing sets the loss (16x64x64, t = 0.3: about 1e-3 with
    4, 3e-4 with 8, 1e-4 with 16); from t ~ 0.8 up the posterior is wider than the lattice and 4 is enough.
    ``anywhere``: starts uniform over the whole frame, wrapping round its edges, instead of ``plan_path``'s box: the
    prior symmetrised over circular shifts, whose posterior mean is the best predictor that is equivariant to
    (circular) translation, i.e. one that cannot tell where a token is.
    """

    def __init__(self, attrs: dict, num_frames: int, height: int, width: int, directions=None, speeds=None,
                 subpixel: int = 4, anywhere: bool = False):
        self.attrs, self.shape, self.k = dict(attrs), (num_frames, height, width), subpixel
        self.anywhere = anywhere
        self.bg = torch.tensor(BACKGROUNDS[attrs["background"]], dtype=torch.float64) / 127.5 - 1.0
        self.fg = torch.tensor(COLOURS[attrs["colour"]], dtype=torch.float64) / 127.5 - 1.0
        self.delta = self.fg - self.bg  # (3,) the colour axis
        directions = [attrs["direction"]] if directions is None else list(directions)
        speeds = [attrs["speed"]] if speeds is None else list(speeds)
        self.hypotheses = [self._hypothesis(d, s) for d in directions for s in speeds]
        self.log_weight = -math.log(len(self.hypotheses))  # uniform over (direction, speed)

    def _hypothesis(self, direction: str, speed: str) -> _Hypothesis:
        if direction not in DIRECTIONS or speed not in SPEEDS:
            raise ValueError(f"unknown direction {direction!r} or speed {speed!r}")
        f, h, w = self.shape
        k = self.k
        attrs = dict(self.attrs, direction=direction, speed=speed)
        low, high = start_interval(attrs, f, h, w)
        offsets = plan_path(attrs, f, h, w, _Edge(False))
        offsets = offsets - offsets[:1]  # (F, 2): centre of frame f minus the start
        # Circular templates: the start residue's centre plus the frame offset, wrapped onto the torus so that
        # rolling by the integer shift m places the object exactly where the start m + residue puts it.
        res = (np.arange(k) + 0.5) / k
        templates = np.empty((f, k, k, h, w), np.float64)
        for ry in range(k):
            for rx in range(k):
                centres = offsets + np.array([res[ry], res[rx]])
                templates[:, ry, rx] = _circular_coverage(attrs, centres, h, w)
        templates_t = torch.from_numpy(templates)
        my = _lattice_mask(low[0], high[0], h, k)  # (K, H)
        mx = _lattice_mask(low[1], high[1], w, k)  # (K, W)
        support = my[:, None, :, None] & mx[None, :, None, :]  # (K, K, H, W)
        if self.anywhere:
            support[:] = True
        log_prior = torch.full(support.shape, -math.inf, dtype=torch.float64)
        log_prior[torch.from_numpy(support)] = -math.log(int(support.sum()))
        s1 = templates_t.sum(dim=(-2, -1)).sum(0)  # (K, K)
        s2 = (templates_t ** 2).sum(dim=(-2, -1)).sum(0)
        sq_cov = 2 * float(self.bg @ self.delta) * s1 + float(self.delta @ self.delta) * s2
        return _Hypothesis(direction, speed, torch.fft.rfft2(templates_t), log_prior, sq_cov)

    def log_posterior(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        """Unnormalised log posterior ``(N_hyp, K, K, H, W)`` of every (hypothesis, lattice start) given ``x_t``."""
        f, h, w = self.shape
        x = x_t.to(torch.float64)
        y = torch.einsum("cfhw,c->fhw", x, self.delta)  # (F, H, W) projection on the colour axis
        y_hat = torch.fft.rfft2(y)  # (F, H, W//2+1)
        a = (1 - t) / t ** 2  # weight of the correlation
        b = (1 - t) ** 2 / (2 * t ** 2)  # weight of |x0|^2 (its trajectory-dependent part)
        out = []
        for hyp in self.hypotheses:
            # sum over frames of the cross-correlation of y_f with each residue's template, for every shift m
            cross = torch.einsum("fhw,fabhw->abhw", y_hat, hyp.spectra.conj())
            corr = torch.fft.irfft2(cross, s=(h, w))  # (K, K, H, W)
            out.append(a * corr - b * hyp.sq_cov[:, :, None, None] + hyp.log_prior + self.log_weight)
        return torch.stack(out)

    def posterior(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        """Normalised posterior ``(N_hyp, K, K, H, W)`` over (hypothesis, lattice start); the prior at t = 1."""
        logp = self.log_posterior(x_t, min(max(t, 1e-6), 1.0))
        return torch.softmax(logp.reshape(-1), 0).reshape(logp.shape)

    def hypothesis_posterior(self, x_t: torch.Tensor, t: float) -> dict[tuple[str, str], float]:
        """Posterior probability of each (direction, speed) hypothesis."""
        p = self.posterior(x_t, t).sum(dim=(1, 2, 3, 4))
        return {(h.direction, h.speed): float(v) for h, v in zip(self.hypotheses, p)}

    def predict_x0(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        """``E[x0 | x_t]`` as float32 ``(3, F, H, W)`` for one noisy clip ``x_t (3, F, H, W)`` at noise level t."""
        f, h, w = self.shape
        weights = self.posterior(x_t, t)  # (N_hyp, K, K, H, W)
        cov_hat = torch.zeros(f, h, w // 2 + 1, dtype=torch.complex128)
        for hyp, wgt in zip(self.hypotheses, weights):
            # the mean coverage of frame f: each residue's weights convolved with its template of frame f
            cov_hat += torch.einsum("abhw,fabhw->fhw", torch.fft.rfft2(wgt), hyp.spectra)
        cov = torch.fft.irfft2(cov_hat, s=(h, w))  # (F, H, W)
        x0 = self.bg[:, None, None, None] + cov[None] * self.delta[:, None, None, None]
        return x0.float()

    def velocity(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        """The Bayes-optimal flow velocity ``(x_t - E[x0 | x_t]) / t`` (t > 0), float32 like ``x_t``."""
        return (x_t.float() - self.predict_x0(x_t, t)) / t

    def render(self, direction: str, speed: str, start: tuple[float, float]) -> torch.Tensor:
        """The clip ``(3, F, H, W)`` of one trajectory (a real render), e.g. to draw an x0 on the oracle's lattice."""
        f, h, w = self.shape
        attrs = dict(self.attrs, direction=direction, speed=speed)
        path = plan_path(attrs, f, h, w, _Edge(False))
        return torch.from_numpy(render_clip(attrs, path - path[:1] + np.asarray(start), h, w))

    def lattice_start(self, index: tuple[int, int, int, int]) -> tuple[float, float]:
        """The start (y, x) in pixels of lattice point ``(ry, rx, my, mx)``."""
        ry, rx, my, mx = index
        return my + (ry + 0.5) / self.k, mx + (rx + 0.5) / self.k


def _circular_coverage(attrs: dict, centres: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(F, H, W)`` coverage of the object at ``centres (F, 2)``, distances wrapped onto the H x W torus."""
    r = SIZE_RADIUS[attrs["size"]] * min(height, width)
    ys = np.arange(height) + 0.5
    xs = np.arange(width) + 0.5
    dy = ys[None, :, None] - centres[:, 0, None, None]
    dx = xs[None, None, :] - centres[:, 1, None, None]
    dy = (dy + height / 2) % height - height / 2
    dx = (dx + width / 2) % width - width / 2
    return shape_coverage(attrs["shape"], dy.astype(np.float32), dx.astype(np.float32), r).astype(np.float64)
