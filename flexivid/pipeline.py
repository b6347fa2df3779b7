"""Text -> video with a FlexiVideoDiT: load once, call many.

    pipe = VideoPipeline.from_pretrained("checkpoints/flexivid-small")
    video, info = pipe(["a red circle moves right"], steps=30, guidance_scale=4.0, compute=0.4, seed=0)
    # video: float32 (B, 3, T, H, W) in [-1, 1] on the CPU; info["schedule"], info["flops_fraction"], ...

A call reads like a diffusers pipeline: check the inputs (clip shape against every mode's patch, steps, scale,
prompts, seeds) -> encode the prompts once (or take precomputed embeddings) -> pick the recipe (the patch schedule
for a budget or spec, set on a ``FlexiScheduler``) -> per batch: prepare latents from a generator seeded per prompt
(a prompt's video does not depend on its batch) -> denoising loop -> decode with the autoencoder.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .calibration import load_calibration
from .config import AutoencoderConfig, ModelConfig, TextConfig
from .diffusion.adaptive import AdaptiveSchedule
from .diffusion.guidance import PromptText, guided_velocity, s2_from_s1
from .diffusion.scheduler import FlexiScheduler
from .diffusion.schedules import FULL, PatchSchedule, flops_fraction, parse_schedule, schedule_flops
from .models.dit import FlexiVideoDiT
from .models.serialization import load_model, read_spec
from .presets import preset_modes


@dataclass
class PipelineDefaults:
    """Values a call uses when it does not give them; clip shape and fps come from the checkpoint's ``clip``."""

    num_frames: int = 8
    height: int = 32
    width: int = 32
    fps: float = 8.0
    steps: int = 30
    guidance_scale: float = 4.0
    shift: float = 1.0  # the scheduler's timestep shift


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device) -> torch.dtype:
    """bf16 on CUDA (the paper's inference precision), fp32 elsewhere (CPU bf16 matmuls are slow)."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def _resolve(path: str | None, root: Path) -> str | None:
    """A relative path in an exported config is relative to the export folder when it exists there."""
    if path and not Path(path).is_absolute() and (root / path).exists():
        return str(root / path)
    return path


class VideoPipeline:
    """Owns a model, a text encoder and an autoencoder; ``__call__`` turns prompts into videos."""

    def __init__(self, model: FlexiVideoDiT, text_encoder, autoencoder, defaults: PipelineDefaults | None = None):
        if autoencoder.latent_channels != model.config.in_channels:
            raise ValueError(f"autoencoder gives {autoencoder.latent_channels} latent channels but the model takes "
                             f"{model.config.in_channels}")
        self.model = model.eval()
        self.text_encoder = text_encoder
        self.autoencoder = autoencoder
        self.defaults = defaults or PipelineDefaults()
        # "auto": per-step CUDA graphs (diffusion.graphed) on CUDA, the eager loop elsewhere; "graphed" / "eager".
        self.sampling = "auto"
        self.compile_steps: str | None = None  # torch.compile backend of the graphed step (compile_cache sets it)
        self._graphs = None
        self._pool = None  # (pid, threads) that draw the noise of a batch (prepare_latents)
        self._flops_of = (None, {})  # (model, {request: FLOPs}) of _flops
        self.calibration = None  # the frontier's measured table (flexivid.calibration), read by compute=

    @property
    def device(self) -> torch.device:
        return self.model.null_text.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.null_text.dtype

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path: str | Path, device=None, dtype: torch.dtype | None = None,
                        modes: list[str] | None = None, text_encoder=None,
                        merge_adapters: bool = True) -> "VideoPipeline":
        """Load an exported model (``models.serialization`` layout) and build the text encoder and autoencoder its
        ``ExportSpec`` names (its ``clip`` gives the default clip shape and fps).
        Defaults: CUDA if available, bf16 there and fp32 on the CPU. ``merge_adapters``: run each LoRA mode on its
        own copy of the blocks with the LoRA merged in (``ModeAdapters.merge``; faster, one block copy per mode);
        False runs the peft adapters as trained."""
        from .autoencoders import build_autoencoder
        from .text import build_text_encoder

        path = Path(path)
        device = device or default_device()
        spec = read_spec(path)
        model = load_model(path, device, dtype or default_dtype(device), modes)
        if merge_adapters:
            model.mode_adapters.merge()
        text_cfg = replace(spec.text, path=_resolve(spec.text.path, path),
                           cache_path=_resolve(spec.text.cache_path, path))
        autoencoder = build_autoencoder(replace(spec.autoencoder, path=_resolve(spec.autoencoder.path, path)))
        if isinstance(autoencoder, torch.nn.Module):
            autoencoder.to(device)
        c = spec.clip
        defaults = PipelineDefaults(num_frames=c.num_frames, height=c.height, width=c.width, fps=c.fps)
        pipe = cls(model, text_encoder or build_text_encoder(text_cfg, device), autoencoder, defaults)
        pipe.calibration = load_calibration(path)
        return pipe

    @classmethod
    def random(cls, device=None, dtype: torch.dtype | None = None, seed: int = 0) -> "VideoPipeline":
        """An UNTRAINED tiny model (pixel space, MiniLM text, modes full / coarse_time / coarse_space) for smoke
        tests and demos before a checkpoint exists. Its videos are noise."""
        from .autoencoders import build_autoencoder
        from .text import build_text_encoder

        device = device or default_device()
        with torch.random.fork_rng(devices=[]):  # do not move the caller's global RNG
            torch.manual_seed(seed)
            model = FlexiVideoDiT(ModelConfig(preset="tiny", in_channels=3, text_dim=384,
                                              modes=preset_modes(ModelConfig.patch_size)))
        model.mode_adapters.freeze_all()
        model.to(device=device, dtype=dtype or default_dtype(device))
        return cls(model, build_text_encoder(TextConfig(), device), build_autoencoder(AutoencoderConfig()))

    # ----------------------------------------------------------------------------------------------- inputs
    def _check_shape(self, mode: str, num_frames: int, height: int, width: int) -> str | None:
        """Why the clip does not fit ``mode`` (one line naming valid values), or None when it does."""
        ae = self.autoencoder
        factors = (ae.temporal_factor, ae.spatial_factor, ae.spatial_factor)
        for what, n, p, f in zip(("num_frames", "height", "width"), (num_frames, height, width),
                                 self.model.modes[mode], factors):
            step = p * f
            if n % step:
                axis = "temporal" if what == "num_frames" else "spatial"
                lower = n - n % step
                near = f"{lower} or {lower + step}" if lower else str(step)
                return (f"{what}={n} is not divisible by {step} (mode '{mode}' {axis} patch {p} x autoencoder "
                        f"{axis} factor {f}); valid {what}: multiples of {step}, e.g. {near}")
        return None

    def check_inputs(self, prompts, prompt_embeds, num_frames, height, width, steps, guidance_scale, schedule,
                     compute, seed, batch_size) -> dict:
        """Validate a request and fill in the defaults; raises one-line ValueErrors. Returns the resolved values."""
        d = self.defaults
        pick = lambda v, default: default if v is None else v  # noqa: E731  (0 is an error, not "default")
        if prompt_embeds is not None:
            n = prompt_embeds.shape[0]
            prompts = list(prompts) if prompts is not None else [f"<embedding {i}>" for i in range(n)]
            if len(prompts) != n:
                raise ValueError(f"got {len(prompts)} prompts for {n} prompt embeddings; give one per row")
        else:
            prompts = [prompts] if isinstance(prompts, str) else list(prompts or [])
        if not prompts:
            raise ValueError("no prompts given")
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"prompt {i} is empty; every prompt needs some text")
        seeds = [seed + i for i in range(len(prompts))] if isinstance(seed, int) else [int(s) for s in seed]
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts; give one seed or one per prompt")
        batch_size = len(prompts) if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        num_frames, height, width = pick(num_frames, d.num_frames), pick(height, d.height), pick(width, d.width)
        steps = pick(steps, d.steps if schedule is None or isinstance(schedule, str) else schedule.steps)
        scale = d.guidance_scale if guidance_scale is None else float(guidance_scale)
        for name, v in (("num_frames", num_frames), ("height", height), ("width", width), ("steps", steps)):
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v}")
        if not (math.isfinite(scale) and scale >= 1.0):  # NaN fails every comparison: test it explicitly
            raise ValueError(f"guidance_scale must be >= 1 and finite (1 = no guidance), got {scale}")
        if schedule is not None and compute is not None:
            raise ValueError("give a schedule or a compute budget, not both")
        if (why := self._check_shape(FULL, num_frames, height, width)) is not None:
            raise ValueError(why)
        ae = self.autoencoder
        latent = (ae.latent_channels, num_frames // ae.temporal_factor, height // ae.spatial_factor,
                  width // ae.spatial_factor)
        return dict(prompts=prompts, seeds=seeds, batch_size=batch_size, num_frames=num_frames, height=height,
                    width=width, steps=steps, guidance_scale=scale, latent_shape=latent)

    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> ``(tokens (B, L, Dt), mask (B, L) bool)`` on the model's device."""
        tokens, mask, _ = self._check_embeds(*self.text_encoder.encode(prompts))
        return tokens.to(self.device), mask.to(self.device)

    def _check_embeds(self, tokens, mask) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """``(tokens, mask bool, valid tokens per prompt)``, left on the device they came on (a call copies them
        once, into the buffers its steps read)."""
        if tokens.dim() != 3 or tokens.shape[-1] != self.model.config.text_dim:
            raise ValueError(f"prompt embeddings must be (B, L, {self.model.config.text_dim}) for this model, got "
                             f"{tuple(tokens.shape)} (check the checkpoint's 'text' config)")
        if mask is None:
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool)
        mask = mask.bool()
        # the call's one host read (the FLOPs need the lengths): it also checks, once, what the model's forward
        # cannot check without a sync; on a mask from the host (a text cache) it waits for no device
        lens = mask.sum(1).tolist()
        if min(lens, default=1) == 0:
            raise ValueError("a prompt has no valid token (its prompt_mask row is all False); check the text "
                             "encoder / text cache entry for that prompt")
        return tokens, mask, lens

    def _budget(self, compute: float, optimize: str, r: dict, steps, guidance_scale, quality: str | None = None):
        """A compute budget -> ``(Choice, reference steps)``; sets the request's steps and, unless given, its
        guidance scale to the chosen recipe's."""
        from .calibration import pick

        table = self.calibration
        if table is not None and steps is not None and steps != table.reference_steps:
            raise ValueError(f"steps={steps} with a compute budget: the calibration table's budgets are fractions of "
                             f"full@{table.reference_steps}; leave steps unset (the table picks them)")
        reference = table.reference_steps if table is not None else r["steps"]
        choice = pick(compute, table, r["steps"], (r["num_frames"], r["height"], r["width"]), optimize,
                      r["batch_size"], quality)
        r["steps"] = choice.steps
        if guidance_scale is None and choice.guidance_scale is not None:
            r["guidance_scale"] = float(choice.guidance_scale)
        return choice, reference

    def _recipe(self, schedule, r: dict) -> PatchSchedule | AdaptiveSchedule:
        """The patch schedule of a request, parsed from a spec and checked against the model and the clip."""
        modes, steps = self.model.modes, r["steps"]
        shape = (r["num_frames"], r["height"], r["width"])
        sched = parse_schedule(schedule or FULL, steps, modes) if schedule is None or isinstance(schedule, str) \
            else schedule
        if sched.steps != steps:
            raise ValueError(f"the schedule has {sched.steps} steps but steps={steps}")
        for m in sorted(sched.modes_used):
            if m not in modes:
                raise ValueError(f"unknown mode '{m}' in the schedule; this model has modes: {', '.join(modes)}")
            if (why := self._check_shape(m, *shape)) is not None:
                raise ValueError(why)
        return sched

    def _flops_kw(self, scale: float, weak_to_strong: bool) -> dict:
        # adapter FLOPs count only where the peft path runs (merged stacks carry none)
        rank = max(self.model.mode_adapters.lora_rank(m) for m in self.model.modes)
        return dict(lora_rank=rank, guidance=scale != 1.0, weak_to_strong=weak_to_strong)

    def prepare_latents(self, seeds: list[int], latent_shape) -> torch.Tensor:
        """Initial noise ``(B, C, T', H', W')`` float32 on the device, one CPU generator per seed (the same seed
        gives the same noise on every device); the sampler state stays float32."""
        return self._noise(seeds, latent_shape).to(self.device)

    def _noise(self, seeds: list[int], latent_shape) -> torch.Tensor:
        """``prepare_latents`` on the host: a call copies it once, into the buffer its steps update."""
        def draw(seed):
            return torch.randn(latent_shape, generator=torch.Generator().manual_seed(seed))
        if len(seeds) == 1:
            return draw(seeds[0])[None]
        # one generator per prompt is serial work: draw them side by side (torch releases the GIL while it samples)
        # on threads started once per pipeline, not once per call
        if self._pool is None or self._pool[0] != os.getpid():  # a forked child has none of the parent's threads
            self._pool = (os.getpid(), ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="flexivid-noise"))
        return torch.stack(list(self._pool[1].map(draw, seeds)))

    def _flops(self, sched: PatchSchedule, r: dict, text_lens: list[int], reference_steps: int, kw: dict):
        """``(fraction of full at the reference steps, FLOPs)`` per prompt; computed once per distinct request (a
        pure function of the recipe, the clip and the prompt length) and kept: it is host time on every call."""
        if self._flops_of[0] is not self.model:
            self._flops_of = (self.model, {})
        cache = self._flops_of[1]
        cost = (self.model.config, self.model.modes, r["latent_shape"])
        out = []
        for n in text_lens:
            key = (sched, tuple(r["latent_shape"]), n, reference_steps, tuple(sorted(kw.items())))
            if key not in cache:
                if len(cache) >= 1024:
                    cache.clear()
                cache[key] = (flops_fraction(sched, *cost, n, **kw) * sched.steps / reference_steps,
                              schedule_flops(sched, *cost, n, **kw))
            out.append(cache[key])
        return [f for f, _ in out], [g for _, g in out]

    # ------------------------------------------------------------------------------------------- generation
    @torch.inference_mode()
    def __call__(self, prompts: str | list[str] | None = None, num_frames: int | None = None,
                 height: int | None = None, width: int | None = None, steps: int | None = None,
                 guidance_scale: float | None = None, schedule: str | PatchSchedule | None = None,
                 compute: float | None = None, seed: int | list[int] = 0, batch_size: int | None = None,
                 progress: bool = True, weak_to_strong: bool = True, shift: float | None = None,
                 prompt_embeds: torch.Tensor | None = None, prompt_mask: torch.Tensor | None = None,
                 shard: tuple[int, int] = (0, 1), optimize: str = "flops",
                 quality: str | None = None) -> tuple[torch.Tensor, dict]:
        """Generate one video per prompt.

        Args:
            prompts: one string or a list. prompt_embeds / prompt_mask: precomputed ``(B, L, Dt)`` / ``(B, L)`` text
                tokens instead of encoding (prompts then only label them). num_frames / height / width: pixel clip
                shape (default: the checkpoint's). steps: sampler steps. guidance_scale: CFG scale s1 (1 = no
                guidance branch).
            schedule: a spec string (``diffusion.schedules``) or a ``PatchSchedule``; compute: a budget in (0, 1]
                instead: the best measured recipe (schedule, steps, guidance scale) of the checkpoint's calibration
                table within it, FLOPs (``optimize="flops"``) or measured time (``"latency"``) as a fraction of full;
                without a table, full@floor(compute x steps) (``flexivid.calibration``). Neither: ``full``.
                quality: with compute, the axis "best" is measured on: None for the table's own (fidelity for the
                shipped table) or "fvd" (FVD above its floor, lower is better).
            seed: one int (prompt i uses seed + i) or one seed per prompt. Same seed, same output.
            batch_size: prompts per model batch (default: all). weak_to_strong: use the weak conditional as the
                guide where the conditional mode is stronger. shift: the scheduler's timestep shift.
            shard: ``(rank, world)``: generate only the prompts i with i % world == rank (data-parallel processes);
                the recipe is chosen over all prompts, so every process runs the same schedule.

        Returns:
            ``video`` float32 ``(N, 3, T, H, W)`` in [-1, 1] on the CPU for the N generated prompts, and ``info``:
            indices (of the generated prompts), schedule (spec), order (run-length per branch), modes
            ([cond, guide] per step), flops_fraction (the largest over all prompts), flops_fractions / gflops (per
            generated prompt; fractions of full at the requested steps, or at the table's reference steps with
            compute), budget_rule (which rule picked the recipe, None without compute), guidance scales, seeds,
            wall_clock_s. An adaptive schedule (``diffusion.adaptive``) runs per sample: then modes is per generated
            prompt, orders its realised order, rates its rate of change after each step >= 1, flops_fraction the
            largest and flops_fraction_mean the mean over the generated prompts (before the call the only bound is
            the all-full schedule).
        """
        start = time.perf_counter()
        # 1. check inputs
        r = self.check_inputs(prompts, prompt_embeds, num_frames, height, width, steps, guidance_scale, schedule,
                              compute, seed, batch_size)
        # 2. encode the prompts once (left where the encoder put them: the loop copies them once)
        text, mask, text_lens = self._check_embeds(
            *(self.text_encoder.encode(r["prompts"]) if prompt_embeds is None else (prompt_embeds, prompt_mask)))
        # 3. the recipe: patch schedule -> scheduler (timesteps and a step plan per step)
        choice, reference_steps = None, r["steps"]
        if compute is not None:
            choice, reference_steps = self._budget(compute, optimize, r, steps, guidance_scale, quality)
            schedule = choice.schedule
        sched = self._recipe(schedule, r)
        scale = r["guidance_scale"]
        scheduler = FlexiScheduler(self.model.modes, self.defaults.shift if shift is None else shift,
                                   guided=scale != 1.0, weak_to_strong=weak_to_strong)
        adaptive = isinstance(sched, AdaptiveSchedule)  # modes chosen per sample while sampling: FLOPs after it
        kw = self._flops_kw(scale, weak_to_strong)
        static = sched.upper_bound() if adaptive else sched
        fracs, flops = self._flops(static, r, text_lens, reference_steps, kw)
        realised, rates = {}, {}  # adaptive: per generated prompt
        rank, world = shard
        mine = list(range(rank, len(r["prompts"]), world))
        videos, bs = [], r["batch_size"]
        n_batches = math.ceil(len(mine) / bs)
        for b in range(n_batches):
            idx = mine[b * bs:(b + 1) * bs]
            rows = (text, mask) if len(idx) == len(text) else (text[idx], mask[idx])  # every prompt: no gather
            # 4. latents, 5. denoising loop, 6. decode
            x = self._noise([r["seeds"][i] for i in idx], r["latent_shape"])
            scheduler.set_timesteps(sched.steps, static, device=self.device)
            if adaptive:
                x, switch, table = self._denoise_adaptive(x, *rows, scheduler, sched, scale, progress)
                for j, i in enumerate(idx):
                    realised[i], rates[i] = sched.realised(switch[j]), table[j].tolist()
                    (fracs[i],), (flops[i],) = self._flops(realised[i], r, [text_lens[i]], reference_steps, kw)
            else:
                x = self._denoise(x, *rows, scheduler, scale, progress,
                                  "denoising" if n_batches == 1 else f"batch {b + 1}/{n_batches}")
            videos.append(self.autoencoder.decode(x).float().clamp(-1, 1).cpu())
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        kinds = [p.kind for p in scheduler.plans] if mine else []
        info = {
            "indices": mine, "schedule": str(sched), "order": static.order(),
            "modes": [[c, g] for c, g in zip(static.cond, static.guide)], "step_kinds": kinds,
            "flops_fraction": max([fracs[i] for i in mine] if adaptive else fracs, default=0.0),
            "flops_fractions": [fracs[i] for i in mine],
            "gflops": [flops[i] / 1e9 for i in mine], "guidance_scale": scale,
            "weak_guidance_scale": s2_from_s1(scale) if "weak_to_strong" in kinds else None,
            "steps": sched.steps, "seeds": [r["seeds"][i] for i in mine], "num_frames": r["num_frames"],
            "height": r["height"], "width": r["width"], "latent_shape": list(r["latent_shape"]),
            "sampling": self._sampling_name(), "budget_rule": choice.describe(compute) if choice else None,
            "wall_clock_s": time.perf_counter() - start,
        }
        if adaptive:  # what each sample ran (FLOPs above are of these), and its rate of change per step
            orders = [realised[i].order() for i in mine]
            info.update(order="; ".join(dict.fromkeys(orders)), orders=orders,
                        modes=[[[c, g] for c, g in zip(realised[i].cond, realised[i].guide)] for i in mine],
                        flops_fraction_mean=sum(fracs[i] for i in mine) / max(len(mine), 1),
                        rates=[rates[i] for i in mine])
        empty = torch.empty(0, 3, r["num_frames"], r["height"], r["width"])
        if len(videos) == 1:  # one batch: cat would copy the whole video once more on the host
            return videos[0], info
        return (torch.cat(videos) if videos else empty), info

    def _sampling_name(self) -> str:
        if self._use_graphs():
            return "graphed" + (f" (step compiled: {self.compile_steps})" if self.compile_steps else "")
        failed = self._graphs.failed if self._graphs is not None else None
        return f"eager (graph capture failed: {failed})" if failed else "eager"

    def _use_graphs(self) -> bool:
        """Whether this call samples through ``diffusion.graphed.StepGraphs`` (built on first use)."""
        if self.sampling not in ("auto", "graphed", "eager"):
            raise ValueError(f"unknown sampling {self.sampling!r}; allowed: auto, graphed, eager")
        # a model compiled with mode="reduce-overhead" already runs its own CUDA graphs
        use = self.sampling == "graphed" or (self.sampling == "auto" and self.device.type == "cuda"
                                             and self.model._trunk is None)
        if use and (self._graphs is None or self._graphs.model is not self.model):
            from .diffusion.graphed import StepGraphs

            self._graphs = StepGraphs(self.model, compile=self.compile_steps)
        return use and self._graphs.failed is None

    def _denoise_adaptive(self, x, text, mask, scheduler: FlexiScheduler, sched: AdaptiveSchedule, scale: float,
                          progress: bool):
        """``diffusion.adaptive.sample_adaptive`` on this model, graphed where the static loop would be:
        ``(latents, switch step per sample, rates (B, steps - 1))``."""
        from .diffusion.adaptive import sample_adaptive, step_runner

        x, text, mask = x.to(self.device), text.to(self.device), mask.to(self.device)
        run = step_runner(self.model, self._graphs if self._use_graphs() else None, text, mask, scheduler, scale)
        with tqdm(total=sched.steps, desc="denoising (adaptive)", disable=not progress, leave=False) as bar:
            def shown(i, mode, idx, x_sub):  # the bar names each step's modes, one group at a time
                bar.set_postfix(mode=mode, samples=len(idx))
                bar.update(i + 1 - bar.n)
                return run(i, mode, idx, x_sub)
            return sample_adaptive(shown, x, scheduler.sigmas, sched)

    def _denoise(self, x, text, mask, scheduler: FlexiScheduler, scale: float, progress: bool, desc: str):
        """The loop: ``x (B, C, T', H', W')`` float32 noise -> clean latents, one guided velocity per step; the
        inputs may be on the host (the graphed loop copies them into its buffers, the eager one to the device)."""
        if self._use_graphs():  # the whole loop as captured steps: one graph launch per step
            from .diffusion.graphed import GraphCaptureError

            try:
                # no copy of the result: the call's decode / clamp / copy to the host make a new tensor of it
                return self._graphs.sample(x, scheduler.sigma_pairs, text, mask, scheduler.plans, scale, copy=False)
            except GraphCaptureError as e:  # named in info["sampling"]; this and later calls run eagerly
                warnings.warn(f"CUDA graph capture failed ({e}); sampling with the eager loop")
        x, text, mask = x.to(self.device), text.to(self.device), mask.to(self.device)
        prompt = PromptText(self.model, text, mask)  # each text layout encoded once, on first use, for every step
        bar = tqdm(scheduler, desc=desc, disable=not progress, leave=False, total=len(scheduler))
        for t, plan in bar:
            bar.set_postfix(mode=plan.cond_mode if plan.guide_mode in (None, plan.cond_mode)
                            else f"{plan.cond_mode}/{plan.guide_mode}")
            v = guided_velocity(self.model, x.to(self.dtype), t.expand(x.shape[0]), prompt, None, plan, scale)
            x = scheduler.step(v, t, x)
        return x
