"""Adaptive per-sample schedule: each sample runs a weak mode while its predicted clean latent still changes fast,
then full to the end (in the spirit of DDiT's patch size chosen per step from the latent's rate of change).

Spec (``--schedule``; ``schedules.parse_schedule`` hands ``adaptive:...`` to ``parse_adaptive``)::

    adaptive:MODE:TAU[:HEAD[:TAIL]]

* the first HEAD steps run full (default ceil(steps / 10): the noisiest steps decide the caption's direction, as in
  the frontier's "full first" family);
* then MODE for each sample while its rate of change is >= TAU, full from the first step where it is below
  (a one-way switch per sample); a step with no rate yet (the first two) runs MODE;
* the last TAIL steps (default 1) run full whatever the rate.

Rate after step i (i >= 1) of one sample, from the predicted clean latent ``x0_i = x_i - sigma_i * v_i`` of rectified
flow (``v`` the guided velocity, read back from the Euler update ``v = (x_{i+1} - x_i) / (sigma_{i+1} - sigma_i)``)::

    rate_i = RMS(x0_i - x0_{i-1}) / (RMS(x0_i) * |sigma_i - sigma_{i-1}|)

per unit sigma, so a TAU means the same at 15 and at 30 steps. TAU = 0 keeps MODE until the tail, TAU = inf
switches to full at the first rate. The decision for step i + 1 uses rate_i.

Cost: a step that decides reads the ``(B,)`` rates on the host, the adaptive path's only per-step host sync (a
static schedule has none). Each step runs each mode's samples as one sub-batch (at most two model calls of the
step's plan), graphed or eager; a sample's video does not depend on the batch it ran in.

After a call every sample's realised modes are a plain ``PatchSchedule`` (``realised``): its FLOPs are that schedule's
``schedule_flops``. Before a call only the upper bound is known: the all-full schedule (``upper_bound``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .schedules import FULL, PatchSchedule, full_schedule, order_schedule

PREFIX = "adaptive"
GRAMMAR = "adaptive:MODE:TAU[:HEAD[:TAIL]]"


@dataclass(frozen=True)
class AdaptiveSchedule:
    """A per-sample schedule: ``head`` full steps, ``mode`` while the rate is >= ``tau``, then full; the last
    ``tail`` steps full. ``name`` / ``str`` is the spec."""

    mode: str
    tau: float
    head: int
    tail: int
    steps: int
    name: str = ""

    @property
    def modes_used(self) -> set[str]:
        return {self.mode, FULL}

    def forced_full(self, i: int) -> bool:
        """Whether step ``i`` runs full for every sample (the head and the tail)."""
        return i < self.head or i >= self.steps - self.tail

    def realised(self, switch: int) -> PatchSchedule:
        """The static schedule a sample ran when it switched to full at step ``switch`` (``steps``: never)."""
        start = min(self.head, self.steps)
        end = max(start, min(switch, self.steps - self.tail))
        return order_schedule(self.steps, [(FULL, start), (self.mode, end - start), (FULL, self.steps - end)],
                              self.name)

    def upper_bound(self) -> PatchSchedule:
        """The most a sample can cost before it runs: every step full."""
        return full_schedule(self.steps)

    def order(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return self.name or f"{PREFIX}:{self.mode}:{self.tau:g}:{self.head}:{self.tail}"


def parse_adaptive(spec: str, steps: int, modes: dict[str, tuple[int, int, int]]) -> AdaptiveSchedule:
    """``adaptive:MODE:TAU[:HEAD[:TAIL]]`` -> AdaptiveSchedule; one-line ValueErrors name the fix."""
    args = spec.split(":")[1:]
    if not 2 <= len(args) <= 4:
        raise ValueError(f"schedule '{spec}': use {GRAMMAR}, e.g. {PREFIX}:coarse_space:1.2 (TAU: rate of change per "
                         f"unit sigma below which a sample switches to full)")
    mode = args[0]
    if mode not in modes or mode == FULL:
        weak = ", ".join(m for m in modes if m != FULL) or "none"
        raise ValueError(f"schedule '{spec}': MODE must be a weak mode of this model ({weak}), got '{mode}'")
    try:
        tau = float(args[1])
    except ValueError:
        raise ValueError(f"schedule '{spec}': TAU must be a number >= 0 (or inf), got '{args[1]}'") from None
    if not tau >= 0:  # NaN fails every comparison
        raise ValueError(f"schedule '{spec}': TAU must be a number >= 0 (or inf), got '{args[1]}'")
    counts = []
    for what, text, default in (("HEAD", args[2] if len(args) > 2 else None, math.ceil(steps / 10)),
                                ("TAIL", args[3] if len(args) > 3 else None, 1)):
        try:
            n = default if text is None else int(text)
        except ValueError:
            raise ValueError(f"schedule '{spec}': {what} must be an integer in 0..{steps}, got '{text}'") from None
        if not 0 <= n <= steps:
            raise ValueError(f"schedule '{spec}': {what} must be in 0..{steps} (--steps), got {n}")
        counts.append(n)
    return AdaptiveSchedule(mode, tau, counts[0], counts[1], steps, spec)


def clean_latent(x: torch.Tensor, x_next: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor):
    """``x0 = x - sigma * v`` with ``v`` read back from the Euler update ``x_next = x + (sigma_next - sigma) * v``."""
    return x - sigma * (x_next - x) / (sigma_next - sigma)


def rate_of_change(x0: torch.Tensor, x0_prev: torch.Tensor, dsigma: torch.Tensor) -> torch.Tensor:
    """Per-sample ``RMS(x0 - x0_prev) / (RMS(x0) * |dsigma|)``, ``(B,)`` float32 on the latents' device."""
    dims = tuple(range(1, x0.dim()))
    rms = lambda t: t.float().square().mean(dims).sqrt()  # noqa: E731
    return rms(x0 - x0_prev) / (rms(x0).clamp_min(1e-12) * dsigma.abs())


