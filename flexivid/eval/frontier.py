"""The compute-quality frontier: which schedule, at how many steps, gives the best quality for its FLOPs and time.

One run, within a time limit (``eval.frontier_budget``: a step starts only if its estimated cost fits):

0. with FVD: detector features of the real reference, the real-vs-real floor set and the FVD response check;
1. **screen** the coarse grid (``eval.frontier_search``: steps 6..30 x full, weak_first, the paper's x/y with
   weak-to-strong guidance, interleaved, a custom order, full first, adaptive per sample: its FLOPs are those its
   samples ran) on a few prompts x 1 seed, then its neighbours near the Pareto front; the candidates within the
   headline budgets first, nearest below a budget first;
2. optionally sweep the guidance scale of the front-line schedules on the same screen set;
3. evaluate the **front line** (full@reference, the best FlexiDiT schedules, and full@N at their FLOPs) on every
   prompt x seed: per-attribute prompt fidelity, PSNR/SSIM against full@reference of the same prompt and seed,
   FVD with its real-vs-real floor, FVD-infinity and intervals (``eval.fvd_stats``), paired bootstrap intervals for
   everything else (``eval.stats``); the headline rows first (full@reference; per budget the most full steps within
   it, the best schedule within it and full@N at its FLOPs), the rest in priority order, so that a time cut drops
   the tail (``frontier_search.front_line``); then time them round-robin at each batch size.

Writes ``frontier.json`` (every number), ``frontier.md``, ``frontier.png`` and ``samples.gif`` under ``output``
(``eval.frontier_report``), and ``calibration.json`` into the checkpoint folder (``flexivid.calibration``).
"""
from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import DataConfig
from ..data.synthetic import ATTRIBUTES, SyntheticVideoDataset, caption_for, plan_path, render_clip
from ..diffusion.adaptive import AdaptiveSchedule
from ..diffusion.schedules import flops_fraction, parse_schedule
from ..pipeline import VideoPipeline
from .fidelity import clip_scores
from .frames import psnr, ssim
from .frontier_budget import COMPILE_S, TimeBudget
from .frontier_search import (QUALITY, STEP_GRID, Candidate, best_full_within, front_line, parse_label, row_groups,
                              screen, sweep_guidance)
from .stats import mean_ci, paired_diff_ci
from .timing import round_robin

MAX_WORKERS = 15  # a container may see all of its host's cores; more processes would only queue for pickling
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
    max_front: int = 4  # FlexiDiT schedules taken to the front line (the best within each budget always are)
    budgets: tuple[float, ...] = (0.35, 0.25)  # FLOPs fractions of the headline: the best schedule within each
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
    gen_batch: int = 64  # videos per model batch
    merge_adapters: bool = True
    calibration: bool = True  # write calibration.json into calibration_dir
    calibration_dir: str | None = None  # None: the checkpoint folder (where VideoPipeline.from_pretrained reads it)
    time_limit: float = 0.0  # seconds for the whole run (0: none); see eval.frontier_budget
    workers: int = 0  # processes measuring clips (0: one per CPU core but one; 1: in this process)


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
    cache: dict = field(default_factory=dict)  # bootstrap intervals, computed once (eval.frontier_report)


def sample_scores(videos: torch.Tensor, reference: torch.Tensor, wanted: list[dict], executor: Executor | None = None,
                  device: str | torch.device = "cpu", chunk: int = 128) -> dict:
    """Per clip (``fidelity.clip_scores``, measured on ``executor``): each attribute's hit (1/0, NaN when the prompt
    does not ask for it), their mean (``fidelity``), the temporal coherence (``jump``, ``straightness``, ``lost``);
    and PSNR and SSIM against ``reference``, computed on ``device`` ``chunk`` clips at a time."""
    out = clip_scores(videos, wanted, executor)
    del out["wanted"]
    with np.errstate(invalid="ignore"):
        out["fidelity"] = np.nanmean(np.stack([out[k] for k in ATTRIBUTES]), axis=0)
    pairs = ((videos[i:i + chunk].to(device), reference[i:i + chunk].to(device)) for i in range(0, len(videos), chunk))
    frames = [(psnr(v, r).cpu(), ssim(v, r).cpu()) for v, r in pairs]
    out["psnr"] = torch.cat([p for p, _ in frames]).numpy()
    out["ssim"] = torch.cat([q for _, q in frames]).numpy()
    return out


