"""Compiling the model for inference, and keeping its compiled kernels across processes.

``torch.compile`` spends most of a first video's start-up in Inductor code generation and Triton builds. torch's
portable cache artifacts (``torch.compiler.save_cache_artifacts`` / ``load_cache_artifacts``: Inductor's FX graph
cache, autotuning results and AOT-Autograd entries in one blob) let a later process skip that work; Dynamo still
traces, which is fast. One file per torch version and device name, under ``$FLEXIVID_CACHE/compile/``.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .eval.i3d import cache_dir
from .fileio import atomic_write

# One compiled graph per (mode, batch shape): every mode at two batch sizes, both guidance layouts, with room.
RECOMPILE_LIMIT = 64


def default_compile(device) -> bool:
    """Compile by default on CUDA (seconds to compile, then faster steps); not on the CPU (compile outlasts use)."""
    return torch.device(device).type == "cuda"


def compile_model(model, cache: str | Path | None = None) -> bool:
    """Regional ``torch.compile`` of the model's blocks (``FlexiVideoDiT.compile_blocks``), after loading the cache
    artifacts at ``cache`` when the file exists. Returns whether artifacts were loaded."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    loaded = False
    if cache is not None and Path(cache).is_file():
        loaded = torch.compiler.load_cache_artifacts(Path(cache).read_bytes()) is not None
    model.compile_blocks()
    return loaded


def compile_pipeline(pipe, cache: str | Path | None = None) -> bool:
    """``compile_model`` on the pipeline's model, and its graphed sampling step compiled around the block stack
    (Inductor fuses the embedding, guidance and Euler work). Returns whether cache artifacts were loaded."""
    loaded = compile_model(pipe.model, cache)
    pipe.compile_steps = "inductor"
    pipe._graphs = None  # rebuilt with the compiled step on the next call
    return loaded


def default_cache_path(device) -> Path:
    """``$FLEXIVID_CACHE/compile/torch-<version>-<device>.bin``: artifacts are only valid for one torch and card."""
    dev = torch.cuda.get_device_name(torch.device(device)) if torch.device(device).type == "cuda" else "cpu"
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"torch-{torch.__version__}-{dev}").strip("-")
    return cache_dir() / "compile" / f"{slug}.bin"


def save_artifacts(path: str | Path) -> int:
    """Write every artifact compiled so far in this process to ``path`` (atomically); returns bytes written."""
    artifacts = torch.compiler.save_cache_artifacts()
    if not artifacts:
        return 0
    blob = artifacts[0]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
    return len(blob)
