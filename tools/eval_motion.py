#!/usr/bin/env python
"""Prompt fidelity and temporal coherence of a model on held-out captions, with 95% bootstrap intervals.

    python tools/eval_motion.py --checkpoint checkpoints/flexivid-small --output runs/eval_motion \\
        --text-cache runs/text_cache/minilm_synthetic.safetensors          # 256 prompts x 3 seeds, 30 steps, CFG 4

Prompts are the captions of the first ``--num-prompts`` test-split clips (held-out attribute combinations; the test
split has 108 distinct captions, so a caption recurs with other seeds). Prompt ``p`` runs with seeds
``seed + s * P + p`` for ``s < S = --seeds``, so seed index 0 is the same noise in a run with other ``--seeds``.
Every clip is scored by ``flexivid.eval.fidelity`` (each attribute, the jump rate, path straightness); intervals are ``flexivid.eval.stats.mean_ci`` (prompts resampled, a prompt's seeds
together). Writes ``<output>/eval_motion.json`` (intervals, per-value accuracies, the targets and whether each is met)
and ``<output>/samples.gif`` (first 8 clips). ``--compare-to OTHER/eval_motion.json`` adds the paired
difference (this model minus the other, seed index 0 of the same prompts, ``stats.paired_diff_ci``) per metric.
``--table RUN/eval_motion.json ...`` prints saved results as a markdown table (docs, model card) and generates nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flexivid.config import DataConfig  # noqa: E402
from flexivid.data.synthetic import ATTRIBUTES, SyntheticVideoDataset, caption_for  # noqa: E402
from flexivid.eval.fidelity import by_value, clip_scores  # noqa: E402
from flexivid.eval.stats import Interval, mean_ci, paired_diff_ci  # noqa: E402
from flexivid.fileio import atomic_write  # noqa: E402

# Issue targets: attribute accuracy floors and the largest jump rate.
TARGETS = {"direction": 0.95, "speed": 0.90, "colour": 0.97, "shape": 0.97, "size": 0.97, "background": 0.97}
MAX_JUMP_RATE = 0.02


def test_prompts(n: int) -> list[str]:
    ds = SyntheticVideoDataset(DataConfig(split="test", num_clips=n))
    return [caption_for(ds.attrs(i)) for i in range(n)]


def evaluate(pipe, prompts: list[str], seeds: int, steps: int, scale: float, schedule: str, batch_size: int,
             seed: int) -> tuple[dict, torch.Tensor, float]:
    """Generate ``len(prompts) x seeds`` clips; returns per-metric ``(P, S)`` score arrays, the first clips, seconds."""
    flat_prompts = [p for p in prompts for _ in range(seeds)]
    # prompt p, seed index s -> seed + s * P + p: seed index 0 is the same noise whatever --seeds is (paired runs)
    flat_seeds = [seed + s * len(prompts) + p for p in range(len(prompts)) for s in range(seeds)]
    start = time.perf_counter()
    videos, _ = pipe(flat_prompts, steps=steps, guidance_scale=scale, schedule=schedule, seed=flat_seeds,
                     batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - start
    scores = clip_scores(videos, flat_prompts)
    return scores, videos[:8], seconds


def summarize(scores: dict, num_prompts: int, seeds: int) -> dict:
    grid = lambda k: scores[k].reshape(num_prompts, seeds)  # noqa: E731
    out = {"attributes": {}, "coherence": {}}
    for attr in ATTRIBUTES:
        out["attributes"][attr] = mean_ci(grid(attr)).as_dict()
    out["coherence"]["jump_rate"] = mean_ci(grid("jump")).as_dict()
    out["coherence"]["straightness"] = mean_ci(grid("straightness")).as_dict()
    out["coherence"]["lost_frames"] = mean_ci(grid("lost")).as_dict()
    out["by_value"] = by_value(scores)
    met = {a: out["attributes"][a]["mean"] >= floor for a, floor in TARGETS.items()}
    met["jump_rate"] = out["coherence"]["jump_rate"]["mean"] <= MAX_JUMP_RATE
    out["targets"] = {"floors": TARGETS, "max_jump_rate": MAX_JUMP_RATE, "met": met}
    return out


METRICS = (*ATTRIBUTES, "jump", "straightness", "lost")


def compare(scores: dict, num_prompts: int, seeds: int, other: dict) -> dict:
    """Paired differences (this minus ``other``'s per-clip scores), seed index 0 of the shared prompts."""
    n = min(num_prompts, other["num_prompts"])
    out = {}
    for k in METRICS:
        mine = scores[k].reshape(num_prompts, seeds)[:n, 0]
        theirs = np.array([np.nan if v is None else v for v in other["clips"][k]], dtype=np.float64)
        theirs = theirs.reshape(other["num_prompts"], other["seeds"])[:n, 0]
        out[k] = paired_diff_ci(mine, theirs).as_dict()
    return {"other": other["checkpoint"], "prompts": n, "seed_index": 0, "diff": out}


def markdown_table(results: list[dict]) -> str:
    """A markdown table of ``eval_motion.json`` results for docs/results.md and the model card: every figure with its
    95% interval, in bold where it misses its target; a row per paired comparison a result carries."""
    cols = [*ATTRIBUTES, "jump rate", "straightness"]
    lines = ["| checkpoint | prompts x seeds | " + " | ".join(cols) + " | targets |", "|---" * (len(cols) + 3) + "|"]
    for r in results:
        met = r["targets"]["met"]
        figures = [(r["attributes"][a], met[a]) for a in ATTRIBUTES]
        figures += [(r["coherence"]["jump_rate"], met["jump_rate"]), (r["coherence"]["straightness"], True)]
        cells = [Interval(**d).format() if ok else f"**{Interval(**d).format()}**" for d, ok in figures]
        missed = [k for k, ok in met.items() if not ok]
        verdict = "all met" if not missed else "missed: " + ", ".join(missed)
        lines.append(f"| {r['checkpoint']} | {r['num_prompts']} x {r['seeds']} | {' | '.join(cells)} | {verdict} |")
        if "comparison" in r:
            c = r["comparison"]
            diffs = [Interval(**c["diff"][k]).format() for k in (*ATTRIBUTES, "jump", "straightness")]
            lines.append(f"| minus {c['other']} (paired) | {c['prompts']} x 1 | {' | '.join(diffs)} | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/flexivid-small")
    ap.add_argument("--output", default=None, help="folder for eval_motion.json and samples.gif")
    ap.add_argument("--num-prompts", type=int, default=256)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance-scale", type=float, default=4.0)
    ap.add_argument("--schedule", default="full")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text-cache", default=None, help="safetensors text cache (machines without MiniLM)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--compare-to", default=None, help="another run's eval_motion.json: paired differences")
    ap.add_argument("--table", nargs="+", default=None, metavar="JSON",
                    help="print these eval_motion.json results as a markdown table (no generation)")
    a = ap.parse_args(argv)
    if a.table:
        missing = [p for p in a.table if not Path(p).is_file()]
        if missing:
            print(f"error: --table {missing[0]} not found (an eval_motion.json)", file=sys.stderr)
            return 2
        print(markdown_table([json.loads(Path(p).read_text()) for p in a.table]))
        return 0
    if not a.output:
        ap.error("the following arguments are required: --output (or --table JSON ...)")
    for name in ("num_prompts", "seeds", "steps", "batch_size"):
        if getattr(a, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}", file=sys.stderr)
            return 2
    from flexivid.pipeline import VideoPipeline
    from flexivid.text import CachedTextEncoder
    from flexivid.video_io import to_uint8, write_video

    if a.compare_to and not Path(a.compare_to).is_file():
        print(f"error: --compare-to {a.compare_to} not found (an eval_motion.json of another run)", file=sys.stderr)
        return 2
    try:
        text = CachedTextEncoder(a.text_cache, device=a.device or "cpu") if a.text_cache else None
        pipe = VideoPipeline.from_pretrained(a.checkpoint, device=a.device, text_encoder=text)
        if text is not None:
            text.device = pipe.device
        prompts = test_prompts(a.num_prompts)
        pipe.check_inputs(prompts[:1], None, None, None, None, a.steps, a.guidance_scale, a.schedule, None, a.seed,
                          a.batch_size)  # bad settings fail here, before any generation
    except (FileNotFoundError, ValueError, LookupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scores, first, seconds = evaluate(pipe, prompts, a.seeds, a.steps, a.guidance_scale, a.schedule, a.batch_size,
                                      a.seed)
    res = {"checkpoint": a.checkpoint, "split": "test", "num_prompts": a.num_prompts, "seeds": a.seeds,
           "steps": a.steps, "guidance_scale": a.guidance_scale, "schedule": a.schedule,
           "device": str(pipe.device), "dtype": str(pipe.dtype).replace("torch.", ""),
           "generation_s": round(seconds, 1), **summarize(scores, a.num_prompts, a.seeds),
           "clips": {k: [None if not np.isfinite(v) else float(v) for v in scores[k]] for k in METRICS}}
    if a.compare_to:
        res["comparison"] = compare(scores, a.num_prompts, a.seeds, json.loads(Path(a.compare_to).read_text()))
    out = Path(a.output)
    atomic_write(out / "eval_motion.json", lambda p: Path(p).write_text(json.dumps(res, indent=2)))
    # one clip per row of the gif: the first 8 clips side by side, frame by frame
    grid = np.concatenate([to_uint8(v) for v in first], axis=2)  # (T, H, 8 * W, 3)
    write_video(out / "samples.gif", grid, fps=pipe.defaults.fps)
    fmt = lambda d: f"{d['mean']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"  # noqa: E731
    for attr, d in res["attributes"].items():
        print(f"{attr:12s} {fmt(d)}  target >= {TARGETS[attr]}: {'met' if res['targets']['met'][attr] else 'NOT met'}")
    for k, d in res["coherence"].items():
        print(f"{k:12s} {fmt(d)}")
    for k, d in res.get("comparison", {}).get("diff", {}).items():
        print(f"minus {res['comparison']['other']}: {k:12s} {fmt(d)}")
    print(f"jump rate target <= {MAX_JUMP_RATE}: {'met' if res['targets']['met']['jump_rate'] else 'NOT met'}; "
          f"{a.num_prompts} prompts x {a.seeds} seeds in {seconds:.0f} s on {pipe.device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
