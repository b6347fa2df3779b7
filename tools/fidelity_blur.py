"""Shape (and every attribute) accuracy of the fidelity measure on dataset clips blurred by a Gaussian.

Real clips are correct by construction, so any attribute they lose under blur is lost to blur alone. Prints a table
and writes it as JSON (``--out``). Example (CPU, about a minute)::

    python tools/fidelity_blur.py --clips 100 --sigmas 0 1 1.5 2 2.5 --out docs/results/fidelity_blur/after.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from flexivid.config import DataConfig
from flexivid.data.synthetic import ATTRIBUTES, SyntheticVideoDataset
from flexivid.eval.fidelity import prompt_fidelity


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=100, help="clips per split")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 1.0, 1.5, 2.0, 2.5])
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--out", default=None, help="JSON file for the table")
    a = p.parse_args()
    rows = []
    for split in ("train", "test"):
        ds = SyntheticVideoDataset(DataConfig(split=split, seed=a.seed, num_clips=a.clips))
        items = [ds[i] for i in range(a.clips)]
        for sigma in a.sigmas:
            videos = [torch.from_numpy(gaussian_filter(it["video"].numpy(), sigma=(0, 0, sigma, sigma)))
                      if sigma > 0 else it["video"] for it in items]
            r = prompt_fidelity(videos, [it["attrs"] for it in items])
            row = {"split": split, "sigma": sigma, "clips": a.clips, **{k: r[k] for k in ATTRIBUTES},
                   "shape_by_value": r["by_value"]["shape"]}
            rows.append(row)
            print(f"{split:5s} sigma {sigma:4.2f}  shape {r['shape']:.3f}  "
                  + "  ".join(f"{k} {r[k]:.3f}" for k in ATTRIBUTES if k != "shape")
                  + "  | shape by value " + " ".join(f"{k} {v:.2f}" for k, v in r["by_value"]["shape"].items()),
                  flush=True)
    if a.out:
        doc = {"command": "python tools/fidelity_blur.py " + " ".join(
                   f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(a).items()
                   if v is not None),
               "machine": f"CPU only ({platform.processor() or platform.machine()}), no accelerator", "rows": rows}
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(a.out)) or ".", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, a.out)  # atomic: a killed run leaves no half-written table


if __name__ == "__main__":
    main()