def clip_workers(workers: int = 0) -> ProcessPoolExecutor | None:
    """Processes for the per-clip fidelity measurement (single-threaded numpy): ``workers`` of them
    (0: one per CPU core this process may use but one, at most ``MAX_WORKERS``), or None for one. A fresh server
    process forks them, so none inherits this process's CUDA state or thread pools."""
    workers = workers or max(1, min(len(os.sched_getaffinity(0)) - 1, MAX_WORKERS))
    if workers == 1:
        return None
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["flexivid.eval.fidelity"])
    return ProcessPoolExecutor(workers, mp_context=ctx)


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
        self.budget = TimeBudget(s.time_limit, log)
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
        self.executor = clip_workers(s.workers)
        self.references: dict[tuple[int, int], torch.Tensor] = {}
        self.measured_flops: dict[Candidate, float] = {}  # adaptive candidates (``flops``)
        self.detector = None
        if s.fvd:  # tests pass a small stand-in detector (same interface as eval.fvd.compute_fvd's)
            from .i3d import load_i3d

            self.detector = (detector.to(self.pipe.device).eval() if detector is not None else
                             load_i3d(self.pipe.device, weights=s.i3d_weights))

    @property
    def truncated(self) -> list[str]:
        """What the time limit cut, reported in frontier.json / .md."""
        return self.budget.cut

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)
            self.executor = None

    def headline_reserve(self) -> float:
        """Estimated seconds of the headline rows (full@reference; per budget B the best full@N within B, the best
        FlexiDiT schedule within B and its full@N at equal FLOPs: ``frontier_search.front_line``) on every prompt x
        seed, and of the timing after them. An upper bound: rows two budgets share are counted twice."""
        s = self.s
        flops = [1.0]
        for b in s.budgets:
            full = best_full_within(b, s.steps)
            flops += ([full.steps / s.steps] if full else []) + [b, b]
        return (self.budget.rows_cost(s.prompts * s.seeds, flops, s.fvd and self.detector is not None)
                + self.budget.timing_reserve())

    def flops(self, c: Candidate) -> float:
        """Fraction of full@reference FLOPs, the largest over the prompts' token counts (``diffusion.schedules``);
        of an adaptive candidate, the mean over the samples of its latest generation (the bound before it ran: all
        full)."""
        return self.measured_flops[c] if c in self.measured_flops else self._bound(c, low=False)

    def flops_low(self, c: Candidate) -> float:
        """``flops``, but the lower bound (weak until the tail) of an adaptive candidate that has not run yet."""
        return self.measured_flops[c] if c in self.measured_flops else self._bound(c, low=True)

    def _bound(self, c: Candidate, low: bool) -> float:
        if not hasattr(self, "_lengths"):  # FLOPs depend on a caption only through its token count
            _, mask = self.pipe.text_encoder.encode(self.captions)
            self._lengths = sorted({int(n) for n in mask.sum(1)})
            ae, (t, h, w) = self.pipe.autoencoder, self.clip
            self._latent = (ae.latent_channels, t // ae.temporal_factor, h // ae.spatial_factor, w // ae.spatial_factor)
        model = self.pipe.model
        kw = self.pipe._flops_kw(self._scale(c), weak_to_strong=True)  # the pipeline's own FLOPs accounting
        sched = parse_schedule(c.spec, c.steps, model.modes)
        if isinstance(sched, AdaptiveSchedule):
            sched = sched.realised(c.steps) if low else sched.upper_bound()
        return max(flops_fraction(sched, model.config, model.modes, self._latent, n, **kw)
                   for n in self._lengths) * c.steps / self.s.steps

    def _scale(self, c: Candidate) -> float:
        return self.s.guidance_scale if c.guidance is None else c.guidance

    def generate(self, c: Candidate, n_prompts: int, n_seeds: int) -> torch.Tensor:
        """``(P*S, 3, T, H, W)`` in prompt-major order (clip ``p * S + s`` is prompt p with seed s)."""
        prompts = [self.captions[p] for p in range(n_prompts) for _ in range(n_seeds)]
        seeds = [self.s.seed + k * SEED_STRIDE + p for p in range(n_prompts) for k in range(n_seeds)]
        t0 = time.perf_counter()
        videos, info = self.pipe(prompts, steps=c.steps, schedule=c.spec, seed=seeds, batch_size=self.s.gen_batch,
                                 guidance_scale=self._scale(c), progress=False)
        if "flops_fraction_mean" in info:  # adaptive: what its samples ran, as a fraction of full@reference
            self.measured_flops[c] = info["flops_fraction_mean"] * c.steps / self.s.steps
        self.budget.generation.add(time.perf_counter() - t0, len(videos) * self.flops(c))  # videos are on the CPU
        return videos

    def reference(self, n_prompts: int, n_seeds: int) -> torch.Tensor:
        key = (n_prompts, n_seeds)
        if key not in self.references:
            self.references[key] = self.generate(Candidate("full", self.s.steps), n_prompts, n_seeds)
        return self.references[key]

    def features(self, videos: torch.Tensor) -> np.ndarray:
        from .fvd import FVDConfig, extract_features, open_source

        t0 = time.perf_counter()
        cfg = FVDConfig(num_frames=videos.shape[2], progress=False, batch_size=32)
        out = extract_features(open_source(videos, len(videos), cfg), len(videos), cfg, self.detector,
                               self.pipe.device)
        self.budget.features.add(time.perf_counter() - t0, len(videos))
        return out

    def measure(self, c: Candidate, n_prompts: int, n_seeds: int, fvd: bool = False) -> Measured:
        t0 = time.perf_counter()
        ref = self.reference(n_prompts, n_seeds)
        videos = ref if (c.spec, c.steps, c.guidance) == ("full", self.s.steps, None) else \
            self.generate(c, n_prompts, n_seeds)
        wanted = [self.attrs[p] for p in range(n_prompts) for _ in range(n_seeds)]
        t1 = time.perf_counter()
        flat = sample_scores(videos, ref, wanted, self.executor, self.pipe.device)
        self.budget.scoring.add(time.perf_counter() - t1, len(videos))
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

        t0 = time.perf_counter()
        cfg = FVDConfig(num_frames=self.clip[0], progress=False, batch_size=32, num_real=n, num_fake=n)
        out = extract_features(open_source(spec, n, cfg), n, cfg, self.detector, self.pipe.device)
        self.budget.features.add(time.perf_counter() - t0, n)  # rendering included: an upper bound for fakes
        return out

    def time_rows(self, rows: list[Measured]) -> None:
        """Seconds per video at each batch size, eager and/or compiled: every repeat visits every row once
        (round-robin), so drift in clocks or temperature lands on all rows alike; the median is kept. A batch size
        whose estimated cost does not fit the time left is skipped, and repeats are cut to what fits (>= 1)."""
        from ..compile_cache import compile_pipeline

        s, budget = self.s, self.budget
        compiled_settings = {"off": [False], "on": [True], "both": [False, True]}[s.compile]
        for compiled in compiled_settings:
            if compiled:
                torch._dynamo.config.cache_size_limit = 256  # one graph per (mode, batch) shape
            for bs in s.batch_sizes:
                key = f"b{bs}_{'compiled' if compiled else 'eager'}"
                estimate = (1 + s.timing_repeats) * bs * budget.generation.per * sum(m.flops for m in rows) + \
                    (COMPILE_S if compiled else 0.0)
                if not budget.fits(estimate, what=f"timing {key} skipped"):
                    continue
                if compiled:  # as generate_video --compile on runs it: regional blocks, compiled captured steps
                    torch._dynamo.reset()
                    compile_pipeline(self.pipe)
                prompts = [self.captions[i % len(self.captions)] for i in range(bs)]
                calls = {m.candidate.label: (lambda c=m.candidate: self.pipe(
                    prompts, steps=c.steps, schedule=c.spec, seed=s.seed, guidance_scale=self._scale(c),
                    progress=False)) for m in rows}
                # a compile failure is reported in the row, not fatal
                times = round_robin(calls, s.timing_repeats, keep_going=True,
                                    budget_s=None if budget.limit <= 0 else budget.left())
                done = max(len(t.times) for t in times.values())
                if done < s.timing_repeats:
                    budget.cut.append(f"timing {key}: {done} of {s.timing_repeats} repeats")
                for m in rows:
                    t = times[m.candidate.label]
                    m.timings[key] = t.median / bs if t.times else None
                    if t.error:
                        self.log(f"timing {key} {m.candidate.label} failed: {t.error[:200]}")
                self.log(f"timed {key}: " + ", ".join(f"{m.candidate.label} {m.timings[key]}" for m in rows[:3]))


def run_frontier(s: FrontierSettings, log=print, detector=None) -> dict:
    """The whole frontier (see the module docstring); returns the report dict also written to frontier.json."""
    if s.quality not in QUALITY:
        raise ValueError(f"quality '{s.quality}' unknown; use one of {', '.join(QUALITY)}")
    fr = Frontier(s, log, detector)
    try:
        return _run(fr, s, log)
    finally:
        fr.close()


def _run(fr: Frontier, s: FrontierSettings, log) -> dict:
    from .frontier_report import summarize, write_outputs

    budget = fr.budget
    real = real_sets(fr, s.prompts * s.seeds) if s.fvd and fr.detector is not None else None
    screened: list[Measured] = []
    if s.schedules:
        final_cands = list(dict.fromkeys([Candidate("full", s.steps)] + [parse_label(x, s.steps) for x in s.schedules]))
    else:
        screened = screen(fr, log)
        write_outputs(summarize(s, fr, screened, [], real), s, [], fr, figures=False)  # kept if stopped later
        rows = [{"candidate": m.candidate, "flops": m.flops, "quality": float(np.nanmean(m.scores[s.quality]))}
                for m in screened]
        final_cands = front_line(rows, s.steps, s.max_front, budgets=s.budgets, higher_is_better=QUALITY[s.quality])
        if s.cfg_scales:
            by_c = {m.candidate: m for m in screened}
            for c in final_cands:
                if c not in by_c:
                    by_c[c] = fr.measure(c, s.screen_prompts, 1)
            flexi = [c for c in final_cands if c.spec != "full"]
            swept = dict(zip(flexi, sweep_guidance(fr, flexi, by_c)))
            final_cands = [swept.get(c, c) for c in final_cands]  # each pick keeps its place beside its full@N
    def rewrite(final: list[Measured]) -> None:  # after every row: a run stopped at its limit keeps what ran
        t0 = time.perf_counter()
        write_outputs(summarize(s, fr, screened, final, real), s, final, fr, figures=False)
        budget.rewrite.add(time.perf_counter() - t0, len(final))

    final = run_front_line(fr, final_cands, real is not None, rewrite, log)
    if final:  # the figures too, before timing: a run stopped there has them
        write_outputs(summarize(s, fr, screened, final, real), s, final, fr)
        fr.time_rows(final)
    report = summarize(s, fr, screened, final, real)
    report["wall_clock_s"] = budget.elapsed()
    write_outputs(report, s, final, fr)
    log(f"frontier done in {report['wall_clock_s']:.0f} s -> {s.output}")
    return report


def run_front_line(fr, cands: list[Candidate], fvd: bool, rewrite, log=print) -> list[Measured]:
    """Measure ``cands`` (priority order, ``frontier_search.front_line``) on every prompt x seed, each FlexiDiT
    schedule together with its equal-FLOPs full@N (``row_groups``); a group whose estimated cost does not fit
    beside the timing reserve is skipped and logged, and the cheaper groups after it still get their chance.
    ``rewrite(rows)`` runs after every row."""
    s, budget = fr.s, fr.budget
    log(f"front line (priority order): {', '.join(c.label for c in cands)}")
    final: list[Measured] = []
    n = s.prompts * s.seeds
    for group in row_groups(cands, fr.flops, s.steps):
        cost = budget.rows_cost(n, [fr.flops(c) for c in group], fvd, len(final))
        if not budget.fits(cost, budget.timing_reserve(), f"front line: skipped {', '.join(c.label for c in group)}"):
            continue
        for c in group:
            final.append(fr.measure(c, s.prompts, s.seeds, fvd=fvd))
            rewrite(final)
    return final


def real_sets(fr: Frontier, n: int) -> dict:
    """Real-clip features: the reference (``fvd_real`` clips), the floor set (other real clips, same N as the fakes)
    and the swapped-attribute sets of the FVD response check."""
    s = fr.s
    h, w = fr.clip[1], fr.clip[2]
    floor_cfg = DataConfig(split="test", num_frames=fr.clip[0], height=h, width=w, num_clips=n, seed=s.seed + 1)
    out = {"reference": fr.real_features(f"synthetic:test:height={h},width={w},seed={s.seed}", s.fvd_real),
           "floor": fr.real_features(f"synthetic:test:height={h},width={w},seed={s.seed + 1}", n)}
    for what in SWAPS:
        out[f"{what} swapped"] = fr.real_features(swapped_clips(floor_cfg, what), n)
    fr.log(f"real FVD features: {s.fvd_real} + {3 * n} clips in {fr.budget.features.seconds:.1f} s")
    return out


def intervals(measured: Measured, reference: Measured | None) -> dict:
    """Mean intervals of every per-sample score, and paired differences against ``reference``."""
    out = {"metrics": {k: mean_ci(v).as_dict() for k, v in measured.scores.items()}}
    if reference is not None:
        out["vs"] = {k: paired_diff_ci(v, reference.scores[k]).as_dict() for k, v in measured.scores.items()}
    return out
