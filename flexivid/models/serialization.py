"""Exported models: one typed ``ExportSpec`` and one save/load pair; the spec is the model's constructor.

Layout of an exported model directory::

    config.json                     the ExportSpec: model config with its mode table, text encoder, autoencoder,
                                    default clip, provenance (how the weights were made)
    model.safetensors               base weights (no adapters, no weak-mode layers), plain (pre-peft) names
    adapters/<mode>.safetensors     one file per weak mode: its LoRA, embed, de-embed and mode embedding

``load_model`` builds ``FlexiVideoDiT(spec.model)`` (restricted to the requested modes) and loads every tensor into
it strictly. Exports written before the mode table existed are read through ``_from_first_layout``. Every file is
written atomically.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import AutoencoderConfig, ConfigError, ModelConfig, TextConfig, build_typed, config_to_dict
from ..fileio import atomic_write
from .dit import FlexiVideoDiT

FORMAT = "flexivid-export/2"


@dataclass
class ClipConfig:
    """The clip shape and playback rate the model was trained on: generation's defaults."""

    num_frames: int = 16
    height: int = 64
    width: int = 64
    fps: float = 8.0


@dataclass
class ExportSpec:
    """Everything besides the weights that rebuilds an exported model and its pipeline."""

    model: ModelConfig = field(default_factory=ModelConfig)
    text: TextConfig = field(default_factory=TextConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    provenance: dict[str, Any] = field(default_factory=dict)  # free-form record: stage, step, seed, weights, dtype


def _from_first_layout(meta: dict) -> dict:
    """Convert a first-layout config.json (weak modes in ``weak_modes`` / ``lora_modes`` / ``lora_rank`` /
    ``lora_alpha`` beside an empty ``model.modes``; clip in ``data``; provenance in ``training`` and
    ``release_dtype``) to the ExportSpec dict. The tensor files are the same in both layouts."""
    lora = set(meta.get("lora_modes", []))
    shared = bool(meta.get("training", {}).get("shared_weights"))
    modes = {}
    for name, patch in meta.get("weak_modes", {}).items():
        if name in lora:
            modes[name] = {"patch": patch, "adapter": "lora", "rank": meta["lora_rank"], "alpha": meta["lora_alpha"]}
        else:
            modes[name] = {"patch": patch, "adapter": "shared" if shared else "none"}
    data = dict(meta.get("data", {}))
    provenance = dict(meta.get("training", {}))
    if "name" in data:
        provenance["data"] = data.pop("name")
    if "release_dtype" in meta:
        provenance["release_dtype"] = meta["release_dtype"]
    return {"model": {**meta["model"], "modes": modes}, "text": meta.get("text", {}),
            "autoencoder": meta.get("autoencoder", {}), "clip": data, "provenance": provenance}


def read_spec(path: str | os.PathLike) -> ExportSpec:
    """The ExportSpec of an exported model directory; FileNotFoundError naming the path when it is not one."""
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"no exported flexivid model at {path} (expected config.json and model.safetensors; "
                                f"train one with tools/train.py or use the shipped checkpoints/flexivid-small)")
    try:
        meta = json.loads((path / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path / 'config.json'} is not valid JSON ({e}); {_REEXPORT}") from None
    if not isinstance(meta, dict) or "model" not in meta:
        raise ValueError(f"{path / 'config.json'} is not a flexivid export config (no 'model' entry); {_REEXPORT}")
    if meta.pop("format", None) != FORMAT:
        meta = _from_first_layout(meta)
    try:
        return build_typed(ExportSpec, meta)
    except ConfigError as e:
        raise ValueError(f"{path / 'config.json'}: {e}") from None


_REEXPORT = "copy the export again, or export it again (tools/train.py writes <out_dir>/export)"


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    """``load_file`` with a damaged file (truncated, empty, not safetensors) reported in one line naming it."""
    try:
        return load_file(file)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{file} is not a readable safetensors file ({' '.join(str(e).split())[:120]}): it is "
                         f"truncated or corrupt; {_REEXPORT}") from None


def check_export(path: str | os.PathLike) -> ExportSpec:
    """Read an export's spec and every tensor file's header (not the tensors): a quick check before a long job."""
    from safetensors import safe_open

    path = Path(path)
    spec = read_spec(path)
    files = [path / "model.safetensors", *(path / "adapters" / f"{m}.safetensors" for m in spec.model.modes)]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found ({path / 'config.json'} names it); {_REEXPORT}")
        try:  # the header names every tensor's byte range: a truncated file fails here
            with safe_open(file, framework="pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{file} is not a readable safetensors file ({' '.join(str(e).split())[:120]}): it is "
                             f"truncated or corrupt; {_REEXPORT}") from None
    return spec


