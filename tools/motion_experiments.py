"""Why the base model did not follow motion: small CPU experiments with tiny DiTs on 16-frame synthetic clips.

Each experiment trains a tiny ``FlexiVideoDiT`` (flow matching, the project's ``DiffusionObjective``) on clips of a
few captions, then measures:

* ``direction`` / ``speed`` / ``jump_rate`` / ``straightness``: prompt fidelity of sampled clips (Euler, CFG),
  scored by ``flexivid.eval.fidelity`` (the same clips' real renders score ``real_*``);
* ``reverse_gap``: flow loss of the clip played backwards minus the loss of the true clip, both with the true
  caption and the same noise, relative to the true loss. 0 means the model cannot tell the caption's direction
  from its opposite (the shipped model: -4%, docs/results.md).

Usage (one JSON line per experiment appended to ``--output``)::

    python tools/motion_experiments.py --experiments overfit1_rope dirs_rope dirs_abs_t --output docs/results/x.jsonl
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flexivid.config import ModelConfig  # noqa: E402
from flexivid.data.synthetic import caption_for, plan_path, render_clip  # noqa: E402
from flexivid.diffusion.flow import add_noise, flow_loss, velocity_target  # noqa: E402
from flexivid.diffusion.guidance import cfg  # noqa: E402
from flexivid.diffusion.scheduler import FlexiScheduler  # noqa: E402
from flexivid.eval.fidelity import measure_clip  # noqa: E402
from flexivid.models.dit import FlexiVideoDiT  # noqa: E402
from flexivid.training.losses import DiffusionObjective  # noqa: E402

BASE = {"colour": "white", "shape": "square", "size": "large", "background": "black"}


def family(directions, speeds) -> list[dict]:
    return [dict(BASE, direction=d, speed=s) for d in directions for s in speeds]


# name -> (caption attribute dicts, model overrides, training overrides)
EXPERIMENTS = {
    # Can a tiny model make one caption's motion at all (no text needed: one caption)?
    "overfit1_rope": (family(["right"], ["fast"]), {}, {}),
    "overfit1_abs_thw": (family(["right"], ["fast"]), {"abs_pos": "thw"}, {}),
    # Direction and speed from the caption, everything else fixed.
    "dirs_rope": (family(["left", "right", "up", "down"], ["slow", "fast"]), {}, {}),
    "dirs_abs_t": (family(["left", "right", "up", "down"], ["slow", "fast"]), {"abs_pos": "t"}, {}),
    "dirs_abs_thw": (family(["left", "right", "up", "down"], ["slow", "fast"]), {"abs_pos": "thw"}, {}),
    # Continued training (the GPU recipe's situation): start from dirs_rope's weights (fresh optimizer) and train
    # on, without / with the zero-initialised absolute-position projection. Run after dirs_rope in one invocation.
    "cont_rope": (family(["left", "right", "up", "down"], ["slow", "fast"]), {}, {"init": "dirs_rope"}),
    "cont_abs_t": (family(["left", "right", "up", "down"], ["slow", "fast"]), {"abs_pos": "t"}, {"init": "dirs_rope"}),
    "cont_abs_thw": (family(["left", "right", "up", "down"], ["slow", "fast"]), {"abs_pos": "thw"},
                     {"init": "dirs_rope"}),
    # Training where motion is decided: uniform t puts 5% of samples at t > 0.95 (logit-normal: 0.16%).
    # Only the high-noise regime (t ~ U(0.9, 1)), where the best prediction is E[x0 | caption]: can the model learn
    # the caption's direction there at all? (mean_prediction is the measure; sampling needs every t.)
    "highnoise_rope": (family(["left", "right", "up", "down"], ["slow", "fast"]), {}, {"t_range": (0.9, 1.0)}),
    "highnoise_abs_thw": (family(["left", "right", "up", "down"], ["slow", "fast"]), {"abs_pos": "thw"},
                          {"t_range": (0.9, 1.0)}),
    "dirs_rope_uniform_t": (family(["left", "right", "up", "down"], ["slow", "fast"]), {},
                            {"timestep_sampling": "uniform"}),
    "dirs_abs_thw_uniform_t": (family(["left", "right", "up", "down"], ["slow", "fast"]), {"abs_pos": "thw"},
                               {"timestep_sampling": "uniform"}),
    "dirs_rope_depth4": (family(["left", "right", "up", "down"], ["slow", "fast"]), {"depth": 4}, {}),
}


class Clips:
    """Random renders of a fixed caption set at ``(T, H, W)``; text embeddings encoded once."""

    def __init__(self, attrs: list[dict], t: int, h: int, w: int, encoder):
        self.attrs, self.shape = attrs, (t, h, w)
        tokens, mask = encoder.encode([caption_for(a) for a in attrs])
        self.tokens, self.mask = tokens, mask

    def batch(self, n: int, rng: np.random.Generator):
        idx = rng.integers(len(self.attrs), size=n)
        t, h, w = self.shape
        video = np.stack([render_clip(self.attrs[i], plan_path(self.attrs[i], t, h, w, rng), h, w) for i in idx])
        return torch.from_numpy(video), self.tokens[idx], self.mask[idx], idx


def train(clips: Clips, model_kw: dict, train_kw: dict, steps: int, batch: int, seed: int,
          init: dict | None = None) -> FlexiVideoDiT:
    torch.manual_seed(seed)
    model = FlexiVideoDiT(ModelConfig(**{**dict(hidden_size=64, depth=2, num_heads=4, patch_size=(1, 4, 4)),
                                         **model_kw}))
    if init is not None:  # as train.init_from: only the zero-initialised position projection may be new
        missing, unexpected = model.load_state_dict(init, strict=False)
        assert not unexpected and all(k.startswith("pos_embed.") for k in missing), (missing, unexpected)
    objective = DiffusionObjective(model, "flow", train_kw.get("timestep_sampling", "logit_normal"),
                                   train_kw.get("caption_dropout", 0.1))
    opt = torch.optim.AdamW(model.parameters(), lr=train_kw.get("lr", 1e-3), betas=(0.9, 0.99))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))))
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    for step in range(steps):
        x0, text, mask, _ = clips.batch(batch, rng)
        if "t_range" in train_kw:  # the flow loss with t ~ U(lo, hi) instead of the objective's sampling
            lo, hi = train_kw["t_range"]
            drop = torch.rand(batch, generator=gen) < train_kw.get("caption_dropout", 0.1)
            t = lo + (hi - lo) * torch.rand(batch, generator=gen)
            noise = torch.randn(x0.shape, generator=gen)
            text, mask = model.drop_text(text, mask, drop)
            loss = flow_loss(model(add_noise(x0, noise, t), t, text, mask), velocity_target(x0, noise))
        else:
            loss = objective(x0, text, mask, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            print(f"  step {step:5d} loss {loss.item():.4f}", flush=True)
    return model.eval()


@torch.no_grad()
def sample(model, clips: Clips, per_caption: int, steps: int, scale: float, seed: int):
    n = len(clips.attrs) * per_caption
    idx = torch.arange(len(clips.attrs)).repeat_interleave(per_caption)
    x = torch.randn(n, 3, *clips.shape, generator=torch.Generator().manual_seed(seed))
    text, mask = clips.tokens[idx], clips.mask[idx]
    scheduler = FlexiScheduler(model.modes)
    scheduler.set_timesteps(steps)
    for t, _ in scheduler:  # full mode at every step; CFG with the null text
        v_c = model(x, t.expand(n), text, mask)
        v_u = model(x, t.expand(n), None, None)
        x = scheduler.step(cfg(v_u, v_c, scale), t, x)
    return x.clamp(-1, 1), [clips.attrs[i] for i in idx.tolist()]


def score(videos, attrs) -> dict:
    hits = {"direction": [], "speed": [], "jump": [], "straightness": [], "lost_frames": []}
    for video, want in zip(videos, attrs):
        got, motion = measure_clip(video)
        hits["lost_frames"].append(motion["lost"])
        hits["direction"].append(got["direction"] == want["direction"])
        hits["speed"].append(got["speed"] == want["speed"])
        hits["jump"].append(motion["jump"] is not False)  # unmeasurable counts as incoherent
        hits["straightness"].append(motion["straightness"] or 0.0)
    return {("jump_rate" if k == "jump" else k): round(float(np.mean(v)), 4) for k, v in hits.items()}


@torch.no_grad()
def reverse_gap(model, clips: Clips, n: int, seed: int) -> dict:
    """Relative loss increase when the clip is played backwards (caption and noise kept), per t."""
    rng, gen = np.random.default_rng(seed + 1), torch.Generator().manual_seed(seed + 1)
    x0, text, mask, _ = clips.batch(n, rng)
    noise = torch.randn(x0.shape, generator=gen)
    out = {}
    for t in (0.3, 0.6, 0.9):
        tt = torch.full((n,), t)
        losses = []
        for clip in (x0, x0.flip(2)):
            v = model(add_noise(clip, noise, tt), tt, text, mask)
            losses.append(float(((v - velocity_target(clip, noise)) ** 2).mean()))
        out[str(t)] = round((losses[1] - losses[0]) / losses[0], 4)
    return out


@torch.no_grad()
def mean_prediction_direction(model, clips: Clips, draws: int, seed: int) -> dict:
    """Direction of the model's MEAN clean-clip prediction from pure noise (t = 0.98), per caption.

    At high noise the best prediction is E[x0 | caption]: for "moves right", a blurred object sweeping right over the
    frames, i.e. a different image at every frame and position. Averaged over noise draws, a model that cannot
    tell where a token is predicts the same at every position, so its mean has no direction. The centre of the
    mean prediction's brightness (above each frame's mean) is tracked over frames; its least-squares slope gives
    the direction, compared with the caption's.
    """
    hits, travel = [], []
    t = torch.tensor([0.98])
    gen = torch.Generator().manual_seed(seed + 3)
    for i, attrs in enumerate(clips.attrs):
        noise = torch.randn(draws, 3, *clips.shape, generator=gen)
        x0 = noise - t * model(noise, t.expand(draws), clips.tokens[i:i + 1].expand(draws, -1, -1),
                               clips.mask[i:i + 1].expand(draws, -1))
        bright = x0.mean(dim=(0, 1))  # (T, H, W)
        weight = (bright - bright.mean(dim=(1, 2), keepdim=True)).clamp(min=0)
        ys, xs = torch.meshgrid(torch.arange(clips.shape[1]) + 0.5, torch.arange(clips.shape[2]) + 0.5,
                                indexing="ij")
        mass = weight.sum(dim=(1, 2)).clamp(min=1e-8)
        centres = torch.stack([(weight * ys).sum(dim=(1, 2)) / mass, (weight * xs).sum(dim=(1, 2)) / mass], -1)
        slope = np.polyfit(np.arange(clips.shape[0]), centres.numpy(), 1)[0]  # (dy, dx) pixels per frame
        ax = int(np.argmax(np.abs(slope)))
        hits.append((("up", "down"), ("left", "right"))[ax][int(slope[ax] > 0)] == attrs["direction"])
        travel.append(float(np.abs(slope[ax]) * (clips.shape[0] - 1)))
    return {"direction": round(float(np.mean(hits)), 4), "mean_travel_px": round(float(np.mean(travel)), 3)}


@torch.no_grad()
def uniform_spread(model, clips: Clips) -> float:
    """Spread of the prediction over tokens for a uniform input (every pixel the background, t = 0.9).

    Every token then has the same content: with RoPE only, attention averages identical values whatever its weights,
    so every token outputs the same patch, at every frame and position (spread ~1e-7, float error). A model with
    absolute positions can draw a position-dependent prediction (e.g. where the object should be in each frame).
    """
    t, h, w = clips.shape
    x = torch.full((1, 3, t, h, w), -1.0)  # black background, noise-free
    v = model(0.1 * x, torch.tensor([0.9]), clips.tokens[:1], clips.mask[:1])
    return token_spread(v, model.config.patch_size)


def token_spread(v: torch.Tensor, patch) -> float:
    """Largest difference between the output patches of two tokens, relative to the mean |v|: ``v (1, C, T, H, W)``."""
    pt, ph, pw = patch
    tokens = rearrange(v, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)
    return float((tokens - tokens.mean(dim=1, keepdim=True)).abs().max() / v.abs().mean())


@torch.no_grad()
def shipped_symmetry(checkpoint: str, encoder, seed: int) -> dict:
    """The exported model at ``checkpoint``: uniform-input spread and time-reversal equivariance error.

    ``reversal_error`` = |v(reverse(x_t)) - reverse(v(x_t))| / |v(x_t)| on a training clip with its caption. 0 means
    the model treats a clip and the same clip played backwards alike, i.e. it cannot follow a direction.
    """
    from flexivid.config import DataConfig
    from flexivid.data.synthetic import SyntheticVideoDataset
    from flexivid.models.serialization import load_model

    model = load_model(checkpoint, modes=[]).eval()
    item = SyntheticVideoDataset(DataConfig(split="train", num_frames=16, height=64, width=64, num_clips=8,
                                            seed=3))[0]
    tokens, mask = encoder.encode([item["caption"]])
    x0 = item["video"][None]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([0.6])
    x_t = add_noise(x0, noise, t)
    v = model(x_t, t, tokens, mask)
    v_rev = model(x_t.flip(2), t, tokens, mask)
    uniform = model(torch.full_like(x0, 0.1 * float(x0[0, 0, 0, 0, 0])), torch.tensor([0.9]), tokens, mask)
    return {"caption": item["caption"], "t": 0.6,
            "reversal_error": round(float((v_rev - v.flip(2)).norm() / v.norm()), 5),
            "uniform_input_spread": token_spread(uniform, model.config.patch_size)}


def signal_size(size: int, clips_per_caption: int, seed: int) -> dict:
    """What knowing the caption's motion, or the position, is worth in the loss at t -> 1 (real renders only).

    There the flow loss is the variance of x0 left unexplained. ``var_x0_given_caption``: the floor (predicting
    E[x0 | caption]); ``caption_gain``: the extra loss of a predictor that knows position but not the caption's
    motion (E[x0] over the 8 motion captions); ``position_gain``: the extra loss of one that knows the caption but
    not where a token is (each frame of E[x0 | caption] replaced by its spatial mean).
    """
    rng = np.random.default_rng(seed)
    means, variances = [], []
    for a in family(["left", "right", "up", "down"], ["slow", "fast"]):
        v = np.stack([render_clip(a, plan_path(a, 16, size, size, rng), size, size) for _ in range(clips_per_caption)])
        means.append(v.mean(0))
        variances.append(v.var(0).mean())
    means = np.stack(means)  # (8, 3, T, H, W)
    blind = means.mean(axis=(3, 4), keepdims=True)
    return {"size": size, "var_x0_given_caption": round(float(np.mean(variances)), 5),
            "caption_gain": round(float(((means - means.mean(0)) ** 2).mean()), 5),
            "position_gain": round(float(((means - blind) ** 2).mean()), 5)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiments", nargs="+", default=["overfit1_rope", "dirs_rope", "dirs_abs_t"])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=16, help="height = width of the clips (>= 16)")
    ap.add_argument("--sample-steps", type=int, default=12)
    ap.add_argument("--per-caption", type=int, default=8)
    ap.add_argument("--cfg", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default="checkpoints/flexivid-small", help="model of shipped_symmetry")
    ap.add_argument("--save-models", default=None, help="folder for each trained tiny model (torch.save)")
    ap.add_argument("--draws", type=int, default=32, help="noise draws per caption of the mean prediction")
    ap.add_argument("--init-from", default=None, help="folder of --save-models: continue each experiment's model")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    ap.add_argument("--output", required=True, help="JSONL file; one line per experiment is appended")
    args = ap.parse_args(argv)
    unknown = [e for e in args.experiments
               if e not in EXPERIMENTS and e not in ("shipped_symmetry", "shipped_mean_prediction", "signal_size")]
    if unknown:
        print(f"error: unknown experiment(s) {', '.join(unknown)}; allowed: {', '.join(EXPERIMENTS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    from flexivid.text import MiniLMEncoder

    encoder = MiniLMEncoder(max_length=16)
    trained: dict[str, dict] = {}
    for name in args.experiments:
        if name == "signal_size":
            row = {"experiment": name, **signal_size(args.size, 400, args.seed)}
            print(json.dumps(row), flush=True)
            with open(args.output, "a") as f:
                f.write(json.dumps(row) + "\n")
            continue
        if name == "shipped_mean_prediction":  # the exported model's E[x0 | caption] from pure noise
            from flexivid.models.serialization import load_model

            model = load_model(args.checkpoint, modes=[]).eval()
            clips = Clips(family(["left", "right", "up", "down"], ["slow", "fast"]), 16, 64, 64, encoder)
            row = {"experiment": name, "checkpoint": args.checkpoint, "clip": [16, 64, 64],
                   "mean_prediction": mean_prediction_direction(model, clips, args.draws, args.seed)}
            print(json.dumps(row), flush=True)
            with open(args.output, "a") as f:
                f.write(json.dumps(row) + "\n")
            continue
        if name == "shipped_symmetry":
            row = {"experiment": name, "checkpoint": args.checkpoint, **shipped_symmetry(args.checkpoint, encoder,
                                                                                         args.seed)}
            print(json.dumps(row), flush=True)
            with open(args.output, "a") as f:
                f.write(json.dumps(row) + "\n")
            continue
        attrs, model_kw, train_kw = EXPERIMENTS[name]
        clips = Clips(attrs, args.frames, args.size, args.size, encoder)
        print(f"{name}: {len(attrs)} caption(s), model {model_kw or 'baseline'}, train {train_kw or 'default'}",
              flush=True)
        start = time.time()
        init = train_kw.get("init")
        if init is not None and init not in trained:
            print(f"error: {name} starts from {init}: list {init} before it in --experiments", file=sys.stderr)
            return 2
        start_state = trained[init] if init is not None else None
        if args.init_from:  # a model saved by an earlier --save-models run, trained on further here
            start_state = torch.load(Path(args.init_from) / f"{name}.pt", weights_only=False)["state"]
        model = train(clips, model_kw, train_kw, args.steps, args.batch, args.seed, start_state)
        trained[name] = {k: v.clone() for k, v in model.state_dict().items()}
        if args.save_models:
            Path(args.save_models).mkdir(parents=True, exist_ok=True)
            torch.save({"config": model.config, "state": trained[name]}, Path(args.save_models) / f"{name}.pt")
        videos, wanted = sample(model, clips, args.per_caption, args.sample_steps, args.cfg, args.seed)
        real, _, _, idx = clips.batch(len(wanted), np.random.default_rng(args.seed + 2))
        row = {"experiment": name, "captions": len(attrs), "model": model_kw, "train": train_kw,
               "init_from": args.init_from,
               "steps": args.steps, "batch": args.batch, "clip": [args.frames, args.size, args.size],
               "sample_steps": args.sample_steps, "cfg": args.cfg, "samples": len(wanted),
               "generated": score(videos, wanted),
               "real": score(real, [attrs[i] for i in idx]),
               "reverse_gap": reverse_gap(model, clips, 32, args.seed),
               "uniform_input_spread": uniform_spread(model, clips),
               "mean_prediction": mean_prediction_direction(model, clips, args.draws, args.seed),
               "cpu_seconds": round(time.time() - start, 1)}
        print(json.dumps(row), flush=True)
        with open(args.output, "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
