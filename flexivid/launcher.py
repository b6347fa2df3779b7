"""The one reader of a launcher's environment (torchrun, deepspeed): which process this is among how many."""
from __future__ import annotations

import os


def launch_env() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE``; ``(0, 0, 1)`` for a plain
    run. ``LOCAL_RANK`` defaults to the rank (one host)."""
    rank = int(os.environ.get("RANK", "0"))
    return rank, int(os.environ.get("LOCAL_RANK", str(rank))), int(os.environ.get("WORLD_SIZE", "1"))
