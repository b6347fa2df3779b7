#!/usr/bin/env python
"""Held-out weak-vs-full prediction MSE of a distilled checkpoint, before (flexify init) and after distillation.

    python tools/eval_modes.py --checkpoint checkpoints/flexivid-small --num-clips 16

"Before" rebuilds the weak modes from the checkpoint's own base weights with ``flexify`` (projected embed /
de-embed, zero LoRA), i.e. the state distillation started from; "after" is the checkpoint as trained.
"""
import argparse
import json
import sys

from flexivid.eval.agreement import held_out_batch, weak_vs_full_mse
from flexivid.models.flexify import flexify
from flexivid.models.serialization import load_model
from flexivid.pipeline import VideoPipeline
from flexivid.text import CachedTextEncoder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/flexivid-small")
    ap.add_argument("--num-clips", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=None, help="JSON file for the result")
    ap.add_argument("--text-cache", default=None, help="safetensors text cache (machines without MiniLM)")
    a = ap.parse_args(argv)
    try:
        text = CachedTextEncoder(a.text_cache) if a.text_cache else None
        # the adapters as trained (unmerged)
        pipe = VideoPipeline.from_pretrained(a.checkpoint, device="cpu", merge_adapters=False, text_encoder=text)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    trained = pipe.model.float()
    weak = {m: p for m, p in trained.modes.items() if m != "full"}
    if not weak:
        print(f"error: {a.checkpoint} has no weak modes (only full)", file=sys.stderr)
        return 2
    d = pipe.defaults
    x0, text, mask = held_out_batch(pipe.text_encoder, a.num_clips, d.num_frames, d.height, d.width, a.seed)
    init = flexify(load_model(a.checkpoint, modes=[]), weak, lora_rank=getattr(trained, "lora_rank", 32))
    res = {"checkpoint": a.checkpoint, "num_clips": a.num_clips, "split": "test", "t": "uniform(0, 1)",
           "before": weak_vs_full_mse(init, x0, text, mask, weak, a.seed),
           "after": weak_vs_full_mse(trained, x0, text, mask, weak, a.seed)}
    for m in weak:
        print(f"{m:13s} weak-vs-full MSE  before {res['before'][m]:.4f}  after {res['after'][m]:.4f}  "
              f"({100 * (1 - res['after'][m] / res['before'][m]):.0f}% lower)")
    if a.output:
        with open(a.output, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
