"""tools/benchmark.py end to end on the CPU: a tiny model, the frontier with FVD statistics and the calibration
table, per-sample scores, kernels mode."""
import json

import pytest
import torch

from flexivid.config import ModelConfig, TextConfig
from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.modes import flexify, lora_specs
from flexivid.models.serialization import ClipConfig, ExportSpec, save_model

from conftest import randomize_zero_init

pytestmark = pytest.mark.slow  # multi-process or end-to-end runs


def _tiny_export(path, num_frames=8, size=32):
    torch.manual_seed(0)
    m = randomize_zero_init(FlexiVideoDiT(ModelConfig(preset="tiny", in_channels=3, text_dim=384)))
    flexify(m, lora_specs({"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}, 4))
    save_model(m, path, ExportSpec(text=TextConfig(max_length=32), clip=ClipConfig(num_frames, size, size, 8.0)))
    return path


def test_frontier_end_to_end_with_fvd_statistics_and_calibration(tmp_path):
    import tools.benchmark as bench
    from flexivid.calibration import load_calibration, pick
    from flexivid.eval.frontier import FrontierSettings, run_frontier
    from test_fvd import TinyDetector

    ckpt = _tiny_export(tmp_path / "model", num_frames=8, size=16)
    out = tmp_path / "bench"
    s = FrontierSettings(checkpoint=str(ckpt), output=str(out), steps=2, prompts=4, seeds=2,
                         schedules=["weak_first:coarse_space:1", "full@1"], batch_sizes=(2,), timing_repeats=1,
                         fvd_real=12, device="cpu", gen_batch=8)
    report = run_frontier(s, log=lambda *_: None, detector=TinyDetector())
    for name in ("frontier.md", "frontier.json", "frontier.png", "samples.gif"):
        assert (out / name).stat().st_size > 0, name
    rows = {r["label"]: r for r in json.loads((out / "frontier.json").read_text())["rows"]}
    assert list(rows) == ["full@2", "weak_first:coarse_space:1@2", "full@1"]  # full@reference always first
    full, weak, one = rows["full@2"], rows["weak_first:coarse_space:1@2"], rows["full@1"]
    # FLOPs against full@2: one full step is exactly half; a weak step is cheaper than a full one
    assert full["flops_fraction"] == 1.0 and one["flops_fraction"] == 0.5 and 0.5 < weak["flops_fraction"] < 1.0
    assert weak["baseline"] == "full@1"  # fewer full steps at equal FLOPs
    # full@2 against itself: PSNR at its cap, every paired difference exactly 0; the weak schedule differs
    assert full["metrics"]["psnr"]["mean"] == 100.0
    assert all(d["low"] == d["mean"] == d["high"] == 0.0 for d in full["vs_reference"].values())
    assert weak["vs_reference"]["psnr"]["high"] < 0
    assert full["metrics"]["fidelity"]["n"] == 4 and full["n_seeds"] == 2
    # FVD: a floor at the same N, FVD-infinity from 3 subset sizes, a paired difference for non-reference rows
    f = weak["fvd"]
    assert f["n_fake"] == 8 and sorted(int(k) for k in f["by_size"]) == [2, 4, 8]
    assert f["above_floor"] == f["fvd"]["mean"] - f["floor"]["mean"] and "vs_reference" in f
    assert "vs_reference" not in full["fvd"] and "fvd_inf" in full["fvd"]
    assert set(report["fvd_check"]) == {"n", "floor", "direction swapped", "speed swapped"}
    assert weak["timings"]["b2_eager"] > 0 and full["speedups"]["b2_eager"] == 1.0
    md = (out / "frontier.md").read_text()
    assert "| weak_first:coarse_space:1@2 | 83.3 | full@1 |" in md.replace(f"{100 * weak['flops_fraction']:.1f}",
                                                                            "83.3")
    # the calibration table the picker reads, in the checkpoint folder
    cal = load_calibration(ckpt)
    assert [e.label for e in cal.entries] == list(rows) and cal.clip == [8, 16, 16]
    assert [e.flops_fraction for e in cal.entries] == [r["flops_fraction"] for r in rows.values()]
    assert len(cal.entries[0].scores) == 4 and set(cal.entries[0].time_s) == {"b2"}
    choice = pick(0.6, cal, steps=2)  # only full@1 fits
    assert (choice.schedule, choice.steps) == ("full", 1)
    # --replot re-renders from the JSON alone
    (out / "frontier.md").unlink()
    assert bench.main(["--replot", "--output", str(out)]) == 0
    assert (out / "frontier.md").read_text() == md


def test_sample_scores_read_attributes_and_frame_error():
    from flexivid.config import DataConfig
    from flexivid.data.synthetic import SyntheticVideoDataset
    from flexivid.eval.frontier import sample_scores, swapped_clips

    cfg = DataConfig(split="test", num_frames=16, height=64, width=64, num_clips=6)
    ds = SyntheticVideoDataset(cfg)
    real = torch.stack([ds[i]["video"] for i in range(6)])
    wanted = [ds.attrs(i) for i in range(6)]
    same = sample_scores(real, real, wanted, threads=2)
    assert same["fidelity"].tolist() == [1.0] * 6 and same["psnr"].tolist() == [100.0] * 6
    moved = sample_scores(swapped_clips(cfg, "direction"), real, wanted, threads=2)
    assert moved["direction"].tolist() == [0.0] * 6  # every clip now moves the other way
    assert moved["colour"].tolist() == [1.0] * 6 and (moved["psnr"] < 40).all()


def test_kernels_mode_writes_table(tmp_path):
    import tools.benchmark as bench
    from flexivid.config import ModelConfig as MC
    from flexivid.models.flops import forward_flops

    assert bench.main(["--kernels", "--cases", "tiny", "--runs", "eager", "graphed", "--repeats", "1", "--output",
                       str(tmp_path)]) == 0
    data = json.loads((tmp_path / "kernels.json").read_text())
    rows = data["rows"]
    assert data["device"] and data["torch"] == torch.__version__
    assert {r["mode"] for r in rows} == {"full", "coarse_time", "coarse_space", "plain"}
    assert {r["run"] for r in rows} == {"eager"}  # graphed needs CUDA: skipped on the CPU
    assert "plain DiT stack" in (tmp_path / "kernels.md").read_text()
    full, space = (next(r for r in rows if r["mode"] == m) for m in ("full", "coarse_space"))
    assert full["tokens"] == 4 * space["tokens"]  # (1,2,2) -> (1,4,4) patches: a quarter of the tokens
    # TFLOP/s is the model's FLOPs count over the measured time of each row, and the FLOPs ratio that count's ratio
    cfg, latent = MC(preset="tiny", in_channels=3), (3, 4, 16, 16)
    patches = {"full": (1, 2, 2), "coarse_space": (1, 4, 4)}
    flops = {m: forward_flops(cfg, p, latent, 32, batch=2) for m, p in patches.items()}
    for r, m in ((full, "full"), (space, "coarse_space")):
        assert r["tflops"] == pytest.approx(flops[m] / (r["ms"] / 1e3) / 1e12, rel=1e-6)
    assert space["ratio_flops"] == pytest.approx(flops["coarse_space"] / flops["full"], rel=1e-9)


def test_kernel_rows_stop_at_the_deadline():
    """A kernel case under a time budget: no row starts after the deadline, and the plain calibration row is timed
    right after full, so a cut run keeps the ratio the targets are stated in."""
    import time

    from flexivid.eval.kernels import run_cases

    logs = []
    rows, _ = run_cases(["tiny"], ("eager",), repeats=1, warmup=0, log=logs.append,
                        deadline=time.perf_counter() - 1)
    assert rows == [] and sum("skipped: past the time budget" in line for line in logs) == 4
    rows, _ = run_cases(["tiny"], ("eager",), repeats=1, warmup=0, log=logs.append)
    assert [r.mode for r in rows] == ["full", "plain", "coarse_time", "coarse_space"]


def test_plain_stack_flops_match_torch_counter():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from flexivid.eval.kernels import PlainDiTStack

    stack = PlainDiTStack(64, 2, 4, 4.0)
    x, c = torch.randn(3, 40, 64), torch.randn(3, 64)
    # the math backend runs attention as counted matmuls (the CPU flash kernel has no formula in the counter)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        stack(x, c)
    assert PlainDiTStack.flops(64, 2, 4.0, 40, 3) == counter.get_total_flops()




def test_profile_modes_lora_vs_merged(tmp_path):
    import tools.profile_modes as prof

    ckpt = _tiny_export(tmp_path / "model")
    out = tmp_path / "prof"
    assert prof.main(["--checkpoint", str(ckpt), "--output", str(out), "--batch", "1", "--compile", "off",
                      "--repeats", "1", "--top", "3"]) == 0
    data = json.loads((out / "profile_modes.json").read_text())
    rows = {(r["variant"], r["mode"]): r for r in data["rows"]}
    assert set(rows) == {(v, m) for v in ("lora", "merged") for m in ("full", "coarse_time", "coarse_space")}
    assert rows[("lora", "full")]["time_ratio"] == 1.0
    assert rows[("lora", "full")]["tokens"] == 4 * rows[("lora", "coarse_space")]["tokens"]
    # merged linears carry no adapter FLOPs: a lower FLOPs ratio than the peft path for the same weak mode
    assert rows[("merged", "coarse_time")]["flops_ratio"] < rows[("lora", "coarse_time")]["flops_ratio"]
    assert len(data["kernels"]["lora/coarse_space"]) == 4  # top 3 + the total
    assert "| merged | coarse_space |" in (out / "profile_modes.md").read_text()
    assert prof.main(["--checkpoint", str(tmp_path / "missing"), "--output", str(out)]) == 2


@pytest.mark.parametrize("extra, match", [
    (["--checkpoint", "{tmp}/missing"], "no exported model there"),
    (["--step-grid", "6", "40"], "--step-grid values must be in 1..--steps (30)"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--replot", "--output", "{tmp}/empty"], "frontier.json not found"),
])
def test_frontier_bad_input_is_one_line(tmp_path, capsys, extra, match):
    import tools.benchmark as bench

    ckpt = tmp_path / "model"
    (ckpt).mkdir()
    (ckpt / "config.json").write_text("{}")
    args = ["--checkpoint", str(ckpt), "--output", str(tmp_path / "out")] + [e.format(tmp=tmp_path) for e in extra]
    assert bench.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_time_limit_cuts_stages_and_records_what_it_cut():
    import time

    from flexivid.eval.frontier import Frontier, FrontierSettings

    fr = Frontier.__new__(Frontier)  # only the clock: no model needed
    fr.s, fr.log, fr.truncated = FrontierSettings(checkpoint="unused", time_limit=10.0), (lambda *_: None), []
    fr.t_start = time.perf_counter() - 5.0  # half the limit spent
    assert not fr.over(0.8, "front line stopped")
    assert fr.over(0.4, "screen stopped") and fr.over(0.4, "screen stopped")
    assert fr.truncated == ["screen stopped"]  # recorded once, reported in frontier.json / .md
    fr.s.time_limit = 0.0  # no limit
    assert not fr.over(0.0, "never")
