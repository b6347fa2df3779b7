#!/usr/bin/env python
"""Held-out weak-vs-full prediction MSE of a distilled checkpoint, before (flexify init) and after distillation.

    python tools/eval_modes.py --checkpoint checkpoints/flexivid-small --num-clips 16

"Before" rebuilds the weak modes from the checkpoint's own base weights with ``flexify`` (projected embed /
de-embed, zero LoRA), i.e. the state distillation started from; "after" is the checkpoint as trained.
"""
import argparse
import json
import sys
from pathlib import Path

from flexivid.errors import OneLineParser, report_errors
from flexivid.eval.agreement import held_out_batch, weak_vs_full_mse
from flexivid.models.modes import flexify
from flexivid.models.serialization import load_model
from flexivid.fileio import atomic_write
from flexivid.pipeline import VideoPipeline


def main(argv=None) -> int:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/flexivid-small")
    ap.add_argument("--num-clips", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=None, help="JSON file for the result")
    ap.add_argument("--text-cache", default=None, help="safetensors text-embedding cache (machines without MiniLM)")
    return report_errors(run, ap.parse_args(argv))


def run(a) -> int:
    if a.num_clips < 1:
        raise ValueError(f"--num-clips must be >= 1, got {a.num_clips}")
    text_encoder = None
    if a.text_cache:
        from flexivid.text import CachedTextEncoder

        text_encoder = CachedTextEncoder(a.text_cache)
    pipe = VideoPipeline.from_pretrained(a.checkpoint, device="cpu", merge_adapters=False,  # the adapters as trained
                                         text_encoder=text_encoder)
    trained = pipe.model.float()
    weak = {m: s.patch for m, s in trained.config.modes.items()}
    if not weak:
        raise ValueError(f"{a.checkpoint} has no weak modes (only full)")
    d = pipe.defaults
    x0, text, mask = held_out_batch(pipe.text_encoder, a.num_clips, d.num_frames, d.height, d.width, a.seed)
    init = flexify(load_model(a.checkpoint, modes=[]), trained.config.modes)
    res = {"checkpoint": a.checkpoint, "num_clips": a.num_clips, "split": "test", "t": "uniform(0, 1)",
           "before": weak_vs_full_mse(init, x0, text, mask, weak, a.seed),
           "after": weak_vs_full_mse(trained, x0, text, mask, weak, a.seed)}
    for m in weak:
        print(f"{m:13s} weak-vs-full MSE  before {res['before'][m]:.4f}  after {res['after'][m]:.4f}  "
              f"({100 * (1 - res['after'][m] / res['before'][m]):.0f}% lower)")
    if a.output:
        atomic_write(a.output, lambda tmp: Path(tmp).write_text(json.dumps(res, indent=2, allow_nan=False)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
