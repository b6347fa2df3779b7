"""Patch schedules: which mode runs at each denoising step, for the conditional and the guidance branch, and their
FLOPs.

A schedule spec (``--schedule`` on the CLI, ``schedule=`` in the pipeline) is one of::

    full                    every step of both branches in the full mode (the baseline)
    weak_first:MODE:K       MODE for the first K steps of both branches, then full (FlexiDiT's weak-first)
    weak_first:MODE:X/Y     the paper's "x/y": full for the last X conditional and the last Y guidance steps,
                            MODE before that (X > Y gives weak-to-strong guidance steps)
    weak_first[:MODE]       MODE (default: the cheapest weak mode) for the first half of the steps
    interleaved:A:B         the weak modes ordered by cost (fewest tokens first: coarse_space (1,4,4), then
                            coarse_time (2,2,2)), A steps of the first, B of the second, then full (flexivid's
                            extension; the paper uses one weak mode per sample)
    interleaved             the same in thirds
    MODE:N,MODE:N,...       any order for both branches, e.g. coarse_space:10,coarse_time:10,full:10 (counts sum
                            to the number of steps)
    adaptive:MODE:TAU[:HEAD[:TAIL]]
                            per sample: HEAD full steps, MODE while the latent's rate of change is >= TAU, then full
                            (at least the last TAIL steps); an ``adaptive.AdaptiveSchedule``, not a static
                            ``PatchSchedule`` (grammar and cost in ``diffusion.adaptive``)

FLOPs follow the paper's "compute %" (App. C.1): denoiser forward FLOPs of both guidance branches over all steps,
divided by the all-full schedule with the same steps and guidance. The null (unconditional) branch attends to one
text token; a weak-to-strong guide branch is the weak mode's conditional prediction with the full prompt.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from itertools import groupby

from ..config import ModelConfig
from ..models.flops import forward_flops
from .guidance import plan_step

FULL = "full"


@dataclass(frozen=True)
class PatchSchedule:
    """Per-step modes: ``cond[i]`` runs the conditional branch at step i (noisiest first), ``guide[i]`` the guidance
    branch (unconditional, or the weak conditional in weak-to-strong steps). ``name`` is the spec it came from."""

    cond: tuple[str, ...]
    guide: tuple[str, ...]
    name: str = ""

    def __post_init__(self):
        if not self.cond or len(self.cond) != len(self.guide):
            raise ValueError(f"a schedule needs >= 1 step and equal-length branches, got {len(self.cond)} conditional "
                             f"and {len(self.guide)} guidance steps")

    @property
    def steps(self) -> int:
        return len(self.cond)

    @property
    def modes_used(self) -> set[str]:
        return set(self.cond) | set(self.guide)

    @property
    def full_tail(self) -> int:
        """Trailing steps where both branches run the full mode (the detail-forming, low-noise end)."""
        n = 0
        for c, g in zip(reversed(self.cond), reversed(self.guide)):
            if c != FULL or g != FULL:
                break
            n += 1
        return n

    def order(self) -> str:
        """Run-length form, e.g. ``coarse_space:10,full:20``; ``cond=...;guide=...`` when the branches differ."""
        rle = lambda modes: ",".join(f"{m}:{len(list(g))}" for m, g in groupby(modes))  # noqa: E731
        if self.cond == self.guide:
            return rle(self.cond)
        return f"cond={rle(self.cond)};guide={rle(self.guide)}"

    def __str__(self) -> str:
        return self.name or self.order()


# ------------------------------------------------------------------------------------------------ constructors
def cost_order(modes: dict[str, tuple[int, int, int]]) -> list[str]:
    """Weak modes cheapest first: larger patch volume = fewer tokens = fewer FLOPs, for every clip shape."""
    return sorted((m for m in modes if m != FULL), key=lambda m: (-math.prod(modes[m]), m))


def full_schedule(steps: int) -> PatchSchedule:
    return PatchSchedule((FULL,) * steps, (FULL,) * steps, FULL)


def weak_first(steps: int, mode: str, k: int, k_guide: int | None = None) -> PatchSchedule:
    """``mode`` for the first ``k`` conditional and ``k_guide`` (default ``k``) guidance steps, then full."""
    k_guide = k if k_guide is None else k_guide
    for n in (k, k_guide):
        if not 0 <= n <= steps:
            raise ValueError(f"weak_first: weak step count {n} must be in 0..{steps} (the number of steps)")
    if k == k_guide == 0:
        return full_schedule(steps)
    name = f"weak_first:{mode}:{k}" if k == k_guide else f"weak_first:{mode}:{steps - k}/{steps - k_guide}"
    return PatchSchedule((mode,) * k + (FULL,) * (steps - k), (mode,) * k_guide + (FULL,) * (steps - k_guide), name)


def order_schedule(steps: int, segments: list[tuple[str, int]], name: str = "") -> PatchSchedule:
    """Both branches follow ``segments`` ``[(mode, count), ...]`` in order; counts must sum to ``steps``."""
    total = sum(n for _, n in segments)
    if total != steps or any(n < 0 for _, n in segments):
        spec = ",".join(f"{m}:{n}" for m, n in segments)
        raise ValueError(f"schedule '{spec}': step counts must be >= 0 and sum to --steps={steps}, they sum to {total}")
    modes = tuple(m for m, n in segments for _ in range(n))
    return PatchSchedule(modes, modes, name)


def interleaved(steps: int, modes: dict[str, tuple[int, int, int]], counts: list[int]) -> PatchSchedule:
    """Weak modes in cost order (``cost_order``) with ``counts[i]`` steps each, then full for the remaining steps."""
    weak = cost_order(modes)
    if len(weak) < 2:
        raise ValueError(f"interleaved needs >= 2 weak modes, this model has: {', '.join(weak) or 'none'} "
                         f"(use weak_first)")
    if len(counts) != len(weak) or sum(counts) > steps or min(counts) < 0:
        raise ValueError(f"interleaved takes {len(weak)} step counts >= 0 (for {', '.join(weak)}) summing to at "
                         f"most --steps={steps}, got {counts}")
    segments = [*zip(weak, counts), (FULL, steps - sum(counts))]
    return order_schedule(steps, segments, "interleaved:" + ":".join(map(str, counts)))


def _int(text: str, what: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"schedule '{spec}': {what} must be an integer, got '{text}'") from None


def _check_mode(mode: str, modes: dict, spec: str) -> None:
    if mode not in modes:
        raise ValueError(f"schedule '{spec}': unknown mode '{mode}'; this model has modes: {', '.join(modes)}")


def parse_schedule(spec: str, steps: int, modes: dict[str, tuple[int, int, int]]):
    """Build a schedule from a spec string (grammar in the module docstring) for ``steps`` steps: a
    ``PatchSchedule``, or an ``adaptive.AdaptiveSchedule`` for ``adaptive:...``.

    ``modes`` is the model's ``{name: patch}``. Raises a one-line ValueError naming the valid forms or modes.
    """
    spec = spec.strip()
    head, *args = spec.split(":")
    if head == FULL and not args:
        return full_schedule(steps)
    if head == "adaptive":
        from .adaptive import parse_adaptive  # it builds on this module

        return parse_adaptive(spec, steps, modes)
    if head == "weak_first":
        weak = cost_order(modes)
        if not weak:
            raise ValueError(f"schedule '{spec}': this model has no weak mode (only full)")
        if len(args) > 2:
            raise ValueError(f"schedule '{spec}': use weak_first:MODE:K or weak_first:MODE:X/Y")
        mode = args[0] if args else weak[0]
        _check_mode(mode, modes, spec)
        if len(args) < 2:
            return weak_first(steps, mode, steps // 2)
        if "/" in args[1]:  # the paper's x/y counts FULL steps from the end
            x, y = (_int(v, "x/y", spec) for v in args[1].split("/", 1))
            if not (0 <= x <= steps and 0 <= y <= steps):
                raise ValueError(f"schedule '{spec}': x/y counts full steps at the end, each in 0..{steps}")
            return weak_first(steps, mode, steps - x, steps - y)
        return weak_first(steps, mode, _int(args[1], "K", spec))
    if head == "interleaved":
        n_weak = len(cost_order(modes))
        counts = [_int(a, "counts", spec) for a in args] if args else [steps // 3] * n_weak
        return interleaved(steps, modes, counts)
    # A user order: MODE:N,MODE:N,...
    segments = []
    for part in spec.split(","):
        bits = part.strip().split(":")
        if len(bits) != 2:
            order = ",".join(f"{m}:N" for m in [*cost_order(modes), FULL])
            raise ValueError(f"unknown schedule '{spec}'; use full, weak_first[:MODE[:K|:X/Y]], interleaved[:A:B], "
                             f"adaptive:MODE:TAU[:HEAD[:TAIL]] or an order like {order}")
        _check_mode(bits[0], modes, spec)
        segments.append((bits[0], _int(bits[1], "step counts", spec)))
    return order_schedule(steps, segments, spec)


# ------------------------------------------------------------------------------------------------------ FLOPs
def _pair_flops(pairs, model_config: ModelConfig, modes: dict, latent_shape, text_len: int, lora_rank: int,
                guidance: bool, weak_to_strong: bool) -> dict[tuple[str, str], int]:
    """FLOPs of one step of one sample for each ``(cond_mode, guide_mode)`` pair in ``pairs``."""
    fwd: dict[tuple[str, int], int] = {}
    out = {}
    for c, g in pairs:
        plan = plan_step(c, g, modes, weak_to_strong=weak_to_strong, guided=guidance)
        runs = [(c, text_len)] + ([(g, text_len if plan.guide_text else 1)] if plan.guide_mode is not None else [])
        for mode, n_text in runs:
            if (mode, n_text) not in fwd:
                fwd[mode, n_text] = forward_flops(model_config, modes[mode], latent_shape, n_text,
                                                  lora_rank=0 if mode == FULL else lora_rank)
        out[c, g] = sum(fwd[r] for r in runs)
    return out


def schedule_flops(schedule: PatchSchedule, model_config: ModelConfig, modes: dict[str, tuple[int, int, int]],
                   latent_shape, text_len: int, lora_rank: int = 0, guidance: bool = True,
                   weak_to_strong: bool = True) -> int:
    """Denoiser FLOPs of one sample over the whole schedule, both guidance branches included.

    Args:
        latent_shape: ``(C, T, H, W)`` of one latent sample.
        text_len: valid prompt tokens (the conditional branch and a weak-to-strong guide attend to them; the null
            branch attends to 1 token).
        lora_rank: rank of the unmerged LoRA that weak modes run with (0 = none / merged); ``full`` has none.
        guidance: False when the guidance scale is 1 (no guidance branch runs).
        weak_to_strong: whether steps with a stronger conditional than guide mode use the weak conditional guide.
    """
    counts = Counter(zip(schedule.cond, schedule.guide))
    cost = _pair_flops(counts, model_config, modes, latent_shape, text_len, lora_rank, guidance, weak_to_strong)
    return sum(n * cost[p] for p, n in counts.items())


def flops_fraction(schedule: PatchSchedule, model_config: ModelConfig, modes: dict, latent_shape, text_len: int,
                   lora_rank: int = 0, guidance: bool = True, weak_to_strong: bool = True) -> float:
    """``schedule_flops`` over the all-full schedule with the same steps and guidance (the paper's compute %)."""
    kw = dict(lora_rank=lora_rank, guidance=guidance, weak_to_strong=weak_to_strong)
    base = schedule_flops(full_schedule(schedule.steps), model_config, modes, latent_shape, text_len, **kw)
    return schedule_flops(schedule, model_config, modes, latent_shape, text_len, **kw) / base
