"""The compute-vs-quality frontier: every schedule's FLOPs, wall-clock and quality, side by side.

For a checkpoint trained on the built-in dataset, the same held-out prompts and seeds are generated with each
schedule, and each schedule gets:

* FLOPs fraction of the all-full schedule (``diffusion.schedules``, both guidance branches counted);
* wall-clock per video and speed-up vs ``full`` measured in the same run (batch 1 and a larger batch; eager and
  regional ``torch.compile``, CUDA graphs at batch 1), median of repeats after a warm-up;
* FVD vs real clips of the same prompts (``eval.fvd``, Kinetics-400 I3D), prompt fidelity (``eval.fidelity``) and
  PSNR/SSIM against the ``full`` video of the same seed (``eval.frames``, the TeaCache/PAB protocol).

The baseline "fewer full steps at equal FLOPs" runs ``full`` with ``round(f * steps)`` steps.
Writes ``frontier.md``, ``frontier.json``, ``frontier.png`` and ``samples.gif`` (rows = schedules) under ``out_dir``.
"""
from __future__ import annotations

import json
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from ..data.synthetic import SyntheticVideoDataset, caption_for
from ..diffusion.schedules import cost_order
from ..pipeline import VideoPipeline
from ..video_io import to_uint8, write_video
from .fidelity import prompt_fidelity
from .frames import compare_videos


@dataclass
class FrontierSettings:
    checkpoint: str
    out_dir: str = "runs/benchmark"
    num_videos: int = 256
    steps: int = 30
    guidance_scale: float = 4.0
    schedules: list[str] | None = None  # spec strings, optionally "@N" for N steps (e.g. "full@12"); None: sweep
    batch_sizes: tuple[int, ...] = (1, 16)
    compile: str = "both"  # off | on | both
    fvd: bool = True
    text_cache: str | None = None
    device: str = "auto"
    seed: int = 0
    timing_repeats: int = 3
    gen_batch: int = 64
    merge_adapters: bool = True  # per-mode merged LoRA weights, the pipeline's default


@dataclass
class Row:
    label: str
    family: str
    spec: str
    steps: int
    flops_fraction: float
    timings: dict = field(default_factory=dict)  # "b{bs}_{eager|compiled}" -> seconds per video
    speedups: dict = field(default_factory=dict)
    fvd: float | None = None
    fidelity: dict = field(default_factory=dict)
    psnr: float | None = None
    ssim: float | None = None


