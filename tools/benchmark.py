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
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", action="store_true", help="per-mode kernel throughput instead of the frontier")
    ap.add_argument("--cases", nargs="+", default=["reference", "paper_video", "small"], choices=list(KERNEL_CASES))
    ap.add_argument("--output", default="runs/benchmark", help="output folder")
    ap.add_argument("--compile", default="both", choices=["off", "on", "both"], help="frontier: eager / compiled")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS),
                    help="kernels: eager, compiled (regional torch.compile), graphed (compiled + one CUDA graph)")
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
    ap.add_argument("--suite", choices=["speed"], default=None,
                    help="speed: end-to-end speed-ups (batch 1 and 16), GPU-busy profile, time to first video and the "
                         "kernel table in one run (--repeats, default 5 here; --cases; --text-cache)")
    ap.add_argument("--smoke", action="store_true", help="--suite speed at a CPU size (tiny random model)")
    ap.add_argument("--sections", nargs="+", default=None,
                    choices=list(SECTIONS),
                    help="--suite speed: run only these sections (default: all, in priority order)")
    ap.add_argument("--budget-s", type=float, default=330.0, help="--suite speed: skip sections past this many seconds")
    a = ap.parse_args(argv)
    if a.suite and "--repeats" not in (argv if argv is not None else sys.argv[1:]):
        a.repeats = 5
    if a.suite and "--cases" not in (argv if argv is not None else sys.argv[1:]):
        a.cases = ["reference", "paper_video"]
    run = run_speed if a.suite == "speed" else run_kernels if a.kernels else run_frontier
    return report_errors(run, a)


if __name__ == "__main__":
    sys.exit(main())
