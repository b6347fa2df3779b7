"""The frontier's search space: every family at every N parses, refinement stays valid, Pareto front and the
front-line choice."""
import pytest

from flexivid.diffusion.schedules import flops_fraction, parse_schedule
from flexivid.config import ModelConfig
from flexivid.eval.frontier_search import (ADAPTIVE, BASELINE, FULL_FIRST, Candidate, baseline_for, coarse_grid, family_of,
                                           front_line, neighbours, pareto_front, parse_label)

MODES = {"full": (1, 4, 4), "coarse_time": (2, 4, 4), "coarse_space": (1, 8, 8)}


def test_coarse_grid_covers_every_family_at_every_step_count_and_parses():
    grid = coarse_grid(MODES)
    fams = {(c.steps, c.family) for c in grid}
    for n in (6, 8, 10, 12, 15, 20, 25, 30):
        assert {f for m, f in fams if m == n} == {BASELINE, "weak_first coarse_space", "weak_first coarse_time",
                                                   "x/y weak-to-strong coarse_space", "interleaved", "custom order",
                                                   FULL_FIRST, ADAPTIVE}
    for c in grid:
        s = parse_schedule(c.spec, c.steps, MODES)
        if c.family == ADAPTIVE:  # per sample; its cheapest realisation still ends on full
            s = s.realised(c.steps)
        assert s.steps == c.steps and s.cond[-1] == "full"  # every schedule ends on full steps
        if c.family.startswith("x/y"):  # weak-to-strong: some steps run a full conditional with a weak guide
            assert any(a == "full" and b != "full" for a, b in zip(s.cond, s.guide))


