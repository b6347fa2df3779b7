"""The DeepSpeed JSON of a run, derived from the YAML config so the two can never disagree silently.

A ZeRO JSON in ``ds_configs/`` owns what only DeepSpeed knows (ZeRO stage, buckets, overlap). Everything the YAML
also describes (batch sizes, gradient accumulation and clipping, precision, AdamW hyper-parameters, the LR
schedule) is filled in from the YAML where the JSON says ``"auto"`` (or leaves the key out), and checked where the
JSON gives an explicit value: a conflict is a one-line ``ConfigError`` naming both values and both files.

``train_batch_size = train.micro_batch_size * train.grad_accum * world_size``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..config import Config, ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]

# Where each derived DeepSpeed key comes from in the YAML (for error messages; scheduler.params.* from the LR keys).
_SOURCES = {
    "train_batch_size": "train.micro_batch_size * train.grad_accum * world size",
    "train_micro_batch_size_per_gpu": "train.micro_batch_size",
    "gradient_accumulation_steps": "train.grad_accum",
    "gradient_clipping": "train.grad_clip",
    "bf16.enabled": "train.precision",
    "fp16.enabled": "train.precision (fp16 is not supported; use bf16)",
    "optimizer.type": "AdamW (flexivid trains with AdamW)",
    "optimizer.params.lr": "train.lr",
    "optimizer.params.betas": "train.betas",
    "optimizer.params.weight_decay": "train.weight_decay",
    "optimizer.params.torch_adam": "torch AdamW (avoids DeepSpeed's fused-Adam JIT build)",
    "scheduler.type": "train.lr_schedule",
}


def resolve_precision(precision: str, device_type: str) -> str:
    """``auto`` -> ``bf16`` on CUDA, ``fp32`` elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    if precision == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    return precision


def find_ds_json(path: str) -> Path:
    """The DeepSpeed JSON named by ``train.deepspeed_config``: as given, else relative to the repository root."""
    for cand in (Path(path), REPO_ROOT / path):
        if cand.is_file():
            return cand
    raise ConfigError(f"config error: train.deepspeed_config file not found: {path} "
                      f"(shipped: ds_configs/zero1.json, zero2.json, zero3.json)")


def scheduler_section(cfg: Config) -> dict:
    """DeepSpeed LR schedule for ``train.lr_schedule``: ``constant`` = WarmupLR, ``cosine`` = WarmupCosineLR.

    DeepSpeed's schedulers need ``warmup_num_steps >= 1``; without warmup the warmup range is collapsed (start
    = end) so the LR is constant from step 0.
    """
    t = cfg.train
    warm = max(1, t.warmup_steps)
    if t.lr_schedule == "constant":
        return {"type": "WarmupLR", "params": {
            "warmup_min_lr": 0.0 if t.warmup_steps else t.lr, "warmup_max_lr": t.lr,
            "warmup_num_steps": warm, "warmup_type": "linear"}}
    return {"type": "WarmupCosineLR", "params": {
        "total_num_steps": t.steps, "warmup_num_steps": warm, "warmup_min_ratio": 0.0 if t.warmup_steps else 1.0,
        "cos_min_ratio": t.min_lr_ratio, "warmup_type": "linear"}}


def derived_values(cfg: Config, world_size: int, precision: str) -> dict:
    """The part of the DeepSpeed JSON that the YAML determines (nested like the JSON)."""
    t = cfg.train
    return {
        "train_batch_size": t.micro_batch_size * t.grad_accum * world_size,
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "gradient_clipping": t.grad_clip,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": False},
        "optimizer": {"type": "AdamW", "params": {
            "lr": t.lr, "betas": list(t.betas), "weight_decay": t.weight_decay, "torch_adam": True}},
        "scheduler": scheduler_section(cfg),
    }


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _merge(ds: dict, derived: dict, prefix: str, where: tuple[str, str], sources: dict) -> None:
    """Fill ``"auto"`` / missing keys of ``ds`` from ``derived`` in place; raise on an explicit conflict."""
    for key, value in derived.items():
        path = f"{prefix}{key}"
        current = ds.get(key, "auto")
        if current == "auto":
            ds[key] = value
        elif isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value, path + ".", where, sources)
        elif not _same(current, value):
            source = sources.get(path, "train.lr_schedule / lr / warmup_steps / steps / min_lr_ratio")
            raise ConfigError(f"config error: {path} is {json.dumps(current)} in {where[0]} but {source} gives "
                              f"{json.dumps(value)} in {where[1]} (set it to \"auto\" in the JSON or make them agree)")


def build_ds_config(cfg: Config, world_size: int, device_type: str, config_path: str = "the YAML config") -> dict:
    """Load ``cfg.train.deepspeed_config`` and return it with every YAML-derived value filled in and checked."""
    t = cfg.train
    for name in ("micro_batch_size", "grad_accum", "steps"):
        if getattr(t, name) < 1:
            raise ConfigError(f"config error: train.{name} must be >= 1, got {getattr(t, name)} in {config_path}")
    path = find_ds_json(t.deepspeed_config)
    try:
        ds = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"config error: {path} is not valid JSON ({e})") from None
    if not isinstance(ds, dict):
        raise ConfigError(f"config error: {path} must hold a JSON object")
    precision = resolve_precision(t.precision, device_type)
    sources = dict(_SOURCES)
    sources["train_batch_size"] += f" = {t.micro_batch_size} * {t.grad_accum} * {world_size}"
    _merge(ds, derived_values(cfg, world_size, precision), "", (str(path), str(config_path)), sources)
    return ds


def zero_stage(ds: dict) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))
