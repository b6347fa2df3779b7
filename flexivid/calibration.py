"""The calibration table and the compute-budget picker: ``--compute B`` takes the best MEASURED schedule within B.

``tools/benchmark.py`` measures every front-line schedule on held-out prompts and seeds and writes
``calibration.json`` into the checkpoint folder: per schedule its FLOPs fraction of full@``reference steps``, its
quality on the frontier's quality axis (mean, 95% interval and the per-prompt scores the interval came from), its
FVD above the real-vs-real floor with a 95% interval when the frontier ran FVD, and its measured seconds per video
at each timed batch size. ``pick`` reads it:

* cost = FLOPs fraction (``optimize="flops"``) or measured time over full's at the nearest timed batch size
  (``optimize="latency"``); candidates are those with cost <= B;
* the quality axis (``quality``) is the table's own (``quality_metric``, fidelity for the shipped table; higher is
  better) unless ``quality="fvd"``: FVD - floor, lower is better, over the entries that have it. FVD and fidelity
  disagree in places (a schedule can keep the prompt's attributes and still look unlike real clips), so the axis
  is the caller's choice and is named in the rule;
* the best candidate on that axis wins, and every candidate that ties with it is as good: the cheapest of those is
  taken. A tie on the table's axis: the paired difference's bootstrap 95% interval contains 0 (``eval.stats``);
  on FVD, which is one number per set of clips and has no per-prompt pairs in the table: the two 95% intervals
  overlap.

Without a table (or one measured for another clip shape), the documented fallback rule ``FALLBACK_RULE`` is used and
named in the returned choice: ``full@floor(B * steps)``, fewer full steps. It is the one rule that needs no
measurement of this checkpoint: every step runs the trained full mode, so no weak mode of unknown quality is used.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

CALIBRATION_FILE = "calibration.json"
VERSION = 1
OPTIMIZE = ("flops", "latency")
FVD = "fvd"  # quality="fvd": rank by FVD above the real-vs-real floor (lower is better)
FALLBACK_RULE = "fewer full steps: full@floor(B x steps)"


@dataclass
class Entry:
    """One measured schedule: ``schedule`` (spec) at ``steps`` and ``guidance_scale``."""

    label: str
    schedule: str
    steps: int
    guidance_scale: float
    flops_fraction: float  # of full at the table's reference steps
    quality: float
    quality_low: float
    quality_high: float
    time_s: dict[str, float] = field(default_factory=dict)  # "b1" / "b16" -> seconds per video
    scores: list[float] = field(default_factory=list)  # per-prompt quality (seed mean), prompt order of the table
    fvd: float | None = None  # FVD - floor (None: the frontier ran without FVD)
    fvd_low: float | None = None  # its 95% interval (the FVD interval less the floor's mean)
    fvd_high: float | None = None


@dataclass
class Calibration:
    quality_metric: str
    higher_is_better: bool
    reference_steps: int
    clip: list[int]  # [num_frames, height, width] the table was measured at
    entries: list[Entry]
    device: str = ""
    command: str = ""
    version: int = VERSION

    def save(self, folder: str | Path) -> Path:
        """Write ``<folder>/calibration.json`` atomically (a reader never sees half a table)."""
        path = Path(folder) / CALIBRATION_FILE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)
        return path

    def time_fraction(self, entry: Entry, batch: int) -> float | None:
        """``entry``'s seconds per video over full@reference's, at the timed batch size nearest ``batch``."""
        full = next((e for e in self.entries if e.schedule == "full" and e.steps == self.reference_steps), None)
        keys = sorted({k for e in self.entries for k in e.time_s}, key=lambda k: abs(int(k[1:]) - batch))
        for key in keys:
            if full and entry.time_s.get(key) and full.time_s.get(key):
                return entry.time_s[key] / full.time_s[key]
        return None


def load_calibration(folder: str | Path) -> Calibration | None:
    """The checkpoint's table, or None when it has none. A damaged table raises a one-line ValueError."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") != VERSION:
            raise ValueError(f"version {raw.get('version')}, expected {VERSION}")
        raw["entries"] = [Entry(**e) for e in raw["entries"]]
        return Calibration(**raw)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path} is not a valid calibration table ({' '.join(str(e).split())[:120]}); "
                         f"rewrite it with tools/benchmark.py --checkpoint {folder}") from None


@dataclass(frozen=True)
class Choice:
    schedule: str
    steps: int
    guidance_scale: float | None  # None: the caller's / pipeline's default
    cost: float | None  # FLOPs or time fraction the rule judged by (None for the fallback's time)
    rule: str  # which rule picked it, on which quality axis, for the log line
    quality: float | None = None
    axis: str = "quality"  # what ``quality`` measures

    def describe(self, budget: float) -> str:
        q = "" if self.quality is None else f", measured {self.axis} {self.quality:.3f}"
        return f"compute {budget}: {self.schedule}@{self.steps} ({self.rule}{q})"


