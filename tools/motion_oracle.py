"""Where the caption's motion matters: experiments with the Bayes-optimal denoiser of the synthetic data.

``flexivid.eval.oracle.MotionOracle`` computes ``E[x0 | x_t, caption]`` exactly, with the direction and/or speed
words known or marginalised. Subcommands (each appends JSON lines to ``--output``):

* ``value``: the oracle's flow loss per t when it knows the full caption, or not the direction, not the speed, or
  neither, on test-split clips (one noise draw per clip and t); optionally the loss of a checkpoint on the same
  (clip, noise, t) for scale. ``--variants reversal no_position ...``: the best predictor that is equivariant to
  time reversal, or to translation (starts anywhere on the torus), instead.
* ``sample``: samples drawn with the oracle through the project's Euler sampler (``FlexiScheduler``, CFG off),
  knowing the direction (or the speed) only in some noise range, scored by ``flexivid.eval.fidelity``.
* ``classify``: a checkpoint as a diffusion classifier: its flow loss under each of the 4 direction captions (same
  clip, noise and t); accuracy of the argmin and the margin, next to the oracle's on the same inputs.

    python tools/motion_oracle.py value --clips 128 --subpixel 8 --output docs/results/motion_oracle/value.jsonl
    python tools/motion_oracle.py sample --captions 64 --seeds 2 --output docs/results/motion_oracle/sample.jsonl
    python tools/motion_oracle.py classify --checkpoint checkpoints/flexivid-small --device cuda --batch 64 \\
        --clips 256 --output $OUT/classify.jsonl
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
from flexivid.data.synthetic import (DIRECTIONS, SPEEDS, SPLIT_COMBINATIONS, ATTRIBUTES,  # noqa: E402
                                     SyntheticVideoDataset, caption_for)
from flexivid.diffusion.flow import add_noise, velocity_target  # noqa: E402
from flexivid.diffusion.scheduler import FlexiScheduler  # noqa: E402
from flexivid.eval.fidelity import clip_scores  # noqa: E402
from flexivid.eval.oracle import MotionOracle  # noqa: E402
from flexivid.eval.stats import mean_ci, percentile_interval  # noqa: E402

T_GRID = (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
TEXT_CACHE = "runs/text_cache/minilm_synthetic.safetensors"
CLIP = (16, 64, 64)  # (frames, height, width) of the shipped model and of the dataset's default

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
# What each oracle variant is told, as MotionOracle arguments for a clip's attrs; the rest is marginalised uniformly.
VARIANTS = {
    "full": lambda a: {},
    "no_direction": lambda a: {"directions": DIRECTIONS},
    "no_speed": lambda a: {"speeds": SPEEDS},
    "neither": lambda a: {"directions": DIRECTIONS, "speeds": SPEEDS},
    # the direction up to its reverse: what a predictor equivariant to time reversal can at best know
    "reversal": lambda a: {"directions": (a["direction"], OPPOSITE[a["direction"]])},
    # starts anywhere on the torus: the best predictor equivariant to (circular) translation
    "no_position": lambda a: {"anywhere": True},
    "no_position_no_direction": lambda a: {"anywhere": True, "directions": DIRECTIONS},
    "no_position_no_speed": lambda a: {"anywhere": True, "speeds": SPEEDS},
}


def oracle_for(attrs: dict, variant: str, subpixel: int, anywhere: bool = False) -> MotionOracle:
    kwargs = VARIANTS[variant](attrs)
    return MotionOracle(attrs, *CLIP, subpixel=subpixel, **{**kwargs, "anywhere": anywhere or kwargs.get("anywhere",
                                                                                                         False)})


def probe_set(n: int, seed: int, t_grid) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """``n`` test-split clips ``x0 (n, 3, F, H, W)``, their attrs, and one noise draw per (clip, t):
    ``noise (n, len(t_grid), 3, F, H, W)``. The draw of clip i at t is seeded by ``(seed, i, t)`` alone, so runs
    with fewer clips or another t grid see the same noise on the (clip, t) they share."""
    data = SyntheticVideoDataset(DataConfig(split="test", num_frames=CLIP[0], height=CLIP[1], width=CLIP[2],
                                            num_clips=n, seed=seed))
    items = [data[i] for i in range(n)]
    noise = torch.stack([torch.stack([torch.randn(3, *CLIP, generator=torch.Generator().manual_seed(
        (seed * 100_003 + i) * 10_007 + round(t * 10_000))) for t in t_grid]) for i in range(n)])
    return [it["attrs"] for it in items], torch.stack([it["video"] for it in items]), noise


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-clip flow loss ``(B,)``: MSE over all but the first dim, in float32."""
    return ((a.float() - b.float()) ** 2).flatten(1).mean(1)


def interval(values) -> dict:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in mean_ci(values).as_dict().items()}


