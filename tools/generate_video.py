"""Generate videos from text prompts with a FlexiVideoDiT checkpoint, at a chosen patch schedule or compute budget.

    python tools/generate_video.py --prompt "a red circle moves right" --compute 0.4 --output outputs/circle.mp4
    torchrun --nproc_per_node 8 tools/generate_video.py --prompts-file prompts.txt --batch-size 16   # data parallel

Under a launcher (torchrun, deepspeed) every process takes the prompts i with i % WORLD_SIZE == RANK on its own GPU
(cuda:LOCAL_RANK). Prompt i keeps seed + i, so the files equal a one-process run's.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path

START = time.perf_counter()  # time to first video counts from here (interpreter start-up excluded)


DEFAULT_CHECKPOINT = "checkpoints/flexivid-small"
SUFFIXES = (".mp4", ".gif", ".png")
MAX_FPS = 100.0  # GIF stores frame delays in 1/100 s: faster is not representable
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

EPILOG = """\
schedules (--schedule; default full):
  full                     every step in the full mode
  weak_first:MODE:K        MODE for the first K steps, then full (FlexiDiT); weak_first:MODE:X/Y is the paper's
                           x/y: full for the last X conditional and last Y guidance steps
  interleaved:A:B          weak modes by cost (coarse_space, then coarse_time): A and B steps, then full
  MODE:N,MODE:N,...        any order, e.g. coarse_space:10,coarse_time:10,full:10 (counts sum to --steps)
  adaptive:MODE:TAU[:HEAD[:TAIL]]
                           per sample: HEAD full steps (default ceil(steps/10)), MODE while the latent's rate of
                           change per unit sigma is >= TAU, then full (the last TAIL, default 1, always); logs each
                           prompt's realised order and FLOPs
--compute B picks the best measured schedule (steps, guidance) whose FLOPs are at most B x full's, from the
  calibration table tools/benchmark.py writes into the checkpoint folder; ties go to the cheaper schedule. With
  --optimize latency the budget is measured time over full's instead. Without a table: full@floor(B x steps).
  "Best" is on the table's quality axis (fidelity for the shipped table: higher is better, paired 95% ties go to
  the cheaper); --quality fvd ranks by FVD above the real-vs-real floor instead (lower is better, overlapping 95%
  intervals tie and go to the cheaper). The log line names the axis and the rule.
"""


def build_parser() -> argparse.ArgumentParser:
    from flexivid.errors import OneLineParser

    p = OneLineParser(description=__doc__.splitlines()[0], epilog=EPILOG,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="text prompt")
    src.add_argument("--prompts-file", help="text file with one prompt per line (blank lines skipped)")
    p.add_argument("--batch-size", type=int, default=1, help="prompts per model batch (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="noise seed; prompt i of a file uses seed + i (default 0)")
    p.add_argument("--num-frames", type=int, default=None, help="frames (default: the checkpoint's)")
    p.add_argument("--height", type=int, default=None, help="pixels (default: the checkpoint's)")
    p.add_argument("--width", type=int, default=None, help="pixels (default: the checkpoint's)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default 30)")
    p.add_argument("--guidance-scale", type=float, default=None, help="CFG scale s1; 1 = no guidance (default 4.0)")
    p.add_argument("--shift", type=float, default=None, help="sampler timestep shift (default 1.0)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--compute", type=float, default=None, help="FLOPs budget as a fraction of full, e.g. 0.4")
    how.add_argument("--schedule", default=None, help="schedule preset or order string (see below)")
    p.add_argument("--optimize", choices=("flops", "latency"), default="flops",
                   help="with --compute: budget in FLOPs (default) or in measured time, both as a fraction of full")
    p.add_argument("--quality", choices=("fidelity", "psnr", "ssim", "fvd"), default=None,
                   help="with --compute: the axis 'best' is measured on (default: the table's own, fidelity for the "
                        "shipped table; fvd: FVD above its floor, lower is better)")
    p.add_argument("--no-weak-guidance", action="store_true",
                   help="always guide with the unconditional branch (no weak-to-strong guidance)")
    p.add_argument("--output", default=None,
                   help="video file, .mp4 / .gif / .png (frame grid); several prompts add -000, -001, ... "
                        "(default outputs/<prompt-slug>.mp4, -2, -3, ... when taken)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (default: refuse)")
    p.add_argument("--fps", type=float, default=None,
                   help=f"frames per second of the file, up to {MAX_FPS:g} (default: the checkpoint's)")
    p.add_argument("--checkpoint", default=None, help=f"exported model folder (default {DEFAULT_CHECKPOINT})")
    p.add_argument("--text-cache", default=None,
                   help="safetensors text-embedding cache (tools/build_text_cache.py) instead of the checkpoint's text "
                        "encoder, for machines without it; prompts must be cached captions")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="default bf16 on CUDA, fp32 otherwise")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--compile", choices=("on", "off"), default=None,
                   help="torch.compile the model's blocks (default: on for CUDA, off for the CPU)")
    p.add_argument("--compile-cache", default=None,
                   help="file of torch's compiled-kernel cache artifacts, loaded before compiling and written after "
                        "(default $FLEXIVID_CACHE/compile/torch-<version>-<device>.bin; 'off': none)")
    p.add_argument("--unmerged-adapters", action="store_true",
                   help="run the weak modes' peft LoRAs as trained instead of per-mode merged weights (slower)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None,
                   help=argparse.SUPPRESS)  # passed by the deepspeed launcher; the rank is read from LOCAL_RANK
    return p


def slug(text: str, max_len: int = 60) -> str:
    """File-name-safe form of a prompt: lowercase words joined by '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len].rstrip("-") or "video"


