"""Run configuration: the DeepSpeed JSON derived from / checked against the YAML, one-line CLI errors (exit 2),
deterministic step-indexed batches and modes."""
import dataclasses
import importlib.util
import json
import subprocess
import sys

import pytest
from train_utils import REPO, build_stub_cache, run_train, tiny_pretrain_config, write_config

from flexivid.config import ConfigError, config_from_dict, load_config
from flexivid.training.batches import StepSampler, step_mode
from flexivid.training.deepspeed_config import build_ds_config


def _cli():
    spec = importlib.util.spec_from_file_location("train_cli", REPO / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cfg(**train):
    return config_from_dict({"train": {"micro_batch_size": 4, "grad_accum": 2, "lr": 3e-4, **train}})


def _ds_json(tmp_path, **keys):
    base = json.loads((REPO / "ds_configs" / "zero2.json").read_text())
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({**base, **keys}))
    return str(path)


def test_ds_config_is_derived_from_yaml():
    ds = build_ds_config(_cfg(grad_clip=0.5, betas=[0.9, 0.95], weight_decay=0.01), world_size=3, device_type="cpu")
    assert ds["train_batch_size"] == 4 * 2 * 3
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 2
    assert ds["gradient_clipping"] == 0.5 and ds["bf16"] == {"enabled": False} and ds["zero_optimization"]["stage"] == 2
    assert ds["optimizer"] == {"type": "AdamW", "params": {"lr": 3e-4, "betas": [0.9, 0.95], "weight_decay": 0.01,
                                                           "eps": 1e-8, "torch_adam": True}}
    assert ds["scheduler"] == {"type": "WarmupLR", "params": {"warmup_min_lr": 3e-4, "warmup_max_lr": 3e-4,
                                                              "warmup_num_steps": 1, "warmup_type": "linear"}}
    assert build_ds_config(_cfg(), 1, "cuda")["bf16"] == {"enabled": True}  # precision auto -> bf16 on GPU


def test_cosine_schedule_and_each_zero_json():
    cfg = _cfg(lr_schedule="cosine", warmup_steps=10, steps=100, min_lr_ratio=0.1)
    for stage in (1, 2, 3):
        cfg.train = dataclasses.replace(cfg.train, deepspeed_config=f"ds_configs/zero{stage}.json")
        ds = build_ds_config(cfg, 2, "cpu")
        assert ds["zero_optimization"]["stage"] == stage
        assert ds["scheduler"] == {"type": "WarmupCosineLR", "params": {
            "total_num_steps": 100, "warmup_num_steps": 10, "warmup_min_ratio": 0.0, "cos_min_ratio": 0.1,
            "warmup_type": "linear"}}


def test_explicit_json_values_must_agree(tmp_path):
    cfg = _cfg()
    cfg.train = dataclasses.replace(cfg.train, deepspeed_config=_ds_json(tmp_path, train_batch_size=16,
                                                                         train_micro_batch_size_per_gpu=4))
    assert build_ds_config(cfg, 2, "cpu")["train_batch_size"] == 16  # 4 * 2 * 2: agrees
    with pytest.raises(ConfigError) as e:
        build_ds_config(cfg, 4, "cpu", "run.yaml")  # 4 * 2 * 4 = 32
    msg = str(e.value)
    assert "\n" not in msg and "16" in msg and "32" in msg and "ds.json" in msg and "run.yaml" in msg
    cfg.train = dataclasses.replace(cfg.train, deepspeed_config=_ds_json(tmp_path, fp16={"enabled": True}))
    with pytest.raises(ConfigError, match="fp16"):
        build_ds_config(cfg, 1, "cpu")


@pytest.mark.slow  # a subprocess
def test_unknown_key_exits_2_with_one_line(tmp_path):
    cfg = write_config(tmp_path / "bad.yaml", {"train": {"stepz": 3}})
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "train.py"), "--config", str(cfg)], cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown key 'train.stepz'" in proc.stderr


@pytest.mark.parametrize("case", ["batch_mismatch", "missing_data", "missing_cache", "missing_base", "run_exists",
                                  "nothing_to_resume", "timestep_scale", "timestep_shift", "timestep_loc_uniform",
                                  "timestep_shift_type"])
