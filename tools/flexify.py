#!/usr/bin/env python
"""Add weak modes (PI-projected embed/de-embed, zero mode embedding, one LoRA per mode) to a trained base model.

    python tools/flexify.py --checkpoint runs/pretrain/export --modes coarse_time coarse_space --out runs/flexi

Mode names map to patch sizes relative to the base patch (pt, ph, pw): coarse_time = (2pt, ph, pw),
coarse_space = (pt, 2ph, 2pw); or give explicit sizes as name=t,h,w (e.g. coarse_hw=1,8,8).
The output is an exported model whose weak modes start at their projection (train them with stage: distill).
"""
import argparse
import sys

from flexivid.models.flexify import flexify, trainable_summary
from flexivid.models.serialization import load_model, save_model


def parse_modes(specs, base):
    """['coarse_time', 'x=1,8,8'] -> {name: patch} using the base patch for the named presets."""
    named = {"coarse_time": (2 * base[0], base[1], base[2]), "coarse_space": (base[0], 2 * base[1], 2 * base[2])}
    out = {}
    for spec in specs:
        if "=" in spec:
            name, sizes = spec.split("=", 1)
            out[name] = tuple(int(s) for s in sizes.split(","))
        elif spec in named:
            out[spec] = named[spec]
        else:
            raise ValueError(f"unknown mode {spec!r}; use coarse_time, coarse_space or name=t,h,w")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="exported base model directory")
    ap.add_argument("--modes", nargs="+", default=["coarse_time", "coarse_space"])
    ap.add_argument("--lora-rank", type=int, default=64)
    ap.add_argument("--lora-alpha", type=float, default=None)
    ap.add_argument("--out", required=True, help="output directory (exported flexible model)")
    a = ap.parse_args(argv)
    try:
        model = load_model(a.checkpoint, modes=[])
        modes = parse_modes(a.modes, model.config.patch_size)
        flexify(model, modes, lora_rank=a.lora_rank, lora_alpha=a.lora_alpha)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"modes: {model.modes}")
    print(trainable_summary(model))
    save_model(model, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