def fallback(budget: float, steps: int) -> Choice:
    n = math.floor(budget * steps + 1e-9)
    if n < 1:
        raise ValueError(f"compute budget {budget} is below one full step of {steps} (1/{steps} = {1 / steps:.4f}); "
                         f"use a budget >= {math.ceil(1000 / steps) / 1000}")
    return Choice("full", n, None, n / steps, f"no calibration table; fallback rule {FALLBACK_RULE}")


def pick(budget: float, calibration: Calibration | None, steps: int, clip: tuple[int, int, int] | None = None,
         optimize: str = "flops", batch: int = 1, quality: str | None = None) -> Choice:
    """The best measured schedule within ``budget`` (see the module docstring); the fallback rule without a table.

    ``steps``: the reference steps for the fallback. ``clip``: ``(frames, height, width)`` requested; a table
    measured at another shape does not apply and the fallback is used. ``batch``: the request's batch size, which
    selects the timing column for ``optimize="latency"``. ``quality``: the axis to rank by, None for the table's own
    (``quality_metric``) or ``"fvd"`` for FVD - floor.
    """
    if not 0 < budget <= 1:
        raise ValueError(f"compute budget is a fraction of full in (0, 1], got {budget}")
    if optimize not in OPTIMIZE:
        raise ValueError(f"optimize '{optimize}' unknown; use one of {', '.join(OPTIMIZE)}")
    if calibration is None or (clip is not None and list(clip) != list(calibration.clip)):
        if optimize == "latency":
            raise ValueError("--optimize latency needs measured times: no calibration table for this checkpoint and "
                             "clip shape; write one with tools/benchmark.py --checkpoint DIR")
        return fallback(budget, steps)
    axis = quality or calibration.quality_metric
    if axis not in (calibration.quality_metric, FVD):
        raise ValueError(f"quality '{axis}': this calibration table ranks by {calibration.quality_metric} or fvd; "
                         f"use --quality {calibration.quality_metric} or --quality fvd")
    entries = calibration.entries
    if axis == FVD:
        entries = [e for e in entries if e.fvd is not None]
        if not entries:
            raise ValueError("--quality fvd: this calibration table has no FVD (written with --no-fvd, or before "
                             "tables held FVD); rewrite it with tools/benchmark.py --checkpoint DIR, or use --quality "
                             f"{calibration.quality_metric}")
    costed = []
    for e in entries:
        cost = e.flops_fraction if optimize == "flops" else calibration.time_fraction(e, batch)
        if cost is not None and cost <= budget + 1e-9:
            costed.append((cost, e))
    if not costed:
        cheapest = min((e.flops_fraction if optimize == "flops" else calibration.time_fraction(e, batch) or math.inf)
                       for e in entries)
        with_fvd = " with FVD" if axis == FVD else ""
        raise ValueError(f"compute budget {budget} is below every calibrated schedule{with_fvd} ({optimize}); the "
                         f"cheapest costs {cheapest:.3f} of full; use a larger budget")
    if axis == FVD:
        best_cost, best = min(costed, key=lambda ce: (ce[1].fvd, ce[0]))
        def overlaps(e: Entry) -> bool:
            ends = (e.fvd_low, e.fvd_high, best.fvd_low, best.fvd_high)
            return None not in ends and e.fvd_low <= best.fvd_high and best.fvd_low <= e.fvd_high

        tied = [(c, e) for c, e in costed if e is best or overlaps(e)]
        cost, chosen = min(tied, key=lambda ce: (ce[0], ce[1].fvd))
        how = "FVD - floor (lower is better; overlapping 95% intervals tie, the cheaper taken)"
        value = chosen.fvd
    else:
        from .eval.stats import is_tie

        sign = 1.0 if calibration.higher_is_better else -1.0
        best_cost, best = max(costed, key=lambda ce: (sign * ce[1].quality, -ce[0]))
        tied = [(c, e) for c, e in costed if e is best or (e.scores and best.scores and is_tie(e.scores, best.scores))]
        cost, chosen = min(tied, key=lambda ce: (ce[0], -sign * ce[1].quality))
        better = "higher" if calibration.higher_is_better else "lower"
        how = f"{axis} ({better} is better; paired 95% ties, the cheaper taken)"
        value = chosen.quality
    why = "best measured" if chosen is best else f"cheapest tie with best measured {best.label} on"
    rule = f"calibration table, {why} {how} within {optimize} budget"
    return Choice(chosen.schedule, chosen.steps, chosen.guidance_scale, cost, rule, value,
                  "FVD - floor" if axis == FVD else axis)
