#!/usr/bin/env python
"""Quality, FLOPs and wall-clock of every sampling schedule side by side; or per-mode kernel throughput.

Frontier (default): for a checkpoint and a list of schedules, generate the same prompts/seeds with each schedule and
write ``<out>/frontier.md``, ``frontier.json`` and ``frontier.png`` (quality vs compute)::

    python tools/benchmark.py --checkpoint checkpoints/flexivid-small --output runs/bench --num-videos 256

Kernels: per-mode step time and achieved TFLOP/s (and % of the measured bf16 matmul peak) for presets with random
weights, eager and torch.compile, the attention backend named::

    python tools/benchmark.py --kernels --output runs/kernels
"""
import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from flexivid.eval.kernels import kernel_table, matmul_peak_tflops
from flexivid.presets import preset_modes

# (preset, latent (C, T, H, W), base patch, batch): the reference DiT-XL trunk at 16x32x32 latents (4096 tokens) and
# the FlexiDiT paper's video size (32x48x88 latent -> 33,792 tokens at (1,2,2)).
KERNEL_CASES = {
    "reference": ("reference", (4, 16, 32, 32), (1, 2, 2), 2),
    "paper_video": ("paper_video", (4, 32, 48, 88), (1, 2, 2), 2),
    "small": ("small", (3, 16, 64, 64), (1, 4, 4), 16),
    "tiny": ("tiny", (3, 4, 16, 16), (1, 2, 2), 2),
}


def weak_modes(base):
    return {"full": base, **preset_modes(base)}


def run_kernels(a) -> int:
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    peak = matmul_peak_tflops()
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"device: {dev}; measured bf16 matmul peak {peak:.1f} TFLOP/s")
    rows = []
    for name in a.cases:
        preset, latent, base, batch = KERNEL_CASES[name]
        compile_modes = (False, True) if a.compile == "both" else ((a.compile == "on"),)
        rows += kernel_table(preset, latent, weak_modes(base), batch=batch, compile_modes=compile_modes,
                             dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32, peak=peak,
                             repeats=a.repeats)
    lines = [f"device: {dev}; bf16 matmul peak {peak:.1f} TFLOP/s", "",
             "| preset | mode | patch | tokens | batch | compile | ms / forward | TFLOP/s | % peak | time ratio | FLOPs ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.preset} | {r.mode} | {r.patch} | {r.tokens} | {r.batch} | {r.compiled} | {r.ms:.2f} | "
                     f"{r.tflops:.1f} | {r.pct_peak:.1f} | {r.ratio_time:.3f} | {r.ratio_flops:.3f} |")
    (out / "kernels.md").write_text("\n".join(lines) + "\n")
    (out / "kernels.json").write_text(json.dumps({"device": dev, "peak_tflops": peak,
                                                  "rows": [asdict(r) for r in rows]}, indent=2))
    print("\n".join(lines))
    return 0


def run_frontier(a) -> int:
    from flexivid.eval.frontier import FrontierSettings, rewrite_from_json, run_frontier as run

    if a.replot:
        rewrite_from_json(a.output)
        print(f"re-rendered {a.output}/frontier.md and frontier.png from frontier.json")
        return 0
    settings = FrontierSettings(checkpoint=a.checkpoint, out_dir=a.output, num_videos=a.num_videos, steps=a.steps,
                                guidance_scale=a.guidance_scale, schedules=a.schedules, batch_sizes=tuple(a.batch_sizes),
                                compile=a.compile, fvd=not a.no_fvd, text_cache=a.text_cache, device=a.device,
                                seed=a.seed, timing_repeats=a.repeats, merge_adapters=not a.unmerged_adapters)
    run(settings)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", action="store_true", help="per-mode kernel throughput instead of the frontier")
    ap.add_argument("--cases", nargs="+", default=["reference", "paper_video", "small"], choices=list(KERNEL_CASES))
    ap.add_argument("--output", default="runs/benchmark", help="output folder")
    ap.add_argument("--compile", default="both", choices=["off", "on", "both"])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--checkpoint", default="checkpoints/flexivid-small")
    ap.add_argument("--num-videos", type=int, default=256, help="videos per schedule for FVD / fidelity")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance-scale", type=float, default=4.0)
    ap.add_argument("--schedules", nargs="+", default=None, help="schedule strings; default: the standard sweep")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], help="batch sizes for wall-clock timing")
    ap.add_argument("--no-fvd", action="store_true")
    ap.add_argument("--text-cache", default=None, help="safetensors text-embedding cache (GPU machines without MiniLM)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--unmerged-adapters", action="store_true", help="frontier: time the peft LoRA path as trained")
    ap.add_argument("--replot", action="store_true", help="re-render table and plot from <out>/frontier.json")
    a = ap.parse_args(argv)
    try:
        return run_kernels(a) if a.kernels else run_frontier(a)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
