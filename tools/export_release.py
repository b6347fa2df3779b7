#!/usr/bin/env python
"""Re-export a trained model for release: bf16 safetensors (base + one adapter file per weak mode) + config.

    python tools/export_release.py --checkpoint runs/distill_synthetic/export --output checkpoints/flexivid-small

Keeps the source's ExportSpec (text encoder, autoencoder, clip shape, provenance, plus the release dtype) so the
release loads exactly like the training export. Prints the size of every file.
"""
import argparse
import dataclasses
import sys

import torch

from flexivid.errors import OneLineParser, report_errors
from flexivid.models.serialization import load_model, read_spec, save_model

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def main(argv=None) -> int:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="exported model directory (training export)")
    ap.add_argument("--output", required=True, help="release directory")
    ap.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    return report_errors(run, ap.parse_args(argv))


def run(a) -> int:
    spec = read_spec(a.checkpoint)
    model = load_model(a.checkpoint)
    spec = dataclasses.replace(spec, provenance={**spec.provenance, "release_dtype": a.dtype})
    out = save_model(model, a.output, spec, dtype=DTYPES[a.dtype])
    total = 0
    for f in sorted(out.rglob("*")):
        if f.is_file():
            total += f.stat().st_size
            print(f"{f.relative_to(out)}: {f.stat().st_size / 2**20:.2f} MiB")
    print(f"total {total / 2**20:.2f} MiB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
