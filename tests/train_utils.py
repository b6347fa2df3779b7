"""Helpers shared by the training tests: a stub text cache, tiny run configs, and launching tools/train.py."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zlib
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TEXT_DIM = 32


class StubTextEncoder:
    """Deterministic per-caption random embeddings (no model): ``encode`` like ``flexivid.text`` encoders."""

    name = "stub:crc32"

    def __init__(self, dim: int = TEXT_DIM, max_length: int = 8):
        self.dim, self.max_length = dim, max_length

    def encode(self, captions):
        tokens, masks = [], []
        for c in captions:
            seed = zlib.crc32(c.encode())
            mask = torch.arange(self.max_length) < 2 + seed % (self.max_length - 1)
            tokens.append(torch.randn(self.max_length, self.dim, generator=torch.Generator().manual_seed(seed))
                          * mask[:, None])
            masks.append(mask)
        return torch.stack(tokens), torch.stack(masks)


def build_stub_cache(path: Path, captions: list[str] | None = None) -> Path:
    """A text cache of every synthetic caption (or ``captions``) with the stub encoder."""
    from flexivid.data.synthetic import all_captions
    from flexivid.text import build_text_cache

    build_text_cache(StubTextEncoder(), all_captions() if captions is None else captions, str(path))
    return path


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def tiny_pretrain_config(out_dir: Path, cache: Path, **train) -> dict:
    """An overfit-sized run: 16 clips of 4 x 16 x 16 pixels, tiny preset (256 tokens per clip)."""
    return {
        "stage": "pretrain", "seed": 0,
        "model": {"preset": "tiny", "text_dim": TEXT_DIM, "patch_size": [1, 2, 2]},
        "data": {"num_frames": 4, "height": 16, "width": 16, "num_clips": 16},
        "text": {"encoder": "cache", "cache_path": str(cache), "max_length": 8},
        "train": {"steps": 10, "micro_batch_size": 2, "lr": 2e-3, "log_every": 1, "ckpt_every": 5,
                  "keep_checkpoints": 5, "ema_decay": 0.9, "out_dir": str(out_dir), **train},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_train(config: Path, *args: str, nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run tools/train.py (plain python, or torch.distributed.run with ``nproc`` processes); capture output."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1" if nproc > 1 else "2")
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                 "--master_port", str(free_port())] if nproc > 1 else [sys.executable])
    return subprocess.run([*launcher, str(REPO / "tools" / "train.py"), "--config", str(config), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def read_log(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def copy_checkpoint(src_out: Path, dst_out: Path, step: int) -> None:
    """Make ``dst_out`` look like a run that was killed right after saving ``step`` in ``src_out``."""
    import shutil

    tag = f"step{step:07d}"
    (dst_out / "ckpt").mkdir(parents=True)
    shutil.copytree(src_out / "ckpt" / tag, dst_out / "ckpt" / tag)
    (dst_out / "ckpt" / "latest").write_text(tag + "\n")
