#!/usr/bin/env python
"""Add weak modes (projected embed/de-embed, zero mode embedding, one LoRA per mode) to a trained base model.

    python tools/flexify.py --checkpoint runs/pretrain/export --modes coarse_time coarse_space --output runs/flexi

Mode names are the presets of ``flexivid.presets`` (multiples of the base patch: coarse_time doubles time,
coarse_space doubles height and width), or explicit sizes as name=t,h,w (e.g. coarse_hw=1,8,8).
The output is an exported model whose weak modes start at their projection (train them with stage: distill).
"""
import argparse
import sys

from flexivid.models.modes import flexify, lora_specs, trainable_summary
from flexivid.models.serialization import load_model, read_spec, save_model
from flexivid.presets import preset_modes


def parse_modes(specs, base):
    """['coarse_time', 'x=1,8,8'] -> {name: patch}; named presets are relative to the base patch."""
    out = {}
    for spec in specs:
        if "=" in spec:
            name, sizes = spec.split("=", 1)
            out[name] = tuple(int(s) for s in sizes.split(","))
        else:
            out.update(preset_modes(base, [spec]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="exported base model directory")
    ap.add_argument("--modes", nargs="+", default=["coarse_time", "coarse_space"])
    ap.add_argument("--lora-rank", type=int, default=64)
    ap.add_argument("--lora-alpha", type=float, default=None)
    ap.add_argument("--output", required=True, help="output directory (exported flexible model)")
    a = ap.parse_args(argv)
    try:
        spec = read_spec(a.checkpoint)
        model = load_model(a.checkpoint, modes=[])
        modes = parse_modes(a.modes, model.config.patch_size)
        flexify(model, lora_specs(modes, a.lora_rank, a.lora_alpha))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"modes: {model.modes}")
    print(trainable_summary(model))
    save_model(model, a.output, spec)
    print(f"wrote {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
