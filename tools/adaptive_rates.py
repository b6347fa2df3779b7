"""Rate-of-change curves of a checkpoint (``diffusion.adaptive``): per step, the predicted clean latent's change per
unit sigma, for the all-full schedule and for the weak mode at every step, at each step count. They pick the
adaptive schedule's TAU values (the frontier's ``adaptive`` family).

    python tools/adaptive_rates.py --checkpoint checkpoints/flexivid-small --steps 30 15 --prompts 4 \
        --output docs/results/adaptive_cpu/rates.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/flexivid-small")
    p.add_argument("--steps", type=int, nargs="+", default=[30, 15])
    p.add_argument("--prompts", type=int, default=4, help="test captions (flexivid.data.synthetic), seed 0..")
    p.add_argument("--mode", default=None, help="weak mode (default: the cheapest)")
    p.add_argument("--taus", type=float, nargs="*", default=[],
                   help="also run adaptive:MODE:TAU at each step count and record each prompt's realised order and "
                        "FLOPs fraction")
    p.add_argument("--no-curves", action="store_true", help="only the --taus runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", required=True, help="JSON file of every curve (written atomically)")
    return p


def run(a) -> int:
    from flexivid.data.synthetic import all_captions
    from flexivid.diffusion.scheduler import FlexiScheduler
    from flexivid.diffusion.schedules import cost_order
    from flexivid.fileio import atomic_write
    from flexivid.pipeline import VideoPipeline

    pipe = VideoPipeline.from_pretrained(a.checkpoint, device=a.device)
    mode = a.mode or cost_order(pipe.model.modes)[0]
    captions = all_captions("test")[:a.prompts]
    out = {"checkpoint": a.checkpoint, "device": str(pipe.device), "mode": mode, "prompts": captions, "curves": []}
    for n in a.steps:
        scheduler = FlexiScheduler(pipe.model.modes, pipe.defaults.shift)
        scheduler.set_timesteps(n)
        sigmas = [round(float(v), 4) for v in scheduler.sigmas[1:n]]  # sigma_i of rate_i, i = 1..n-1
        # HEAD = n: every step full; HEAD = TAIL = 0 with TAU = 0: every step weak. Both record the rates.
        for name, spec in () if a.no_curves else (("full", f"adaptive:{mode}:inf:{n}:0"),
                                                  (mode, f"adaptive:{mode}:0:0:0")):
            _, info = pipe(captions, steps=n, schedule=spec, seed=0, progress=False)
            r = np.array(info["rates"])  # (prompts, n - 1): rate after steps 1..n-1
            curve = {"steps": n, "schedule": name, "spec": spec, "order": info["order"],
                     "sigma": sigmas, "mean": r.mean(0).round(4).tolist(),
                     "min": r.min(0).round(4).tolist(), "max": r.max(0).round(4).tolist()}
            out["curves"].append(curve)
            print(f"{name}@{n}: " + " ".join(f"{s:.2f}:{m:.2f}" for s, m in zip(curve["sigma"], curve["mean"])))
    out["runs"] = []
    for n in a.steps:
        for tau in a.taus:
            spec = f"adaptive:{mode}:{tau:g}"
            _, info = pipe(captions, steps=n, schedule=spec, seed=0, progress=False)
            out["runs"].append({"steps": n, "spec": spec, "orders": info["orders"],
                                "flops_fractions": [round(f, 4) for f in info["flops_fractions"]],
                                "flops_fraction_mean": round(info["flops_fraction_mean"], 4)})
            print(f"{spec}@{n}: mean FLOPs {info['flops_fraction_mean']:.4f} of full@{n}; " + " | ".join(
                f"{o} ({f:.3f})" for o, f in zip(info["orders"], info["flops_fractions"])))
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.output, lambda tmp: Path(tmp).write_text(json.dumps(out, indent=1)))
    print(f"wrote {a.output}")
    return 0


def main(argv=None) -> int:
    from flexivid.errors import report_errors

    return report_errors(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
