"""The frontier's headline against fewer steps at the same budget: the best FlexiDiT schedule within a budget beside
the most full steps within it, paired on the front line, else on the screen and marked as such; and the replot of a
committed run with that logic."""
import json
import shutil
from pathlib import Path

import numpy as np

from flexivid.eval.frontier_render import headline_table
from flexivid.eval.frontier_report import headline

SETTINGS = {"steps": 30, "budgets": [0.35, 0.25], "quality": "fidelity", "screen_prompts": 32}


def _iv(mean, half=0.02):
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": 32}


def _row(label, flops, q, family="custom order", **extra):
    return {"label": label, "family": family, "spec": label.split("@")[0], "flops_fraction": flops,
            "metrics": {"fidelity": _iv(q)}, "vs_reference": {}, "timings": {}, "speedups": {}, **extra}


def _screen(label, flops, q, scores=None):
    out = {"label": label, "family": "x", "flops_fraction": flops, "quality": _iv(q, 0.05), "vs_reference": None}
    return {**out, "scores": scores} if scores is not None else out


def test_fewer_steps_on_the_front_line_winning_is_said_plainly():
    rows = [_row("full@30", 1.0, 0.99, "fewer full steps"), _row("full@10", 10 / 30, 0.95, "fewer full steps"),
            _row("full@7", 7 / 30, 0.80, "fewer full steps"),
            _row("a@15", 0.248, 0.89, baseline="full@7", vs_baseline={"fidelity": _iv(0.09, 0.03)},
                 vs_fewer_steps={"full@10": _iv(-0.06, 0.02)})]
    high, low = headline(rows, SETTINGS)
    assert high["schedule"] == "a@15" and high["fewer_steps"]["full"] == "full@10"
    assert (high["fewer_steps"]["source"], high["fewer_steps"]["verdict"]) == ("front line", "worse")
    # within 0.25 the most full steps are full@7, the equal-FLOPs baseline: its paired difference is reused
    assert (low["fewer_steps"]["full"], low["fewer_steps"]["verdict"]) == ("full@7", "better")
    table = "\n".join(headline_table({"settings": SETTINGS, "quality": "fidelity", "rows": rows,
                                      "headline": [high, low]}))
    assert "fewer steps wins at this budget: -0.060 [-0.080, -0.040] vs full@10" in table
    assert "FlexiDiT wins at this budget: +0.090 [+0.060, +0.120] vs full@7" in table
    assert "| <= 0.35 | full@10 | 33.3 |" in table  # the full@N within the budget has its own row


def test_fewer_steps_only_screened_is_compared_on_the_screen_and_marked():
    rows = [_row("full@30", 1.0, 0.99, "fewer full steps"), _row("full@7", 7 / 30, 0.80, "fewer full steps"),
            _row("a@15", 0.248, 0.89, baseline="full@7", vs_baseline={"fidelity": _iv(0.09, 0.03)})]
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 1.0, 32)
    paired = [_screen("a@15", 0.248, 0.86, list(base)), _screen("full@10", 10 / 30, 0.95, list(base + 0.1))]
    f = headline(rows, SETTINGS, paired)[0]["fewer_steps"]
    assert (f["source"], f["paired"], f["verdict"], f["n"]) == ("screen", True, "worse", "32 x 1")
    assert abs(f["diff"]["mean"] + 0.1) < 1e-9
    # older JSON: no per-prompt screen scores; separate intervals, overlapping here: a tie, full@10 ahead
    unpaired = [_screen("a@15", 0.248, 0.86), _screen("full@10", 10 / 30, 0.90)]
    h = headline(rows, SETTINGS, unpaired)
    f = h[0]["fewer_steps"]
    assert (f["source"], f["paired"], f["verdict"], f["ahead"]) == ("screen", False, "tie", "full")
    table = "\n".join(headline_table({"settings": SETTINGS, "quality": "fidelity", "rows": rows, "headline": h,
                                      "screen": unpaired}))
    assert "| <= 0.35 | full@10 — screen only (32 x 1) | 33.3 | 0.900 [0.850, 0.950] | n/a |" in table
    assert "fewer steps wins or ties at this budget: full@10 0.900 [0.850, 0.950] vs this schedule's 0.860" in table
    assert "both screen only (32 x 1), unpaired" in table
    # never screened either: said, not guessed
    f = headline(rows, SETTINGS, [])[0]["fewer_steps"]
    assert f["source"] is None and f["verdict"] is None


