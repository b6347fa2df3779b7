"""The multi-GPU scaling table of ``tools/multigpu_scaling.sh``, computed from the runs' ``log.jsonl`` files.

    python -m flexivid.training.scaling_report --output OUT/scaling.md z2_1gpu=OUT/z2_1gpu.jsonl z2_8gpu=... \
        [--resume OUT/resume_8to1.jsonl] [--device "NVIDIA H100 80GB HBM3 x 8"]

Throughput is the steady state: samples over seconds of every ``train`` record but the first, because the first log
interval also holds the warm-up (first data-loader fetches, CUDA kernel selection, DeepSpeed's first buckets). Each
record covers the steps since the previous record at that record's ``steps_per_s``, so the last, shorter window
is weighted correctly. Scaling efficiency compares samples/s per GPU with the 1-GPU run of the same ZeRO stage.
Peak memory is ``torch.cuda.max_memory_allocated`` of rank 0 (ZeRO shards make the ranks nearly equal).

A log that holds several runs (a resume appends to the log of the run it continues) is split at its ``start``
records; the table uses the first run of each log, ``--resume`` reports the hand-over between the runs.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def read_log(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def split_runs(records: list[dict]) -> list[list[dict]]:
    """One list per run: each starts at a ``start`` record (a resumed run appends its own)."""
    runs: list[list[dict]] = []
    for rec in records:
        if rec.get("event") == "start" or not runs:
            runs.append([])
        runs[-1].append(rec)
    return runs


def steady_throughput(run: list[dict]) -> tuple[float, int] | None:
    """``(samples/s, steps measured)`` over the ``train`` records after the first; None with fewer than two."""
    train = [r for r in run if r.get("event") == "train"]
    if len(train) < 2:
        return None
    seconds = samples = 0.0
    for prev, rec in zip(train, train[1:]):
        dt = (rec["step"] - prev["step"]) / rec["steps_per_s"]
        seconds += dt
        samples += rec["samples_per_s"] * dt
    return samples / seconds, train[-1]["step"] - train[0]["step"]


def summarize(name: str, records: list[dict]) -> dict:
    """The table row of the first run in ``records``."""
    run = split_runs(records)[0]
    start = run[0] if run[0].get("event") == "start" else {}
    train = [r for r in run if r.get("event") == "train"]
    steady = steady_throughput(run)
    world = int(start.get("world_size", 1))
    mems = [r["gpu_mem_gb"] for r in train if "gpu_mem_gb" in r]
    return {"name": name, "gpus": world, "zero": start.get("zero_stage"), "precision": start.get("precision"),
            "samples_per_s": steady[0] if steady else None, "steps_measured": steady[1] if steady else 0,
            "per_gpu": steady[0] / world if steady else None, "peak_mem_gb": max(mems) if mems else None,
            "final_loss": train[-1]["loss"] if train else None, "last_step": train[-1]["step"] if train else 0}


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def scaling_table(rows: list[dict]) -> str:
    """Markdown table; efficiency = per-GPU samples/s over that of the 1-GPU run with the same ZeRO stage."""
    base = {r["zero"]: r["per_gpu"] for r in rows if r["gpus"] == 1 and r["per_gpu"]}
    lines = ["| run | ZeRO | GPUs | precision | samples/s | samples/s per GPU | scaling efficiency | "
             "peak GPU mem (GiB, rank 0) | steps measured | final loss |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        eff = f"{100 * r['per_gpu'] / base[r['zero']]:.0f}%" if r["per_gpu"] and r["zero"] in base else "n/a"
        lines.append(f"| {r['name']} | {r['zero']} | {r['gpus']} | {r['precision']} | "
                     f"{_fmt(r['samples_per_s'], '.1f')} | {_fmt(r['per_gpu'], '.1f')} | {eff} | "
                     f"{_fmt(r['peak_mem_gb'], '.2f')} | {r['steps_measured']} | {_fmt(r['final_loss'], '.4f')} |")
    return "\n".join(lines)


def resume_summary(records: list[dict]) -> str:
    """Markdown lines on a log whose second run resumed the first on another world size."""
    runs = split_runs(records)
    if len(runs) < 2:
        return "- no resumed run in this log (the resume failed or never started)"
    first, second = runs[0], runs[-1]
    before = [r["loss"] for r in first if r.get("event") == "train"]
    after = [r["loss"] for r in second if r.get("event") == "train"]
    saved, resumed = first[0], second[0]
    ok = bool(after) and all(math.isfinite(x) for x in after)
    return "\n".join([
        f"- trained on {saved.get('world_size')} GPU(s) to step {resumed.get('start_step')} (last loss "
        f"{_fmt(before[-1] if before else None, '.4f')}); resumed on {resumed.get('world_size')} GPU(s) from its "
        f"{resumed.get('checkpoint_world_size')}-rank checkpoint at sample {resumed.get('start_sample')}",
        f"- losses after the resume: {', '.join(f'{x:.4f}' for x in after) or 'none'} "
        f"({'all finite' if ok else 'NOT all finite'}); ended at step {second[-1].get('step', 'n/a')}"])


def report(logs: dict[str, str | Path], resume: str | Path | None = None, device: str | None = None) -> str:
    """The whole markdown report; a missing log becomes a row-less note instead of an error."""
    rows, missing = [], []
    for name, path in logs.items():
        if Path(path).is_file():
            rows.append(summarize(name, read_log(path)))
        else:
            missing.append(name)
    parts = [f"# DeepSpeed scaling{f' on {device}' if device else ''}", "",
             "Steady state: every log interval but the first. Efficiency: samples/s per GPU relative to the "
             "1-GPU run of the same ZeRO stage (the per-GPU batch is fixed, so the global batch grows with the "
             "GPU count).", "", scaling_table(rows)]
    if missing:
        parts += ["", f"Missing (the run failed; see its output): {', '.join(missing)}"]
    if resume is not None:
        parts += ["", "## Resume on a different GPU count", "",
                  resume_summary(read_log(resume)) if Path(resume).is_file() else f"- missing: {resume}"]
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", metavar="NAME=LOG", help="a run's name and its log.jsonl")
    ap.add_argument("--output", required=True, help="markdown file to write")
    ap.add_argument("--resume", default=None, help="log.jsonl of a run resumed on another GPU count")
    ap.add_argument("--device", default=None, help="device description for the heading")
    args = ap.parse_args(argv)
    if any("=" not in item for item in args.logs):
        ap.error("each log is NAME=PATH, e.g. z2_1gpu=runs/scaling/z2_1gpu/log.jsonl")
    logs = dict(item.split("=", 1) for item in args.logs)
    text = report(logs, args.resume, args.device)
    Path(args.output).write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
