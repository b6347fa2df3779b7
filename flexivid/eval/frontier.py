"""The compute-quality frontier: which schedule, at how many steps, gives the best quality for its FLOPs and time.

One run, budgeted (``eval.frontier_search``):

1. **screen** the coarse grid (steps 6..30 x full, weak_first, the paper's x/y with weak-to-strong guidance,
   interleaved, a custom order) on a few prompts x 1 seed, then its neighbours near the Pareto front;
2. optionally sweep the guidance scale of the front-line schedules on the same screen set;
3. evaluate the **front line** (full@reference, the best FlexiDiT schedules, and full@N at their FLOPs) on every
   prompt x seed: per-attribute prompt fidelity, PSNR/SSIM against full@reference of the same prompt and seed,
   FVD with its real-vs-real floor, FVD-infinity and intervals (``eval.fvd_stats``), paired bootstrap intervals for
   everything else (``eval.stats``); and time them round-robin at each batch size.

Writes ``frontier.json`` (every number), ``frontier.md``, ``frontier.png`` and ``samples.gif`` under ``output``
(``eval.frontier_report``), and ``calibration.json`` into the checkpoint folder (``flexivid.calibration``).
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import DataConfig
from ..data.synthetic import ATTRIBUTES, SyntheticVideoDataset, caption_for, plan_path, render_clip
from ..diffusion.schedules import flops_fraction, parse_schedule
from ..pipeline import VideoPipeline
from .fidelity import measure_clip
from .frames import psnr, ssim
from .frontier_search import (STEP_GRID, Candidate, coarse_grid, front_line, neighbours, pareto_front, parse_label)
from .stats import mean_ci, paired_diff_ci

QUALITY = {"fidelity": True, "psnr": True, "ssim": True}  # metric -> higher is better
SEED_STRIDE = 100_003  # seed of (prompt p, seed s) = seed + s * SEED_STRIDE + p: no overlap for < 100k prompts
SWAPS = {"direction": {"left": "right", "right": "left", "up": "down", "down": "up"},
         "speed": {"slow": "fast", "fast": "slow"}}


@dataclass
class FrontierSettings:
    checkpoint: str
    output: str = "runs/benchmark"
    steps: int = 30  # the reference: FLOPs are fractions of full@steps
    step_grid: tuple[int, ...] = STEP_GRID
    prompts: int = 256  # held-out test prompts of the front-line evaluation
    seeds: int = 3
    screen_prompts: int = 32  # prompts (1 seed) of the screen
    max_front: int = 4  # FlexiDiT schedules taken to the front line
    refine: bool = True
    schedules: list[str] | None = None  # labels SPEC[@N][/cfgS]: skip the search, evaluate these
    guidance_scale: float = 4.0
    cfg_scales: tuple[float, ...] = ()  # guidance scales tried per front-line schedule on the screen set
    quality: str = "fidelity"  # fidelity | psnr | ssim: the frontier's quality axis
    batch_sizes: tuple[int, ...] = (1, 16)
    compile: str = "off"  # off | on | both
    timing_repeats: int = 3
    fvd: bool = True
    fvd_real: int = 2048
    fvd_resamples: int = 100  # bootstrap draws per FVD interval
    i3d_weights: str | None = None  # a carried I3D safetensors file; None: the i3d cache
    text_cache: str | None = None
    device: str = "auto"
    seed: int = 0
    gen_batch: int = 256
    merge_adapters: bool = True
    calibration: bool = True  # write calibration.json into the checkpoint folder
    time_limit: float = 0.0  # seconds for the whole run (0: none): the screen stops at 40%, the front line at 80%


@dataclass
class Measured:
    """One candidate on one prompt set: per-sample scores ``(P, S)`` and, with FVD, features ``(P, S, D)``."""

    candidate: Candidate
    flops: float
    scores: dict[str, np.ndarray]
    features: np.ndarray | None = None
    samples: torch.Tensor | None = None  # a few clips for samples.gif
    seconds: float = 0.0
    timings: dict[str, float | None] = field(default_factory=dict)
    fvd: dict | None = None  # FVD statistics, computed once


def sample_scores(videos: torch.Tensor, reference: torch.Tensor, wanted: list[dict], threads: int) -> dict:
    """Per clip: each attribute's hit (1/0, NaN when the prompt does not ask for it), their mean (``fidelity``),
    the temporal coherence (``jump``: 1/0, ``straightness``; ``fidelity.measure_clip``), PSNR and SSIM against
    ``reference``."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        measured = list(pool.map(measure_clip, videos))
    got = [m[0] for m in measured]
    out = {k: np.array([float(g[k] == w[k]) if w.get(k) is not None else np.nan for g, w in zip(got, wanted)])
           for k in ATTRIBUTES}
    with np.errstate(invalid="ignore"):
        out["fidelity"] = np.nanmean(np.stack([out[k] for k in ATTRIBUTES]), axis=0)
    out["jump"] = np.array([0.0 if m[1]["jump"] is False else 1.0 for m in measured])  # untrackable counts as a jump
    out["straightness"] = np.array([m[1]["straightness"] or 0.0 for m in measured])
    out["psnr"], out["ssim"] = psnr(videos, reference).numpy(), ssim(videos, reference).numpy()
    return out