def read_prompts(args) -> list[str]:
    if args.prompt is not None:
        return [args.prompt]
    path = Path(args.prompts_file)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompts file {path} has no prompts (one per line)")
    return prompts


def output_paths(args, prompts: list[str]) -> list[Path]:
    """One file per prompt: --output (numbered when several prompts), else outputs/<slug>.mp4 made unique.

    Every path is checked (suffix, not a folder, writable, not an existing file or sidecar unless --overwrite)
    before anything loads.
    """
    from flexivid.fileio import check_output, unique_path

    if args.output:
        out = Path(args.output)
        paths = [out] if len(prompts) == 1 else [out.with_name(f"{out.stem}-{i:03d}{out.suffix}")
                                                 for i in range(len(prompts))]
    else:  # a repeated prompt, or an earlier run's video, must never be overwritten
        paths, taken = [], set()
        for p in prompts:
            paths.append(unique_path(Path("outputs") / f"{slug(p)}.mp4", sidecars=(".json",), taken=taken))
            taken.add(paths[-1])
    for p in paths:
        check_output(p, SUFFIXES, overwrite=args.overwrite, sidecars=(".json",))
    return paths


def check_numbers(args) -> None:
    """Every numeric flag finite and in its range, before anything loads."""
    import math

    rules = [("--batch-size", args.batch_size, 1, None, False), ("--seed", args.seed, 0, 2**63 - 1, False),
             ("--num-frames", args.num_frames, 1, None, False), ("--height", args.height, 1, None, False),
             ("--width", args.width, 1, None, False), ("--steps", args.steps, 1, None, False),
             ("--guidance-scale", args.guidance_scale, 1.0, None, False), ("--shift", args.shift, 0.0, None, True),
             ("--compute", args.compute, 0.0, 1.0, True), ("--fps", args.fps, 0.0, MAX_FPS, True)]
    for flag, value, low, high, open_low in rules:
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{flag} must be a finite number, got {value}")
        if (value <= low if open_low else value < low) or (high is not None and value > high):
            span = f"{'>' if open_low else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
            hint = " (1 = no guidance)" if flag == "--guidance-scale" else ""
            raise ValueError(f"{flag} must be {span}{hint}, got {value:g}")


def load_pipeline(args):
    """The pipeline for --checkpoint; the default path falls back to a tiny random model when it is missing."""
    import torch

    from flexivid.launcher import launch_env
    from flexivid.pipeline import VideoPipeline

    dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype else None
    _, local_rank, world = launch_env()
    if world > 1 and args.device is None and torch.cuda.is_available():
        args.device = f"cuda:{local_rank}"  # one GPU per process
    if args.checkpoint is None and not Path(DEFAULT_CHECKPOINT, "config.json").is_file():
        print(f"WARNING: {DEFAULT_CHECKPOINT} not found: using a tiny RANDOM, UNTRAINED model. Its videos are noise. "
              f"Pass --checkpoint DIR for real samples.", file=sys.stderr)
        return VideoPipeline.random(args.device, dtype), "random-tiny"
    path = args.checkpoint or DEFAULT_CHECKPOINT
    text_encoder = None
    if args.text_cache:
        from flexivid.text import CachedTextEncoder

        text_encoder = CachedTextEncoder(args.text_cache)
    return VideoPipeline.from_pretrained(path, args.device, dtype, text_encoder=text_encoder,
                                         merge_adapters=not args.unmerged_adapters), path


def prepare_compile(args, pipe):
    """Compile per --compile (default per device); returns the cache artifact file to write after, or None."""
    from flexivid.compile_cache import compile_pipeline, default_cache_path, default_compile

    args.compile = args.compile or ("on" if default_compile(pipe.device) else "off")
    if args.compile == "off":
        return None
    cache = None if args.compile_cache == "off" else Path(args.compile_cache or default_cache_path(pipe.device))
    loaded = compile_pipeline(pipe, cache)
    print(f"compile: on (regional torch.compile); cache {cache or 'off'}{' loaded' if loaded else ''}")
    return cache


