"""Typed configuration: dataclasses loaded from YAML with strict key checking.

One YAML file describes a whole run (model, data, text encoder, autoencoder, training, distillation).
Unknown keys, wrong types and inconsistent values fail at load time with a one-line ``ConfigError``
that names the key and the allowed values, never deep inside a run.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from .models.modes import ModeSpec


class ConfigError(ValueError):
    """A configuration problem; the message is one line naming the key and the fix."""


@dataclass
class ModelConfig:
    """Architecture of a FlexiVideoDiT. ``preset`` fills hidden_size/depth/num_heads; giving one of them with a
    different value than the preset's is a ``ConfigError`` when loading a config."""

    preset: str | None = None
    in_channels: int = 3
    hidden_size: int = 384
    depth: int = 8
    num_heads: int = 6
    mlp_ratio: float = 4.0
    text_dim: int = 384
    # Base (pre-trained) patch size in (t, h, w); the `full` mode always uses it.
    patch_size: tuple[int, int, int] = (1, 2, 2)
    # Weak modes: name -> ModeSpec (patch, adapter none | lora | shared, rank, alpha); the one record of the modes.
    # In YAML a mode is {patch: [t, h, w], adapter: lora, rank: 32} or a bare patch [t, h, w] (adapter none).
    modes: dict[str, ModeSpec] = field(default_factory=dict)
    # "paper": FlexiDiT's W' = B_{mode->base}^T W (avg-pool invariant); "pinv": FlexiViT's PI-resize.
    projection: str = "paper"
    qk_norm: bool = True
    attention_backend: str = "auto"  # auto | xformers | sdpa
    rope_theta: float = 10000.0
    # Absolute position added to the tokens (fixed sin-cos of the base-grid coordinates of each token, so weak modes
    # get their patch centres): "none" (RoPE only: attention sees relative offsets, a token cannot tell which frame
    # it is in), "t" (frame index), "thw" (frame, row and column).
    abs_pos: str = "none"


@dataclass
class DataConfig:
    name: str = "synthetic"  # synthetic | video_folder | latents (precomputed latents + text embeddings in root)
    num_frames: int = 16
    height: int = 64
    width: int = 64
    num_clips: int = 4096  # synthetic only: clips per epoch (rendered on the fly, seeded)
    seed: int = 0
    split: str = "train"  # train | test (held-out caption combinations)
    root: str | None = None  # video_folder: folder of videos
    captions: str | None = None  # video_folder: CSV or JSONL with (path, caption)
    frame_stride: int = 1
    num_workers: int = 0
    fps: int = 8  # playback rate of the clips; exported with the model as generation's default


@dataclass
class TextConfig:
    encoder: str = "minilm"  # minilm | hf | cache
    path: str | None = None  # hf: local model folder
    cache_path: str | None = None  # safetensors embedding cache (read, and written by tools)
    max_length: int = 32


@dataclass
class AutoencoderConfig:
    kind: str = "pixel"  # pixel | vae
    path: str | None = None  # vae: local diffusers AutoencoderKL folder
    scaling_factor: float | None = None  # vae: overrides the VAE's own config value


@dataclass
class TrainConfig:
    steps: int = 1000
    micro_batch_size: int = 8  # per GPU
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # constant (DeepSpeed WarmupLR) | cosine (WarmupCosineLR, to min_lr_ratio * lr)
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    # Divergence stop: this many optimizer steps in a row skipped by DeepSpeed (non-finite gradients) end the run
    # with an error naming the last good checkpoint; a non-finite loss ends it at once.
    max_skipped_steps: int = 10
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    timestep_sampling: str = "logit_normal"  # logit_normal | uniform
    # SD3's timestep options: the logit-normal's mean m and std s (logit_normal only), and the shift
    # t' = s t / (1 + (s - 1) t) applied to every draw (1: off; > 1 trains more at high noise)
    timestep_loc: float = 0.0
    timestep_scale: float = 1.0
    timestep_shift: float = 1.0
    log_every: int = 10
    ckpt_every: int = 500
    keep_checkpoints: int = 3  # DeepSpeed checkpoints kept under <out_dir>/ckpt (oldest deleted first)
    resume: bool = False  # continue from <out_dir>/ckpt/latest (same as tools/train.py --resume)
    # pretrain only: start from an exported model's base weights (continued pretraining on a new budget, e.g. more
    # GPUs); fresh optimizer, LR schedule and step. Its architecture must be this config's ``model``.
    init_from: str | None = None
    out_dir: str = "runs/default"
    deepspeed_config: str = "ds_configs/zero2.json"
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    compile: bool = False


