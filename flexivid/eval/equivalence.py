"""Does graphed sampling give the eager loop's videos? Separates the capture from the kernels it runs.

Three comparisons against the eager loop, same prompts, seeds and noise:

* ``graphed, step compiled``: what the pipeline runs with ``--compile on`` (Inductor fuses the step's element-wise
  work, so its bf16 roundings differ from the eager ops');
* ``graphed, step eager``: the same eager ops captured and replayed, which must be bit-identical if capture is exact
  (on a machine without CUDA the capture is emulated by the ``trace`` backend, which fails on any host sync);
* ``1 step``: one Euler step from t = 1 (``x = noise - v``): the difference is the velocity difference at step 0,
  which for a correct step is at the rounding level of the model dtype. Thirty CFG steps (scale 4 amplifies the
  conditional-minus-null difference) can then grow it, which is divergence, not a bug.

``equivalence(pipe, prompts, schedules)`` returns rows of max / mean absolute difference and PSNR (videos in
[-1, 1], peak-to-peak 2).
"""
from __future__ import annotations

import math

import torch


def video_diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    """max / mean |a - b| and PSNR of videos in [-1, 1] (inf when identical)."""
    d = (a.float() - b.float()).abs()
    mse = float((d * d).mean())
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "bitwise": bool(torch.equal(a, b)),
            "psnr_db": math.inf if mse == 0 else 10 * math.log10(4.0 / mse)}


def _run(pipe, sampling: str, prompts, spec: str, steps: int):
    pipe.sampling = sampling
    return pipe(prompts, schedule=spec, steps=steps, seed=0, progress=False)


def equivalence(pipe, prompts: list[str], schedules: list[tuple[str, int]], log=print) -> list[dict]:
    """Rows ``{schedule, variant, dtype, max_abs, mean_abs, psnr_db, bitwise}`` for each ``(spec, steps)``, plus
    the 1-step velocity check; restores the pipeline's graphs and sampling."""
    from ..diffusion.graphed import StepGraphs

    sampling = pipe.sampling
    pipe.sampling = "graphed"
    pipe._use_graphs()  # builds the pipeline's own graphs if it has none yet
    saved = pipe._graphs
    dtype = str(pipe.dtype).replace("torch.", "")
    capture = "cuda" if pipe.device.type == "cuda" else "trace"
    variants = [("graphed, step compiled" if pipe.compile_steps else "graphed", saved)]
    if pipe.compile_steps or saved.backend != capture:  # the same steps captured uncompiled: eager's own kernels
        variants.append(("graphed, step eager", StepGraphs(pipe.model, backend=capture)))
    rows = []
    try:
        for spec, steps in [*schedules, ("full", 1)]:
            eager, _ = _run(pipe, "eager", prompts, spec, steps)
            for label, graphs in variants:
                pipe._graphs = graphs
                video, info = _run(pipe, "graphed", prompts, spec, steps)
                row = {"schedule": f"{spec}@{steps}", "variant": label, "dtype": dtype, "sampling": info["sampling"],
                       "backend": graphs.backend, "must_be_bitwise": label == "graphed, step eager",
                       **video_diff(video, eager)}
                rows.append(row)
                log(f"{row['schedule']:28s} {label:24s} {dtype}: max {row['max_abs']:.2e} mean {row['mean_abs']:.2e} "
                    f"PSNR {row['psnr_db']:.1f} dB")
    finally:
        pipe._graphs, pipe.sampling = saved, sampling
    return rows


def equivalence_markdown(rows: list[dict]) -> list[str]:
    lines = ["| schedule | variant | dtype | max abs diff | mean abs diff | PSNR dB | bit-identical |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        must = r.get("must_be_bitwise") and not r["bitwise"]
        lines.append(f"| {r['schedule']} | {r['variant']} | {r['dtype']} | {r['max_abs']:.2e} | {r['mean_abs']:.2e} | "
                     f"{r['psnr_db']:.1f} | {r['bitwise']}{' (**must be**)' if must else ''} |")
    return lines