def sample_adaptive(run_step, x: torch.Tensor, sigmas: torch.Tensor, sched: AdaptiveSchedule):
    """The per-sample loop. ``run_step(i, mode, idx, x_sub) -> x_next_sub`` runs step ``i`` in ``mode`` on the
    samples ``idx`` (a host list; ``x_sub`` their float32 latents). Returns ``(final latents, switch step per sample,
    rates (B, steps - 1) float32 on the host: rate_i in column i - 1)``."""
    b, n = x.shape[0], sched.steps
    switch = [n] * b  # first step a sample runs full after its weak run (n: never switched)
    x0_prev, rates = None, []
    for i in range(n):
        if rates and i >= sched.head and not sched.forced_full(i) and any(s == n for s in switch):
            latest = rates[-1].tolist()  # the adaptive path's one host read of the step
            for k in range(b):
                if switch[k] == n and not latest[k] >= sched.tau:
                    switch[k] = i
        modes = [FULL if sched.forced_full(i) or switch[k] <= i else sched.mode for k in range(b)]
        x_next = None
        for mode in dict.fromkeys(modes):
            idx = [k for k in range(b) if modes[k] == mode]
            if len(idx) == b:
                x_next = run_step(i, mode, idx, x)
            else:
                x_next = x.clone() if x_next is None else x_next
                rows = torch.tensor(idx, device=x.device)
                x_next[rows] = run_step(i, mode, idx, x[rows])
        x0 = clean_latent(x, x_next, sigmas[i], sigmas[i + 1])
        if x0_prev is not None:
            rates.append(rate_of_change(x0, x0_prev, sigmas[i] - sigmas[i - 1]))
        x, x0_prev = x_next, x0
    table = torch.stack(rates, 1).cpu() if rates else torch.zeros(b, 0)
    return x, switch, table


def step_runner(model, graphs, text: torch.Tensor, mask: torch.Tensor, scheduler, scale: float):
    """``run_step`` of ``sample_adaptive`` for ``model``: one step of one mode on a sub-batch, through ``graphs``
    (a ``graphed.StepGraphs``: graphs are keyed by batch shape and plan, so each sub-batch size captures its own) or,
    when it is None or its capture fails, the eager step of ``FlexiScheduler.step``. ``text`` / ``mask`` are the
    whole batch's on the model's device; ``scheduler`` gives the sigma tables and the guidance flags."""
    from .graphed import GraphCaptureError
    from .guidance import PromptText, guided_velocity, plan_step

    plans = {m: plan_step(m, m, scheduler.modes, scheduler.weak_to_strong, scheduler.guided)
             for m in scheduler.modes}
    sigmas, pairs = scheduler.sigmas, scheduler.sigma_pairs
    dtype = next(model.parameters()).dtype
    prompts: dict[tuple, PromptText] = {}  # eager: each sub-batch's text encoded once per call
    state = {"graphs": graphs}

    def rows_of(idx: list[int]):
        if len(idx) == len(text):
            return text, mask
        rows = torch.tensor(idx, device=text.device)
        return text[rows], mask[rows]

    def run(i: int, mode: str, idx: list[int], x: torch.Tensor) -> torch.Tensor:
        if state["graphs"] is not None:
            try:  # one encoder replay per sub-batch and step: small beside the step itself
                return state["graphs"].sample(x, pairs[i:i + 1], *rows_of(idx), [plans[mode]], scale)
            except GraphCaptureError as e:
                import warnings

                warnings.warn(f"CUDA graph capture failed ({e}); sampling the rest with the eager loop")
                state["graphs"] = None
        key = tuple(idx)
        if key not in prompts:
            prompts[key] = PromptText(model, *rows_of(idx))
        t = sigmas[i]
        v = guided_velocity(model, x.to(dtype), t.expand(x.shape[0]), prompts[key], None, plans[mode], scale)
        return x.float() + (sigmas[i + 1] - t) * v.float()  # FlexiScheduler.step's update

    return run