@dataclass
class DistillConfig:
    base_checkpoint: str | None = None  # exported safetensors of the base model
    modes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    mode_weights: dict[str, float] = field(default_factory=dict)  # sampling mix; uniform if empty
    lora_rank: int = 64
    lora_alpha: float | None = None  # defaults to the rank (scale 1)
    shared_weights: bool = False  # the paper's variant: fine-tune everything with random patch sizes
    # A diffusers transformer as the base instead of base_checkpoint (flexivid.integrations): its class, and a local
    # folder (a transformer folder, or a pipeline folder with transformer/) or a config to build it with random
    # weights (tests).
    diffusers_class: str | None = None  # WanTransformer3DModel
    diffusers_path: str | None = None
    diffusers_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    stage: str = "pretrain"  # pretrain | distill
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


_CHOICES = {
    "stage": ("pretrain", "distill"),
    "model.projection": ("paper", "pinv"),
    "model.attention_backend": ("auto", "xformers", "sdpa"),
    "model.abs_pos": ("none", "t", "thw"),
    "data.name": ("synthetic", "video_folder", "latents"),
    "distill.diffusers_class": ("WanTransformer3DModel",),
    "data.split": ("train", "test"),
    "text.encoder": ("minilm", "hf", "cache"),
    "autoencoder.kind": ("pixel", "vae"),
    "train.precision": ("auto", "bf16", "fp32"),
    "train.timestep_sampling": ("logit_normal", "uniform"),
    "train.lr_schedule": ("constant", "cosine"),
}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type (tuples, nested dicts of tuples, optionals)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"config error: '{where}' must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config error: '{where}' must be a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if tp is ModeSpec:
        try:
            return ModeSpec.from_value(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config error: '{where}': {e}") from None
    if tp in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"config error: '{where}' must be a finite number, got {value!r}")
        if tp is float:
            return float(value)
        if float(value).is_integer():  # 1e4 or 1000.0 for a count
            return int(value)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp in (int, float, bool, str):
        raise ConfigError(f"config error: '{where}' must be {tp.__name__}, got {value!r}")
    return value


def _check_patch(value: tuple, where: str) -> None:
    if any(v < 1 for v in value):
        raise ConfigError(f"config error: '{where}' must be 3 sizes >= 1 (t, h, w), got {list(value)}")


def _check_preset(raw: dict, model: "ModelConfig") -> None:
    """A preset fills the sizes it names; an explicit, different size next to it is ambiguous: refuse it."""
    if model.preset is None:
        return
    from .presets import MODEL_PRESETS

    if model.preset not in MODEL_PRESETS:
        raise ConfigError(f"config error: 'model.preset' is {model.preset!r}; allowed: {', '.join(MODEL_PRESETS)}")
    sizes = MODEL_PRESETS[model.preset]
    clash = [f"{k}: {raw[k]} (preset {sizes[k]})" for k in sizes if k in raw and raw[k] != sizes[k]]
    if clash:
        raise ConfigError(f"config error: model.preset {model.preset!r} sets hidden_size/depth/num_heads but the "
                          f"config also gives {', '.join(clash)}; remove model.preset or those keys")


def _build(cls: type, raw: dict, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config error: section '{prefix or 'top level'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(
                f"config error: unknown key '{where}' (allowed in '{prefix or 'top level'}': {', '.join(names)})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, where)
        else:
            kwargs[key] = _coerce(value, tp, where)
            choices = _CHOICES.get(where)
            if choices and kwargs[key] not in choices:
                raise ConfigError(f"config error: '{where}' is {kwargs[key]!r}; allowed: {', '.join(choices)}")
    built = cls(**kwargs)
    if cls is ModelConfig:
        _check_preset(raw, built)
        _check_patch(built.patch_size, f"{prefix}.patch_size")  # weak modes' patches: ModeSpec checks them
    if cls is DistillConfig:
        for name, patch in built.modes.items():
            _check_patch(patch, f"{prefix}.modes.{name}")
    return built


def build_typed(cls: type, raw: dict) -> Any:
    """Build and validate any config dataclass ``cls`` from a plain dict (strict keys, coerced types)."""
    return _build(cls, raw or {}, "")


def config_from_dict(raw: dict) -> Config:
    """Build a validated ``Config`` from a plain dict (e.g. parsed YAML)."""
    return _build(Config, raw or {}, "")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; numbers in every usual notation are floats here."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_config(path: str | os.PathLike) -> Config:
    """Load and validate a YAML config; a missing, empty or unparsable file or a bad key raises ``ConfigError``."""
    if not os.path.isfile(path):
        raise ConfigError(f"config error: file not found: {path} (configs live in configs/*.yaml)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.load(f, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config error: {path} is not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config error: {path} is not a UTF-8 text file (expected a YAML run config)") from None
    if raw is None:
        raise ConfigError(f"config error: {path} is empty; start from one of configs/*.yaml")
    if not isinstance(raw, dict):
        raise ConfigError(f"config error: {path} must hold a YAML mapping (stage:, model:, data:, ...), "
                          f"got {type(raw).__name__}")
    return config_from_dict(raw)


def config_to_dict(cfg: Any) -> dict:
    """Plain-dict (YAML/JSON-friendly) view of any config dataclass; tuples become lists."""

    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(cfg)
