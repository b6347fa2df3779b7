#!/usr/bin/env python
"""Re-export a trained model for release: bf16 safetensors (base + one adapter file per weak mode) + config.

    python tools/export_release.py --src runs/distill_synthetic/export --dst checkpoints/flexivid-small

Keeps the source config's extras (text encoder, autoencoder, clip shape, training record) so the release loads
exactly like the training export. Prints the size of every file.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

from flexivid.models.serialization import load_model, save_model

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", required=True, help="exported model directory (training export)")
    ap.add_argument("--dst", required=True, help="release directory")
    ap.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    a = ap.parse_args(argv)
    try:
        model = load_model(a.src)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta = json.loads((Path(a.src) / "config.json").read_text())
    extra = {k: v for k, v in meta.items() if k not in ("model", "weak_modes", "lora_modes", "lora_rank", "lora_alpha")}
    extra["release_dtype"] = a.dtype
    out = save_model(model, a.dst, dtype=DTYPES[a.dtype], extra=extra)
    total = 0
    for f in sorted(out.rglob("*")):
        if f.is_file():
            total += f.stat().st_size
            print(f"{f.relative_to(out)}: {f.stat().st_size / 2**20:.2f} MiB")
    print(f"total {total / 2**20:.2f} MiB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
