"""Files of a distilled Wan: the weak modes only, applied to the user's own Wan weights at load time.

flexivid never re-saves (or ships) Wan's weights. An export directory holds::

    config.json                  {"format": "flexivid-diffusers", "diffusers_class", "base": {path, config},
                                  "modes": {name: ModeSpec dict}, "projection", "provenance"}
    adapters/<mode>.safetensors  the mode's LoRA, patch embeddings, de-embeddings and mode embedding

    pipe = WanPipeline.from_pretrained(WAN_FOLDER, torch_dtype=torch.bfloat16)
    pipe.transformer = load_flexified_wan(pipe.transformer, "runs/distill_wan/export")
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..config import config_to_dict
from ..fileio import atomic_write
from ..models.modes import ModeSpec
from .wan import FlexiWanTransformer

FORMAT = "flexivid-diffusers"
# Config keys that fix the shapes the adapters were trained for.
ARCH_KEYS = ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_dim",
             "ffn_dim", "num_layers")


def _jsonable(config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(config).items() if not k.startswith("_")}


def save_flexified_wan(flexi: FlexiWanTransformer, out_dir: str | os.PathLike, base_path: str | None = None,
                       extra: dict | None = None) -> Path:
    """Write ``flexi``'s weak modes to ``out_dir`` (float32 tensors, atomic files); returns the directory."""
    out = Path(out_dir)
    modes = {m: config_to_dict(spec) for m, spec in flexi.specs.items()}
    meta = {"format": FORMAT, "diffusers_class": type(flexi.transformer).__name__,
            "base": {"path": base_path, "config": _jsonable(flexi.config)}, "modes": modes,
            "projection": flexi.projection, **(extra or {})}
    for mode, spec in modes.items():
        tensors = {n: p.detach().float().contiguous().cpu() for n, p in flexi.mode_parameters(mode).items()}
        info = {"mode": mode, "spec": json.dumps(spec)}
        atomic_write(out / "adapters" / f"{mode}.safetensors", lambda p, t=tensors, i=info: save_file(t, p, metadata=i))
    atomic_write(out / "config.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    return out


def load_flexified_wan(transformer, export_dir: str | os.PathLike, modes: list[str] | None = None
                       ) -> FlexiWanTransformer:
    """Wrap ``transformer`` (the user's ``WanTransformer3DModel``) with the weak modes of ``export_dir``.

    ``modes`` limits which are attached (default: all). The new layers take the device and dtype of the layers they
    are projected from. Raises a one-line FileNotFoundError / ValueError naming the file and the mismatch.
    """
    path = Path(export_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no flexivid Wan export at {path} (expected config.json and adapters/; distill one "
                                f"with tools/train.py --config configs/distill_wan2.1_1.3b.yaml)")
    meta = json.loads((path / "config.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path / 'config.json'} is not a flexivid diffusers export (format {meta.get('format')!r})")
    saved, have = meta["base"]["config"], _jsonable(transformer.config)
    diff = [f"{k} {saved.get(k)} vs {have.get(k)}" for k in ARCH_KEYS if saved.get(k) != have.get(k)]
    if diff:
        raise ValueError(f"the adapters in {path} were trained for another Wan: {'; '.join(diff)} (export vs model)")
    available = meta["modes"]
    wanted = list(available) if modes is None else [m for m in modes if m != "full"]
    unknown = [m for m in wanted if m not in available]
    if unknown:
        raise ValueError(f"mode(s) {', '.join(unknown)} not in {path}; it has: {', '.join(available)}")
    flexi = FlexiWanTransformer(transformer, {m: ModeSpec.from_value(available[m]) for m in wanted},
                                projection=meta["projection"])
    for mode in wanted:
        file = path / "adapters" / f"{mode}.safetensors"
        if not file.is_file():
            raise FileNotFoundError(f"adapter file for mode '{mode}' not found: {file}")
        tensors, params = load_file(file), flexi.mode_parameters(mode)
        if set(tensors) != set(params):
            raise ValueError(f"{file} does not match mode '{mode}': {sorted(set(tensors) ^ set(params))[:4]}")
        with torch.no_grad():
            for n, t in tensors.items():
                params[n].copy_(t.to(params[n].dtype))
    flexi.mode_adapters.freeze_all()
    return flexi.eval()  # new layers already have the transformer's device and dtypes (its fp32 modules stay fp32)