def swapped_clips(cfg: DataConfig, what: str) -> torch.Tensor:
    """Real clips with ``what`` (direction or speed) replaced by its opposite: what FVD must notice if it measures
    what prompts control. ``(N, 3, T, H, W)`` in [-1, 1]."""
    ds = SyntheticVideoDataset(cfg)
    clips = []
    for i in range(len(ds)):
        attrs = dict(ds.attrs(i))
        attrs[what] = SWAPS[what][attrs[what]]
        centres = plan_path(attrs, cfg.num_frames, cfg.height, cfg.width, np.random.default_rng([cfg.seed, i]))
        clips.append(torch.from_numpy(render_clip(attrs, centres, cfg.height, cfg.width)))
    return torch.stack(clips)


class Frontier:
    """Holds the pipeline, prompts, reference videos and detector; ``measure`` evaluates one candidate."""

    def __init__(self, s: FrontierSettings, log=print, detector=None):
        self.s, self.log = s, log
        self.t_start = time.perf_counter()
        self.truncated: list[str] = []  # what the time limit cut, reported in frontier.json / .md
        device = None if s.device == "auto" else s.device
        text_encoder = None
        if s.text_cache:  # GPU machines without the text model read precomputed prompt embeddings
            from ..text import CachedTextEncoder

            text_encoder = CachedTextEncoder(s.text_cache)
        self.pipe = VideoPipeline.from_pretrained(s.checkpoint, device=device, text_encoder=text_encoder,
                                                  merge_adapters=s.merge_adapters)
        d = self.pipe.defaults
        self.clip = (d.num_frames, d.height, d.width)
        self.data_cfg = DataConfig(split="test", num_frames=d.num_frames, height=d.height, width=d.width,
                                   num_clips=max(s.prompts, s.screen_prompts), seed=s.seed)
        ds = SyntheticVideoDataset(self.data_cfg)
        self.attrs = [ds.attrs(i) for i in range(len(ds))]
        self.captions = [caption_for(a) for a in self.attrs]
        if not s.text_cache:  # encode each caption once, not once per schedule (hundreds of generate calls)
            from ..text import CachedTextEncoder, build_text_cache

            self._tmp = tempfile.TemporaryDirectory(prefix="frontier-text-")
            path = os.path.join(self._tmp.name, "captions.safetensors")
            build_text_cache(self.pipe.text_encoder, self.captions, path, dtype=torch.float32)
            self.pipe.text_encoder = CachedTextEncoder(path)
        self.cuda = self.pipe.device.type == "cuda"
        self.threads = os.cpu_count() or 1
        self.references: dict[tuple[int, int], torch.Tensor] = {}
        self.detector = None
        if s.fvd:  # tests pass a small stand-in detector (same interface as eval.fvd.compute_fvd's)
            from .i3d import load_i3d

            self.detector = (detector.to(self.pipe.device).eval() if detector is not None else
                             load_i3d(self.pipe.device, weights=s.i3d_weights))

    def over(self, share: float, what: str) -> bool:
        """True (and ``what`` recorded once) when ``share`` of the time limit has passed."""
        late = self.s.time_limit > 0 and time.perf_counter() - self.t_start > share * self.s.time_limit
        if late and what not in self.truncated:
            self.truncated.append(what)
            self.log(f"time limit: {what}")
        return late

    def flops(self, c: Candidate) -> float:
        """Fraction of full@reference FLOPs, the largest over the prompts' token counts (``diffusion.schedules``)."""
        if not hasattr(self, "_lengths"):  # FLOPs depend on a caption only through its token count
            _, mask = self.pipe.text_encoder.encode(self.captions)
            self._lengths = sorted({int(n) for n in mask.sum(1)})
            ae, (t, h, w) = self.pipe.autoencoder, self.clip
            self._latent = (ae.latent_channels, t // ae.temporal_factor, h // ae.spatial_factor, w // ae.spatial_factor)
        model = self.pipe.model
        kw = self.pipe._flops_kw(self._scale(c), weak_to_strong=True)  # the pipeline's own FLOPs accounting
        sched = parse_schedule(c.spec, c.steps, model.modes)
        return max(flops_fraction(sched, model.config, model.modes, self._latent, n, **kw)
                   for n in self._lengths) * c.steps / self.s.steps

    def _scale(self, c: Candidate) -> float:
        return self.s.guidance_scale if c.guidance is None else c.guidance

    def generate(self, c: Candidate, n_prompts: int, n_seeds: int) -> torch.Tensor:
        """``(P*S, 3, T, H, W)`` in prompt-major order (clip ``p * S + s`` is prompt p with seed s)."""
        prompts = [self.captions[p] for p in range(n_prompts) for _ in range(n_seeds)]
        seeds = [self.s.seed + k * SEED_STRIDE + p for p in range(n_prompts) for k in range(n_seeds)]
        videos, _ = self.pipe(prompts, steps=c.steps, schedule=c.spec, seed=seeds, batch_size=self.s.gen_batch,
                              guidance_scale=self._scale(c), progress=False)
        return videos

    def reference(self, n_prompts: int, n_seeds: int) -> torch.Tensor:
        key = (n_prompts, n_seeds)
        if key not in self.references:
            self.references[key] = self.generate(Candidate("full", self.s.steps), n_prompts, n_seeds)
        return self.references[key]

    def features(self, videos: torch.Tensor) -> np.ndarray:
        from .fvd import FVDConfig, extract_features, open_source

        cfg = FVDConfig(num_frames=videos.shape[2], progress=False, batch_size=32)
        return extract_features(open_source(videos, len(videos), cfg), len(videos), cfg, self.detector,
                                self.pipe.device)

    def measure(self, c: Candidate, n_prompts: int, n_seeds: int, fvd: bool = False) -> Measured:
        t0 = time.perf_counter()
        ref = self.reference(n_prompts, n_seeds)
        videos = ref if (c.spec, c.steps, c.guidance) == ("full", self.s.steps, None) else \
            self.generate(c, n_prompts, n_seeds)
        wanted = [self.attrs[p] for p in range(n_prompts) for _ in range(n_seeds)]
        flat = sample_scores(videos, ref, wanted, self.threads)
        scores = {k: v.reshape(n_prompts, n_seeds) for k, v in flat.items()}
        feats = self.features(videos).reshape(n_prompts, n_seeds, -1) if fvd and self.detector is not None else None
        m = Measured(c, self.flops(c), scores, feats, videos[:4 * n_seeds:n_seeds].clone())
        m.seconds = time.perf_counter() - t0
        q = scores[self.s.quality]
        self.log(f"{c.label:44s} FLOPs {m.flops:.3f}  {self.s.quality} {np.nanmean(q):.4f}  "
                 f"PSNR {np.nanmean(scores['psnr']):.2f}  ({n_prompts}x{n_seeds}, {m.seconds:.1f} s)")
        return m

    def real_features(self, spec: str | torch.Tensor, n: int) -> np.ndarray:
        from .fvd import FVDConfig, extract_features, open_source

        cfg = FVDConfig(num_frames=self.clip[0], progress=False, batch_size=32, num_real=n, num_fake=n)
        return extract_features(open_source(spec, n, cfg), n, cfg, self.detector, self.pipe.device)

    def time_rows(self, rows: list[Measured]) -> None:
        """Seconds per video at each batch size, eager and/or compiled: every repeat visits every row once
        (round-robin), so drift in clocks or temperature lands on all rows alike; the median is kept."""
        from ..compile_cache import compile_pipeline

        s = self.s
        compiled_settings = {"off": [False], "on": [True], "both": [False, True]}[s.compile]
        for compiled in compiled_settings:
            if compiled:
                torch._dynamo.config.cache_size_limit = 256  # one graph per (mode, batch) shape
            for bs in s.batch_sizes:
                if compiled:  # as generate_video --compile on runs it: regional blocks, compiled captured steps
                    torch._dynamo.reset()
                    compile_pipeline(self.pipe)
                key = f"b{bs}_{'compiled' if compiled else 'eager'}"
                prompts = [self.captions[i % len(self.captions)] for i in range(bs)]
                calls = {}
                for m in rows:
                    c = m.candidate
                    calls[c.label] = lambda c=c: self.pipe(prompts, steps=c.steps, schedule=c.spec, seed=s.seed,
                                                           guidance_scale=self._scale(c), progress=False)
                times = {label: [] for label in calls}
                for label, fn in calls.items():
                    try:
                        fn()  # warm-up (and compile)
                    except Exception as e:  # noqa: BLE001 - a compile failure is reported, not fatal
                        times[label] = None
                        self.log(f"timing {key} {label} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                for _ in range(s.timing_repeats):
                    for label, fn in calls.items():
                        if times[label] is None:
                            continue
                        if self.cuda:
                            torch.cuda.synchronize()
                        t0 = time.perf_counter()
                        fn()
                        if self.cuda:
                            torch.cuda.synchronize()
                        times[label].append(time.perf_counter() - t0)
                for m in rows:
                    t = times[m.candidate.label]
                    m.timings[key] = statistics.median(t) / bs if t else None
                self.log(f"timed {key}: " + ", ".join(f"{m.candidate.label} {m.timings[key]}" for m in rows[:3]))


def screen(fr: Frontier, log=print) -> list[Measured]:
    """Coarse grid (fewest steps first), then one refinement round around the Pareto front, on the screen prompts x
    1 seed; stops early at 40% of the time limit."""
    s = fr.s
    modes = fr.pipe.model.modes
    grid = [c for c in coarse_grid(modes, s.step_grid) if c.steps <= s.steps]
    done: dict[Candidate, Measured] = {}
    for c in grid:
        if fr.over(0.4, f"screen stopped after {len(done)} of {len(grid)} grid candidates"):
            break
        done[c] = fr.measure(c, s.screen_prompts, 1)
    if s.refine:
        rows = list(done.values())
        q = [float(np.nanmean(m.scores[s.quality])) for m in rows]
        for i in pareto_front([m.flops for m in rows], q, QUALITY[s.quality]):
            for c in neighbours(rows[i].candidate, modes, s.steps):
                if c not in done and not fr.over(0.4, "refinement stopped"):
                    done[c] = fr.measure(c, s.screen_prompts, 1)
    log(f"screened {len(done)} candidates")
    return list(done.values())


def sweep_guidance(fr: Frontier, picks: list[Candidate], screened: dict[Candidate, Measured]) -> list[Candidate]:
    """For each pick, the guidance scale with the best screen quality (the run's default scale included)."""
    s, sign = fr.s, 1.0 if QUALITY[fr.s.quality] else -1.0
    out = []
    for c in picks:
        tried = [screened[c]] + [fr.measure(Candidate(c.spec, c.steps, g), s.screen_prompts, 1)
                                 for g in s.cfg_scales if g != s.guidance_scale]
        out.append(max(tried, key=lambda m: sign * np.nanmean(m.scores[s.quality])).candidate)
    return out


def run_frontier(s: FrontierSettings, log=print, detector=None) -> dict:
    """The whole frontier (see the module docstring); returns the report dict also written to frontier.json."""
    from .frontier_report import summarize, write_outputs

    if s.quality not in QUALITY:
        raise ValueError(f"quality '{s.quality}' unknown; use one of {', '.join(QUALITY)}")
    fr = Frontier(s, log, detector)
    screened: list[Measured] = []
    if s.schedules:
        final_cands = list(dict.fromkeys([Candidate("full", s.steps)] + [parse_label(x, s.steps) for x in s.schedules]))
    else:
        screened = screen(fr, log)
        rows = [{"candidate": m.candidate, "flops": m.flops, "quality": float(np.nanmean(m.scores[s.quality]))}
                for m in screened]
        final_cands = front_line(rows, s.steps, s.max_front, higher_is_better=QUALITY[s.quality])
        if s.cfg_scales:
            by_c = {m.candidate: m for m in screened}
            missing = [c for c in final_cands if c not in by_c]
            for c in missing:
                by_c[c] = fr.measure(c, s.screen_prompts, 1)
            flexi = [c for c in final_cands if c.spec != "full"]
            final_cands = [c for c in final_cands if c.spec == "full"] + sweep_guidance(fr, flexi, by_c)
    log(f"front line: {', '.join(c.label for c in final_cands)}")
    real = real_sets(fr, s.prompts * s.seeds) if s.fvd and fr.detector is not None else None
    final: list[Measured] = []
    for c in final_cands:  # the table is rewritten after every row: a run stopped at its limit keeps what ran
        if fr.over(0.8, f"front line stopped after {len(final)} of {len(final_cands)} schedules"):
            break
        final.append(fr.measure(c, s.prompts, s.seeds, fvd=s.fvd))
        write_outputs(summarize(s, fr, screened, final, real), s, final, fr)
    if not fr.over(0.9, "timing skipped"):
        fr.time_rows(final)
    report = summarize(s, fr, screened, final, real)
    report["wall_clock_s"] = time.perf_counter() - fr.t_start
    write_outputs(report, s, final, fr)
    log(f"frontier done in {report['wall_clock_s']:.0f} s -> {s.output}")
    return report


def real_sets(fr: Frontier, n: int) -> dict:
    """Real-clip features: the 2048-clip reference, the floor set (other real clips, same N as the fakes) and the
    swapped-attribute sets of the FVD response check."""
    s = fr.s
    h, w = fr.clip[1], fr.clip[2]
    floor_cfg = DataConfig(split="test", num_frames=fr.clip[0], height=h, width=w, num_clips=n, seed=s.seed + 1)
    out = {"reference": fr.real_features(f"synthetic:test:height={h},width={w},seed={s.seed}", s.fvd_real),
           "floor": fr.real_features(f"synthetic:test:height={h},width={w},seed={s.seed + 1}", n)}
    for what in SWAPS:
        out[f"{what} swapped"] = fr.real_features(swapped_clips(floor_cfg, what), n)
    return out


def intervals(measured: Measured, reference: Measured | None) -> dict:
    """Mean intervals of every per-sample score, and paired differences against ``reference``."""
    out = {"metrics": {k: mean_ci(v).as_dict() for k, v in measured.scores.items()}}
    if reference is not None:
        out["vs"] = {k: paired_diff_ci(v, reference.scores[k]).as_dict() for k, v in measured.scores.items()}
    return out