def ratio_interval(num: np.ndarray, den: np.ndarray, seed: int = 0, resamples: int = 2000) -> dict:
    """``mean(num) / mean(den)`` with a percentile bootstrap over clips (paired)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(len(num), size=(resamples, len(num)))
    boot = num[idx].mean(1) / den[idx].mean(1)
    return {k: round(v, 6) if isinstance(v, float) else v
            for k, v in percentile_interval(float(num.mean() / den.mean()), boot, len(num)).as_dict().items()}


def load_checkpoint(path: str, device: str, text_cache: str):
    from flexivid.models.serialization import load_model
    from flexivid.pipeline import default_dtype
    from flexivid.text import CachedTextEncoder

    model = load_model(path, device, default_dtype(device), modes=[]).eval()
    return model, CachedTextEncoder(text_cache, device)


@torch.no_grad()
def caption_losses(model, encoder, x0: torch.Tensor, noise: torch.Tensor, t: float, captions: list[list[str]],
                   batch: int, device: str) -> np.ndarray:
    """A checkpoint's flow loss ``(N, C)`` for clip n under caption ``captions[n][c]`` (same x0, noise and t)."""
    n, c = len(captions), len(captions[0])
    rows = [(i, j) for i in range(n) for j in range(c)]
    out = np.empty((n, c))
    for s in range(0, len(rows), batch):
        chunk = rows[s:s + batch]
        ii = torch.tensor([i for i, _ in chunk])
        x0_b, noise_b = x0[ii].to(device), noise[ii].to(device)
        tt = torch.full((len(chunk),), t, device=device)
        tokens, mask = encoder.encode([captions[i][j] for i, j in chunk])
        dtype = next(model.parameters()).dtype
        v = model(add_noise(x0_b, noise_b, tt).to(dtype), tt, tokens.to(dtype), mask)
        loss = mse(v, velocity_target(x0_b, noise_b)).cpu().numpy()
        for (i, j), value in zip(chunk, loss):
            out[i, j] = value
    return out


def cmd_value(args) -> list[dict]:
    attrs, x0, noise = probe_set(args.clips, args.seed, args.t)
    model = None
    if args.checkpoint:
        model, encoder = load_checkpoint(args.checkpoint, args.device, args.text_cache)
    rows = []
    variants = ["full", *args.variants]
    losses = {k: np.empty((args.clips, len(args.t))) for k in variants}
    model_loss = np.full((args.clips, len(args.t)), np.nan)
    for i, a in enumerate(attrs):
        oracles = {k: oracle_for(a, k, args.subpixel) for k in variants}
        for j, t in enumerate(args.t):
            x_t = add_noise(x0[i:i + 1], noise[i, j:j + 1], torch.tensor([t]))[0]
            target = velocity_target(x0[i], noise[i, j])
            for k, o in oracles.items():
                losses[k][i, j] = float(mse(o.velocity(x_t, t)[None], target[None])[0])
    if model is not None:
        for j, t in enumerate(args.t):
            model_loss[:, j] = caption_losses(model, encoder, x0, noise[:, j], t, [[caption_for(a)] for a in attrs],
                                              args.batch, args.device)[:, 0]
    for j, t in enumerate(args.t):
        full = losses["full"][:, j]
        row = {"experiment": "value", "t": t, "clips": args.clips, "seed": args.seed, "subpixel": args.subpixel,
               "clip": list(CLIP), "loss_full": interval(full)}
        for k in args.variants:
            extra = losses[k][:, j] - full
            row[f"extra_{k}"] = interval(extra)
            row[f"extra_{k}_pct"] = ratio_interval(100 * extra, full)
        if model is not None:
            row["checkpoint"] = args.checkpoint
            row["loss_model"] = interval(model_loss[:, j])
        row["per_clip"] = {k: [round(float(v), 7) for v in losses[k][:, j]] for k in variants}
        if model is not None:
            row["per_clip"]["model"] = [round(float(v), 7) for v in model_loss[:, j]]
        rows.append(row)
    return rows


def test_captions(n: int, seed: int) -> list[dict]:
    """``n`` distinct test-split attribute dicts (a seeded permutation of the held-out combinations)."""
    combos = SPLIT_COMBINATIONS["test"]
    if n > len(combos):
        raise ValueError(f"--captions {n} exceeds the {len(combos)} test-split captions")
    order = np.random.default_rng(seed).permutation(len(combos))[:n]
    return [dict(zip(ATTRIBUTES, combos[i])) for i in order]


def knows_at(variant: str, t: float) -> bool:
    """Whether a sampling variant is told the attribute at noise level t: ``always``, ``never``, ``above:TAU``
    (only t >= TAU) or ``below:TAU`` (only t <= TAU)."""
    if variant in ("always", "never"):
        return variant == "always"
    kind, tau = variant.split(":")
    return t >= float(tau) - 1e-6 if kind == "above" else t <= float(tau) + 1e-6


