"""tools/benchmark.py end to end on the CPU: a tiny model, the frontier with FVD statistics and the calibration
table, per-sample scores, kernels mode."""
import json

import numpy as np
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
                         fvd_real=12, device="cpu", gen_batch=8, budgets=(0.9, 0.3), workers=1)
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
    e = cal.entries[1]  # FVD - floor and its interval, for --compute --quality fvd
    assert e.fvd == weak["fvd"]["above_floor"] and cal.entries[0].fvd == full["fvd"]["above_floor"]
    assert (e.fvd_low, e.fvd_high) == (weak["fvd"]["fvd"]["low"] - weak["fvd"]["floor"]["mean"],
                                       weak["fvd"]["fvd"]["high"] - weak["fvd"]["floor"]["mean"])
    choice = pick(0.6, cal, steps=2)  # only full@1 fits
    assert (choice.schedule, choice.steps) == ("full", 1)
    # the headline: within 0.9 the weak schedule, beside full@1 and full@2, each target met or missed; none within 0.3
    best, none = report["headline"]
    assert (best["schedule"], best["baseline"], none["schedule"]) == ("weak_first:coarse_space:1@2", "full@1", None)
    targets = best["targets"]
    assert set(targets) == {"colour", "shape", "size", "direction", "speed", "background", "jump", "straightness",
                            "fvd", "better_than_baseline"}
    for k in ("jump", "shape"):  # jump: lower is better, so met unless its difference is surely above 0
        d, higher = weak["vs_reference"][k], k != "jump"
        assert targets[k]["met"] == (d["high"] >= 0 if higher else d["low"] <= 0)
    fvd_t = targets["fvd"]
    assert fvd_t["met"] == (weak["fvd"]["above_floor"] <= 1.1 * full["fvd"]["above_floor"])
    assert targets["better_than_baseline"]["met"] == (weak["vs_baseline"]["fidelity"]["low"] > 0)
    # --replot re-renders from the JSON alone, and writes the headline table between the markers of each doc
    (out / "frontier.md").unlink()
    assert bench.main(["--replot", "--output", str(out)]) == 0
    assert (out / "frontier.md").read_text() == md
    from flexivid.eval.frontier_render import HEADLINE_END, HEADLINE_START

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{HEADLINE_START}\nold table\n{HEADLINE_END}\nafter\n")
    for _ in range(2):  # idempotent: the block is replaced, not appended
        assert bench.main(["--replot", "--output", str(out), "--headline-into", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{HEADLINE_END}\nafter\n")
    assert "old table" not in text and text.count(HEADLINE_START) == 1 and str(out / "frontier.json") in text
    line = next(x for x in text.splitlines() if x.startswith("| <= 0.9 | **weak_first:coarse_space:1@2**"))
    assert ("| met" in line or "| MISSED" in line) and "<= 0.3: no FlexiDiT schedule" in text
    assert "| <= 0.9 | full@1 |" in text and "| <= 0.9 | full@2 |" in text
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert bench.main(["--replot", "--output", str(out), "--headline-into", str(readme), str(plain)]) == 2
    assert plain.read_text() == "no markers\n"


def test_fvd_check_says_whether_swapped_real_clips_move_fvd_past_the_floor():
    from flexivid.eval.frontier_report import fvd_check
    from flexivid.eval.fvd_stats import FrechetReference

    rng = np.random.default_rng(0)
    draw = lambda n, shift=0.0: rng.normal(size=(n, 6)) + shift  # noqa: E731
    reference = FrechetReference(draw(400))
    real = {"floor": draw(200), "direction swapped": draw(200, 1.0), "speed swapped": draw(200)}
    check = fvd_check(real, reference, 200, 50)
    assert check["direction swapped"]["responds"] and not check["speed swapped"]["responds"]
    assert check["direction swapped"]["low"] > check["floor"]["high"] >= check["speed swapped"]["low"]


def test_a_run_with_no_time_left_still_writes_its_table(tmp_path):
    from flexivid.eval.frontier import FrontierSettings, run_frontier

    ckpt = _tiny_export(tmp_path / "model", num_frames=8, size=16)
    out = tmp_path / "bench"
    s = FrontierSettings(checkpoint=str(ckpt), output=str(out), steps=2, step_grid=(2,), prompts=2, seeds=1,
                         screen_prompts=2, batch_sizes=(1,), fvd=False, device="cpu", time_limit=1e-3, workers=1)
    report = run_frontier(s, log=lambda *_: None)
    saved = json.loads((out / "frontier.json").read_text())
    assert saved["rows"] == [] and saved["screen"] == [] and report["truncated"] == saved["truncated"]
    assert saved["truncated"][0].startswith("screen stopped") and "front line: skipped full@2" in saved["truncated"]
    assert "Cut by the time limit" in (out / "frontier.md").read_text()
    assert not (ckpt / "calibration.json").exists()  # no measured row: no table for --compute to trust


def test_searched_frontier_screens_then_runs_each_pick_beside_its_baseline(tmp_path):
    from flexivid.eval.frontier import FrontierSettings, run_frontier
    from flexivid.eval.frontier_search import Candidate, baseline_for, coarse_grid

    ckpt = _tiny_export(tmp_path / "model", num_frames=8, size=16)
    s = FrontierSettings(checkpoint=str(ckpt), output=str(tmp_path / "bench"), steps=3, step_grid=(2, 3), prompts=2,
                         seeds=1, screen_prompts=2, max_front=1, budgets=(0.9,), cfg_scales=(2.0,), fvd=False,
                         batch_sizes=(1,), timing_repeats=1, device="cpu", workers=1, calibration=False)
    report = run_frontier(s, log=lambda *_: None)
    screened = {r["label"] for r in report["screen"]}
    grid = {c.label for c in coarse_grid({"full": (1, 2, 2), "coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)},
                                         (2, 3))}
    assert grid <= screened and report["truncated"] == []  # no limit: the whole grid, then its refinement
    rows = report["rows"]
    # full@reference, then the most full steps within the budget (fewer steps at the same budget), then the pick
    # (its guidance swept on the screen set) and its full@N at equal FLOPs
    assert [r["label"] for r in rows[:2]] == ["full@3", "full@2"] and len(rows) in (3, 4)
    pick = rows[2]
    assert pick["family"] != "fewer full steps" and pick["flops_fraction"] <= 0.9 and pick["guidance"] in (None, 2.0)
    base = baseline_for(pick["flops_fraction"], 3).label
    assert base == pick["baseline"] and [r["label"] for r in rows].count(base) == 1
    # the headline compares the pick with full@2 on the front line, paired
    f = report["headline"][0]["fewer_steps"]
    assert (f["full"], f["source"], f["paired"]) == ("full@2", "front line", True)
    d = f["diff"]
    assert f["verdict"] == ("tie" if d["low"] <= 0 <= d["high"] else "better" if d["low"] > 0 else "worse")
    best = max((r for r in report["screen"] if r["family"] != "fewer full steps" and r["flops_fraction"] <= 0.9),
               key=lambda r: (r["quality"]["mean"], -r["flops_fraction"]))  # ties: the cheaper
    assert Candidate(pick["spec"], pick["steps"]).label == best["label"]


def test_sample_scores_read_attributes_and_frame_error():
    from flexivid.config import DataConfig
    from flexivid.data.synthetic import SyntheticVideoDataset
    from flexivid.eval.frontier import clip_workers, sample_scores, swapped_clips

    cfg = DataConfig(split="test", num_frames=16, height=64, width=64, num_clips=6)
    ds = SyntheticVideoDataset(cfg)
    real = torch.stack([ds[i]["video"] for i in range(6)])
    wanted = [ds.attrs(i) for i in range(6)]
    same = sample_scores(real, real, wanted)
    assert same["fidelity"].tolist() == [1.0] * 6 and same["psnr"].tolist() == [100.0] * 6
    assert same["jump"].tolist() == [0.0] * 6 and (same["straightness"] > 0.99).all()
    moved = swapped_clips(cfg, "direction")
    pool = clip_workers(2)
    try:  # worker processes measure the same numbers, in the same order; PSNR/SSIM in chunks of 4 clips
        in_pool = sample_scores(moved, real, wanted, pool, chunk=4)
    finally:
        pool.shutdown()
    serial = sample_scores(moved, real, wanted)
    assert serial.keys() == in_pool.keys()
    for k in serial:
        np.testing.assert_array_equal(serial[k], in_pool[k], err_msg=k)
    assert serial["direction"].tolist() == [0.0] * 6  # every clip now moves the other way
    assert serial["colour"].tolist() == [1.0] * 6 and (serial["psnr"] < 40).all()


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


def test_time_budget_refuses_what_its_estimates_do_not_fit_and_records_it_once():
    from flexivid.eval.frontier_budget import TimeBudget

    now = [0.0]
    log = []
    b = TimeBudget(100.0, log.append, clock=lambda: now[0])
    assert b.rows_cost(10, [1.0]) == 0.0 and b.fits(0.0)  # nothing measured yet: the first step always runs
    b.generation.add(20.0, 10 * 1.0)  # 10 clips of full@reference in 20 s
    b.scoring.add(1.0, 10)
    b.features.add(3.0, 10)
    # 100 clips at 0.5 of full's FLOPs: 100 x (0.5 x 2 + 0.1) s; with features 0.3 s more per clip
    assert b.rows_cost(100, [0.5]) == pytest.approx(110.0) and b.rows_cost(100, [0.5], True) == pytest.approx(140.0)
    b.rewrite.add(2.0, 1)  # a rewrite costs 2 s per row in the table: rows 3 and 4 cost 6 + 8 s
    assert b.rows_cost(0, [0.5, 0.5], rewrite_rows=2) == pytest.approx(14.0)
    now[0] = 30.0
    assert b.fits(60.0, 10.0) and not b.fits(60.0, 10.1, "screen stopped")
    assert not b.fits(71.0, 0.0, "screen stopped")
    assert b.cut == ["screen stopped"] and len(log) == 1 and "70 s left" in log[0]
    assert b.timing_reserve() == pytest.approx(8.0)
    unlimited = TimeBudget(0.0, clock=lambda: 1e9)
    assert unlimited.fits(1e12, 1e12) and unlimited.timing_reserve() == 0.0


def test_front_line_runs_each_pick_beside_its_baseline():
    from flexivid.eval.frontier_search import row_groups
    from flexivid.eval.frontier_search import Candidate

    flops = {"full@30": 1.0, "a@30": 0.34, "full@10": 10 / 30, "b@30": 0.24, "full@7": 7 / 30, "c@30": 0.345}
    cands = [Candidate("full", 30), Candidate("a", 30), Candidate("full", 10), Candidate("b", 30),
             Candidate("full", 7), Candidate("c", 30)]
    groups = row_groups(cands, lambda c: flops[c.label], 30)
    assert [[c.label for c in g] for g in groups] == [["full@30"], ["a@30", "full@10"], ["b@30", "full@7"], ["c@30"]]


def test_kernel_categoriser_groups_rows_and_keeps_the_total():
    from flexivid.eval.kernel_profile import CATEGORIES, categorise, group, top_kernels

    names = {
        "nvjet_sm90_tst_192x192_64x4_1x2_h_bz_coopB_bias_TNN": "matmul",
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64": "matmul",
        "triton_tem_fused_addmm_0": "matmul",
        "aten::addmm": "matmul",
        "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x64": "attention",
        "fmha_cutlassF_bf16_aligned_64x128_rf_sm80(PyTorchMemEffAttention::AttentionKernel)": "attention",
        "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64>>": "attention",
        "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
        "triton_per_fused__to_copy_add_mul_native_layer_norm_3": "norm+elementwise",
        "void at::native::vectorized_elementwise_kernel<8, at::native::CUDAFunctor_add<float>>": "norm+elementwise",
        "void at::native::reduce_kernel<512, 1>": "norm+elementwise",
        "aten::native_layer_norm": "norm+elementwise",
        "aten::add": "norm+elementwise",
        "Memcpy DtoD (Device -> Device)": "copies",
        "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>": "copies",
        "aten::copy_": "copies",
        "aten::view": "other",
        "some_custom_kernel": "other",
    }
    for name, cat in names.items():
        assert categorise(name) == cat, name
    # an Inductor kernel names its source ops: a fused QK-norm + RoPE feeding the attention is still element-wise
    fused = "triton_red_fused__fused_rms_norm__scaled_dot_product_cudnn_attention__to_copy_add_mul_permute_select_1"
    assert categorise(fused) == "norm+elementwise"
    rows = [(n, float(i + 1)) for i, n in enumerate(names)] + [("aten::add", 100.0)]
    g = group(rows)
    assert list(g) == [*CATEGORIES, "total"]
    assert g["total"] == sum(t for _, t in rows) == sum(g[c] for c in CATEGORIES)
    assert g["other"] == 17.0 + 18.0 and g["copies"] == 14.0 + 15.0 + 16.0
    top = top_kernels(rows, 3)
    assert [x["name"] for x in top] == ["aten::add", "some_custom_kernel", "aten::view"]
    assert top[0]["calls"] == 2 and top[0]["time"] == 113.0 and top[0]["category"] == "norm+elementwise"
    assert top[0]["share"] == pytest.approx(113.0 / g["total"])
    assert group([]) == {**dict.fromkeys(CATEGORIES, 0.0), "total": 0.0} and top_kernels([]) == []


def test_kernels_profile_section_on_the_tiny_case():
    from flexivid.eval.kernel_profile import CATEGORIES, profile_case
    from flexivid.eval.speed import SECTIONS
    from flexivid.eval.speed_report import report_markdown

    assert SECTIONS[-1] == "kernels_profile"  # after every existing section
    r = profile_case("tiny", log=lambda _: None, top=5)
    assert (r["preset"], r["tokens"], r["batch"], r["run"]) == ("tiny", 256, 2, "eager")
    cats = r["categories"]
    assert list(cats) == [*CATEGORIES, "total"]
    for who in ("full_ms", "plain_ms"):
        assert sum(cats[c][who] for c in CATEGORIES) == pytest.approx(cats["total"][who])
        assert cats["matmul"][who] > 0 and cats["attention"][who] > 0
    # the full mode runs the plain stack's matmuls and more (cross-attention, patch embed, final layer)
    assert r["kernels"]["full"] > r["kernels"]["plain"] > 0
    assert 0 < len(r["top_full"]) <= 5
    assert [x["ms"] for x in r["top_full"]] == sorted((x["ms"] for x in r["top_full"]), reverse=True)
    assert sum(x["share"] for x in r["top_full"]) <= 1 + 1e-9
    env = {"device": "cpu", "torch": "2.x", "cuda": None, "python": "3"}
    md = report_markdown({"environment": env, "settings": {"schedules": ["full@30"], "checkpoint": "c",
                                                          "compile": False, "repeats": 1},
                          "sampling": "eager", "suite_s": 1.0, "skipped": [], "kernels_profile": [r]})
    assert "## Where the full mode loses to the plain DiT stack" in md
    table = md.split("### tiny")[1]
    assert sum(line.startswith("| ") and line.split(" | ")[0][2:] in CATEGORIES for line in table.splitlines()) == 5
    assert "| total |" in table and "Top 5 of the full mode" in table
    with pytest.raises(ValueError, match="unknown kernel case 'huge'; allowed: reference"):
        profile_case("huge")
