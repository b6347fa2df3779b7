"""Wall-clock timing that survives drift: round-robin repeats, median / min / max, and where the time goes.

``round_robin({"full@30": fn, "interleaved:20:6": fn2}, repeats=5)`` runs every function once (warm-up: compiles,
captures graphs), then repeats rounds of one call each, in turn, so clock or thermal drift hits all of them alike.
Each call is bracketed by device synchronisation; the numbers are seconds of end-to-end wall-clock.

``busy_profile(fn)`` profiles one call with ``torch.profiler`` and splits its wall-clock into time the GPU was busy
(the union of kernel intervals) and time it waited for the host; ``op_counts(fn)`` counts what one call launches.
"""
from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch


@dataclass
class Timing:
    """Seconds of each repeat of one timed function."""

    name: str
    times: list[float] = field(default_factory=list)
    error: str | None = None  # why the warm-up failed (``round_robin(..., keep_going=True)``); no times then

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    @property
    def min(self) -> float | None:
        return min(self.times) if self.times else None

    @property
    def max(self) -> float | None:
        return max(self.times) if self.times else None

    def as_dict(self) -> dict:
        return {**asdict(self), "median": self.median, "min": self.min, "max": self.max}


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def environment() -> dict:
    """The card, torch / CUDA versions and host, for every timing output."""
    cuda = torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name() if cuda else f"CPU ({platform.processor() or platform.machine()})",
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "python": platform.python_version(), "host": platform.node()}


def round_robin(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                log: Callable[[str], None] | None = None, keep_going: bool = False,
                budget_s: float | None = None) -> dict[str, Timing]:
    """Time every function ``repeats`` times, interleaved (round r calls each function once, in order).

    ``keep_going``: a function whose warm-up raises is left out of the rounds, its error kept in ``Timing.error``
    (e.g. a compile failure in one schedule of a sweep); otherwise the error propagates. ``budget_s``: cut the
    rounds to those that fit in it, one round costing what the warm-up did (an upper bound: the warm-up compiles and
    captures); at least one round runs."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    out = {name: Timing(name) for name in fns}
    t0 = time.perf_counter()
    for name, fn in fns.items():
        try:
            for _ in range(warmup):
                fn()
        except Exception as e:  # noqa: BLE001 - reported in the Timing when keep_going
            if not keep_going:
                raise
            out[name].error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if log:
            log(f"warmed up {name}" + (f" (failed: {out[name].error})" if out[name].error else ""))
    round_s = (time.perf_counter() - t0) / max(warmup, 1)
    if budget_s is not None and round_s > 0:
        repeats = max(1, min(repeats, int(budget_s / round_s)))
    for _ in range(repeats):
        for name, fn in fns.items():
            if out[name].error:
                continue
            synchronize()
            t0 = time.perf_counter()
            fn()
            synchronize()
            out[name].times.append(time.perf_counter() - t0)
    return out


def _union_us(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of ``[start, end]`` intervals."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + (cur_e - cur_s if cur_e is not None else 0.0)


def profiled_events(fn: Callable[[], object]):
    """``(events, wall seconds)`` of one profiled call of ``fn`` (host to final sync), after one unprofiled warm-up
    call: CPU ops, and CUDA kernels where there is a GPU."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    synchronize()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        fn()
        synchronize()
        wall = time.perf_counter() - t0
    return prof.events(), wall


def busy_profile(fn: Callable[[], object]) -> dict:
    """One profiled call of ``fn`` (after one unprofiled warm-up call).

    Returns ``wall_ms`` (the call, host to final sync), ``gpu_busy_ms`` (union of the CUDA kernel intervals; 0 on
    the CPU), ``busy_fraction`` (None when a CUDA run shows no kernel records), ``host_ops_ms`` (CPU time of the top-level torch ops the host dispatched) and the
    kernel count. The profiler adds host cost of its own, so ``busy_fraction`` is a lower bound.
    """
    cuda = torch.cuda.is_available()
    events, wall = profiled_events(fn)
    kernels = [(e.time_range.start, e.time_range.end) for e in events
               if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    host_ops = sum(e.cpu_time_total for e in events if e.cpu_parent is None
                   and getattr(e, "device_type", None) == torch.autograd.DeviceType.CPU)
    busy_ms = _union_us(kernels) / 1e3
    # no kernel records on a CUDA run means the profiler could not see them (not an idle GPU): no fraction then
    frac = busy_ms / (wall * 1e3) if kernels or not cuda else None
    return {"wall_ms": wall * 1e3, "gpu_busy_ms": busy_ms, "busy_fraction": frac,
            "host_ops_ms": host_ops / 1e3, "kernels": len(kernels)}


def op_counts(fn: Callable[[], object]) -> dict:
    """What one call of ``fn`` launches (after one unprofiled warm-up call): ``kernels`` (CUDA kernels, those of a graph
    replay included; 0 on the CPU) and ``aten_ops`` (top-level aten ops the host dispatched; a replay has none)."""
    events, _ = profiled_events(fn)
    kernels = sum(getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA for e in events)
    top = sum(e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
              for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CPU)
    return {"kernels": kernels, "aten_ops": top}