def default_schedules(steps: int, modes: dict) -> list[tuple[str, str]]:
    """(family, spec) sweep: full; weak_first per weak mode at several k; interleaved; fewer-full-steps baselines."""
    weak = cost_order(modes)
    specs = ["full"]
    for mode in weak:
        specs += [f"weak_first:{mode}:{round(frac * steps)}" for frac in (1 / 2, 2 / 3, 5 / 6, 1.0 - 2 / steps)]
    if len(weak) >= 2:
        specs += [f"interleaved:{a}:{b}" for a, b in ((steps // 3, steps // 3), (steps // 2, steps // 3),
                                                       (2 * steps // 3, steps // 6))]
    specs += [f"full@{max(1, round(frac * steps))}" for frac in (0.25, 0.35, 0.5, 0.7)]
    return [(family_of(x), x) for x in dict.fromkeys(specs)]


def family_of(spec: str) -> str:
    """The plot/table family of a schedule spec (``full@12`` is the fewer-full-steps baseline)."""
    if spec == "full":
        return "full"
    if spec.startswith("full@"):
        return "fewer full steps"
    if spec.startswith("weak_first"):
        parts = spec.split(":")
        return f"weak_first {parts[1]}" if len(parts) > 1 else "weak_first"
    return "interleaved" if spec.startswith("interleaved") else "custom order"


def _split(spec: str, steps: int) -> tuple[str, int]:
    if "@" in spec:
        s, n = spec.split("@")
        return s, int(n)
    return spec, steps


def _timed(fn, repeats: int, cuda: bool) -> float:
    fn()  # warm-up (and compile)
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_frontier(s: FrontierSettings, log=print) -> list[Row]:
    device = None if s.device == "auto" else s.device
    text_encoder = None
    if s.text_cache:  # GPU machines without the MiniLM package read precomputed prompt embeddings
        from ..text import CachedTextEncoder

        text_encoder = CachedTextEncoder(s.text_cache)
    pipe = VideoPipeline.from_pretrained(s.checkpoint, device=device, text_encoder=text_encoder,
                                         merge_adapters=s.merge_adapters)
    cuda = pipe.device.type == "cuda"
    d = pipe.defaults
    data_cfg = DataConfig(split="test", num_frames=d.num_frames, height=d.height, width=d.width,
                          num_clips=s.num_videos, seed=s.seed)
    ds = SyntheticVideoDataset(data_cfg)
    items = [ds.attrs(i) for i in range(s.num_videos)]
    prompts = [caption_for(a) for a in items]
    specs = [(family_of(x), x) for x in s.schedules] if s.schedules else default_schedules(s.steps, pipe.model.modes)
    out = Path(s.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    detector = None
    if s.fvd:
        from .i3d import load_i3d

        detector = load_i3d(pipe.device)
    rows, full_videos, samples = [], None, []
    gen = dict(guidance_scale=s.guidance_scale, progress=False)
    for family, raw in specs:
        spec, steps = _split(raw, s.steps)
        t0 = time.perf_counter()
        videos, info = pipe(prompts, steps=steps, schedule=spec, seed=s.seed, batch_size=s.gen_batch, **gen)
        frac = info["flops_fraction"] * steps / s.steps  # relative to the full schedule with s.steps steps
        row = Row(raw, family, info["schedule"], steps, frac)
        row.fidelity = prompt_fidelity(videos, items)
        if full_videos is None:
            full_videos = videos
        cmp = compare_videos(videos, full_videos)
        row.psnr, row.ssim = cmp["psnr"], cmp["ssim"]
        if detector is not None:
            from .fvd import FVDConfig, compute_fvd

            real = f"synthetic:test:height={d.height},width={d.width}"
            cfg = FVDConfig(num_real=2048, num_fake=s.num_videos, num_frames=d.num_frames, progress=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fewer than 2048 fakes: the count is reported in the table
                res = compute_fvd(real, videos, cfg, detector=detector)
            row.fvd = res["fvd"]
            row.fidelity["fvd_protocol"] = res["protocol"]
        samples.append(videos[:4])
        log(f"{raw:34s} flops {frac:.3f}  fidelity {row.fidelity['mean']:.3f}  FVD {row.fvd}  "
            f"PSNR {row.psnr:.2f}  SSIM {row.ssim:.3f}  ({time.perf_counter() - t0:.1f} s)")
        rows.append(row)
    grid = torch.cat([torch.cat(list(v), dim=-1) for v in samples], dim=-2)  # (3, T, rows*H, 4*W)
    write_video(out / "samples.gif", to_uint8(grid), fps=pipe.defaults.fps)
    _write(rows, s, out, pipe)  # quality first: a run stopped during timing keeps it
    compile_settings = {"off": [False], "on": [True], "both": [False, True]}[s.compile]
    for compiled in compile_settings:
        if compiled:
            torch._dynamo.config.cache_size_limit = 256  # one graph per (mode, batch) shape
        for bs in s.batch_sizes:
            if compiled:
                torch._dynamo.reset()
                pipe.model.compile_blocks(mode="reduce-overhead" if bs == 1 and cuda else None)
            key = f"b{bs}_{'compiled' if compiled else 'eager'}"
            for row in rows:
                spec, steps = _split(row.label, s.steps)
                try:
                    sec = _timed(lambda: pipe(prompts[:bs], steps=steps, schedule=spec, seed=s.seed, **gen),
                                 s.timing_repeats, cuda)
                    row.timings[key] = sec / bs
                except Exception as e:  # noqa: BLE001 - a compile failure is reported, not fatal
                    row.timings[key] = None
                    log(f"timing {key} {row.label} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            base = rows[0].timings.get(key)
            for row in rows:
                t = row.timings.get(key)
                row.speedups[key] = base / t if base and t else None
            log(f"timed {key}: full {base}")
            _write(rows, s, out, pipe)
    return rows


def rewrite_from_json(out_dir: str | Path) -> None:
    """Re-render ``frontier.md`` and ``frontier.png`` from ``frontier.json`` (no GPU needed), e.g. after a change
    to the table layout or the schedule families."""
    out = Path(out_dir)
    data = json.loads((out / "frontier.json").read_text())
    rows = [Row(**{**r, "family": family_of(r["label"])}) for r in data["rows"]]
    s = FrontierSettings(**{k: tuple(v) if k == "batch_sizes" else v for k, v in data["settings"].items()})
    _write_table(rows, s, out, data["device"])
    _plot(rows, out / "frontier.png", data["device"])


def _write(rows: list[Row], s: FrontierSettings, out: Path, pipe) -> None:
    """frontier.json, frontier.md and frontier.png from the rows so far."""
    dev = torch.cuda.get_device_name() if pipe.device.type == "cuda" else "CPU"
    (out / "frontier.json").write_text(json.dumps({"device": dev, "settings": asdict(s),
                                                   "rows": [asdict(r) for r in rows]}, indent=2))
    _write_table(rows, s, out, dev)
    _plot(rows, out / "frontier.png", dev)


def _write_table(rows: list[Row], s: FrontierSettings, out: Path, dev: str) -> None:
    keys = sorted({k for r in rows for k in r.timings})
    head = ["schedule", "family", "FLOPs %"] + [f"s/video {k}" for k in keys] + [f"speed-up {k}" for k in keys] + \
        ["FVD", "fidelity", "colour", "shape", "size", "direction", "speed", "jump rate", "straightness", "PSNR",
         "SSIM"]
    fvd = (f"I3D, {s.num_videos} fake vs 2048 real clips, 16 frames, whole-frame bilinear 224" if s.fvd
           else "not computed (--no-fvd)")
    lines = [f"device: {dev}; checkpoint {s.checkpoint}; {s.num_videos} videos per schedule (held-out test prompts), "
             f"{s.steps} steps, guidance {s.guidance_scale}; FVD: {fvd}; LoRA adapters "
             f"{'merged per mode' if s.merge_adapters else 'unmerged (peft)'}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v, p=3: "n/a" if v is None else f"{v:.{p}f}"  # noqa: E731
    for r in rows:
        f = r.fidelity
        cells = [r.label, r.family, f"{100 * r.flops_fraction:.1f}"] + [fmt(r.timings.get(k), 4) for k in keys] + \
            [fmt(r.speedups.get(k), 2) for k in keys] + [fmt(r.fvd, 1), fmt(f.get("mean")), fmt(f.get("colour")),
                                                          fmt(f.get("shape")), fmt(f.get("size")),
                                                          fmt(f.get("direction")), fmt(f.get("speed")),
                                                          fmt(f.get("jump_rate")), fmt(f.get("straightness")),
                                                          fmt(r.psnr, 2), fmt(r.ssim)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "samples.gif rows, top to bottom: " + ", ".join(r.label for r in rows)]
    (out / "frontier.md").write_text("\n".join(lines) + "\n")


def _plot(rows: list[Row], path: Path, dev: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("fvd", "FVD (lower is better)"), ("fidelity", "prompt fidelity (higher is better)"),
               ("psnr", "PSNR vs full (dB)")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4))
    families = list(dict.fromkeys(r.family for r in rows))
    for ax, (key, title) in zip(axes, metrics):
        for fam in families:
            pts = sorted((r.flops_fraction, r.fidelity.get("mean") if key == "fidelity" else getattr(r, key))
                         for r in rows if r.family == fam)
            pts = [(x, y) for x, y in pts if y is not None and np.isfinite(y)]
            if pts:
                ax.plot([100 * x for x, _ in pts], [y for _, y in pts], "o-", label=fam)
        ax.set_xlabel("FLOPs (% of full schedule)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)  # fidelity is always measured; FVD may be off
    fig.suptitle(f"flexivid compute-quality frontier ({dev})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
