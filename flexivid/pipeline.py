"""Text -> video with a FlexiVideoDiT: load once, call many.

    pipe = VideoPipeline.from_pretrained("checkpoints/flexivid-small")
    video, info = pipe(["a red circle moves right"], steps=30, guidance_scale=4.0, compute=0.4, seed=0)
    # video: float32 (B, 3, T, H, W) in [-1, 1] on the CPU; info["schedule"], info["flops_fraction"], ...

Each call validates everything up front (clip shape against every mode's patch, schedule, budget, prompts), then
per batch: encode the prompts, draw the initial noise from a generator seeded per prompt (so a prompt's video does
not depend on the batch it ran in), run the patch schedule through ``FlowEulerSampler`` with CFG / weak-to-strong
guidance, and decode with the autoencoder.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .config import AutoencoderConfig, ModelConfig, TextConfig
from .diffusion.guidance import guided_velocity, plan_step, s2_from_s1
from .diffusion.sampler import FlowEulerSampler
from .diffusion.schedules import FULL, PatchSchedule, choose_schedule, flops_fraction, parse_schedule, schedule_flops
from .models.dit import FlexiVideoDiT
from .models.serialization import load_model, read_spec
from .presets import preset_modes



@dataclass
class PipelineDefaults:
    """Values a call uses when it does not give them; clip shape and fps come from the checkpoint's training data."""

    num_frames: int = 8
    height: int = 32
    width: int = 32
    fps: float = 8.0
    steps: int = 30
    guidance_scale: float = 4.0
    shift: float = 1.0  # FlowEulerSampler's timestep shift


