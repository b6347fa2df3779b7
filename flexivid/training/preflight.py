"""Checks that fail a run in about a second, before DeepSpeed, peft and the data are imported or touched.

Each problem is one line naming the key, the file and the fix: ``ConfigError`` for inconsistent settings,
``FileNotFoundError`` for a path that does not exist.
"""
from __future__ import annotations

from pathlib import Path

from ..config import Config, ConfigError
from .deepspeed_config import build_ds_config, zero_stage


def cache_command(config_path: str) -> str:
    """The command that builds the text-embedding cache a config reads."""
    return f"python tools/build_text_cache.py --config {config_path}"


def _check_ranges(cfg: Config, where: str) -> None:
    t, d, m = cfg.train, cfg.data, cfg.model
    checks = [("train.steps", t.steps >= 1, ">= 1"),
              ("train.caption_dropout", 0.0 <= t.caption_dropout <= 1.0, "in [0, 1]"),
              ("train.ema_decay", 0.0 <= t.ema_decay < 1.0, "in [0, 1)"),
              ("train.lr", t.lr > 0, "> 0"),
              ("train.weight_decay", t.weight_decay >= 0, ">= 0"),
              ("train.min_lr_ratio", 0.0 <= t.min_lr_ratio <= 1.0, "in [0, 1]"),
              ("train.grad_clip", t.grad_clip >= 0, ">= 0 (0: no clipping)"),
              ("train.max_skipped_steps", t.max_skipped_steps >= 1, ">= 1"),
              ("train.log_every", t.log_every >= 1, ">= 1"),
              ("train.ckpt_every", t.ckpt_every >= 1, ">= 1"),
              ("train.keep_checkpoints", t.keep_checkpoints >= 1, ">= 1"),
              ("train.warmup_steps", t.warmup_steps >= 0, ">= 0"),
              ("train.timestep_scale", t.timestep_scale > 0, "> 0"),
              ("train.timestep_shift", t.timestep_shift > 0, "> 0 (1: no shift)"),
              ("data.num_frames", d.num_frames >= 1, ">= 1"),
              ("data.height", d.height >= 1, ">= 1"),
              ("data.width", d.width >= 1, ">= 1"),
              ("data.fps", d.fps >= 1, ">= 1"),
              ("data.num_clips", d.num_clips >= 1, ">= 1"),
              ("data.frame_stride", d.frame_stride >= 1, ">= 1"),
              ("data.num_workers", d.num_workers >= 0, ">= 0"),
              ("text.max_length", cfg.text.max_length >= 1, ">= 1"),
              ("model.in_channels", m.in_channels >= 1, ">= 1"),
              ("model.hidden_size", m.hidden_size >= 1, ">= 1"),
              ("model.depth", m.depth >= 1, ">= 1"),
              ("model.num_heads", m.num_heads >= 1, ">= 1"),
              ("model.mlp_ratio", m.mlp_ratio > 0, "> 0"),
              ("model.text_dim", m.text_dim >= 1, ">= 1")]
    for key, ok, rule in checks:
        if not ok:
            section, name = key.split(".")
            raise ConfigError(f"config error: '{key}' must be {rule}, got {getattr(getattr(cfg, section), name)} "
                              f"in {where}")
    if t.timestep_sampling != "logit_normal" and (t.timestep_loc, t.timestep_scale) != (0.0, 1.0):
        raise ConfigError(f"config error: train.timestep_loc / timestep_scale shape the logit-normal only, but "
                          f"train.timestep_sampling is {t.timestep_sampling!r} in {where}; set timestep_sampling: "
                          f"logit_normal or remove them")
    if m.preset is None and m.hidden_size % m.num_heads:
        raise ConfigError(f"config error: model.hidden_size {m.hidden_size} must be divisible by model.num_heads "
                          f"{m.num_heads} in {where}")


