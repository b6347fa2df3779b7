"""Adaptive per-sample schedule (diffusion.adaptive): the spec, the switch policy, the pipeline's per-sample run and
FLOPs, batch independence, graphed == eager, and its place in the frontier and the calibration table."""
import math

import pytest
import torch

from flexivid.diffusion.adaptive import AdaptiveSchedule, parse_adaptive, sample_adaptive
from flexivid.diffusion.schedules import flops_fraction, parse_schedule

from test_pipeline import CLIP, MODES, pipe  # noqa: F401  (the tiny pipeline fixture)

ALL = {"full": (1, 2, 2), **MODES}
PROMPTS = ["a red ball", "blue sky over the sea", "c d e"]
STEPS = dict(CLIP, steps=6)


@pytest.mark.parametrize("spec, match", [
    ("adaptive:coarse_space", r"use adaptive:MODE:TAU\[:HEAD\[:TAIL\]\], e.g. adaptive:coarse_space:1\.2"),
    ("adaptive:coarse_space:1:1:1:1", r"use adaptive:MODE:TAU"),
    ("adaptive:full:1", r"MODE must be a weak mode of this model \(coarse_time, coarse_space\), got 'full'"),
    ("adaptive:blurry:1", r"MODE must be a weak mode.*got 'blurry'"),
    ("adaptive:coarse_space:fast", r"TAU must be a number >= 0 \(or inf\), got 'fast'"),
    ("adaptive:coarse_space:-1", r"TAU must be a number >= 0"),
    ("adaptive:coarse_space:nan", r"TAU must be a number >= 0"),
    ("adaptive:coarse_space:1:x", r"HEAD must be an integer in 0..10, got 'x'"),
    ("adaptive:coarse_space:1:11", r"HEAD must be in 0..10 \(--steps\), got 11"),
    ("adaptive:coarse_space:1:1:-1", r"TAIL must be in 0..10"),
])
def test_bad_specs_are_one_line_and_name_the_fix(spec, match):
    with pytest.raises(ValueError, match=match) as e:
        parse_schedule(spec, 10, ALL)
    assert "\n" not in str(e.value) and spec in str(e.value)


def test_defaults_realised_schedules_and_bounds():
    s = parse_schedule("adaptive:coarse_space:2", 30, ALL)
    assert s == AdaptiveSchedule("coarse_space", 2.0, 3, 1, 30, "adaptive:coarse_space:2")  # head ceil(30/10)
    assert str(s) == "adaptive:coarse_space:2" and s.modes_used == {"full", "coarse_space"}
    assert parse_schedule("adaptive:coarse_time:inf:0:2", 7, ALL).tau == math.inf
    assert s.realised(10).order() == "full:3,coarse_space:7,full:20"
    assert s.realised(30).order() == "full:3,coarse_space:26,full:1"  # never switched: weak until the tail
    assert s.realised(3).order() == "full:30" and s.upper_bound().order() == "full:30"
    # a head and tail that cover every step leave nothing weak
    assert parse_adaptive("adaptive:coarse_space:0:4:3", 6, ALL).realised(6).order() == "full:6"


def _toy(decay):
    """A run_step whose clean latent of sample k settles at rate ``decay[k] ** i``: known switch steps."""
    calls = []

    def run(i, mode, idx, x):
        calls.append((i, mode, tuple(idx)))
        sig = 1 - i / 6
        nxt = 1 - (i + 1) / 6
        target = torch.stack([torch.full(x.shape[1:], 1.0 + decay[k] ** i) for k in idx])  # x0 of step i
        return x + (nxt - sig) * (x - target) / sig  # Euler with v = (x - x0) / sigma
    return run, calls