def _check_shapes(model: FlexiVideoDiT, state: dict, source: dict[str, Path], spec_file: Path) -> None:
    """Every tensor must have the shape ``config.json`` implies; a LoRA rank that disagrees is named as such."""
    want = model.state_dict()
    for name in sorted(state, key=lambda n: source[n].name != "model.safetensors"):  # the base file first
        t = state[name]
        if t.shape == want[name].shape:
            continue
        what = f"{source[name]}: {name} has shape {tuple(t.shape)} but {spec_file} implies {tuple(want[name].shape)}"
        mode = source[name].stem
        got = (t.shape[0] if ".lora_A." in name else t.shape[1]) if ".lora_" in name else None
        rank = model.config.modes[mode].rank if got is not None else None
        if got is not None and got != rank:
            raise ValueError(f"{what}: the file holds a rank-{got} LoRA for mode '{mode}' but {spec_file} says rank "
                             f"{rank}; set that mode's rank to {got} in {spec_file}, or export the model again")
        raise ValueError(f"{what}; the weights and config.json come from different models: {_REEXPORT}")


def _plain(name: str) -> str:
    """peft's name of a wrapped linear's weight -> the plain name the base file uses."""
    return name.replace(".base_layer.", ".")


def _to_save(tensors: dict, dtype) -> dict:
    return {k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach()).contiguous().cpu()
            for k, v in tensors.items()}


def save_model(model: FlexiVideoDiT, out_dir: str | os.PathLike, spec: ExportSpec | None = None,
               dtype: torch.dtype | None = None) -> Path:
    """Export ``model`` to ``out_dir``: base, one adapter file per weak mode, and ``spec`` (default: the model's
    config only) with ``spec.model`` set to the model's config. ``dtype`` casts floating tensors. Returns the path."""
    out = Path(out_dir)
    spec = dataclasses.replace(spec or ExportSpec(), model=model.config)
    ctl = model.mode_adapters
    per_mode = {m: ctl.parameters_of(m) for m in model.config.modes}
    own = {n for params in per_mode.values() for n in params}
    base = {_plain(n): t for n, t in model.state_dict().items() if n not in own}
    atomic_write(out / "model.safetensors", lambda p: save_file(_to_save(base, dtype), p))
    for mode, params in per_mode.items():
        info = {"mode": mode, "patch": json.dumps(list(model.config.modes[mode].patch))}
        tensors = _to_save(params, dtype)
        atomic_write(out / "adapters" / f"{mode}.safetensors", lambda p, t=tensors, i=info: save_file(t, p, metadata=i))
    meta = {"format": FORMAT, **config_to_dict(spec)}
    atomic_write(out / "config.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    return out


def load_model(path: str | os.PathLike, device="cpu", dtype: torch.dtype | None = None,
               modes: list[str] | None = None) -> FlexiVideoDiT:
    """Build and load an exported model, frozen; ``modes`` limits which weak modes it gets (default: all).

    Raises FileNotFoundError naming the path when it is not an exported model, and ValueError listing the available
    modes when a requested one is missing or a file does not match the config.
    """
    path = Path(path)
    spec = read_spec(path)
    available = spec.model.modes
    wanted = list(available) if modes is None else [m for m in modes if m != "full"]
    unknown = [m for m in wanted if m not in available]
    if unknown:
        raise ValueError(f"mode(s) {', '.join(unknown)} not in checkpoint {path}; it has: "
                         f"{', '.join(['full', *available])}")
    model = FlexiVideoDiT(dataclasses.replace(spec.model, modes={m: available[m] for m in wanted}))
    state, source = {}, {}
    for mode in wanted:
        file = path / "adapters" / f"{mode}.safetensors"
        if not file.is_file():
            raise FileNotFoundError(f"adapter file for mode '{mode}' not found: {file}")
        tensors, params = _read_tensors(file), model.mode_adapters.parameters_of(mode)
        if set(tensors) != set(params):
            raise ValueError(f"{file} does not match mode '{mode}' of {path / 'config.json'}: "
                             f"{sorted(set(tensors) ^ set(params))[:4]}")
        state.update(tensors)
        source.update(dict.fromkeys(tensors, file))
    base = _read_tensors(path / "model.safetensors")
    need = {_plain(n) for n in model.state_dict() if n not in state}
    if need != set(base):
        raise ValueError(f"{path / 'model.safetensors'} does not match its config: missing "
                         f"{sorted(need - set(base))[:3]}, unexpected {sorted(set(base) - need)[:3]}")
    rest = [n for n in model.state_dict() if n not in state]
    state.update({n: base[_plain(n)] for n in rest})
    source.update(dict.fromkeys(rest, path / "model.safetensors"))
    _check_shapes(model, state, source, path / "config.json")
    model.load_state_dict(state, strict=True)
    model.mode_adapters.freeze_all()
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
