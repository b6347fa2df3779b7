#!/usr/bin/env python
"""Add weak modes (projected embed/de-embed, zero mode embedding, one LoRA per mode) to a trained base model.

    python tools/flexify.py --checkpoint runs/pretrain/export --modes coarse_time coarse_space --output runs/flexi

Mode names are the presets of ``flexivid.presets`` (multiples of the base patch: coarse_time doubles time,
coarse_space doubles height and width), or explicit sizes as name=t,h,w (e.g. coarse_hw=1,8,8).
The output is an exported model whose weak modes start at their projection (train them with stage: distill).
"""
import argparse
import math
import sys
from pathlib import Path

from flexivid.errors import OneLineParser, report_errors
from flexivid.presets import preset_modes


def parse_modes(specs, base):
    """['coarse_time', 'x=1,8,8'] -> {name: patch}; named presets are relative to the base patch."""
    out = {}
    for spec in specs:
        if "=" in spec:
            name, sizes = spec.split("=", 1)
            try:
                patch = tuple(int(s) for s in sizes.split(","))
            except ValueError:
                patch = ()
            if not name or len(patch) != 3 or min(patch) < 1:
                raise ValueError(f"--modes {spec}: expected name=t,h,w with three sizes >= 1, e.g. coarse_hw=1,8,8")
            out[name] = patch
        else:
            out.update(preset_modes(base, [spec]))
    return out


def check_output(checkpoint: str, output: str, overwrite: bool) -> None:
    """Never replace a model by accident: not the input, not a folder holding an export, unless --overwrite."""
    from flexivid.fileio import check_output as check_file

    src, out = Path(checkpoint).resolve(), Path(output).resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {output} is a file; give a folder for the exported model")
    holds_model = any((out / f).exists() for f in ("config.json", "model.safetensors", "adapters"))
    if not overwrite and out == src:
        raise ValueError(f"--output {output} is the --checkpoint itself: flexify would replace its weights and "
                         f"adapters; give another folder (or --overwrite)")
    if not overwrite and holds_model:
        raise ValueError(f"--output {output} already holds an exported model; give another folder, or --overwrite "
                         f"to replace it")
    check_file(out / "config.json", (".json",), flag="--output", overwrite=True)  # writable, parent not a file


def run(a) -> int:
    if a.lora_rank < 1:
        raise ValueError(f"--lora-rank must be >= 1, got {a.lora_rank}")
    if a.lora_alpha is not None and not (math.isfinite(a.lora_alpha) and a.lora_alpha > 0):
        raise ValueError(f"--lora-alpha must be a finite number > 0, got {a.lora_alpha}")
    check_output(a.checkpoint, a.output, a.overwrite)
    from flexivid.models.modes import flexify, lora_specs, trainable_summary  # torch: after the quick checks
    from flexivid.models.serialization import load_model, read_spec, save_model

    spec = read_spec(a.checkpoint)  # text encoder, autoencoder, clip and provenance travel to the output
    model = load_model(a.checkpoint, modes=[])
    modes = parse_modes(a.modes, model.config.patch_size)
    flexify(model, lora_specs(modes, a.lora_rank, a.lora_alpha))
    print(f"modes: {model.modes}")
    print(trainable_summary(model))
    save_model(model, a.output, spec)
    print(f"wrote {a.output}")
    return 0


def main(argv=None):
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="exported base model directory")
    ap.add_argument("--modes", nargs="+", default=["coarse_time", "coarse_space"])
    ap.add_argument("--lora-rank", type=int, default=64)
    ap.add_argument("--lora-alpha", type=float, default=None)
    ap.add_argument("--output", required=True, help="output directory (exported flexible model)")
    ap.add_argument("--overwrite", action="store_true",
                    help="allow --output to be the --checkpoint or another folder holding a model")
    return report_errors(run, ap.parse_args(argv))

if __name__ == "__main__":
    sys.exit(main())
