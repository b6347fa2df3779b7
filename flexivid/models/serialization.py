"""Exported model files: safetensors weights + JSON config, loadable without DeepSpeed.

Layout of an exported model directory::

    config.json                     ModelConfig of the base model, plus the LoRA rank/alpha and weak modes
    model.safetensors               base weights (no adapters, no weak-mode layers)
    adapters/<mode>.safetensors     one file per weak mode: its LoRA, embed, de-embed and mode embedding

Every write goes to a temporary file first and is renamed into place, so a killed export never leaves a
half-written file under the final name.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..config import ModelConfig, config_from_dict, config_to_dict
from .dit import FlexiVideoDiT


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` (same directory, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files; exported weights are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _to_save(tensors: dict, dtype) -> dict:
    return {k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach()).contiguous().cpu()
            for k, v in tensors.items()}


def mode_parameters(model: FlexiVideoDiT, mode: str):
    """See ``flexify.mode_parameters``; imported lazily so loading a model does not import peft up front."""
    from .flexify import mode_parameters as params

    return params(model, mode)


def base_state_dict(model: FlexiVideoDiT) -> dict[str, torch.Tensor]:
    """Weights of the base model only, under the plain (pre-peft) parameter names."""
    weak = tuple(f"{pre}.{m}." for m in model.modes if m != "full" for pre in ("patch_embed.proj", "deembed.linear"))
    return {n.replace(".base_layer.", "."): p for n, p in model.state_dict().items()
            if "lora_" not in n and not n.startswith("mode_embed.") and not n.startswith(weak)}


def save_model(model: FlexiVideoDiT, out_dir: str | os.PathLike, dtype: torch.dtype | None = None,
               extra: dict | None = None) -> Path:
    """Export ``model`` (base + one adapter file per weak mode) to ``out_dir``; returns the directory."""
    out = Path(out_dir)
    weak = [m for m in model.modes if m != "full"]
    meta = {"model": config_to_dict(model.config), "weak_modes": {m: list(model.modes[m]) for m in weak},
            "lora_modes": list(model.lora_modes), "lora_rank": getattr(model, "lora_rank", 0),
            "lora_alpha": getattr(model, "lora_alpha", 0.0), **(extra or {})}
    meta["model"]["modes"] = {}
    atomic_write(out / "model.safetensors", lambda p: save_file(_to_save(base_state_dict(model), dtype), p))
    for mode in weak:
        tensors = _to_save(mode_parameters(model, mode), dtype)
        info = {"mode": mode, "patch": json.dumps(list(model.modes[mode]))}
        atomic_write(out / "adapters" / f"{mode}.safetensors", lambda p, t=tensors, i=info: save_file(t, p, metadata=i))
    atomic_write(out / "config.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    return out


def load_model(path: str | os.PathLike, device="cpu", dtype: torch.dtype | None = None,
               modes: list[str] | None = None) -> FlexiVideoDiT:
    """Load an exported model directory; ``modes`` limits which weak modes are attached (default: all).

    Raises FileNotFoundError naming the path when it is not an exported model, and ValueError listing the available
    modes when a requested one is missing.
    """
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"no exported flexivid model at {path} (expected config.json and model.safetensors; "
                                f"train one with tools/train.py or use the shipped checkpoints/flexivid-small)")
    meta = json.loads((path / "config.json").read_text())
    cfg: ModelConfig = config_from_dict({"model": meta["model"]}).model
    model = FlexiVideoDiT(cfg)
    missing, unexpected = model.load_state_dict(load_file(path / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise ValueError(f"{path / 'model.safetensors'} does not match its config: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    available = meta.get("weak_modes", {})
    wanted = list(available) if modes is None else [m for m in modes if m != "full"]
    unknown = [m for m in wanted if m not in available]
    if unknown:
        raise ValueError(f"mode(s) {', '.join(unknown)} not in checkpoint {path}; it has: "
                         f"{', '.join(['full', *available])}")
    if wanted:
        sel = {m: tuple(available[m]) for m in wanted}
        lora = [m for m in wanted if m in meta.get("lora_modes", [])]
        if lora:
            from .flexify import flexify

            flexify(model, {m: sel[m] for m in lora}, lora_rank=meta["lora_rank"], lora_alpha=meta["lora_alpha"])
        for m in wanted:
            if m not in lora:
                model.add_mode(m, sel[m])
        for m in wanted:
            load_adapter(model, path / "adapters" / f"{m}.safetensors", m)
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)


def load_adapter(model: FlexiVideoDiT, file: str | os.PathLike, mode: str) -> None:
    """Copy one weak mode's exported tensors (adapter + embed/de-embed + mode embedding) into ``model``."""
    if not Path(file).is_file():
        raise FileNotFoundError(f"adapter file for mode '{mode}' not found: {file}")
    tensors = load_file(file)
    params = mode_parameters(model, mode)
    if set(tensors) != set(params):
        raise ValueError(f"{file} does not match mode '{mode}' of this model: "
                         f"{sorted(set(tensors) ^ set(params))[:4]}")
    with torch.no_grad():
        for n, t in tensors.items():
            params[n].copy_(t)