def test_config_errors_exit_2_with_one_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    raw = tiny_pretrain_config(tmp_path / "out", tmp_path / "cache.safetensors")
    (tmp_path / "cache.safetensors").write_bytes(b"")  # exists; never read before the check fails
    expect = []
    if case == "batch_mismatch":
        raw["train"]["deepspeed_config"] = _ds_json(tmp_path, train_micro_batch_size_per_gpu=16)
        expect = ["train_micro_batch_size_per_gpu", "16", "2", "ds.json", "run.yaml"]
    elif case == "missing_data":
        raw["data"].update(name="video_folder", root=str(tmp_path / "nope"), captions=str(tmp_path / "c.csv"))
        expect = ["data.root not found", "nope"]
    elif case == "missing_cache":
        raw["text"]["cache_path"] = str(tmp_path / "absent.safetensors")
        expect = ["text cache not found", f"tools/build_text_cache.py --config {tmp_path / 'run.yaml'}"]
    elif case == "missing_base":
        raw.update(stage="distill", distill={"base_checkpoint": str(tmp_path / "no_base"), "modes": {"c": [2, 2, 2]}})
        expect = ["distill.base_checkpoint not found", "no_base"]
    elif case == "run_exists":
        (tmp_path / "out" / "ckpt").mkdir(parents=True)
        (tmp_path / "out" / "ckpt" / "latest").write_text("step0000005\n")
        expect = ["already holds a run", "--resume"]
    elif case == "timestep_scale":
        raw["train"]["timestep_scale"] = 0
        expect = ["'train.timestep_scale' must be > 0", "got 0", "run.yaml"]
    elif case == "timestep_shift":
        raw["train"]["timestep_shift"] = -3
        expect = ["'train.timestep_shift' must be > 0", "got -3", "run.yaml"]
    elif case == "timestep_loc_uniform":
        raw["train"].update(timestep_sampling="uniform", timestep_loc=0.5)
        expect = ["timestep_loc / timestep_scale", "'uniform'", "logit_normal", "run.yaml"]
    elif case == "timestep_shift_type":
        raw["train"]["timestep_shift"] = "high"
        expect = ["'train.timestep_shift' must be float", "'high'"]
    elif case == "nothing_to_resume":
        expect = ["nothing to resume"]
    cfg = write_config(tmp_path / "run.yaml", raw)
    assert _cli().main(["--config", str(cfg), *(["--resume"] if case == "nothing_to_resume" else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    for word in expect:
        assert word in err, (word, err)


@pytest.mark.slow  # a training subprocess
def test_caption_missing_from_cache_names_the_build_command(tmp_path):
    cache = build_stub_cache(tmp_path / "cache.safetensors", captions=["a caption no clip has"])
    cfg = write_config(tmp_path / "run.yaml", tiny_pretrain_config(tmp_path / "out", cache, steps=2))
    proc = run_train(cfg)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: caption not in text cache") and "Traceback" not in proc.stderr
    assert f"python tools/build_text_cache.py --config {cfg}" in last


def test_shipped_configs_load_and_match_their_ds_json():
    for name in ("pretrain_tiny_cpu", "pretrain_synthetic", "distill_tiny_cpu", "distill_synthetic"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        ds = build_ds_config(cfg, 1, "cuda")
        assert ds["train_micro_batch_size_per_gpu"] == cfg.train.micro_batch_size


def test_step_sampler_is_a_pure_function_of_step_and_rank():
    n, micro, accum, world = 10, 2, 2, 2
    samplers = [StepSampler(n, 7, micro, accum, world, r, 0, 5) for r in range(world)]
    # One optimizer step reads micro * accum * world consecutive positions of the epoch permutation: no overlap.
    step0 = [i for k in range(accum) for s in samplers for i in s.indices(0, k)]
    assert len(set(step0)) == 8
    # Positions 8, 9 (step 1, micro 0, rank 0) complete the first epoch: every clip exactly once.
    assert sorted(step0 + samplers[0].indices(1, 0)) == list(range(n))
    # Resuming at step 3 yields exactly the tail of the uninterrupted order.
    full = list(StepSampler(n, 7, micro, accum, world, 1, 0, 5))
    assert list(StepSampler(n, 7, micro, accum, world, 1, 3, 5)) == full[3 * accum:]
    assert len(full) == 5 * accum


def test_step_mode_is_shared_by_ranks_and_follows_weights():
    weights = {"coarse_time": 3.0, "coarse_space": 1.0, "never": 0.0}
    modes = [step_mode(0, s, weights) for s in range(400)]
    assert modes == [step_mode(0, s, weights) for s in range(400)]  # any rank computes the same sequence
    assert "never" not in modes and 0.65 < modes.count("coarse_time") / 400 < 0.85
