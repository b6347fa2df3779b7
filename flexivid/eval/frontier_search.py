"""What the frontier measures: the candidate grid over (total steps N) x (schedule family), its refinement near the
Pareto front, and the choice of the front-line schedules that get the full prompts x seeds evaluation.

``screen`` runs the grid and its refinement through a ``eval.frontier.Frontier`` (which measures a candidate), in
order of use to the headline and within the run's time budget.

A candidate is a schedule spec (``diffusion.schedules`` grammar) at ``N`` steps and a guidance scale; its label is
``SPEC@N`` (``full@10`` is ten full steps) with ``/cfgS`` appended when the scale is not the run's default. FLOPs are
fractions of full at the reference steps, so ``full@N`` costs ``N / reference``. An adaptive candidate
(``diffusion.adaptive``) costs what its samples ran: unknown before it runs, so the screen places it by its lower bound
(weak until the tail) and every table by its measured mean (``Frontier.flops``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..diffusion.schedules import FULL, cost_order

if TYPE_CHECKING:  # the measuring side imports this module
    from .frontier import Frontier, Measured

STEP_GRID = (6, 8, 10, 12, 15, 20, 25, 30)
QUALITY = {"fidelity": True, "psnr": True, "ssim": True}  # quality axis -> higher is better
BASELINE = "fewer full steps"


@dataclass(frozen=True)
class Candidate:
    spec: str
    steps: int
    guidance: float | None = None  # None: the run's default scale

    @property
    def label(self) -> str:
        g = "" if self.guidance is None else f"/cfg{self.guidance:g}"
        return f"{self.spec}@{self.steps}{g}"

    @property
    def family(self) -> str:
        return family_of(self.spec)


def parse_label(label: str, default_steps: int) -> Candidate:
    """``SPEC[@N][/cfgS]`` -> Candidate; a bare spec runs ``default_steps`` steps."""
    rest, _, cfg = label.partition("/cfg")
    spec, _, n = rest.partition("@")
    try:
        return Candidate(spec, int(n) if n else default_steps, float(cfg) if cfg else None)
    except ValueError:
        raise ValueError(f"schedule label '{label}': use SPEC, SPEC@N or SPEC@N/cfgS (e.g. full@10, "
                         f"weak_first:coarse_space:5@15/cfg3)") from None


FULL_FIRST = "full first"
ADAPTIVE = "adaptive"
# TAU values of the adaptive family (rate of change per unit sigma, ``diffusion.adaptive``): on the shipped model's
# curves of its cheapest weak mode (docs/results/adaptive_cpu) they are crossed near sigma 0.5, 0.3 and 0.2, the
# last near the weak mode's own low-noise plateau (~0.5), where samples differ most in when they cross. Larger TAUs
# switch so early that the schedule costs more than the budgets the headline asks about (1.2 ran ~0.8 of full@15's
# FLOPs on the CPU). A neighbour is one notch (x or / ADAPTIVE_NOTCH) away.
ADAPTIVE_TAUS = (0.45, 0.6, 0.85)
ADAPTIVE_NOTCH = 2 ** 0.5


def family_of(spec: str) -> str:
    """Table/plot family of a spec: full, weak_first MODE, weak-to-strong x/y, interleaved, full first (a custom
    order whose noisiest steps run full) or custom order."""
    head, *args = spec.split(":")
    if spec == FULL:
        return BASELINE
    if head == FULL and "," in spec:
        return FULL_FIRST
    if head == ADAPTIVE:
        return ADAPTIVE
    if head == "weak_first":
        if len(args) > 1 and "/" in args[1]:
            return f"x/y weak-to-strong {args[0]}"
        return f"weak_first {args[0]}" if args else "weak_first"
    return "interleaved" if head == "interleaved" else "custom order"


def _k(frac: float, n: int) -> int:
    return min(n - 1, max(1, round(frac * n)))


def family_specs(n: int, modes: dict) -> list[str]:
    """The coarse grid's schedules at ``n`` steps: every family at a few weak-step shares."""
    weak = cost_order(modes)
    specs = [FULL]
    if not weak or n < 2:
        return specs
    cheap = weak[0]
    specs += [f"weak_first:{cheap}:{_k(f, n)}" for f in (1 / 3, 1 / 2, 2 / 3, 5 / 6)]
    for mode in weak[1:]:
        specs += [f"weak_first:{mode}:{_k(f, n)}" for f in (1 / 2, 2 / 3)]
    # The paper's x/y: full for the last x conditional and last y < x guidance steps; the steps in between guide
    # with the weak conditional (weak-to-strong guidance).
    for x_frac, y_frac in ((1 / 2, 1 / 4), (1 / 3, 1 / 6)):
        x, y = max(2, round(x_frac * n)), max(1, round(y_frac * n))
        if y < x < n:
            specs.append(f"weak_first:{cheap}:{x}/{y}")
    if len(weak) >= 2 and n >= 3:
        a, b = weak[0], weak[1]
        for fa, fb in ((1 / 3, 1 / 3), (1 / 2, 1 / 6)):
            ka, kb = max(1, round(fa * n)), max(1, round(fb * n))
            if ka + kb < n:
                specs.append(f"interleaved:{ka}:{kb}")
        # Custom order: the costlier weak mode first, then the cheapest (the reverse of interleaved).
        k = max(1, n // 3)
        if 2 * k < n:
            specs.append(f"{b}:{k},{a}:{k},{FULL}:{n - 2 * k}")
    # Full first: the noisiest tenth of the steps (t >= 0.9 at shift 1, where the caption's motion is decided) run
    # full, then the cheapest weak mode, then full to finish.
    head = math.ceil(n / 10)
    k = round(2 * n / 3)
    if n >= 4 and head + k < n:
        specs.append(f"{FULL}:{head},{cheap}:{k},{FULL}:{n - head - k}")
    # Adaptive: the same full head, then the cheapest weak mode per sample until its latent settles (TAU), full after.
    if n >= 3:
        specs += [f"{ADAPTIVE}:{cheap}:{tau:g}" for tau in ADAPTIVE_TAUS]
    return list(dict.fromkeys(specs))


def coarse_grid(modes: dict, step_grid=STEP_GRID) -> list[Candidate]:
    return [Candidate(spec, n) for n in step_grid for spec in family_specs(n, modes)]


def neighbours(c: Candidate, modes: dict, reference: int) -> list[Candidate]:
    """Schedules one grid notch away from ``c``: N +- ~10% with the same shares, and each step count +- 1."""
    out = []
    d = max(1, round(0.1 * c.steps))
    for n in (c.steps - d, c.steps + d):
        if 2 <= n <= reference:
            out.append(Candidate(_rescale(c.spec, c.steps, n), n, c.guidance))
    head, *args = c.spec.split(":")
    if head == "weak_first" and len(args) == 2 and "/" not in args[1]:
        out += [Candidate(f"weak_first:{args[0]}:{k}", c.steps, c.guidance) for k in (int(args[1]) - 1,
                                                                                       int(args[1]) + 1)
                if 1 <= k < c.steps]
    elif head == ADAPTIVE and len(args) >= 2:
        tau = float(args[1])
        out += [Candidate(":".join([head, args[0], f"{t:.3g}", *args[2:]]), c.steps, c.guidance)
                for t in (tau / ADAPTIVE_NOTCH, tau * ADAPTIVE_NOTCH) if math.isfinite(t) and t > 0]
    elif head == "interleaved" and len(args) == 2:
        a, b = int(args[0]), int(args[1])
        for da, db in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            if a + da >= 0 and b + db >= 0 and a + da + b + db < c.steps and (a + da, b + db) != (0, 0):
                out.append(Candidate(f"interleaved:{a + da}:{b + db}", c.steps, c.guidance))
    return [x for x in out if x != c]


def _rescale(spec: str, n_from: int, n_to: int) -> str:
    """The same schedule shape at ``n_to`` steps: every count scaled, the full tail absorbing the rounding."""
    if spec == FULL:
        return FULL
    head, *args = spec.split(":")
    scale = lambda k: max(1, round(int(k) * n_to / n_from))  # noqa: E731
    if head == ADAPTIVE:  # TAU is per unit sigma: the same at any N; an explicit HEAD keeps its share
        if len(args) >= 3:
            args[2] = str(min(n_to, max(0, round(int(args[2]) * n_to / n_from))))
        return ":".join([head, *args])
    if head == "weak_first" and len(args) == 2:
        if "/" in args[1]:
            x, y = (min(n_to, scale(v)) for v in args[1].split("/"))
            return f"weak_first:{args[0]}:{x}/{min(y, x)}"
        return f"weak_first:{args[0]}:{min(n_to - 1, scale(args[1]))}"
    if head == "interleaved":
        counts = [scale(v) for v in args]
        while sum(counts) >= n_to and max(counts) > 1:
            counts[counts.index(max(counts))] -= 1
        return "interleaved:" + ":".join(map(str, counts))
    segments = [part.split(":") for part in spec.split(",")]
    if segments[0][0] == FULL:  # full first: keep the noisiest tenth full, rescale the rest
        head = math.ceil(n_to / 10)
        rest = _rescale(",".join(":".join(p) for p in segments[1:]), n_from - int(segments[0][1]), n_to - head)
        return f"{FULL}:{head},{rest}"
    weak = [(m, scale(k)) for m, k in segments if m != FULL]
    while sum(k for _, k in weak) >= n_to and max(k for _, k in weak) > 1:
        i = max(range(len(weak)), key=lambda j: weak[j][1])
        weak[i] = (weak[i][0], weak[i][1] - 1)
    return ",".join(f"{m}:{k}" for m, k in weak) + f",{FULL}:{n_to - sum(k for _, k in weak)}"


def pareto_front(costs: list[float], qualities: list[float], higher_is_better: bool = True) -> list[int]:
    """Indices of the points no cheaper-or-equal point beats on quality, cheapest first (point estimates)."""
    sign = 1.0 if higher_is_better else -1.0
    order = sorted((i for i, q in enumerate(qualities) if q is not None and math.isfinite(q) and costs[i] is not None),
                   key=lambda i: (costs[i], -sign * qualities[i]))
    front, best = [], -math.inf
    for i in order:
        if sign * qualities[i] > best:
            front.append(i)
            best = sign * qualities[i]
    return front


def baseline_for(flops: float, reference: int) -> Candidate:
    """Fewer full steps at equal FLOPs: the most full steps whose FLOPs do not exceed ``flops``."""
    return Candidate(FULL, max(1, math.floor(flops * reference + 1e-9)))


def best_full_within(budget: float, reference: int) -> Candidate | None:
    """Fewer full steps at a budget: the largest N whose FLOPs (N / reference) do not exceed ``budget``; None when
    not even one full step fits."""
    n = math.floor(budget * reference + 1e-9)
    return Candidate(FULL, n) if n >= 1 else None


def front_line(rows: list[dict], reference: int, max_front: int, budgets=(0.35, 0.25),
               higher_is_better: bool = True) -> list[Candidate]:
    """The screened candidates worth the full evaluation, in priority order (a time cut drops the tail first).

    ``rows``: ``{"candidate", "flops", "quality"}`` from the screen. First full@reference; then, per budget B in
    order, the headline's rows: the best full@N within B (the obvious alternative, fewer steps at the same budget,
    whether or not the screen ran it), the best FlexiDiT schedule within B by the screen and its full@N at equal
    FLOPs. Then the rest of the screen's Pareto front (FlexiDiT schedules up to ``max_front`` in all, each followed
    by its equal-FLOPs full@N, and the full@N on the front), nearest below a budget first, then cheapest first above
    every budget: the rows that can decide a headline go before those that only draw the curve.
    """
    sign = 1.0 if higher_is_better else -1.0
    flops = {r["candidate"]: r["flops"] for r in rows}
    flexi = [r for r in rows if r["candidate"].spec != FULL]
    out = [Candidate(FULL, reference)]
    n_flexi = 0

    def add(c: Candidate | None) -> None:
        nonlocal n_flexi
        if c is None or c in out:
            return
        out.append(c)
        if c.spec != FULL:
            n_flexi += 1
            out.extend(x for x in [baseline_for(flops[c], reference)] if x not in out)

    for b in budgets:
        add(best_full_within(b, reference))
        within = [r for r in flexi if r["flops"] <= b + 1e-9]
        if within:
            add(max(within, key=lambda r: (sign * r["quality"], -r["flops"]))["candidate"])
    front = [rows[i] for i in pareto_front([r["flops"] for r in rows], [r["quality"] for r in rows],
                                           higher_is_better)]
    for r in sorted(front, key=lambda r: (_slack(r["flops"], budgets), r["flops"])):
        if r["candidate"].spec == FULL or n_flexi < max_front:
            add(r["candidate"])
    return out


def _slack(flops: float, budgets) -> float:
    """How far below the nearest budget at or above ``flops`` a candidate sits (inf above every budget)."""
    return min((b - flops for b in budgets if flops <= b + 1e-9), default=math.inf)


def screen(fr: Frontier, log=print) -> list[Measured]:
    """The coarse grid and one refinement round around the Pareto front, on the screen prompts x 1 seed, in order of
    use to the headline: full@reference (the screen's reference, generated anyway), the grid within the largest
    budget (nearest below a budget first), its refinement, the rest of the grid (cheapest first), the refinement of
    the whole front. Stops where the next candidate would eat into the headline rows' reserve, once it has had its
    minimum share of the time limit."""
    from .frontier_budget import SCREEN_SHARE

    s, budget = fr.s, fr.budget
    start = budget.elapsed()
    modes = fr.pipe.model.modes
    grid = [c for c in coarse_grid(modes, s.step_grid) if c.steps <= s.steps]
    top = max(s.budgets)
    low = fr.flops_low  # an adaptive candidate's FLOPs are known after it ran: place it by its lower bound
    inside = [Candidate("full", s.steps)] + sorted((c for c in grid if low(c) <= top + 1e-9),
                                                   key=lambda c: _slack(low(c), s.budgets))
    outside = sorted((c for c in grid if low(c) > top + 1e-9), key=low)
    done: dict[Candidate, Measured] = {}

    def run(cands, stage: str) -> bool:
        for c in cands:
            if c in done:
                continue
            cost = budget.rows_cost(s.screen_prompts, [fr.flops(c)])
            own = budget.limit > 0 and budget.elapsed() - start + cost <= SCREEN_SHARE * budget.limit
            if not own and not budget.fits(cost, fr.headline_reserve(),
                                           f"screen stopped in {stage} after {len(done)} candidates"):
                return False
            done[c] = fr.measure(c, s.screen_prompts, 1)
        return True

    def near_front(limit: float) -> list[Candidate]:
        rows = list(done.values())
        q = [float(np.nanmean(m.scores[s.quality])) for m in rows]
        near = [n for i in pareto_front([m.flops for m in rows], q, QUALITY[s.quality])
                for n in neighbours(rows[i].candidate, modes, s.steps)]
        return [c for c in dict.fromkeys(near) if c not in done and low(c) <= limit + 1e-9]

    ok = run(inside, "the grid within budget")
    ok = ok and (not s.refine or run(near_front(top), "the refinement within budget"))
    ok = ok and run(outside, "the grid above budget")
    if ok and s.refine:
        run(near_front(math.inf), "the refinement")
    log(f"screened {len(done)} candidates")
    return list(done.values())


def sweep_guidance(fr: Frontier, picks: list[Candidate], screened: dict[Candidate, Measured]) -> list[Candidate]:
    """For each pick, the guidance scale with the best screen quality (the run's default scale included)."""
    s, sign = fr.s, 1.0 if QUALITY[fr.s.quality] else -1.0
    out = []
    for c in picks:
        tried = [screened[c]]
        for g in s.cfg_scales:
            alt = Candidate(c.spec, c.steps, g)
            if g != s.guidance_scale and fr.budget.fits(fr.budget.rows_cost(s.screen_prompts, [fr.flops(alt)]),
                                                        fr.headline_reserve(), "guidance sweep cut"):
                tried.append(fr.measure(alt, s.screen_prompts, 1))
        out.append(max(tried, key=lambda m: sign * np.nanmean(m.scores[s.quality])).candidate)
    return out


def row_groups(cands: list[Candidate], flops, reference_steps: int) -> list[list[Candidate]]:
    """The front line in run order: each FlexiDiT schedule together with its full@N baseline (a pick is only worth
    its row beside the baseline), everything else alone."""
    wanted, seen, groups = set(cands), set(), []
    for c in cands:
        if c in seen:
            continue
        group = [c]
        if c.spec != "full":
            base = baseline_for(flops(c), reference_steps)
            if base in wanted and base not in seen:
                group.append(base)
        seen.update(group)
        groups.append(group)
    return groups
