"""What one graphed sampling call does outside its steps: host time and aten ops before the first step, per step and
after the last step.

``profile_call(pipe, fn)`` runs ``fn`` (one pipeline call on the graphed path) after a warm-up call that captures its
graphs, with every captured step wrapped so the call splits into three phases:

* ``before``: from the call's start to the first step's launch (input checks, text, recipe, latents, the once-per-call
  text encoding, the first step's ``(t, t_next)`` copy);
* ``steps``: the step launches and whatever the host does between them, divided by the step count;
* ``after``: from the last step's return to the call's return (decode, the copy to the host, ``info``).

Host time is the median over ``repeats`` plain calls; aten ops are counted by a ``TorchDispatchMode`` in one more call
(every op the host dispatches, the ones inside composite ops included). A host read takes a tensor's value to
Python (``.item()``, ``bool(t)``, ``.tolist()``, ``.numpy()``): on the GPU each one waits for the device. It shows
as ``item`` / ``is_nonzero`` / ``_local_scalar_dense``, and ``.tolist()`` / ``.numpy()`` as ``resolve_neg`` (they
resolve the lazy negation bit right before reading the memory; nothing else in a call does). A dispatch mode sees
the calling thread only: the noise drawn on the pipeline's threads (batch > 1) is not in the counts. On a GPU the
phases would time the host's launches, not the device's work (``eval.timing.busy_profile`` measures that).
"""
from __future__ import annotations

import statistics
import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

PHASES = ("before", "steps", "after")
HOST_READS = ("item", "is_nonzero", "_local_scalar_dense", "resolve_neg")


def host_reads(ops: Counter) -> int:
    """How many of ``ops`` read a tensor's value on the host."""
    return sum(ops[k] for k in HOST_READS)


class _Recorder(TorchDispatchMode):
    """Counts aten ops per phase; the steps' wrappers move it from phase to phase."""

    def __init__(self, prof=None):
        super().__init__()
        self.prof = prof  # a cProfile.Profile paused during the steps
        self.reset()

    def reset(self) -> None:
        self.ops = {p: Counter() for p in PHASES}
        self.pending = Counter()  # ops after a step: the next step's host work, or the call's tail if none follows
        self.phase, self.steps = "before", 0
        self.t_first = self.t_last = None

    def enter_step(self) -> None:
        if self.t_first is None:
            self.t_first = time.perf_counter()
        self.ops["steps"].update(self.pending)
        self.pending.clear()
        self.phase = "steps"
        if self.prof is not None:
            self.prof.disable()

    def leave_step(self) -> None:
        if self.prof is not None:
            self.prof.enable()
        self.steps += 1
        self.phase = "between"
        self.t_last = time.perf_counter()

    def finish(self) -> None:
        self.ops["after"].update(self.pending)
        self.pending.clear()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        (self.pending if self.phase == "between" else self.ops[self.phase])[name] += 1
        return func(*args, **(kwargs or {}))


def _mark_steps(graphs, rec: _Recorder) -> None:
    """Wrap every captured step of ``graphs`` (``diffusion.graphed.StepGraphs``) so ``rec`` sees its start and end."""
    def marked(run):
        run = getattr(run, "unmarked", run)  # marked for an earlier recorder: mark the step itself again

        def step():
            rec.enter_step()
            run()
            rec.leave_step()
        step.unmarked = run
        return step
    graphs.graphs = {k: marked(v) for k, v in graphs.graphs.items()}


def _unmark_steps(graphs) -> None:
    graphs.graphs = {k: getattr(v, "unmarked", v) for k, v in graphs.graphs.items()}


