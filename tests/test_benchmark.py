"""tools/benchmark.py end to end on the CPU: a tiny model, two schedules, table + plot written; kernels mode."""
import pytest
import json

import torch

from flexivid.config import ModelConfig, TextConfig
from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.modes import flexify, lora_specs
from flexivid.models.serialization import ClipConfig, ExportSpec, save_model

from conftest import randomize_zero_init

pytestmark = pytest.mark.slow  # multi-process or end-to-end runs


def _tiny_export(path):
    torch.manual_seed(0)
    m = randomize_zero_init(FlexiVideoDiT(ModelConfig(preset="tiny", in_channels=3, text_dim=384)))
    flexify(m, lora_specs({"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}, 4))
    save_model(m, path, ExportSpec(text=TextConfig(max_length=32), clip=ClipConfig(8, 32, 32, 8.0)))
    return path


def test_frontier_end_to_end(tmp_path):
    import tools.benchmark as bench

    ckpt = _tiny_export(tmp_path / "model")
    out = tmp_path / "bench"
    rc = bench.main(["--checkpoint", str(ckpt), "--output", str(out), "--schedules", "full", "weak_first:coarse_space:2",
                     "--steps", "3", "--num-videos", "4", "--batch-sizes", "2", "--compile", "off", "--no-fvd",
                     "--repeats", "1", "--device", "cpu"])
    assert rc == 0
    for name in ("frontier.md", "frontier.json", "frontier.png", "samples.gif"):
        assert (out / name).stat().st_size > 0, name
    rows = json.loads((out / "frontier.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["full", "weak_first:coarse_space:2"]
    assert rows[0]["flops_fraction"] == 1.0 and 0 < rows[1]["flops_fraction"] < 1
    assert rows[0]["speedups"]["b2_eager"] == 1.0 and rows[1]["timings"]["b2_eager"] > 0
    assert rows[0]["psnr"] > rows[1]["psnr"]  # full vs itself is exact; the weak schedule differs
    assert 0 <= rows[1]["fidelity"]["mean"] <= 1
    assert "weak_first:coarse_space:2" in (out / "frontier.md").read_text()


def test_kernels_mode_writes_table(tmp_path):
    import tools.benchmark as bench

    assert bench.main(["--kernels", "--cases", "tiny", "--compile", "off", "--repeats", "1", "--output",
                       str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "kernels.json").read_text())["rows"]
    assert {r["mode"] for r in rows} == {"full", "coarse_time", "coarse_space"}
    full = next(r for r in rows if r["mode"] == "full")
    assert full["ratio_flops"] == 1.0 and all(r["tflops"] > 0 for r in rows)


def test_default_sweep_has_every_family():
    from flexivid.eval.frontier import default_schedules

    fams = {f for f, _ in default_schedules(30, {"full": (1, 4, 4), "coarse_time": (2, 4, 4),
                                                 "coarse_space": (1, 8, 8)})}
    assert fams == {"full", "weak_first coarse_space", "weak_first coarse_time", "interleaved", "fewer full steps"}


def test_replot_rebuilds_table_and_plot_from_json(tmp_path):
    import tools.benchmark as bench
    from flexivid.eval.frontier import family_of

    assert [family_of(s) for s in ("full", "full@10", "weak_first:coarse_time:20", "interleaved:5:5",
                                   "coarse_space:5,full:5")] == ["full", "fewer full steps",
                                                                "weak_first coarse_time", "interleaved",
                                                                "custom order"]
    ckpt = _tiny_export(tmp_path / "model")
    out = tmp_path / "bench"
    assert bench.main(["--checkpoint", str(ckpt), "--output", str(out), "--schedules", "full", "full@2", "--steps", "3",
                       "--num-videos", "2", "--batch-sizes", "1", "--compile", "off", "--no-fvd", "--repeats", "1",
                       "--device", "cpu"]) == 0
    (out / "frontier.md").unlink()
    (out / "frontier.png").unlink()
    assert bench.main(["--replot", "--output", str(out)]) == 0
    assert "| full@2 | fewer full steps |" in (out / "frontier.md").read_text()
    assert (out / "frontier.png").stat().st_size > 0


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