@dataclass
class GenerationPlan:
    """A validated request: the schedule and the per-prompt FLOPs fractions it will cost."""

    schedule: PatchSchedule
    num_frames: int
    height: int
    width: int
    latent_shape: tuple[int, int, int, int]  # (C, T, H, W) of one latent sample
    guidance_scale: float
    weak_to_strong: bool
    text: torch.Tensor  # (B, L, Dt) prompt tokens on the model's device
    text_mask: torch.Tensor  # (B, L) bool
    flops_fractions: list[float]  # per prompt
    flops: list[int]  # per prompt

    @property
    def text_lens(self) -> list[int]:
        return [int(n) for n in self.text_mask.sum(1)]

    @property
    def guided(self) -> bool:
        return self.guidance_scale != 1.0


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
        own copy of the blocks with the LoRA merged in (``flexify.merge_adapters``; faster, one block copy per
        mode); False runs the peft adapters as trained."""
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
        return cls(model, text_encoder or build_text_encoder(text_cfg, device), autoencoder, defaults)

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
        model.requires_grad_(False)
        model.to(device=device, dtype=dtype or default_dtype(device))
        return cls(model, build_text_encoder(TextConfig(), device), build_autoencoder(AutoencoderConfig()))

    # ----------------------------------------------------------------------------------------------- checks
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

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, mask = self.text_encoder.encode(prompts)
        if tokens.shape[-1] != self.model.config.text_dim:
            raise ValueError(f"text encoder gives {tokens.shape[-1]}-d tokens but the model takes "
                             f"{self.model.config.text_dim}-d (check the checkpoint's 'text' config)")
        return tokens.to(self.device), mask.to(self.device).bool()

    def plan(self, prompts: str | list[str], num_frames: int | None = None, height: int | None = None,
             width: int | None = None, steps: int | None = None, guidance_scale: float | None = None,
             schedule: str | PatchSchedule | None = None, compute: float | None = None,
             weak_to_strong: bool = True) -> GenerationPlan:
        """Validate a request and pick its schedule (arguments as in ``__call__``); raises one-line ValueErrors."""
        d = self.defaults
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        pick = lambda v, default: default if v is None else v  # noqa: E731  (0 is an error, not "default")
        num_frames, height, width = pick(num_frames, d.num_frames), pick(height, d.height), pick(width, d.width)
        steps = pick(steps, schedule.steps if isinstance(schedule, PatchSchedule) else d.steps)
        scale = d.guidance_scale if guidance_scale is None else float(guidance_scale)
        if not prompts:
            raise ValueError("no prompts given")
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"prompt {i} is empty; every prompt needs some text")
        for name, v in (("num_frames", num_frames), ("height", height), ("width", width), ("steps", steps)):
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v}")
        if scale < 1.0:
            raise ValueError(f"guidance_scale must be >= 1 (1 = no guidance), got {scale}")
        if schedule is not None and compute is not None:
            raise ValueError("give a schedule or a compute budget, not both")
        modes = self.model.modes
        if (why := self._check_shape(FULL, num_frames, height, width)) is not None:
            raise ValueError(why)
        ae = self.autoencoder
        latent = (ae.latent_channels, num_frames // ae.temporal_factor, height // ae.spatial_factor,
                  width // ae.spatial_factor)
        text, text_mask = self._encode(prompts)
        text_lens = [int(n) for n in text_mask.sum(1)]
        # adapter FLOPs count only where the peft path runs (merged stacks carry none)
        lora_rank = max(self.model.mode_adapters.lora_rank(m) for m in modes)
        kw = dict(lora_rank=lora_rank, guidance=scale != 1.0, weak_to_strong=weak_to_strong)
        if compute is not None:
            # Only modes whose patch fits this clip are candidates.
            usable = {m: p for m, p in modes.items() if self._check_shape(m, num_frames, height, width) is None}
            sched, _ = choose_schedule(compute, steps, self.model.config, usable, latent, text_lens, **kw)
        else:
            if isinstance(schedule, PatchSchedule):
                sched = schedule
            else:
                sched = parse_schedule(schedule or FULL, steps, modes)
            if sched.steps != steps:
                raise ValueError(f"the schedule has {sched.steps} steps but steps={steps}")
            for m in sorted(sched.modes_used):
                if m not in modes:
                    raise ValueError(f"unknown mode '{m}' in the schedule; this model has modes: {', '.join(modes)}")
                if (why := self._check_shape(m, num_frames, height, width)) is not None:
                    raise ValueError(why)
        fracs = [flops_fraction(sched, self.model.config, modes, latent, n, **kw) for n in text_lens]
        flops = [schedule_flops(sched, self.model.config, modes, latent, n, **kw) for n in text_lens]
        return GenerationPlan(sched, num_frames, height, width, latent, scale, weak_to_strong, text, text_mask, fracs,
                              flops)

    # ------------------------------------------------------------------------------------------- generation
    @torch.inference_mode()
    def __call__(self, prompts: str | list[str], num_frames: int | None = None, height: int | None = None,
                 width: int | None = None, steps: int | None = None, guidance_scale: float | None = None,
                 schedule: str | PatchSchedule | None = None, compute: float | None = None,
                 seed: int | list[int] = 0, batch_size: int | None = None, progress: bool = True,
                 weak_to_strong: bool = True, shift: float | None = None) -> tuple[torch.Tensor, dict]:
        """Generate one video per prompt.

        Args:
            prompts: one string or a list. num_frames / height / width: pixel clip shape (default: the checkpoint's).
            steps: sampler steps. guidance_scale: CFG scale s1 (1 = no guidance branch).
            schedule: a spec string (``diffusion.schedules``) or a ``PatchSchedule``; compute: a FLOPs budget in
                (0, 1] instead, picking the best schedule not above it. Neither: ``full``.
            seed: one int (prompt i uses seed + i) or one seed per prompt. Same seed, same output.
            batch_size: prompts per model batch (default: all). weak_to_strong: use the weak conditional as the
                guide where the conditional mode is stronger. shift: ``FlowEulerSampler`` timestep shift.

        Returns:
            ``video`` float32 ``(B, 3, T, H, W)`` in [-1, 1] on the CPU, and ``info``: schedule (spec), order
            (run-length per branch), modes ([cond, guide] per step), flops_fraction (the largest over prompts),
            flops_fractions / gflops (per prompt), guidance scales, seeds, wall_clock_s.
        """
        start = time.perf_counter()
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        seeds = [seed + i for i in range(len(prompts))] if isinstance(seed, int) else [int(s) for s in seed]
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts; give one seed or one per prompt")
        batch_size = max(1, len(prompts)) if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        plan = self.plan(prompts, num_frames, height, width, steps, guidance_scale, schedule, compute, weak_to_strong)
        sched = plan.schedule
        steps_plan = [plan_step(c, g, self.model.modes, weak_to_strong, plan.guided)
                      for c, g in zip(sched.cond, sched.guide)]
        videos = []
        n_batches = math.ceil(len(prompts) / batch_size)
        for b in range(n_batches):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            videos.append(self._generate(plan.text[sl], plan.text_mask[sl], seeds[sl], plan, steps_plan, progress,
                                         self.defaults.shift if shift is None else shift,
                                         "denoising" if n_batches == 1 else f"batch {b + 1}/{n_batches}"))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        info = {
            "schedule": str(sched), "order": sched.order(), "modes": [[c, g] for c, g in zip(sched.cond, sched.guide)],
            "step_kinds": [p.kind for p in steps_plan], "flops_fraction": max(plan.flops_fractions),
            "flops_fractions": plan.flops_fractions, "gflops": [f / 1e9 for f in plan.flops],
            "guidance_scale": plan.guidance_scale, "weak_guidance_scale": s2_from_s1(plan.guidance_scale)
            if any(p.kind == "weak_to_strong" for p in steps_plan) else None,
            "steps": sched.steps, "seeds": seeds, "num_frames": plan.num_frames, "height": plan.height,
            "width": plan.width, "latent_shape": list(plan.latent_shape), "wall_clock_s": time.perf_counter() - start,
        }
        return torch.cat(videos), info

    def _generate(self, text, mask, seeds, plan: GenerationPlan, steps_plan, progress: bool, shift: float, desc: str):
        """One batch of prompt tokens ``(B, L, Dt)`` / mask ``(B, L)``: noise -> schedule loop -> decode.

        Returns float32 ``(B, 3, T, H, W)`` on the CPU.
        """
        # CPU generators: the same seed gives the same noise on every device.
        noise = [torch.randn(plan.latent_shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
        x = torch.stack(noise).to(self.device)  # (B, C, T', H', W') float32: the sampler state stays fp32
        sampler = FlowEulerSampler(shift=shift)
        sampler.set_timesteps(plan.schedule.steps, device=self.device)
        bar = tqdm(steps_plan, desc=desc, disable=not progress, leave=False)
        for i, step in enumerate(bar):
            bar.set_postfix(mode=step.cond_mode if step.guide_mode in (None, step.cond_mode)
                            else f"{step.cond_mode}/{step.guide_mode}")
            t = sampler.timesteps[i].expand(x.shape[0])
            v = guided_velocity(self.model, x.to(self.dtype), t, text, mask, step, plan.guidance_scale)
            x = sampler.step(v, i, x)
        video = self.autoencoder.decode(x)
        return video.float().clamp(-1, 1).cpu()