def profile_call(pipe, fn, repeats: int = 5) -> dict:
    """Host ms and aten ops of one call of ``fn`` split into before / per step / after (see the module docstring).

    ``pipe.sampling`` must give the graphed path; ``fn`` calls ``pipe`` once."""
    fn()  # warm-up: builds the buffers and captures the steps
    graphs = pipe._graphs
    if graphs is None or graphs.failed or not graphs.graphs:
        raise RuntimeError("profile_call needs the graphed sampling path (pipe.sampling = 'graphed')")
    rec = _Recorder()
    _mark_steps(graphs, rec)
    times = {p: [] for p in PHASES}
    try:
        with torch.inference_mode():
            for _ in range(repeats):
                rec.reset()
                t0 = time.perf_counter()
                fn()
                t1 = time.perf_counter()
                times["before"].append(rec.t_first - t0)
                times["steps"].append((rec.t_last - rec.t_first) / max(rec.steps, 1))
                times["after"].append(t1 - rec.t_last)
            rec.reset()
            with rec:
                fn()
    finally:
        _unmark_steps(graphs)
    rec.finish()
    n = max(rec.steps, 1)
    out = {"n_steps": rec.steps}
    for p in PHASES:
        ops, per = rec.ops[p], n if p == "steps" else 1
        out["per_step" if p == "steps" else p] = {
            "host_ms": statistics.median(times[p]) * 1e3, "aten_ops": sum(ops.values()) / per,
            "host_reads": host_reads(ops) / per, "ops": dict(ops.most_common())}
    return out


def call_counts(pipe, fn) -> dict:
    """The aten ops of one call of ``fn`` per phase (no timing), after a warm-up call: what a test pins down."""
    fn()
    rec = _Recorder()
    _mark_steps(pipe._graphs, rec)
    try:
        with torch.inference_mode(), rec:
            fn()
    finally:
        _unmark_steps(pipe._graphs)
    rec.finish()
    return {"n_steps": rec.steps, **{p: rec.ops[p] for p in PHASES}}


def host_functions(pipe, fn, top: int = 20, prefix: str = "flexivid") -> list[dict]:
    """The ``top`` functions of ``prefix``'s package by cumulative host time outside the steps in one call of ``fn``
    (cProfile, paused while a step runs; it slows Python code: read the ranking, not the milliseconds)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    _mark_steps(pipe._graphs, _Recorder(prof))
    try:
        with torch.inference_mode():
            prof.enable()
            fn()
            prof.disable()
    finally:
        _unmark_steps(pipe._graphs)
    stats = pstats.Stats(prof).stats
    rows = [{"function": f"{path.split(prefix + '/')[-1]}:{line} {name}", "calls": nc, "cum_ms": ct * 1e3}
            for (path, line, name), (cc, nc, tt, ct, callers) in stats.items()
            if f"/{prefix}/" in path and "call_profile" not in path]
    return sorted(rows, key=lambda r: -r["cum_ms"])[:top]


def call_markdown(rows: list[dict], env: dict) -> str:
    """One table of every profiled call, then the ops of the phases outside the steps."""
    lines = [f"device: {env['device']}; torch {env['torch']}; graphed sampling path, step backend "
             f"{rows[0]['backend'] if rows else '-'}", "",
             "| batch | schedule | steps | before ms | per step ms | after ms | before ops | per step ops | after ops "
             "| host reads before / per step / after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, s, a = r["before"], r["per_step"], r["after"]
        lines.append(f"| {r['batch']} | {r['schedule']} | {r['n_steps']} | {b['host_ms']:.2f} | {s['host_ms']:.2f} | "
                     f"{a['host_ms']:.2f} | {b['aten_ops']:.0f} | {s['aten_ops']:.1f} | {a['aten_ops']:.0f} | "
                     f"{b['host_reads']:.0f} / {s['host_reads']:.1f} / {a['host_reads']:.0f} |")
    for r in rows:
        for p, key in (("before the first step", "before"), ("after the last step", "after")):
            ops = ", ".join(f"{k} x{v}" for k, v in r[key]["ops"].items()) or "none"
            lines += ["", f"**batch {r['batch']} {r['schedule']}, aten ops {p}:** {ops}"]
        if r.get("functions"):
            lines += ["", f"**batch {r['batch']} {r['schedule']}, flexivid functions by cumulative host time "
                          "outside the steps (cProfile, one call):**", "",
                      "| function | calls | cum ms |", "|---|---|---|"]
            lines += [f"| `{f['function']}` | {f['calls']} | {f['cum_ms']:.2f} |" for f in r["functions"]]
    return "\n".join(lines) + "\n"