def test_replot_of_the_committed_h200_run_shows_full_at_10_from_the_screen(tmp_path):
    import tools.benchmark as bench

    src = Path(__file__).resolve().parents[1] / "docs/results/frontier_v3/frontier.json"
    shutil.copy(src, tmp_path / "frontier.json")
    assert bench.main(["--replot", "--output", str(tmp_path)]) == 0
    md = (tmp_path / "frontier.md").read_text()
    head = md.split("## Headline")[1].split("## Front line")[0]
    assert "| <= 0.35 | full@10 — screen only (32 x 1) | 33.3 | 0.953 [0.896, 1.000] |" in head
    assert "- <= 0.35: **coarse_time:5,coarse_space:5,full:5@15** against full@10" in head
    assert "fewer steps wins or ties at this budget" in head
    assert json.loads((tmp_path / "frontier.json").read_text()) == json.loads(src.read_text())  # raw file untouched


def test_frontier_md_lists_each_schedule_against_the_most_full_steps_within_a_budget():
    from flexivid.eval.frontier_render import markdown

    rows = [_row("full@30", 1.0, 0.99, "fewer full steps"), _row("full@10", 10 / 30, 0.95, "fewer full steps"),
            _row("full@7", 7 / 30, 0.80, "fewer full steps"),
            _row("a@15", 0.248, 0.89, baseline="full@7", vs_baseline={"fidelity": _iv(0.09, 0.03)},
                 verdict_vs_baseline="better", vs_fewer_steps={"full@10": _iv(-0.06, 0.02)})]
    settings = {**SETTINGS, "prompts": 256, "seeds": 3, "checkpoint": "c", "guidance_scale": 4.0,
                "merge_adapters": True, "fvd_real": 2048}
    report = {"device": "CPU", "clip": [16, 64, 64], "quality": "fidelity", "higher_is_better": True,
              "settings": settings, "rows": [{**r, "front": {}} for r in rows], "truncated": []}
    report["headline"] = headline(report["rows"], settings)
    md = markdown(report)
    assert "## Against the most full steps within each budget" in md
    assert "| a@15 | 24.8 | full@10 | -0.060 [-0.080, -0.040] | worse (fewer steps wins) |" in md


def test_an_exact_tie_is_a_tie_not_a_win_for_either():
    rows = [_row("full@30", 1.0, 0.99, "fewer full steps"), _row("full@10", 10 / 30, 0.9, "fewer full steps"),
            _row("a@15", 0.248, 0.9, vs_fewer_steps={"full@10": {"mean": 0.0, "low": 0.0, "high": 0.0}})]
    f = headline(rows, SETTINGS)[0]["fewer_steps"]
    assert (f["verdict"], f["ahead"]) == ("tie", "neither")
    table = "\n".join(headline_table({"settings": SETTINGS, "quality": "fidelity", "rows": rows,
                                      "headline": headline(rows, SETTINGS)}))
    assert "fewer steps ties at this budget: ≈ +0.000" in table and "wins or ties" not in table


def test_replot_draws_two_rows_of_one_family_at_the_same_cost(tmp_path):
    import tools.benchmark as bench

    src = Path(__file__).resolve().parents[1] / "docs/results/frontier_v4_tails/frontier.json"
    report = json.loads(src.read_text())
    costs = [r["flops_fraction"] for r in report["rows"] if r["family"] == "full first"]
    assert len(costs) > len(set(round(c, 12) for c in costs))  # the case the plot once failed on
    shutil.copy(src, tmp_path / "frontier.json")
    assert bench.main(["--replot", "--output", str(tmp_path)]) == 0
    assert (tmp_path / "frontier.png").stat().st_size > 0
    assert "full:1,coarse_space:8,full:5@14" in (tmp_path / "frontier.md").read_text()


def test_fvd_verdict_needs_apart_intervals_and_lower_wins():
    from flexivid.eval.frontier_render import fvd_verdict

    def row(label, mean, low, high):
        return {"label": label, "fvd": {"above_floor": mean, "fvd": {"low": low, "high": high}}}

    assert "fewer steps wins, 658.9 vs full@10's 143.5" in fvd_verdict(row("a", 658.9, 600, 700),
                                                                      row("full@10", 143.5, 120, 190))
    assert "FlexiDiT wins" in fvd_verdict(row("a", 100, 90, 110), row("full@10", 143.5, 120, 190))
    assert "tie (intervals overlap)" in fvd_verdict(row("a", 150, 130, 170), row("full@10", 143.5, 120, 190))
    assert fvd_verdict({"label": "a"}, row("full@10", 143.5, 120, 190)) == ""  # a run without FVD says nothing
