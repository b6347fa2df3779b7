#!/usr/bin/env python
"""FlexiDiT in one command: the same prompt and seed with a weak schedule (about a third of the FLOPs) and with the
full schedule, timed in the same process; prints the measured speed-up and what each video shows.

    python tools/demo.py --prompt "a large red circle moves right slowly on a dark blue background" \\
        --schedule full:2,coarse_space:13,full:1 --steps 16    # outputs/demo.mp4 and outputs/demo_full.mp4

Without ``--output`` the first free name pair is taken (``outputs/demo-2.mp4`` and ``outputs/demo-2_full.mp4``
when the first pair exists), so an earlier run's videos are never replaced; an explicit ``--output`` whose file (or
its ``_full`` partner) exists is refused unless ``--overwrite``.

full:2,coarse_space:13,full:1 at 16 steps is 2 full steps, 13 coarse-space steps and 1 full step: ~30% of full's
FLOPs (printed). The two noisiest steps stay full because the caption's motion direction is decided there (t >= 0.9,
docs/results.md "Where the caption's motion matters"); a schedule that gives them to the coarse-space adapter loses
the direction more often. An explicit schedule rather than ``compute=``: the calibration table's picks are measured
against full@30, while the demo compares with full at its own step count to stay within minutes on a CPU.

Each schedule runs once untimed first (one denoising step), so one-time costs (RoPE tables, first kernel calls) are
not counted against either.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUFFIXES = (".mp4", ".gif")
DEFAULT_OUTPUT = Path("outputs/demo.mp4")


def _full_of(path: Path) -> Path:
    return path.with_name(f"{path.stem}_full{path.suffix}")


def output_paths(output: str | None, overwrite: bool) -> dict[str, Path]:
    """The weak and full videos' paths, checked before anything loads: ``--output`` (refused when taken, unless
    ``overwrite``) or the first free ``outputs/demo[-k].mp4`` whose ``_full`` partner is free too."""
    from flexivid.fileio import check_output, unique_path

    if output is None:
        taken: set[Path] = set()
        while True:
            out = unique_path(DEFAULT_OUTPUT, taken=taken)
            if not _full_of(out).exists():
                break
            taken.add(out)
    else:
        out = Path(output)
    for path in (out, _full_of(out)):
        check_output(path, SUFFIXES, overwrite=overwrite)
    return {"weak": out, "full": _full_of(out)}


def main(argv=None) -> int:
    from flexivid.errors import OneLineParser, report_errors

    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--schedule", default="full:2,coarse_space:13,full:1",
                    help="the weak schedule (tools/generate_video.py --help)")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default="checkpoints/flexivid-small")
    ap.add_argument("--output", default=None,
                    help=f"weak-schedule video, {' or '.join(SUFFIXES)}; the full one gets _full (default "
                         f"{DEFAULT_OUTPUT}, -2, -3, ... when taken)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --output (default: refuse)")
    return report_errors(run, ap.parse_args(argv))


def run(a) -> int:
    paths = output_paths(a.output, a.overwrite)
    import torch

    from flexivid.diffusion.schedules import parse_schedule
    from flexivid.eval.fidelity import measure_attributes, parse_caption
    from flexivid.pipeline import VideoPipeline
    from flexivid.video_io import to_uint8, write_video

    pipe = VideoPipeline.from_pretrained(a.checkpoint)
    weak = parse_schedule(a.schedule, a.steps, pipe.model.modes)
    schedules = {"weak": a.schedule, "full": "full"}
    warm = {"weak": sorted(weak.modes_used), "full": ["full"]}
    results = {}
    with torch.inference_mode():
        for name, spec in schedules.items():
            for mode in warm[name]:  # warm-up: one untimed step in each mode the schedule uses
                pipe(a.prompt, steps=1, schedule=f"{mode}:1", progress=False)
            start = time.perf_counter()
            video, info = pipe(a.prompt, steps=a.steps, schedule=spec, seed=a.seed, progress=False)
            results[name] = (time.perf_counter() - start, info, video[0])
            write_video(paths[name], to_uint8(video[0]), fps=pipe.defaults.fps)
    wanted = parse_caption(a.prompt)
    for name in ("weak", "full"):
        seconds, info, video = results[name]
        got = measure_attributes(video)
        shown = ", ".join(f"{k} {got[k]}{'' if got[k] == v else f' (asked {v})'}" for k, v in wanted.items())
        print(f"{name:4s} {info['schedule']}: {100 * info['flops_fraction']:.0f}% of full FLOPs, {seconds:.1f} s "
              f"-> {paths[name]}\n     shows: {shown}")
    speedup = results["full"][0] / results["weak"][0]
    print(f"FlexiDiT speed-up, measured here: {speedup:.2f}x ({results['full'][0]:.1f} s full vs "
          f"{results['weak'][0]:.1f} s weak, {a.steps} steps, same prompt and seed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
