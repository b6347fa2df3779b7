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