def _check_init_from(cfg: Config, where: str) -> None:
    """``train.init_from``: pretrain only, an exported model whose architecture is this config's ``model``."""
    from ..models.serialization import check_export
    from ..presets import apply_preset

    src = Path(cfg.train.init_from)
    if cfg.stage != "pretrain":
        raise ConfigError(f"config error: train.init_from is for stage 'pretrain' in {where}; a distill run starts "
                          f"from distill.base_checkpoint")
    if not (src / "config.json").is_file() or not (src / "model.safetensors").is_file():
        raise FileNotFoundError(f"train.init_from not found: {src} (expected an exported model directory with "
                                f"config.json and model.safetensors, as tools/train.py writes in <out_dir>/export)")
    saved = apply_preset(check_export(src).model)  # also reads every file's header: a truncated one fails here
    want = apply_preset(cfg.model)
    keys = ("in_channels", "hidden_size", "depth", "num_heads", "mlp_ratio", "text_dim", "patch_size", "qk_norm")
    diff = [f"{k} {getattr(saved, k)} vs {getattr(want, k)}" for k in keys if getattr(saved, k) != getattr(want, k)]
    if saved.abs_pos not in ("none", want.abs_pos):  # none -> t/thw adds a zero-initialised projection: allowed
        diff.append(f"abs_pos {saved.abs_pos} vs {want.abs_pos}")
    if diff:
        raise ConfigError(f"config error: train.init_from {src} has another architecture than model in {where}: "
                          f"{'; '.join(diff)} (checkpoint vs config)")


def _check_stage(cfg: Config, where: str) -> None:
    if cfg.train.init_from:
        _check_init_from(cfg, where)
    if cfg.stage == "pretrain":
        if cfg.model.modes:
            raise ConfigError(f"config error: model.modes must be empty for stage 'pretrain' in {where} "
                              f"(weak modes are added afterwards by a 'distill' stage)")
        return
    d = cfg.distill
    if d.diffusers_class:
        _check_diffusers_base(cfg, where)
    elif not d.base_checkpoint:
        raise ConfigError(f"config error: distill.base_checkpoint is not set in {where} (the export directory of a "
                          f"pretraining run, e.g. runs/pretrain/export; or distill.diffusers_class and "
                          f"diffusers_path for a diffusers model)")
    else:
        base = Path(d.base_checkpoint)
        if not (base / "config.json").is_file() or not (base / "model.safetensors").is_file():
            raise FileNotFoundError(f"distill.base_checkpoint not found: {base} (expected an exported model directory "
                                    f"with config.json and model.safetensors, as tools/train.py writes in "
                                    f"<out_dir>/export)")
        from ..models.serialization import check_export  # lazily: imports the model code

        check_export(base)  # a truncated or mismatched file fails here, not after DeepSpeed started
    if not d.modes:
        raise ConfigError(f"config error: distill.modes is empty in {where} "
                          f"(e.g. coarse_time: [2, 2, 2] and coarse_space: [1, 4, 4])")
    if "full" in d.modes:
        raise ConfigError(f"config error: distill.modes must not contain 'full' in {where} (it is the base mode)")
    allowed = (["full"] if d.shared_weights else []) + list(d.modes)
    for name, w in d.mode_weights.items():
        if name not in allowed:
            raise ConfigError(f"config error: distill.mode_weights names unknown mode '{name}' in {where}; "
                              f"allowed: {', '.join(allowed)}")
        if w < 0:
            raise ConfigError(f"config error: distill.mode_weights.{name} must be >= 0, got {w} in {where}")
    if d.mode_weights and sum(d.mode_weights.values()) <= 0:
        raise ConfigError(f"config error: distill.mode_weights must have a positive weight in {where}")
    if not d.shared_weights and d.lora_rank < 1:
        raise ConfigError(f"config error: distill.lora_rank must be >= 1, got {d.lora_rank} in {where}")


def _check_diffusers_base(cfg: Config, where: str) -> None:
    """``distill.diffusers_*``: exactly one of a local model folder or a config, precomputed data, no shared weights."""
    d = cfg.distill
    if d.base_checkpoint:
        raise ConfigError(f"config error: set distill.base_checkpoint or distill.diffusers_class, not both, in {where}")
    if bool(d.diffusers_path) == bool(d.diffusers_config):
        raise ConfigError(f"config error: distill.diffusers_class needs exactly one of distill.diffusers_path (a local "
                          f"model folder) or distill.diffusers_config (random weights, tests) in {where}")
    if d.diffusers_path and not Path(d.diffusers_path).is_dir():
        raise FileNotFoundError(f"distill.diffusers_path not found: {d.diffusers_path} (a local diffusers folder, "
                                f"e.g. Wan2.1-T2V-1.3B-Diffusers; set in {where})")
    if d.shared_weights:
        raise ConfigError(f"config error: distill.shared_weights is not supported with distill.diffusers_class in "
                          f"{where} (diffusers models distil one LoRA per mode)")
    if cfg.data.name != "latents":
        raise ConfigError(f"config error: distill.diffusers_class trains on precomputed clips: set data.name: latents "
                          f"in {where} (write them with tools/precompute_wan_latents.py)")


