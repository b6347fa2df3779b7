"""The sampling recipe as a diffusers-style scheduler: rectified-flow Euler timesteps plus, per step, which modes and
which guidance run (a ``PatchSchedule`` turned into ``StepPlan``s).

    scheduler = FlexiScheduler(model.modes, shift=1.0)
    scheduler.set_timesteps(30, schedule="weak_first:coarse_time:10")
    prompt = PromptText(model, text, mask)         # the text side of the model, encoded once for every step
    for t, plan in scheduler:                      # t: scalar timestep in (0, 1]; plan: guidance.StepPlan
        v = guided_velocity(model, x, t.expand(len(x)), prompt, None, plan, guidance_scale)
        x = scheduler.step(v, t, x)                # the scheduler tracks its own step index
"""
from __future__ import annotations

import functools
import math

import torch

from .flow import shift_timesteps
from .guidance import StepPlan, plan_step
from .schedules import FULL, PatchSchedule, parse_schedule


class FlexiScheduler:
    """Deterministic Euler integration of ``dx/dt = v`` from t = 1 (noise) to t = 0 (data), one mode plan per step.

    ``modes``: the model's ``{name: patch}``; ``shift``: SD3's timestep shift; ``guided``: False when the guidance
    scale is 1 (conditional branch only); ``weak_to_strong``: guide a stronger conditional mode with the weak
    conditional prediction.
    """

    def __init__(self, modes: dict[str, tuple[int, int, int]], shift: float = 1.0, guided: bool = True,
                 weak_to_strong: bool = True):
        if not (math.isfinite(shift) and shift > 0):  # NaN or <= 0 would turn every sample black
            raise ValueError(f"shift must be a finite number > 0, got {shift}")
        self.modes, self.shift, self.guided, self.weak_to_strong = dict(modes), shift, guided, weak_to_strong
        self.schedule: PatchSchedule | None = None
        self.plans: list[StepPlan] = []
        self.timesteps = torch.empty(0)
        self.sigmas = torch.empty(0)
        self.sigma_pairs = torch.empty(0, 2)
        self.step_index = 0

    def set_timesteps(self, num_inference_steps: int, schedule: str | PatchSchedule = FULL, device=None) -> None:
        """Evenly spaced (then shifted) ``timesteps (n,)`` and ``sigmas (n + 1,)`` ending at 0, ``sigma_pairs (n, 2)``
        (each step's ``(t, t_next)``), and the step plans of ``schedule`` (a spec string or a ``PatchSchedule`` of ``n``
        steps). Resets the step index. The tables are shared by every scheduler of the same steps, shift and device
        (built once: read them, do not write them)."""
        n = num_inference_steps
        if int(n) != n or n < 1:
            raise ValueError(f"steps must be a positive integer, got {n}")
        if not isinstance(schedule, PatchSchedule):
            schedule = parse_schedule(schedule, n, self.modes)
        if not isinstance(schedule, PatchSchedule):
            raise ValueError(f"schedule '{schedule}' is adaptive (chosen per sample while sampling): run it through "
                             f"VideoPipeline, or give a static schedule here")
        if schedule.steps != n:
            raise ValueError(f"the schedule has {schedule.steps} steps but steps={n}")
        self.schedule = schedule
        self.plans = [plan_step(c, g, self.modes, self.weak_to_strong, self.guided)
                      for c, g in zip(schedule.cond, schedule.guide)]
        self.sigmas, self.sigma_pairs = _sigma_tables(int(n), self.shift, str(torch.device(device or "cpu")))
        self.timesteps = self.sigmas[:-1]
        self.step_index = 0

    def __len__(self) -> int:
        return len(self.plans)

    def __iter__(self):
        """``(t, plan)`` per step: the scalar timestep and what the step runs."""
        return iter(zip(self.timesteps, self.plans))

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """One Euler step ``x_{t_next} = x_t + (t_next - t) * v`` at the current step index, which then advances;
        computed in float32, returned in ``sample``'s dtype. ``timestep`` is the one this step was yielded with (the
        index, not the value, selects the step, as in diffusers; reading it would wait for the device)."""
        i = self.step_index
        if i >= len(self.plans):
            raise ValueError(f"step called {i + 1} times for {len(self.plans)} timesteps; call set_timesteps first")
        dt = self.sigmas[i + 1] - self.sigmas[i]
        self.step_index = i + 1
        return (sample.float() + dt * model_output.float()).to(sample.dtype)


@functools.lru_cache(maxsize=64)
def _sigma_tables(n: int, shift: float, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``sigmas (n + 1,)`` and ``pairs (n, 2)`` float32 on ``device``; made once per (steps, shift, device), outside
    inference mode so a table first made in a sampling call is still an ordinary tensor outside one."""
    with torch.inference_mode(False):
        grid = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
        sigmas = shift_timesteps(grid, shift).to(dtype=torch.float32)
        pairs = torch.stack([sigmas[:-1], sigmas[1:]], dim=1)
        return sigmas.to(device), pairs.to(device)
