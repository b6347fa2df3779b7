"""The --compute picker: best measured quality within the budget, ties to the cheaper, latency, fallback, errors."""
import numpy as np
import pytest

from flexivid.calibration import Calibration, Entry, load_calibration, pick


def table(a_scores, b_scores, clip=(16, 64, 64)):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 1.0, 128)
    return Calibration("fidelity", True, 30, list(clip), [
        Entry("full@30", "full", 30, 4.0, 1.0, 0.9, 0.88, 0.92, {"b1": 1.0, "b16": 1.0}, list(base + 0.1)),
        Entry("A", "interleaved:10:3", 20, 4.0, 0.30, float(np.mean(a_scores)), 0, 1, {"b1": 0.8, "b16": 0.3},
              list(a_scores)),
        Entry("B", "weak_first:coarse_space:5", 15, 3.0, 0.33, float(np.mean(b_scores)), 0, 1,
              {"b1": 0.4, "b16": 0.34}, list(b_scores)),
        Entry("full@6", "full", 6, 4.0, 0.2, 0.6, 0.58, 0.62, {"b1": 0.2, "b16": 0.2}, list(base - 0.3)),
    ])


def scores(shift, noise=0.0, seed=1):
    base = np.random.default_rng(0).uniform(0.5, 1.0, 128)
    return base + shift + np.random.default_rng(seed).normal(0, noise, 128)


def test_best_quality_within_budget_and_ties_go_to_the_cheaper():
    clear = table(scores(-0.05), scores(0.0))  # B is better than A on every prompt
    c = pick(0.33, clear, 30)
    assert (c.schedule, c.steps, c.guidance_scale) == ("weak_first:coarse_space:5", 15, 3.0)
    assert "best measured fidelity" in c.rule
    tied = table(scores(0.0, noise=0.2, seed=1), scores(0.005, noise=0.2, seed=2))  # B higher by noise only
    c = pick(0.33, tied, 30)
    assert c.schedule == "interleaved:10:3" and "cheapest tie with best measured B" in c.rule
    assert pick(0.31, clear, 30).schedule == "interleaved:10:3"  # B no longer fits
    assert (pick(0.25, clear, 30).schedule, pick(0.25, clear, 30).steps) == ("full", 6)


def test_latency_budget_uses_measured_time_at_the_nearest_batch():
    t = table(scores(-0.05), scores(0.0))
    assert pick(0.5, t, 30, optimize="latency", batch=1).schedule == "weak_first:coarse_space:5"  # 0.4 of full
    c = pick(0.33, t, 30, optimize="latency", batch=12)  # b16 column: B takes 0.34, A 0.3
    assert c.schedule == "interleaved:10:3" and c.cost == pytest.approx(0.3)


def test_fallback_without_table_or_for_another_clip():
    c = pick(0.34, None, 30)
    assert (c.schedule, c.steps) == ("full", 10) and "fallback rule fewer full steps" in c.rule
    other = table(scores(0), scores(0), clip=(8, 32, 32))
    assert pick(0.34, other, 30, clip=(16, 64, 64)).rule.startswith("no calibration table")
    with pytest.raises(ValueError, match="needs measured times"):
        pick(0.5, None, 30, optimize="latency")
    with pytest.raises(ValueError, match="below one full step"):
        pick(0.02, None, 30)


def test_budget_errors_and_file_round_trip(tmp_path):
    t = table(scores(0), scores(0))
    with pytest.raises(ValueError, match="cheapest costs 0.200"):
        pick(0.1, t, 30)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        pick(1.5, t, 30)
    t.save(tmp_path)
    assert load_calibration(tmp_path) == t
    assert load_calibration(tmp_path / "nowhere") is None
    (tmp_path / "calibration.json").write_text('{"version": 1, "entries": [{"label": 3}]}')
    with pytest.raises(ValueError, match="not a valid calibration table"):
        load_calibration(tmp_path)


def with_fvd(t, fvds):
    """``t`` with FVD - floor (mean, low, high) per entry label."""
    for e in t.entries:
        if e.label in fvds:
            e.fvd, e.fvd_low, e.fvd_high = fvds[e.label]
    return t


def test_quality_fvd_ranks_by_fvd_above_floor_lower_is_better_and_overlaps_go_to_the_cheaper():
    # fidelity prefers B; FVD prefers A, clearly (intervals apart): the axis decides, and the rule says which
    t = with_fvd(table(scores(-0.05), scores(0.0)), {"full@30": (60, 50, 70), "A": (150, 130, 170),
                                                      "B": (300, 260, 340), "full@6": (400, 350, 450)})
    assert pick(0.33, t, 30).schedule == "weak_first:coarse_space:5"
    c = pick(0.33, t, 30, quality="fvd")
    assert (c.schedule, c.steps, c.quality, c.axis) == ("interleaved:10:3", 20, 150, "FVD - floor")
    assert "best measured FVD - floor (lower is better; overlapping 95% intervals tie" in c.rule
    assert "measured FVD - floor 150.000" in c.describe(0.33)
    # B's FVD a little lower, but the intervals overlap A's: a tie, and the cheaper A is taken
    t = with_fvd(t, {"A": (150, 130, 170), "B": (145, 120, 165)})
    c = pick(0.33, t, 30, quality="fvd")
    assert c.schedule == "interleaved:10:3" and "cheapest tie with best measured B on FVD - floor" in c.rule
    t = with_fvd(t, {"B": (100, 90, 110)})  # apart: B wins
    assert pick(0.33, t, 30, quality="fvd").schedule == "weak_first:coarse_space:5"
    # an entry without FVD is not a candidate on that axis
    t.entries[2].fvd = None
    assert pick(0.33, t, 30, quality="fvd").schedule == "interleaved:10:3"


def test_quality_fvd_without_fvd_in_the_table_or_an_unknown_axis_is_one_line():
    t = table(scores(0), scores(0))
    with pytest.raises(ValueError, match="has no FVD .* rewrite it with tools/benchmark.py .* or use --quality "
                                         "fidelity"):
        pick(0.5, t, 30, quality="fvd")
    with pytest.raises(ValueError, match="ranks by fidelity or fvd; use --quality fidelity or --quality fvd"):
        pick(0.5, t, 30, quality="psnr")
    t = with_fvd(t, {"B": (100, 90, 110)})
    with pytest.raises(ValueError, match="below every calibrated schedule with FVD"):
        pick(0.31, t, 30, quality="fvd")
    assert pick(0.34, None, 30, quality="fvd").rule.startswith("no calibration table")  # the fallback needs no axis


def test_tables_written_before_fvd_entries_still_load(tmp_path):
    import json

    t = table(scores(0), scores(0))
    t.save(tmp_path)
    raw = json.loads((tmp_path / "calibration.json").read_text())
    for e in raw["entries"]:
        for k in ("fvd", "fvd_low", "fvd_high"):
            del e[k]
    (tmp_path / "calibration.json").write_text(json.dumps(raw))
    assert load_calibration(tmp_path).entries[1].fvd is None