def test_switch_policy_edge_cases():
    sigmas = torch.linspace(1, 0, 7)
    x = torch.ones(3, 1, 1, 2, 2)
    run, calls = _toy([0.1, 0.5, 0.9])
    rates = sample_adaptive(run, x, sigmas, AdaptiveSchedule("coarse_space", 0.0, 1, 1, 6))[2]
    assert rates.shape == (3, 5) and (rates[:, :-1] > 0).all()
    # TAU = 0: weak from the head to the tail for every sample
    _, switch, _ = sample_adaptive(run, x, sigmas, AdaptiveSchedule("coarse_space", 0.0, 1, 1, 6))
    assert switch == [6, 6, 6]
    # TAU = inf: full from the first step with a rate (after step 1; steps 0..head-1 are full anyway)
    run, calls = _toy([0.1, 0.5, 0.9])
    _, switch, _ = sample_adaptive(run, x, sigmas, AdaptiveSchedule("coarse_space", math.inf, 1, 1, 6))
    assert switch == [2, 2, 2] and [c[1] for c in calls] == ["full", "coarse_space"] + ["full"] * 4
    # a TAU between the samples' rates: the fast-settling sample switches first, one group per mode and step
    tau = float(rates[1, 1])  # sample 1's rate after step 2: rates 4.9 0.53 | 2.0 1.2 0.67 | 0.32 0.30
    run, calls = _toy([0.1, 0.5, 0.9])
    _, switch, _ = sample_adaptive(run, x, sigmas, AdaptiveSchedule("coarse_space", tau, 1, 1, 6))
    assert switch == [3, 4, 2]  # sample 2 barely moves (low rate at once), sample 1 sits on TAU one step longer
    for i in range(6):
        groups = [c for c in calls if c[0] == i]
        assert sorted(k for g in groups for k in g[2]) == [0, 1, 2] and len(groups) == len({g[1] for g in groups})


def test_pipeline_tau_edges_equal_their_static_schedules_and_count_flops(pipe):  # noqa: F811
    pipe.sampling = "eager"
    kw = dict(seed=3, progress=False, **STEPS)
    never, info = pipe(PROMPTS, schedule="adaptive:coarse_space:0:2", **kw)
    static, _ = pipe(PROMPTS, schedule="full:2,coarse_space:3,full:1", **kw)
    assert torch.equal(never, static) and info["orders"] == ["full:2,coarse_space:3,full:1"] * 3
    sched = parse_schedule("full:2,coarse_space:3,full:1", 6, pipe.model.modes)
    lens = [3, 5, 3]  # StubTextEncoder: one token per word
    want = [flops_fraction(sched, pipe.model.config, pipe.model.modes, (3, 4, 16, 16), n) for n in lens]
    assert info["flops_fractions"] == pytest.approx(want) and info["flops_fraction"] == pytest.approx(max(want))
    assert info["flops_fraction_mean"] == pytest.approx(sum(want) / 3) and len(info["rates"][0]) == 5
    assert info["schedule"] == "adaptive:coarse_space:0:2" and len(info["modes"]) == 3
    # TAU = inf with a head of 2: full at the first rate, i.e. every step full
    always, info = pipe(PROMPTS, schedule="adaptive:coarse_space:inf:2", **kw)
    full, _ = pipe(PROMPTS, schedule="full", **kw)
    assert torch.equal(always, full) and info["orders"] == ["full:6"] * 3 and info["flops_fraction"] == 1.0


def _mixed_tau(pipe, **kw):  # noqa: F811
    """A TAU that splits PROMPTS: between two samples' rates after step 1 of a run that stays weak (the same in every
    run; not on a rate itself, where the last bit of a batch-dependent sum would decide)."""
    _, info = pipe(PROMPTS, schedule="adaptive:coarse_space:0:0:1", **kw)
    low, high = sorted(r[0] for r in info["rates"])[:2]
    return round((low + high) / 2, 6)


def test_videos_do_not_depend_on_the_batch(pipe):  # noqa: F811
    pipe.sampling = "eager"
    kw = dict(seed=[5, 6, 7], progress=False, **STEPS)
    spec = f"adaptive:coarse_space:{_mixed_tau(pipe, **kw)!r}:0:1"
    video, info = pipe(PROMPTS, schedule=spec, **kw)
    assert len(set(info["orders"])) >= 2  # a mixed batch: two groups at some step
    in_twos, twos = pipe(PROMPTS, schedule=spec, batch_size=2, **kw)
    assert twos["orders"] == info["orders"] and torch.allclose(in_twos, video, atol=1e-5)
    for i, p in enumerate(PROMPTS):
        alone, one = pipe([p], schedule=spec, seed=[5, 6, 7][i], progress=False, **STEPS)
        assert one["orders"] == [info["orders"][i]] and torch.allclose(alone[0], video[i], atol=1e-5)
        assert one["flops_fractions"][0] == pytest.approx(info["flops_fractions"][i])


