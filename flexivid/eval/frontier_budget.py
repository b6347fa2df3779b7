"""The frontier's time limit: what each phase has cost so far, what the next step will cost, and whether it fits.

A GPU call has a hard wall-clock limit, and a run stopped by it must still leave a usable table. So the frontier runs
in order of priority (the FVD reference sets, the screen, the headline rows, further front-line rows, timing) and
starts a step only if its *estimated* cost, plus the reserve of what must follow it, fits in the time left. The
estimates come from this run's own measurements: seconds per generated clip of full@reference FLOPs, per scored
clip, per clip of detector features and per table rewrite. Before the first measurement of a kind its estimate is 0,
so the first step of each kind always runs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

TIMING_SHARE = 0.08  # of the limit, kept free for the round-robin timing at the end
COMPILE_S = 60.0  # a guess at compiling the pipeline for one batch size (nothing measures it before it runs)
SCREEN_SHARE = 0.15  # of the limit, the screen's whatever the reserve: without it no FlexiDiT schedule is picked


@dataclass
class Rate:
    """Seconds spent over units done (clips, FLOPs-weighted clips, rewrites)."""

    seconds: float = 0.0
    units: float = 0.0

    def add(self, seconds: float, units: float) -> None:
        self.seconds += seconds
        self.units += units

    @property
    def per(self) -> float:
        return self.seconds / self.units if self.units > 0 else 0.0


class TimeBudget:
    """``limit`` seconds from construction (0: no limit); ``fits`` says whether a step may start."""

    def __init__(self, limit: float, log=print, clock=time.perf_counter):
        self.limit, self.log, self.clock = limit, log, clock
        self.start = clock()
        self.generation = Rate()  # units: clips x FLOPs fraction of full@reference
        self.scoring = Rate()  # units: clips (fidelity, coherence, PSNR/SSIM)
        self.features = Rate()  # units: clips through the FVD detector
        self.rewrite = Rate()  # units: table rows rewritten (frontier.json/md/png after each row)
        self.cut: list[str] = []  # what the limit cut, in order, reported in frontier.json / .md

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return math.inf if self.limit <= 0 else self.limit - self.elapsed()

    def timing_reserve(self) -> float:
        return TIMING_SHARE * self.limit if self.limit > 0 else 0.0

    def rows_cost(self, n_clips: int, flops: list[float], features: bool = False, rewrite_rows: int = 0) -> float:
        """Estimated seconds to generate, score (and featurize) ``n_clips`` clips for each FLOPs fraction in
        ``flops``, then rewrite a table that will hold ``rewrite_rows`` rows after each of them."""
        per_clip = self.scoring.per + (self.features.per if features else 0.0)
        rewrites = self.rewrite.per * sum(rewrite_rows + i + 1 for i in range(len(flops)))
        return sum(n_clips * (f * self.generation.per + per_clip) for f in flops) + rewrites

    def fits(self, seconds: float, reserve: float = 0.0, what: str = "") -> bool:
        """Whether ``seconds`` of work plus ``reserve`` for what must follow fit in the time left; a refusal is
        recorded once under ``what``."""
        ok = seconds + reserve <= self.left()
        if not ok and what and what not in self.cut:
            self.cut.append(what)
            self.log(f"time limit: {what} (estimated {seconds:.0f} s + {reserve:.0f} s reserve, "
                     f"{max(self.left(), 0.0):.0f} s left)")
        return ok