def run(args) -> int:
    from flexivid.errors import check_device
    from flexivid.fileio import atomic_write
    from flexivid.launcher import launch_env

    check_numbers(args)
    prompts = read_prompts(args)
    paths = output_paths(args, prompts)
    check_device(args.device)  # the first check that needs torch
    from flexivid.video_io import to_uint8, write_video

    pipe, checkpoint = load_pipeline(args)
    cache = prepare_compile(args, pipe)
    d = pipe.defaults
    fps = d.fps if args.fps is None else args.fps
    height = d.height if args.height is None else args.height
    width = d.width if args.width is None else args.width
    if any(p.suffix.lower() == ".mp4" for p in paths) and (height % 2 or width % 2):
        raise ValueError(f"mp4 needs an even height and width, got {height}x{width}; use .gif or .png")
    rank, _, world = launch_env()
    tag = f"rank {rank}/{world}: " if world > 1 else ""
    # One call: every prompt is checked and encoded once, one schedule is chosen over all prompts (the same in every
    # process), and this process generates its share (prompts i with i % world == rank).
    if args.optimize != "flops" and args.compute is None:
        raise ValueError("--optimize applies to --compute only; give a compute budget")
    if args.quality is not None and args.compute is None:
        raise ValueError("--quality applies to --compute only; give a compute budget")
    video, info = pipe(prompts, num_frames=args.num_frames, height=args.height, width=args.width, steps=args.steps,
                       guidance_scale=args.guidance_scale, schedule=args.schedule, compute=args.compute,
                       optimize=args.optimize, quality=args.quality, seed=args.seed, batch_size=args.batch_size,
                       progress=not args.quiet, shift=args.shift, weak_to_strong=not args.no_weak_guidance, shard=(rank, world))
    first = time.perf_counter() - START  # one call makes every video of this process: the first one is ready here
    if info["budget_rule"]:
        print(f"{tag}{info['budget_rule']}")
    print(f"{tag}schedule: {info['schedule']} ({info['order']}), FLOPs {info['flops_fraction']:.4f} of full")
    adaptive = "orders" in info  # per sample: each prompt's realised order and FLOPs
    for j, i in enumerate(info["indices"] if adaptive else []):
        print(f"{tag}  prompt {i}: ran {info['orders'][j]}, FLOPs {info['flops_fractions'][j]:.4f} of full")
    for j, i in enumerate(info["indices"]):
        write_video(paths[i], to_uint8(video[j]), fps=fps)
        sidecar = {
            "prompt": prompts[i], "seed": info["seeds"][j], "output": str(paths[i]),
            "args": {**vars(args), "checkpoint": checkpoint, "fps": fps, "device": str(pipe.device),
                     "dtype": str(pipe.dtype).replace("torch.", "")},
            "num_frames": info["num_frames"], "height": info["height"], "width": info["width"],
            "steps": info["steps"], "guidance_scale": info["guidance_scale"],
            "weak_guidance_scale": info["weak_guidance_scale"], "schedule": info["schedule"],
            "order": info["orders"][j] if adaptive else info["order"],
            "modes": info["modes"][j] if adaptive else info["modes"], "flops_fraction": info["flops_fractions"][j],
            "gflops": info["gflops"][j], "wall_clock_s": info["wall_clock_s"],
        }
        atomic_write(paths[i].with_suffix(".json"), lambda tmp, s=sidecar: Path(tmp).write_text(json.dumps(s, indent=2, allow_nan=False)))
        print(f"{tag}wrote {paths[i]}")
    if not info["indices"]:  # more processes than prompts
        print(f"{tag}no prompts for this process ({len(prompts)} prompt(s), {world} processes)")
        return 0
    if cache is not None:
        from flexivid.compile_cache import save_artifacts

        print(f"{tag}compile cache: wrote {save_artifacts(cache) / 1e6:.1f} MB to {cache}")
    print(f"{tag}time to first video: {first:.2f} s (loading, compile {args.compile} and graph capture included; "
          f"sampling {info['sampling']})")
    s2 = info["weak_guidance_scale"]
    weak = f", weak-to-strong scale {s2:.3f}" if s2 is not None else ""
    print(f"{tag}schedule {info['schedule']} | FLOPs {info['flops_fraction']:.4f} of full{weak} | "
          f"wall-clock {info['wall_clock_s']:.2f} s for {len(info['indices'])} video(s) (model loading excluded)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from flexivid.errors import report_errors

    args = build_parser().parse_args(argv)
    warnings.formatwarning = lambda msg, *a, **k: f"warning: {msg}\n"  # one line, no source excerpt
    # Bad input: one line, no traceback. Files are written atomically, so nothing partial is left behind.
    return report_errors(run, args)

if __name__ == "__main__":
    sys.exit(main())