def test_full_first_keeps_the_noisiest_tenth_full_at_every_step_count():
    # the caption's motion is decided at t >= 0.9: the first ceil(n / 10) steps of n run full, also after refinement
    for c in coarse_grid(MODES):
        if c.family != FULL_FIRST:
            continue
        s = parse_schedule(c.spec, c.steps, MODES)
        head = -(-c.steps // 10)
        assert s.cond[:head] == ("full",) * head and s.cond[head] == "coarse_space" and s.cond[-1] == "full"
        for near in neighbours(c, MODES, 30):
            t = parse_schedule(near.spec, near.steps, MODES)
            h = -(-near.steps // 10)
            assert near.family == FULL_FIRST and t.cond[:h] == ("full",) * h and t.cond[h] != "full"


def test_neighbours_are_valid_and_one_notch_away():
    for c in (Candidate("interleaved:4:2", 12), Candidate("weak_first:coarse_space:6", 12),
              Candidate("weak_first:coarse_space:5/2", 12), Candidate("coarse_time:4,coarse_space:4,full:4", 12),
              Candidate("full", 12)):
        near = neighbours(c, MODES, 30)
        assert near and c not in near
        for x in near:
            parse_schedule(x.spec, x.steps, MODES)
            assert abs(x.steps - c.steps) <= 1 and x.guidance == c.guidance
    six = Candidate("weak_first:coarse_space:6", 12)
    assert Candidate("weak_first:coarse_space:7", 12) in neighbours(six, MODES, 30)
    assert all(x.steps <= 30 for x in neighbours(Candidate("full", 30), MODES, 30))


def test_labels_round_trip_and_families():
    for c in (Candidate("full", 10), Candidate("weak_first:coarse_space:5", 15, 3.0), Candidate("interleaved:5:2", 20)):
        assert parse_label(c.label, 30) == c
    assert parse_label("full", 30) == Candidate("full", 30)
    with pytest.raises(ValueError, match="SPEC@N/cfgS"):
        parse_label("full@ten", 30)
    assert family_of("weak_first:coarse_time:3/1") == "x/y weak-to-strong coarse_time"
    assert family_of("coarse_space:5,full:5") == "custom order"


def test_pareto_front_keeps_only_undominated_points():
    costs = [0.2, 0.3, 0.3, 0.5, 0.6, 1.0]
    quality = [0.5, 0.7, 0.6, 0.65, 0.8, 0.8]
    assert pareto_front(costs, quality) == [0, 1, 4]  # 0.6@0.3 and 0.65@0.5 are beaten by 0.7@0.3; 1.0 adds nothing
    assert pareto_front(costs, [-q for q in quality], higher_is_better=False) == [0, 1, 4]  # e.g. FVD
    assert pareto_front(costs, quality, higher_is_better=False) == [0]
    assert pareto_front([0.1, None, 0.2], [float("nan"), 0.9, 0.5]) == [2]


def test_front_line_takes_budget_winners_their_baselines_and_full():
    rows = [{"candidate": Candidate("full", n), "flops": n / 30, "quality": 0.5 + n / 100} for n in (6, 10, 30)]
    rows += [{"candidate": Candidate("interleaved:5:2", 15), "flops": 0.24, "quality": 0.70},
             {"candidate": Candidate("weak_first:coarse_space:5", 12), "flops": 0.33, "quality": 0.75},
             {"candidate": Candidate("weak_first:coarse_space:4", 12), "flops": 0.35, "quality": 0.60}]
    picked = front_line(rows, 30, max_front=4)
    assert picked[0] == Candidate("full", 30)
    assert Candidate("interleaved:5:2", 15) in picked and Candidate("weak_first:coarse_space:5", 12) in picked
    assert Candidate("weak_first:coarse_space:4", 12) not in picked  # dominated
    assert Candidate("full", 7) in picked and Candidate("full", 9) in picked  # floor(0.24*30), floor(0.33*30)
    assert baseline_for(0.33, 30) == Candidate("full", 9) and baseline_for(10 / 30, 30).steps == 10


def test_full_at_n_costs_n_over_reference():
    cfg = ModelConfig(preset="tiny", in_channels=3)
    s = parse_schedule("full", 10, MODES)
    assert flops_fraction(s, cfg, MODES, (3, 8, 32, 32), 8) == 1.0  # per-step fraction; x N/ref in the frontier


class _Stub:
    """A Frontier stand-in on a fake clock: measuring a candidate costs its FLOPs fraction in seconds."""

    def __init__(self, limit: float, reserve: float):
        from types import SimpleNamespace

        from flexivid.eval.frontier import FrontierSettings
        from flexivid.eval.frontier_budget import TimeBudget

        self.s = FrontierSettings(checkpoint="unused", steps=12, step_grid=(6, 12), screen_prompts=4)
        self.now, self.reserve, self.order = 0.0, reserve, []
        self.budget = TimeBudget(limit, log=lambda *_: None, clock=lambda: self.now)
        self.pipe = SimpleNamespace(model=SimpleNamespace(modes=MODES))
        self.cfg = ModelConfig(preset="tiny", in_channels=3)

    def flops(self, c):
        s = parse_schedule(c.spec, c.steps, MODES)
        s = s.realised(c.steps) if c.family == ADAPTIVE else s  # as if measured: weak until the tail
        return flops_fraction(s, self.cfg, MODES, (3, 8, 32, 32), 8) * c.steps / 12

    flops_low = flops

    def measure(self, c, n, seeds):
        import numpy as np
        from types import SimpleNamespace

        self.order.append(c)
        self.now += self.flops(c)
        self.budget.generation.add(self.flops(c), n * self.flops(c))
        quality = self.flops(c) ** 0.5  # more compute, better: the front is every candidate's upper hull
        return SimpleNamespace(candidate=c, flops=self.flops(c), scores={"fidelity": np.full((n, seeds), quality)})

    def headline_reserve(self):
        return self.reserve


def test_screen_runs_within_budget_candidates_first_nearest_below_a_budget():
    from flexivid.eval.frontier_search import _slack, screen

    fr = _Stub(limit=0.0, reserve=0.0)  # no limit: everything
    done = screen(fr, log=lambda *_: None)
    grid = [c for c in coarse_grid(MODES, (6, 12))]
    assert set(grid) <= {m.candidate for m in done} and fr.order[0] == Candidate("full", 12)
    inside = [c for c in grid if fr.flops(c) <= 0.35 + 1e-9]
    first = fr.order[1:1 + len(inside)]  # the grid within the largest budget, nearest below a budget first
    assert set(first) == set(inside) and first == sorted(first, key=lambda c: _slack(fr.flops(c), (0.35, 0.25)))
    refined = fr.order[1 + len(inside):]
    k = next(i for i, c in enumerate(refined) if c in grid)  # its refinement, all within budget, comes next
    assert k > 0 and all(fr.flops(c) <= 0.35 + 1e-9 and c not in grid for c in refined[:k])
    later = [c for c in refined[k:] if c in grid]
    assert later == refined[k:k + len(later)] == sorted(later, key=fr.flops)  # then the rest, cheapest first


def test_screen_stops_at_the_reserve_but_keeps_its_own_share():
    from flexivid.eval.frontier_budget import SCREEN_SHARE
    from flexivid.eval.frontier_search import screen

    fr = _Stub(limit=100.0, reserve=97.0)  # 3 s left beside the reserve, but 15 s of screen are guaranteed
    screen(fr, log=lambda *_: None)
    spent = fr.now
    assert SCREEN_SHARE * 100.0 - 1.0 <= spent <= SCREEN_SHARE * 100.0 + 1e-9
    assert fr.budget.cut and fr.budget.cut[0].startswith("screen stopped")
    fr = _Stub(limit=100.0, reserve=60.0)  # 40 s beside the reserve: the screen goes past its share, up to the reserve
    screen(fr, log=lambda *_: None)
    assert SCREEN_SHARE * 100.0 < fr.now <= 40.0 + 1e-9


# The screen of a 380 s GPU run (docs/results/frontier_v3): label -> (FLOPs fraction of full@30, screen fidelity).
V3_SCREEN = {"full@30": (1.0, 0.995), "full@6": (0.200, 0.760), "full@8": (0.267, 0.828), "full@10": (0.333, 0.953),
             "coarse_time:2,coarse_space:2,full:4@8": (0.166, 0.714), "weak_first:coarse_space:5/2@15": (0.170, 0.766),
             "weak_first:coarse_time:7@10": (0.182, 0.776), "coarse_time:4,coarse_space:4,full:4@12": (0.198, 0.818),
             "coarse_time:5,coarse_space:5,full:5@15": (0.248, 0.865), "weak_first:coarse_time:8@15": (0.327, 0.865),
             "interleaved:10:3@20": (0.314, 0.755), "weak_first:coarse_space:17@25": (0.345, 0.833)}


def _v3_rows():
    return [{"candidate": parse_label(k, 30), "flops": f, "quality": q} for k, (f, q) in V3_SCREEN.items()]


def test_front_line_puts_the_best_full_steps_within_each_budget_first():
    picked = [c.label for c in front_line(_v3_rows(), 30, max_front=4, budgets=(0.35, 0.25))]
    # per budget: the most full steps within it, the best FlexiDiT schedule (a tie goes to the cheaper) and its
    # equal-FLOPs full@N; full@7 is both of them for 0.25
    assert picked[:4] == ["full@30", "full@10", "coarse_time:5,coarse_space:5,full:5@15", "full@7"]
    # then the rest of the front nearest below a budget first, each with its full@N; the 5th FlexiDiT one is left out
    assert picked[4:] == ["coarse_time:4,coarse_space:4,full:4@12", "full@5", "weak_first:coarse_time:7@10",
                          "weak_first:coarse_space:5/2@15"]
    assert "weak_first:coarse_time:8@15" not in picked  # dominated by full@10, which the screen also ran
    few = front_line(_v3_rows(), 30, max_front=1, budgets=(0.35, 0.25))  # headline rows survive a small max_front
    assert [c.label for c in few] == picked[:4]


class _Replay:
    """The front line on a fake clock at the per-clip costs that run measured (its frontier.md): 256 x 3 clips a
    row, FVD on, started where its screen stopped (245 of 380 s left)."""

    def __init__(self):
        from types import SimpleNamespace

        from flexivid.eval.frontier import FrontierSettings
        from flexivid.eval.frontier_budget import TimeBudget

        self.s = FrontierSettings(checkpoint="unused", time_limit=380.0)
        self.now, self.log = 0.0, []
        self.budget = TimeBudget(380.0, log=self.log.append, clock=lambda: self.now)
        self.now = 135.0
        b = self.budget
        b.generation.add(0.1052, 1), b.scoring.add(0.0030, 1), b.features.add(0.0082, 1), b.rewrite.add(0.31, 1)
        self.ns = SimpleNamespace

    def flops(self, c):
        return V3_SCREEN.get(c.label, (c.steps / 30, None))[0] if c.spec != "full" else c.steps / 30

    def measure(self, c, n, seeds, fvd=False):
        self.now += n * seeds * (self.flops(c) * 0.1052 + 0.0030 + 0.0082)
        return self.ns(candidate=c)


def test_the_headline_rows_fit_a_380_s_run_at_measured_costs_and_the_cut_takes_the_tail():
    from flexivid.eval.frontier import run_front_line

    fr = _Replay()
    cands = front_line(_v3_rows(), 30, max_front=4, budgets=(0.35, 0.25))

    def rewrite(rows):
        fr.now += 0.31 * len(rows)

    final = run_front_line(fr, cands, True, rewrite, log=fr.log.append)
    done = [m.candidate.label for m in final]
    assert done[:4] == ["full@30", "full@10", "coarse_time:5,coarse_space:5,full:5@15", "full@7"]
    assert fr.now + fr.budget.timing_reserve() <= 380.0  # the timing after the front line still fits
    cut = [x for x in fr.budget.cut if x.startswith("front line: skipped")]
    assert cut and all(c.label not in done[:4] for x in cut for c in cands if c.label in x.split("skipped ")[1])
    assert any("time limit: front line: skipped" in line for line in fr.log)
    assert fr.log[0].startswith("front line (priority order): full@30, full@10")