@pytest.mark.slow
def test_graphed_trace_equals_eager_bitwise_on_a_mixed_batch(pipe):  # noqa: F811
    from flexivid.diffusion.graphed import StepGraphs

    kw = dict(seed=[5, 6, 7], progress=False, **STEPS)
    pipe.sampling = "eager"
    spec = f"adaptive:coarse_space:{_mixed_tau(pipe, **kw)!r}:0:1"
    eager, info = pipe(PROMPTS, schedule=spec, **kw)
    pipe.sampling, pipe._graphs = "graphed", StepGraphs(pipe.model, backend="trace")
    try:
        traced, tinfo = pipe(PROMPTS, schedule=spec, **kw)
    finally:
        pipe.sampling, pipe._graphs = "auto", None
        torch._dynamo.reset()  # the traced steps of its sub-batch shapes: no other test shares them
    assert tinfo["sampling"] == "graphed" and tinfo["orders"] == info["orders"] and len(set(info["orders"])) >= 2
    assert torch.equal(traced, eager)


def test_progress_bar_names_the_modes(pipe, capsys):  # noqa: F811
    pipe.sampling = "eager"
    pipe("a b", schedule="adaptive:coarse_space:0:1", progress=True, **CLIP)
    err = capsys.readouterr().err
    assert "denoising (adaptive)" in err and "mode=coarse_space" in err and "mode=full" in err


def test_static_scheduler_refuses_an_adaptive_spec():
    from flexivid.diffusion.scheduler import FlexiScheduler

    with pytest.raises(ValueError, match="is adaptive .*run it through VideoPipeline"):
        FlexiScheduler(ALL).set_timesteps(6, "adaptive:coarse_space:1")


def test_wan_integration_refuses_an_adaptive_spec():
    pytest.importorskip("diffusers")
    from diffusers import WanTransformer3DModel

    from flexivid.integrations.wan import FlexiWanTransformer
    from flexivid.models.modes import lora_specs
    from test_wan_pipeline import TINY

    flexi = FlexiWanTransformer(WanTransformer3DModel(**TINY).eval(), lora_specs({"coarse_space": (1, 4, 4)}, 4))
    with pytest.raises(ValueError, match="is adaptive .*give the Wan integration a static schedule"):
        flexi.set_schedule("adaptive:coarse_space:1", steps=4)


def test_frontier_family_labels_neighbours_and_rescale():
    from flexivid.eval.frontier_search import (ADAPTIVE, ADAPTIVE_TAUS, Candidate, coarse_grid, family_of,
                                               neighbours, parse_label)

    modes = {"full": (1, 4, 4), "coarse_time": (2, 4, 4), "coarse_space": (1, 8, 8)}
    grid = [c for c in coarse_grid(modes) if c.family == ADAPTIVE]
    assert {c.steps for c in grid} == {6, 8, 10, 12, 15, 20, 25, 30} and len(grid) == 8 * len(ADAPTIVE_TAUS)
    for c in grid:
        assert parse_label(c.label, 30) == c and isinstance(parse_schedule(c.spec, c.steps, modes), AdaptiveSchedule)
    c = Candidate("adaptive:coarse_space:2", 20)
    assert family_of(c.spec) == ADAPTIVE and c.label == "adaptive:coarse_space:2@20"
    near = neighbours(c, modes, 30)
    assert {x.spec for x in near} >= {"adaptive:coarse_space:1.41", "adaptive:coarse_space:2.83"}
    assert Candidate("adaptive:coarse_space:2", 18) in near  # N - 10%: TAU per unit sigma is kept
    head = [x for x in neighbours(Candidate("adaptive:coarse_space:2:4:1", 20), modes, 30) if x.steps == 18]
    assert head == [Candidate("adaptive:coarse_space:2:4:1", 18)]  # an explicit HEAD keeps its share: 4 x 18/20


