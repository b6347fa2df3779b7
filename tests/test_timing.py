"""eval.timing: round-robin order and statistics, the busy-interval union; eval.speed's schedule specs and report."""
import pytest

from flexivid.eval.speed import split_steps
from flexivid.eval.speed_report import report_markdown
from flexivid.eval.timing import Timing, _union_us, environment, round_robin


def test_round_robin_interleaves_after_warmup():
    calls = []
    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
    out = round_robin(fns, repeats=3, warmup=2)
    assert calls == ["a", "a", "b", "b", "c", "c"] + ["a", "b", "c"] * 3
    assert list(out) == ["a", "b", "c"] and all(len(t.times) == 3 for t in out.values())
    with pytest.raises(ValueError, match="repeats"):
        round_robin(fns, repeats=0)

    def broken():
        raise RuntimeError("compile failed\nlong trace")
    with pytest.raises(RuntimeError, match="compile failed"):
        round_robin({"ok": fns["a"], "bad": broken}, repeats=1)
    calls.clear()
    out = round_robin({"ok": fns["a"], "bad": broken}, repeats=2, warmup=1, keep_going=True)
    assert out["bad"].error == "RuntimeError: compile failed" and out["bad"].median is None
    assert calls == ["a"] * 3 and len(out["ok"].times) == 2


def test_round_robin_cuts_rounds_to_its_budget_judged_by_the_warmup():
    import time

    calls = []
    fns = {name: (lambda n=name: (calls.append(n), time.sleep(0.05))) for name in ("a", "b")}
    out = round_robin(fns, repeats=5, budget_s=0.25)  # a round costs ~0.1 s (the warm-up's): 2 rounds fit
    assert all(len(t.times) == 2 for t in out.values()) and len(calls) == 6
    out = round_robin(fns, repeats=5, budget_s=0.0)  # at least one round, even with no time left
    assert all(len(t.times) == 1 for t in out.values())
    assert all(len(t.times) == 5 for t in round_robin(fns, repeats=5, budget_s=None).values())


def test_timing_stats_and_union():
    t = Timing("x", [0.3, 0.1, 0.2, 0.5])
    assert (t.median, t.min, t.max) == (0.25, 0.1, 0.5)
    assert t.as_dict()["median"] == 0.25
    assert _union_us([(0, 10), (5, 12), (20, 25), (21, 22)]) == 17
    assert _union_us([]) == 0
    env = environment()
    assert env["torch"] and env["device"]


def test_split_steps():
    assert split_steps("interleaved:10:3@20") == ("interleaved:10:3", 20)
    assert split_steps("full") == ("full", 30)
    with pytest.raises(ValueError, match="positive integer"):
        split_steps("full@x")


def test_report_names_targets_and_misses():
    rows = lambda eff: [  # noqa: E731
        {"schedule": "full@30", "flops_vs_base": 1.0, "speedup": 1.0, "efficiency": 1.0, "median_ms": 80.0,
         "min_ms": 79.0, "max_ms": 82.0},
        {"schedule": "interleaved:20:6", "flops_vs_base": 0.295, "speedup": eff / 0.295, "efficiency": eff,
         "median_ms": 80.0 * 0.295 / eff, "min_ms": 1.0, "max_ms": 99.0}]
    result = {"environment": {"device": "GPU X", "torch": "2.x", "cuda": "13", "python": "3.12"},
              "settings": {"schedules": ["full@30"], "checkpoint": "ckpt", "compile": True, "repeats": 5},
              "sampling": "graphed", "suite_s": 100.0, "skipped": ["kernels paper_video: budget"],
              "end_to_end": {"1": rows(0.80), "16": rows(0.70)}}
    md = report_markdown(result)
    assert "# Speed suite: GPU X" in md and "torch 2.x" in md
    b1, b16 = md.split("## End to end, batch 16")
    assert "| interleaved:20:6 | 0.295 |" in b1 and "0.80 | yes |" in b1 and "2.71x (target >= 2.5x: yes)" in b1
    assert "0.70 | **no** |" in b16 and "(target >= 3.0x: **no**)" in b16
    assert "kernels paper_video: budget" in md


def test_fixed_cost_is_fitted_from_the_medians_and_from_the_fastest_repeats():
    from flexivid.eval.speed_report import fixed_cost_lines

    rows = [{"schedule": "full@30", "median_ms": 70.0, "min_ms": 64.0},  # 2 ms a step, 10 ms around them
            {"schedule": "full@10", "median_ms": 30.0, "min_ms": 24.0}]  # the same step, 4 ms around them
    assert fixed_cost_lines({"1": rows}) == [
        "- batch 1: a full step costs 2.00 ms, the call around the steps 10.00 ms (fit of full@30 and full@10); "
        "from the fastest repeats: 2.00 ms a step, 4.00 ms around them."]
    assert fixed_cost_lines({"1": rows[:1]}) == []