def _check_paths(cfg: Config, where: str) -> None:
    data, text, ae = cfg.data, cfg.text, cfg.autoencoder
    if data.name == "latents":
        if not data.root:
            raise ConfigError(f"config error: data.root is not set in {where} (needed by data.name: latents)")
        if not Path(data.root).is_dir() or not any(Path(data.root).glob("*.safetensors")):
            raise FileNotFoundError(f"no precomputed clips (*.safetensors) in data.root {data.root} (write them with "
                                    f"tools/precompute_wan_latents.py; set in {where})")
        return  # the text encoder and autoencoder are not used
    if data.name == "video_folder":
        for key, value in (("data.root", data.root), ("data.captions", data.captions)):
            if not value:
                raise ConfigError(f"config error: {key} is not set in {where} (needed by data.name: video_folder)")
            if not Path(value).exists():
                raise FileNotFoundError(f"{key} not found: {value} (set in {where})")
        from ..data.video_folder import scan_video_folder  # opens every listed file (cached for the dataset)

        scan_video_folder(data)
    if text.encoder == "cache":
        if not text.cache_path:
            raise ConfigError(f"config error: text.cache_path is not set in {where} (needed by text.encoder: cache)")
        if not Path(text.cache_path).is_file():
            raise FileNotFoundError(f"text cache not found: {text.cache_path} (build it with: "
                                    f"{cache_command(where)})")
    if text.encoder == "hf" and not (text.path and Path(text.path).exists()):
        raise FileNotFoundError(f"text.path not found: {text.path} (text.encoder: hf needs a local model folder)")
    if ae.kind == "vae" and not (ae.path and Path(ae.path).exists()):
        raise FileNotFoundError(f"autoencoder.path not found: {ae.path} (autoencoder.kind: vae needs a local "
                                f"diffusers AutoencoderKL folder)")


def _check_out_dir(cfg: Config, resume: bool) -> None:
    out = Path(cfg.train.out_dir)
    has_run = (out / "ckpt" / "latest").is_file()
    if resume and not has_run:
        raise FileNotFoundError(f"nothing to resume: no {out / 'ckpt' / 'latest'} (start without --resume, or "
                                f"point --output at the run to continue)")
    if resume:
        from .checkpoint import resume_point  # lazily: checkpoint imports the model code

        tag, problems = resume_point(out)
        if tag is None:
            raise FileNotFoundError(f"nothing to resume in {out / 'ckpt'}: no complete checkpoint "
                                    f"({'; '.join(problems)}); start fresh in another train.out_dir")
    if not resume and has_run:  # never mix two runs' checkpoints and logs
        raise ConfigError(f"config error: {out} already holds a run (ckpt/latest); continue it with --resume or "
                          f"choose another train.out_dir / --output")


def _check_resume_zero_stage(cfg: Config, ds: dict) -> None:
    """A ZeRO-3 checkpoint cannot resume under ZeRO-0/1/2 or vice versa (DeepSpeed fails with a bare assert)."""
    from .checkpoint import saved_is_zero3  # lazily: checkpoint imports the model code

    saved3, stage = saved_is_zero3(cfg.train.out_dir), zero_stage(ds)
    if saved3 is not None and saved3 != (stage == 3):
        wrote = "ZeRO-3" if saved3 else "ZeRO-0/1/2"
        fix = "ds_configs/zero3.json" if saved3 else "ds_configs/zero2.json"
        raise ConfigError(f"config error: the checkpoint in {cfg.train.out_dir}/ckpt was written with {wrote} but this "
                          f"run uses ZeRO-{stage} ({cfg.train.deepspeed_config}); resume with the checkpoint's stage, "
                          f"e.g. --deepspeed-config {fix}")


def preflight(cfg: Config, config_path: str, world_size: int, device_type: str, resume: bool = False) -> dict:
    """Validate ``cfg`` for a run on ``world_size`` processes; return the filled-in DeepSpeed config dict."""
    _check_out_dir(cfg, resume)
    _check_ranges(cfg, config_path)
    _check_stage(cfg, config_path)
    _check_paths(cfg, config_path)
    ds = build_ds_config(cfg, world_size, device_type, config_path)
    if resume:
        _check_resume_zero_stage(cfg, ds)
    return ds


def preflight_env(cfg: Config, config_path: str, resume: bool = False) -> dict:
    """``preflight`` for this process's launch environment (world size, CUDA or not)."""
    _check_out_dir(cfg, resume)  # the checks that need no torch first: they answer in well under a second
    _check_ranges(cfg, config_path)
    import torch

    from ..launcher import launch_env

    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    return preflight(cfg, config_path, launch_env()[2], device_type, resume)