@torch.no_grad()
def oracle_sample(oracles: dict[bool, MotionOracle], variant: str, noise: torch.Tensor, steps: int,
                  shift: float) -> torch.Tensor:
    """One clip sampled from pure ``noise (3, F, H, W)`` with the oracle that knows (True) or not (False)."""
    scheduler = FlexiScheduler({"full": (1, 1, 1)}, shift=shift, guided=False)
    scheduler.set_timesteps(steps)
    x = noise.clone()
    for t, _ in scheduler:
        v = oracles[knows_at(variant, float(t))].velocity(x, float(t))
        x = scheduler.step(v, t, x)
    return x.clamp(-1, 1)


def cmd_sample(args) -> list[dict]:
    wanted = test_captions(args.captions, args.seed)
    runs = [(attribute, variant) for attribute in args.attributes for variant in args.variants]
    videos = {run: [] for run in runs}
    for p, a in enumerate(wanted):  # caption outer: its two oracles are built once and serve every variant
        for attribute in args.attributes:
            oracles = {known: oracle_for(a, "full" if known else f"no_{attribute}", args.subpixel, args.anywhere)
                       for known in (True, False)}
            for variant in args.variants:
                for s in range(args.seeds):
                    gen = torch.Generator().manual_seed(args.seed * 1000 + s * 100_003 + p)
                    videos[attribute, variant].append(
                        oracle_sample(oracles, variant, torch.randn(3, *CLIP, generator=gen), args.steps, args.shift))
        print(f"caption {p + 1}/{len(wanted)}", file=sys.stderr, flush=True)
    rows = []
    for attribute, variant in runs:
        scores = clip_scores(videos[attribute, variant], [a for a in wanted for _ in range(args.seeds)])
        row = {"experiment": "sample", "attribute": attribute, "variant": variant, "captions": args.captions,
               "seeds": args.seeds, "steps": args.steps, "shift": args.shift, "subpixel": args.subpixel,
               "anywhere": args.anywhere, "clip": list(CLIP), "seed": args.seed}
        for k in ("direction", "speed", "jump", "straightness", *(x for x in ATTRIBUTES
                                                                  if x not in ("direction", "speed"))):
            row[k] = interval(scores[k].reshape(args.captions, args.seeds))
        row["per_clip"] = {k: [None if np.isnan(v) else round(float(v), 4) for v in scores[k]]
                           for k in ("direction", "speed", "jump", "straightness")}
        rows.append(row)
    return rows


def oracle_direction_losses(attrs: list[dict], x0: torch.Tensor, noise: torch.Tensor, t_grid, subpixel: int
                            ) -> tuple[np.ndarray, np.ndarray]:
    """The oracle as a direction classifier on the probe set: its flow loss ``(N, len(t_grid), 4)`` when told each
    direction caption, and the direction its posterior favours when told none ``(N, len(t_grid))`` (indices)."""
    losses = np.empty((len(attrs), len(t_grid), len(DIRECTIONS)))
    favoured = np.empty((len(attrs), len(t_grid)), dtype=np.int64)
    for i, a in enumerate(attrs):
        told = [MotionOracle(dict(a, direction=d), *CLIP, subpixel=subpixel) for d in DIRECTIONS]
        blind = oracle_for(a, "no_direction", subpixel)
        for j, t in enumerate(t_grid):
            x_t = add_noise(x0[i:i + 1], noise[i, j:j + 1], torch.tensor([t]))[0]
            target = velocity_target(x0[i], noise[i, j])
            losses[i, j] = [float(mse(o.velocity(x_t, t)[None], target[None])[0]) for o in told]
            p = blind.hypothesis_posterior(x_t, t)
            favoured[i, j] = DIRECTIONS.index(max(p, key=p.get)[0])
    return losses, favoured