def test_frontier_flops_of_an_adaptive_candidate_are_measured(pipe):  # noqa: F811
    from flexivid.eval.frontier import Frontier, FrontierSettings
    from flexivid.eval.frontier_budget import TimeBudget
    from flexivid.eval.frontier_search import Candidate

    pipe.sampling = "eager"
    fr = object.__new__(Frontier)  # only what flops / generate read: no checkpoint, no data set
    fr.s = FrontierSettings(checkpoint="unused", steps=6, gen_batch=2, guidance_scale=4.0)
    fr.pipe, fr.budget, fr.measured_flops = pipe, TimeBudget(0.0, log=lambda *_: None), {}
    fr.captions, fr.clip = PROMPTS, (4, 16, 16)
    fr._lengths, fr._latent = [3, 5], (3, 4, 16, 16)
    c = Candidate("adaptive:coarse_space:0:1", 4)
    high, low = fr.flops(c), fr.flops_low(c)
    assert high == pytest.approx(4 / 6) and low < high  # before it runs: all full, and weak until the tail
    fr.generate(c, 3, 1)
    got = fr.flops(c)
    assert got == fr.flops_low(c) == fr.measured_flops[c] and low - 0.01 < got < high


def test_calibration_picks_an_adaptive_row_by_its_measured_flops(pipe):  # noqa: F811
    from flexivid.calibration import Calibration, Entry

    good = [0.9, 0.8, 0.7, 0.85] * 8
    spec = "adaptive:coarse_space:0:1"  # its bound before running is all full (1.0): measured 0.55
    pipe.sampling = "eager"
    pipe.calibration = Calibration("fidelity", True, 3, [4, 16, 16], [
        Entry("full@3", "full", 3, 4.0, 1.0, 0.9, 0.88, 0.92, {"b1": 1.0}, [g + 0.1 for g in good]),
        Entry(f"{spec}@3", spec, 3, 4.0, 0.55, 0.85, 0.83, 0.87, {"b1": 0.7}, good),
        Entry("full@1", "full", 1, 4.0, 1 / 3, 0.5, 0.45, 0.55, {"b1": 0.3}, [g - 0.3 for g in good])])
    try:
        _, info = pipe("a small green square", compute=0.6, progress=False, **CLIP)
        assert (info["schedule"], info["steps"]) == (spec, 3) and info["orders"] == ["full:1,coarse_space:1,full:1"]
        _, info = pipe("a small green square", compute=0.5, progress=False, **CLIP)
        assert info["schedule"] == "full" and info["steps"] == 1  # 0.55 does not fit 0.5
    finally:
        pipe.calibration = None


@pytest.mark.slow
def test_frontier_end_to_end_with_an_adaptive_row(tmp_path):
    from flexivid.calibration import load_calibration
    from flexivid.eval.frontier import FrontierSettings, run_frontier
    from test_benchmark import _tiny_export

    ckpt = _tiny_export(tmp_path / "model", num_frames=8, size=16)
    s = FrontierSettings(checkpoint=str(ckpt), output=str(tmp_path / "bench"), steps=4, prompts=3, seeds=1,
                         schedules=["adaptive:coarse_space:0:1@4", "full:1,coarse_space:2,full:1@4"], fvd=False, batch_sizes=(1, 2), timing_repeats=1,
                         device="cpu", workers=1, gen_batch=2)
    report = run_frontier(s, log=lambda *_: None)
    rows = {r["label"]: r for r in report["rows"]}
    row = rows["adaptive:coarse_space:0:1@4"]
    assert row["family"] == "adaptive" and row["flops_from"] == "measured mean over the samples"
    assert rows["full@4"]["flops_from"] == "schedule"
    # TAU = 0: every sample ran full:1,coarse_space:2,full:1 (the static row: the largest over the prompt lengths,
    # the adaptive row: the mean over the samples), far below the all-full bound it had before it ran
    static = rows["full:1,coarse_space:2,full:1@4"]["flops_fraction"]
    assert row["flops_fraction"] == pytest.approx(static, rel=1e-3) and row["flops_fraction"] < 0.9
    assert row["timings"]["b1_eager"] > 0 and row["timings"]["b2_eager"] > 0
    entry = next(e for e in load_calibration(ckpt).entries if e.label == row["label"])
    assert entry.flops_fraction == row["flops_fraction"] and entry.schedule == "adaptive:coarse_space:0:1"
