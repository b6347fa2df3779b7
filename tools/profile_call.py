#!/usr/bin/env python
"""What one sampling call costs the host outside its steps, on the graphed path (``flexivid.eval.call_profile``).

For each batch size and schedule: host ms and aten ops before the first step, per step and after the last step of one
pipeline call (graphs captured by a warm-up call), the ops outside the steps by name, and the flexivid functions of
one call by cumulative host time (cProfile). The default model is the speed suite's CPU smoke model (tiny, random,
exported like the shipped one) with its prompts looked up in a text cache, as the GPU suite does::

    python tools/profile_call.py --output docs/results/speed_call_cpu/after

Writes ``<output>/call_profile.md`` and ``call_profile.json``. On the CPU the step runs eagerly on the graphs' static
buffers (backend ``none``), so a step's host time is its compute; the phases outside the steps are the point.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from flexivid.errors import OneLineParser, report_errors
from flexivid.eval.call_profile import call_markdown, host_functions, profile_call
from flexivid.eval.speed import prompt_list, smoke_checkpoint, split_steps
from flexivid.eval.timing import environment
from flexivid.fileio import atomic_write


def main(argv=None) -> int:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="exported model (default: the speed suite's smoke model)")
    ap.add_argument("--text-cache", default=None, help="text cache of the prompts (default: built here with the "
                                                        "checkpoint's text encoder)")
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--schedules", default="full@10,interleaved:8:3@15")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--top", type=int, default=20, help="functions listed per call (0: none)")
    ap.add_argument("--output", default="runs/profile_call")
    return report_errors(run, ap.parse_args(argv))


def run(a) -> int:
    from flexivid.pipeline import VideoPipeline
    from flexivid.text import CachedTextEncoder, build_text_cache

    batches = [int(b) for b in a.batch_sizes.split(",")]
    if a.repeats < 1 or min(batches) < 1:
        raise ValueError("--repeats and every --batch-sizes entry must be >= 1")
    schedules = [split_steps(s) for s in a.schedules.split(",")]
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="flexivid_profile_call_"))
    ckpt = a.checkpoint or smoke_checkpoint(tmp / "smoke_model")
    torch.manual_seed(0)
    pipe = VideoPipeline.from_pretrained(ckpt, device="cpu")
    if a.text_cache is None:  # the GPU suite looks its prompts up in a cache: profile that, not a text model
        a.text_cache = str(tmp / "text_cache.safetensors")
        build_text_cache(pipe.text_encoder, prompt_list(pipe.text_encoder, max(batches)), a.text_cache)
    pipe.text_encoder = CachedTextEncoder(a.text_cache)
    pipe.sampling = "graphed"
    env = environment()
    rows = []
    for bs in batches:
        prompts = prompt_list(pipe.text_encoder, bs)
        for name, steps in schedules:
            fn = lambda n=name, k=steps: pipe(prompts, schedule=n, steps=k, seed=0, progress=False)  # noqa: E731
            r = profile_call(pipe, fn, a.repeats)
            r.update(batch=bs, schedule=f"{name}@{steps}", backend=pipe._graphs.backend,
                     functions=host_functions(pipe, fn, a.top) if a.top else [])
            rows.append(r)
            b, s, af = r["before"], r["per_step"], r["after"]
            reads = "/".join(f"{x['host_reads']:.0f}" for x in (b, s, af))
            print(f"batch {bs:2d} {name}@{steps:<3d} before {b['host_ms']:7.2f} ms {b['aten_ops']:4.0f} ops | per step "
                  f"{s['host_ms']:7.2f} ms {s['aten_ops']:6.1f} ops | after {af['host_ms']:6.2f} ms "
                  f"{af['aten_ops']:3.0f} ops | host reads {reads}")
    md = f"command: `python {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}`\n\n" + call_markdown(rows, env)
    atomic_write(out / "call_profile.md", lambda t: Path(t).write_text(md))
    atomic_write(out / "call_profile.json", lambda t: Path(t).write_text(json.dumps(
        {"environment": env, "checkpoint": a.checkpoint or "smoke", "rows": rows}, indent=2)))
    print(f"wrote {out / 'call_profile.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
