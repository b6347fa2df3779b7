"""Checkpoints for resuming (DeepSpeed state) and exports for use (safetensors, ``flexivid.models.serialization``).

Layout under ``<out_dir>``::

    ckpt/step0000500/        DeepSpeed save_checkpoint (module, ZeRO optimizer shards, LR schedule, client state)
    ckpt/step0000500/rng_rank{r}.pt   each rank's python / numpy / torch / cuda RNG states
    ckpt/latest              the tag of the newest COMPLETE checkpoint, written last and atomically
    ckpt/universal/step0000500/   the same checkpoint as a DeepSpeed universal checkpoint (only after a resume on
                             another world size; deleted when the next checkpoint is published)
    export/                  save_model of the EMA weights + everything generation needs (text, autoencoder, clip)

DeepSpeed's own ``latest`` file is disabled (``save_latest=False``): ours is replaced (tmp file + ``os.replace``)
only after every rank finished writing, so a run killed mid-save resumes from the previous complete checkpoint.
When the folder ``latest`` names was deleted or one of its files is truncated, resuming falls back to the newest
older complete checkpoint (``resume_point``) and says so.

DeepSpeed loads ZeRO optimizer shards only on the data-parallel size that wrote them. Resuming on another number of
ranks goes through a universal checkpoint (``deepspeed.checkpoint.ds_to_universal``: one file per parameter and
optimizer state, loaded with ``"checkpoint": {"load_universal": true}``), which restores weights, Adam moments and
the LR schedule on any world size.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..config import Config, TextConfig
from ..errors import UserFacingError, one_line
from ..fileio import atomic_write
from ..models.dit import FlexiVideoDiT
from ..models.serialization import ClipConfig, ExportSpec, save_model
from .ema import EMA

LATEST = "latest"
UNIVERSAL = "universal"


def step_tag(step: int) -> str:
    return f"step{step:07d}"


def rng_state() -> dict:
    """This process's global RNG states (python, numpy, torch CPU, and its own CUDA device's when present).

    Only this rank's device: a process of a 2-GPU run sees both GPUs, and a checkpoint holding both states could
    not be restored by a process that sees one (resuming on fewer GPUs).
    """
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore ``rng_state()``; the CUDA state goes to this process's current device."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):  # older checkpoints: every visible device's state
            idx = torch.cuda.current_device()
            cuda = cuda[idx] if idx < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def save_checkpoint(engine, out_dir: str | os.PathLike, step: int, client_state: dict, keep: int) -> Path:
    """Save the DeepSpeed state of ``step`` (all ranks call this), then publish it as ``latest`` and prune.

    ``client_state`` travels inside DeepSpeed's model-states file (EMA, step, data position, ...).
    """
    ckpt_dir = Path(out_dir) / "ckpt"
    tag = step_tag(step)
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client_state, save_latest=False)
    rank = _rank()
    atomic_write(ckpt_dir / tag / f"rng_rank{rank}.pt", lambda p: torch.save(rng_state(), p))
    _barrier()  # every rank's shards and RNG file are on disk before the checkpoint is published
    if rank == 0:
        atomic_write(ckpt_dir / LATEST, lambda p: Path(p).write_text(tag + "\n"))
        tags = sorted(d.name for d in ckpt_dir.iterdir() if d.is_dir() and d.name.startswith("step"))
        # Tags after this one belong to an abandoned timeline (a save killed before `latest` moved, then resumed).
        done = [t for t in tags if t <= tag]
        for old in done[:max(0, len(done) - max(1, keep))] + [t for t in tags if t > tag]:
            shutil.rmtree(ckpt_dir / old, ignore_errors=True)
        shutil.rmtree(ckpt_dir / UNIVERSAL, ignore_errors=True)  # converted from an older checkpoint: stale now
    _barrier()
    return ckpt_dir / tag


def _incomplete(ckpt_dir: Path, tag: str) -> str | None:
    """Why the checkpoint folder ``tag`` cannot be resumed (missing, unfinished, truncated file), None if it can."""
    folder = ckpt_dir / tag
    if not folder.is_dir():
        return f"{folder} does not exist"
    if not any(folder.glob("*model_states.pt")):
        return f"{folder} has no model states"
    if not any(folder.glob("rng_rank*.pt")):  # written after DeepSpeed's files: absent means the save was cut short
        return f"{folder} was not finished"
    for f in sorted(folder.glob("*.pt")):
        try:  # torch.save writes a zip whose directory is at the end: a truncated file has none
            with zipfile.ZipFile(f):
                pass
        except (zipfile.BadZipFile, OSError):
            return f"{f} is truncated or corrupt"
    return None


def resume_point(out_dir: str | os.PathLike) -> tuple[str | None, list[str]]:
    """``(tag, problems)``: the checkpoint to resume from and why newer ones were passed over.

    The tag is the one ``ckpt/latest`` names, or when that checkpoint is missing or damaged, the newest older
    complete one; None when there is no ``latest`` or no complete checkpoint.
    """
    ckpt_dir = Path(out_dir) / "ckpt"
    f = ckpt_dir / LATEST
    if not f.is_file():
        return None, []
    named = f.read_text().strip()
    older = sorted((d.name for d in ckpt_dir.iterdir() if d.is_dir() and d.name.startswith("step")
                    and d.name < named), reverse=True)
    problems = []
    for tag in [named, *older]:
        why = _incomplete(ckpt_dir, tag)
        if why is None:
            return tag, problems
        problems.append(why)
    return None, problems


def latest_tag(out_dir: str | os.PathLike) -> str | None:
    """The tag of the newest complete checkpoint (see ``resume_point``), or None when there is none."""
    return resume_point(out_dir)[0]


def saved_world_size(out_dir: str | os.PathLike) -> int | None:
    """Data-parallel size that wrote the latest checkpoint: its number of ZeRO optimizer shards.

    None when there is no checkpoint or no shards (ZeRO-0 in fp32 saves one replicated optimizer state, which
    DeepSpeed loads on any world size).
    """
    tag = latest_tag(out_dir)
    if tag is None:
        return None
    return len(list((Path(out_dir) / "ckpt" / tag).glob("*zero_pp_rank_*_optim_states.pt"))) or None


def saved_is_zero3(out_dir: str | os.PathLike) -> bool | None:
    """Whether the latest checkpoint was written under ZeRO-3 (per-rank model-state shards), None without one.

    ZeRO-3 and ZeRO-0/1/2 checkpoints name their files differently and DeepSpeed cannot load one as the other.
    """
    tag = latest_tag(out_dir)
    if tag is None:
        return None
    return any((Path(out_dir) / "ckpt" / tag).glob("zero_pp_rank_*_mp_rank_*_model_states.pt"))


def to_universal(out_dir: str | os.PathLike) -> Path:
    """Convert the latest checkpoint to ``ckpt/universal/<tag>`` (rank 0 writes, every rank waits); return its root.

    A finished conversion is reused (a universal checkpoint fits every world size). Collective: all ranks call it,
    and a failure on rank 0 is raised on every rank instead of leaving the others waiting in a barrier.
    """
    tag = latest_tag(out_dir)
    root = Path(out_dir) / "ckpt" / UNIVERSAL
    error = None
    if _rank() == 0 and not (root / tag).is_dir():
        from deepspeed.checkpoint import ds_to_universal

        tmp = root / f"{tag}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        # inject_missing_state: only tensor/pipeline-parallel models need DeepSpeed's universal-checkpoint patterns;
        # a data-parallel model needs just the version key. One worker: no process pool forked inside a
        # distributed job. Its progress prints are swallowed; the one-line warning of the caller says what happened.
        args = argparse.Namespace(input_folder=str(Path(out_dir) / "ckpt" / tag), output_folder=str(tmp),
                                  num_extract_workers=1, num_merge_workers=1, keep_temp_folder=False, strict=True,
                                  inject_missing_state=True)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                ds_to_universal.main(args)
            os.replace(tmp, root / tag)  # complete or absent: a killed conversion is redone
        except Exception as e:  # noqa: BLE001 - any failure must reach the other ranks
            error = f"converting {Path(out_dir) / 'ckpt' / tag} to a universal checkpoint failed: {e!r}"
    if dist.is_initialized():
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        raise RuntimeError(error)
    return root


def load_checkpoint(engine, out_dir: str | os.PathLike, universal: bool = False) -> dict:
    """Restore engine, optimizer, LR schedule and this rank's RNG from the latest checkpoint; return client state.

    ``universal``: read its ``to_universal`` copy (the engine must have been built with ``load_universal``).
    """
    tag = latest_tag(out_dir)
    ckpt_dir = Path(out_dir) / "ckpt"
    if tag is None:
        raise FileNotFoundError(f"nothing to resume: no complete checkpoint under {ckpt_dir} (run without --resume "
                                f"to start fresh)")
    load_dir = ckpt_dir / UNIVERSAL if universal else ckpt_dir
    try:
        path, client = engine.load_checkpoint(str(load_dir), tag=tag, load_optimizer_states=True,
                                              load_lr_scheduler_states=True)
        rng_file = ckpt_dir / tag / f"rng_rank{_rank()}.pt"
        if rng_file.is_file():  # absent when resuming on more ranks than saved: those start from fresh RNG
            set_rng_state(torch.load(rng_file, weights_only=False))
    except Exception as e:  # noqa: BLE001 - DeepSpeed and torch raise many types for a damaged file
        raise UserFacingError(
            f"cannot resume from {ckpt_dir / tag}: {type(e).__name__}: {one_line(e)[:200]}; move that folder out of "
            f"{ckpt_dir} to resume from the checkpoint before it, or start fresh in another train.out_dir") from e
    if path is None:
        raise UserFacingError(f"checkpoint {ckpt_dir / tag} could not be loaded; move that folder out of {ckpt_dir} "
                              f"to resume from the checkpoint before it")
    return client


def source_text_config(cfg: Config) -> TextConfig:
    """The text encoder that produced the training embeddings, as a ``TextConfig`` for generation.

    Training may read a cache (``text.encoder: cache``); generation needs the encoder that built it, which the
    cache's safetensors metadata names (``flexivid.text.build_text_cache``). The export then names that encoder and
    no cache (generation encodes free prompts; the cache only holds training captions). A cache of unknown origin
    keeps the YAML's text config.
    """
    text = cfg.text
    if text.encoder != "cache" or not text.cache_path or not Path(text.cache_path).is_file():
        return text
    from safetensors import safe_open

    with safe_open(cfg.text.cache_path, framework="pt") as f:
        meta = f.metadata() or {}
    kind, _, where = (meta.get("encoder") or "").partition(":")  # text.py writes "minilm:<name>" / "hf:<path>"
    if kind in ("minilm", "hf"):
        text = dataclasses.replace(text, encoder=kind, path=where if kind == "hf" else None, cache_path=None)
        if meta.get("max_length"):
            text = dataclasses.replace(text, max_length=int(meta["max_length"]))
    return text


def export_spec(cfg: Config, step: int) -> ExportSpec:
    """Everything besides the weights that generation needs to rebuild the run from the export alone (the model
    config is the exported model's own)."""
    d = cfg.data
    return ExportSpec(text=source_text_config(cfg), autoencoder=cfg.autoencoder,
                      clip=ClipConfig(d.num_frames, d.height, d.width, float(d.fps)),
                      provenance={"stage": cfg.stage, "step": step, "seed": cfg.seed, "weights": "ema",
                                  "ema_decay": cfg.train.ema_decay, "data": d.name,
                                  "shared_weights": cfg.stage == "distill" and cfg.distill.shared_weights})


def export_ema(fresh: FlexiVideoDiT, ema: EMA, out_dir: str | os.PathLike, spec: ExportSpec) -> Path:
    """Write ``fresh`` (a CPU float32 model with the run's structure and frozen weights) with the EMA weights.

    Every trainable parameter must be in the EMA and vice versa, so the export can never silently mix weights.
    """
    params = dict(fresh.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    if trainable != set(ema.shadow):
        raise ValueError(f"EMA and the export model's trainable parameters differ: "
                         f"{sorted(trainable ^ set(ema.shadow))[:4]}")
    with torch.no_grad():
        for n, v in ema.shadow.items():
            params[n].copy_(v.to(params[n].device, params[n].dtype))
    if hasattr(fresh, "export"):  # a diffusers model exports its weak modes only
        return fresh.export(Path(out_dir) / "export", spec)
    return save_model(fresh, Path(out_dir) / "export", spec)