def cmd_classify(args) -> list[dict]:
    attrs, x0, noise = probe_set(args.clips, args.seed, args.t)
    model, encoder = (None, None) if args.oracle_only else load_checkpoint(args.checkpoint, args.device,
                                                                          args.text_cache)
    captions = [[caption_for(dict(a, direction=d)) for d in DIRECTIONS] for a in attrs]
    truth = np.array([DIRECTIONS.index(a["direction"]) for a in attrs])
    if args.oracle:
        oracle_losses, favoured = oracle_direction_losses(attrs, x0, noise, args.t, args.subpixel)
    rows = []
    for j, t in enumerate(args.t):
        row = {"experiment": "classify", "t": t, "clips": args.clips, "seed": args.seed, "clip": list(CLIP)}
        results = {}
        if model is not None:
            row["checkpoint"] = args.checkpoint
            results["model"] = caption_losses(model, encoder, x0, noise[:, j], t, captions, args.batch, args.device)
        if args.oracle:
            results["oracle"] = oracle_losses[:, j]
            row["oracle_posterior_accuracy"] = interval((favoured[:, j] == truth).astype(float))
        for name, loss in results.items():
            true_loss = loss[np.arange(args.clips), truth]
            other = np.where(np.eye(len(DIRECTIONS), dtype=bool)[truth], np.inf, loss).min(1)
            row[f"{name}_accuracy"] = interval((loss.argmin(1) == truth).astype(float))
            row[f"{name}_margin"] = interval(other - true_loss)
            row[f"{name}_margin_pct"] = ratio_interval(100 * (other - true_loss), true_loss)
            row[f"{name}_loss_true"] = interval(true_loss)
            # axis (horizontal or vertical) and sign apart: a time-reversal-equivariant model gets the axis only
            opposite = np.array([DIRECTIONS.index(OPPOSITE[DIRECTIONS[i]]) for i in truth])
            row[f"{name}_axis_accuracy"] = interval((loss.argmin(1) // 2 == truth // 2).astype(float))
            row[f"{name}_sign_accuracy"] = interval((true_loss < loss[np.arange(args.clips), opposite]).astype(float))
            row.setdefault("per_clip", {})[name] = [[round(float(v), 7) for v in r] for r in loss]
        row["per_clip"]["direction"] = [DIRECTIONS[i] for i in truth]
        rows.append(row)
        if model is not None:  # a slow model run keeps what it has measured so far
            print(json.dumps({k: v for k, v in row.items() if k != "per_clip"}), flush=True)
            write_rows(args.output, [row])
    return [] if model is not None else rows


def write_rows(path: str, rows: list[dict]) -> None:
    """Append whole lines (one ``write`` per batch of rows, so a killed run leaves no half line)."""
    if rows:
        with open(path, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--output", required=True, help="JSONL file; lines are appended")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--subpixel", type=int, default=4, help="oracle start-lattice points per pixel")
    common.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    model_opts = argparse.ArgumentParser(add_help=False)
    model_opts.add_argument("--checkpoint", default=None, help="exported model folder")
    model_opts.add_argument("--device", default="cpu")
    model_opts.add_argument("--batch", type=int, default=8, help="model rows per forward pass")
    model_opts.add_argument("--text-cache", default=TEXT_CACHE)
    model_opts.add_argument("--clips", type=int, default=128, help="test-split clips (one noise draw per t)")
    model_opts.add_argument("--t", type=float, nargs="+", default=list(T_GRID))

    p = sub.add_parser("value", parents=[common, model_opts], help="oracle loss per t, attributes known or not")
    p.add_argument("--variants", nargs="+", default=["no_direction", "no_speed", "neither"],
                   choices=[v for v in VARIANTS if v != "full"], help="what the oracle is not told (vs full)")
    p = sub.add_parser("sample", parents=[common], help="sample with the oracle, attribute known in a t-range")
    p.add_argument("--captions", type=int, default=64)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--shift", type=float, default=1.0)
    p.add_argument("--attributes", nargs="+", default=["direction"], choices=["direction", "speed"])
    p.add_argument("--anywhere", action="store_true",
                   help="oracles with starts anywhere on the torus (the best translation-equivariant denoiser)")
    p.add_argument("--variants", nargs="+", default=["always", "never", "above:0.95", "above:0.9", "above:0.8",
                                                     "above:0.7", "below:0.95", "below:0.9", "below:0.8",
                                                     "below:0.7"])
    p = sub.add_parser("classify", parents=[common, model_opts], help="a checkpoint as a direction classifier")
    p.add_argument("--oracle", action="store_true", help="also the oracle's accuracy on the same inputs")
    p.add_argument("--oracle-only", action="store_true", help="skip the checkpoint (CPU smoke of the oracle side)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if getattr(args, "checkpoint", None) is None and args.command == "classify" and not args.oracle_only:
        print("error: classify needs --checkpoint DIR (an exported model), or --oracle-only", file=sys.stderr)
        return 2
    if any(not 0 < t <= 1 for t in getattr(args, "t", [])):
        print("error: every --t must be in (0, 1]", file=sys.stderr)
        return 2
    if args.command == "sample":
        bad = [v for v in args.variants if v not in ("always", "never")
               and not (v.split(":")[0] in ("above", "below") and len(v.split(":")) == 2)]
        if bad:
            print(f"error: unknown --variants {bad}; use always, never, above:TAU or below:TAU", file=sys.stderr)
            return 2
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    rows = {"value": cmd_value, "sample": cmd_sample, "classify": cmd_classify}[args.command](args)
    for row in rows:
        print(json.dumps({k: v for k, v in row.items() if k != "per_clip"}), flush=True)
    write_rows(args.output, rows)
    print(f"done in {time.time() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
