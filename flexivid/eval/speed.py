"""The speed suite: end-to-end speed-ups of the frontier's schedules, GPU-busy time, time to first video and the
kernel table, in one process-tree run that writes ``speed.md`` (tables) and ``speed.json`` (every raw number).

Every end-to-end figure is a ratio to ``full@30`` timed in the same round-robin (``eval.timing``), at batch 1 and
batch 16, with the pipeline as users run it (compiled blocks, per-step CUDA graphs, LoRAs merged, CFG 4). Sections
run in order while the time budget lasts; a section that does not fit is listed as skipped, never dropped silently.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..fileio import atomic_write
from .kernels import KernelRow, kernel_markdown
from .speed_report import report_markdown
from .timing import busy_profile, environment, op_counts, round_robin

# The frontier's schedules, SPEC@STEPS (no @: 30 steps). full@30 is the baseline of every ratio.
SCHEDULES = ("full@30", "full@10", "full@6", "interleaved:20:6", "interleaved:10:3@20", "interleaved:8:3@15",
             "weak_first:coarse_space:20", "weak_first:coarse_time:20")
SMOKE_SCHEDULES = ("full@6", "full@2", "interleaved:2:1@6", "weak_first:coarse_space:4@6")
SECTIONS = ("end_to_end", "busy", "kernels", "step_ops", "equivalence", "first_video", "equivalence_fp32",
            "kernels_profile")


@dataclass
class SuiteSettings:
    checkpoint: str
    out_dir: str
    text_cache: str | None = None
    schedules: tuple = SCHEDULES
    batch_sizes: tuple = (1, 16)
    repeats: int = 5
    compile: bool = True
    kernel_cases: tuple = ("reference", "paper_video")
    kernel_repeats: int = 5
    # the paper-size case: a full forward takes about a second on an H200, so graphed only, fewer repeats
    large_kernel_repeats: int = 3
    budget_s: float = 330.0
    smoke: bool = False
    sampling: str = "auto"  # the pipeline's sampling under test ("graphed" exercises StepGraphs on the CPU)
    sections: tuple = ()  # only these (see SECTIONS); () = all
    skipped: list = field(default_factory=list)


def split_steps(spec: str, default: int = 30) -> tuple[str, int]:
    """``interleaved:10:3@20`` -> ``("interleaved:10:3", 20)``; no ``@``: the default step count."""
    if "@" not in spec:
        return spec, default
    name, steps = spec.rsplit("@", 1)
    if not steps.isdigit() or int(steps) < 1:
        raise ValueError(f"schedule {spec!r}: the steps after '@' must be a positive integer")
    return name, int(steps)


def prompt_list(text_encoder, n: int) -> list[str]:
    """n prompts the text encoder accepts (a text cache knows only its own captions)."""
    captions = getattr(text_encoder, "captions", None) or [
        "a red circle moves right", "a blue square bounces", "a green triangle spins", "two dots orbit"]
    return [captions[i % len(captions)] for i in range(n)]


def end_to_end(pipe, s: SuiteSettings, log, done=None) -> dict:
    """Round-robin timing of every schedule (plus the eager loop for the baseline) at each batch size; ``done(out)``
    after each batch size (partial results)."""
    out = {}
    base = s.schedules[0]
    for bs in s.batch_sizes:
        prompts = prompt_list(pipe.text_encoder, bs)
        fns, gflops, failed = {}, {}, {}
        for spec in s.schedules:  # the first call compiles and captures, and gives the schedule's FLOPs
            name, steps = split_steps(spec)
            fn = (lambda n=name, k=steps: pipe(prompts, schedule=n, steps=k, seed=0, progress=False))
            try:
                gflops[spec] = fn()[1]["gflops"][0]
                fns[spec] = fn
            except Exception as e:  # noqa: BLE001 - reported in the table, the other schedules still timed
                failed[spec] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                log(f"batch {bs:2d} {spec:34s} FAILED: {failed[spec]}")
        if base not in fns:
            out[str(bs)] = [{"schedule": k, "flops_vs_base": None, "error": v} for k, v in failed.items()]
            continue

        def eager_base(spec=base):
            pipe.sampling = "eager"
            try:
                return fns[spec]()
            finally:
                pipe.sampling = s.sampling
        fns[f"{base} (eager loop)"] = eager_base
        gflops[f"{base} (eager loop)"] = gflops[base]
        timings = round_robin(fns, repeats=s.repeats, warmup=1, log=None, keep_going=True)
        ref = timings[base].median
        rows = [{"schedule": k, "flops_vs_base": None, "error": v} for k, v in failed.items()]
        for spec, tm in timings.items():
            frac = gflops[spec] / gflops[base]
            if tm.error or ref is None:
                rows.append({"schedule": spec, "flops_vs_base": frac, "error": tm.error or f"{base} failed"})
                log(f"batch {bs:2d} {spec:34s} FAILED: {rows[-1]['error']}")
                continue
            speedup = ref / tm.median
            rows.append({"schedule": spec, "flops_vs_base": frac, "speedup": speedup, "efficiency": speedup * frac,
                         **{f"{k}_ms": v * 1e3 for k, v in (("median", tm.median), ("min", tm.min),
                                                            ("max", tm.max))}, "times_s": tm.times})
            log(f"batch {bs:2d} {spec:34s} {tm.median * 1e3:9.1f} ms  FLOPs {frac:.3f}  speed-up {speedup:5.2f}x  "
                f"efficiency {speedup * frac:.2f}")
        out[str(bs)] = rows
        if done:
            done(out)
    return out


def equivalence_section(pipe, s: SuiteSettings, log, dtype=None) -> list[dict]:
    """Graphed vs eager-loop videos (``eval.equivalence``) for the first weak schedule and the baseline at the
    smallest batch; ``dtype``: a second copy of the pipeline in that dtype (float32: rounding out of the way)."""
    from ..compile_cache import compile_pipeline
    from ..pipeline import VideoPipeline
    from .equivalence import equivalence

    if dtype is not None:
        pipe = VideoPipeline.from_pretrained(s.checkpoint, dtype=dtype, text_encoder=pipe.text_encoder)
        if s.compile:
            compile_pipeline(pipe)
    specs = [x for x in s.schedules if not x.startswith("full")][:1] + [s.schedules[0]]
    return equivalence(pipe, prompt_list(pipe.text_encoder, s.batch_sizes[0]), [split_steps(x) for x in specs], log)


def busy(pipe, s: SuiteSettings, log) -> dict:
    """Profiler split of one call per schedule and batch: GPU busy vs waiting on the host."""
    out = {}
    for bs in s.batch_sizes:
        prompts = prompt_list(pipe.text_encoder, bs)
        rows = []
        for spec in s.schedules:
            name, steps = split_steps(spec)
            r = busy_profile(lambda: pipe(prompts, schedule=name, steps=steps, seed=0, progress=False))
            rows.append({"schedule": spec, **r})
            log(f"batch {bs:2d} {spec:34s} wall {r['wall_ms']:8.1f} ms  GPU busy {r['gpu_busy_ms']:8.1f} ms "
                f"({100 * r['busy_fraction']:.0f}%)")
        out[str(bs)] = rows
    return out


def step_ops(pipe, s: SuiteSettings, log) -> list[dict]:
    """What one guided step of each mode (both branches in one call) and the once-per-call text encoding launch at
    the smallest batch, as the pipeline runs them: CUDA kernels of the captured step on the GPU, aten ops of the
    step function on the CPU (``timing.op_counts``; graphed sampling there runs the step eagerly)."""
    from ..diffusion.guidance import plan_step

    prompts, rows, sampling = prompt_list(pipe.text_encoder, s.batch_sizes[0]), [], pipe.sampling
    try:
        pipe.sampling = "graphed"
        for mode in pipe.model.modes:
            pipe(prompts, schedule=f"{mode}:1", steps=1, seed=0, progress=False)  # captures this mode's step
            graphs = pipe._graphs
            if graphs.failed:
                raise RuntimeError(f"step ops need graphed sampling; capture failed: {graphs.failed}")
            plan = plan_step(mode, mode, pipe.model.modes)
            step = next(run for (key, p, _), run in graphs.graphs.items() if p == plan and key[0][0] == len(prompts))
            todo = [(f"{mode} step (CFG, one call)", step)]
            if not rows:
                todo.append(("text encoding, once per call", next(
                    run for (key, layouts), run in graphs.encoders.items()
                    if layouts == ("pair",) and key[0][0] == len(prompts))))
            for what, fn in todo:
                with torch.inference_mode():  # the static buffers are inference tensors, as in the pipeline's call
                    counts = op_counts(fn)
                rows.append({"what": what, "batch": len(prompts), "backend": graphs.backend, **counts})
                log(f"{what:36s} batch {len(prompts)}: {rows[-1]['kernels']} CUDA kernels, "
                    f"{rows[-1]['aten_ops']} aten ops ({graphs.backend})")
    finally:
        pipe.sampling = sampling
    return rows


def first_video(s: SuiteSettings, log, timeout_s: float = 240.0) -> list[dict]:
    """Time to first video of ``tools/generate_video.py`` (its default schedule: full, 30 steps) in fresh processes:
    compile off; on with an empty compile cache (Inductor's on-disk cache emptied too); on again with the artifacts
    the cold run wrote, Inductor's disk cache emptied again so only the artifact file carries over."""
    root = Path(tempfile.mkdtemp(prefix="flexivid_ttfv_"))  # caches and videos stay out of the results folder
    cache = root / "compile_cache.bin"
    deadline = time.perf_counter() + timeout_s
    base = [sys.executable, "tools/generate_video.py", "--checkpoint", s.checkpoint, "--quiet"]
    if s.smoke:
        base += ["--steps", "6"]
    if s.text_cache:
        base += ["--text-cache", s.text_cache]
    if s.text_cache:
        from ..text import CachedTextEncoder

        prompt = prompt_list(CachedTextEncoder(s.text_cache), 1)[0]
    else:
        prompt = prompt_list(None, 1)[0]
    runs = [("compile off", ["--compile", "off"]),
            ("compile on, cold cache", ["--compile", "on", "--compile-cache", str(cache)]),
            ("compile on, artifact cache", ["--compile", "on", "--compile-cache", str(cache)])]
    rows = []
    for i, (label, extra) in enumerate(runs):
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(root / f"inductor_{i}"), "TQDM_DISABLE": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))}
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(base + extra + ["--prompt", prompt, "--output", str(root / f"video_{i}.gif")],
                                  capture_output=True, text=True, env=env,
                                  timeout=max(deadline - time.perf_counter(), 10))
        except subprocess.TimeoutExpired as e:
            proc = subprocess.CompletedProcess(e.cmd, "timeout", str(e.stdout or ""), f"timed out after {e.timeout} s")
        wall = time.perf_counter() - t0
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("time to first video")), "")
        first = float(line.split(":")[1].split("s")[0]) if line else None
        rows.append({"run": label, "process_wall_s": wall, "first_video_s": first, "rc": proc.returncode,
                     "tail": (proc.stdout + proc.stderr)[-600:] if proc.returncode else ""})
        log(f"time to first video, {label}: {first} s in-process, {wall:.1f} s process (rc {proc.returncode})")
    rows.append({"run": "artifact file", "bytes": cache.stat().st_size if cache.exists() else 0})
    shutil.rmtree(root, ignore_errors=True)
    return rows


LARGE_KERNEL_CASES = ("paper_video",)


def kernels(s: SuiteSettings, case: str, log, deadline: float | None = None) -> dict:
    """The kernel table of one case (``eval.kernels.KERNEL_CASES``): compiled and graphed on the GPU (a large case:
    graphed only, ``large_kernel_repeats`` after one warm-up); no row starts after ``deadline``."""
    from .kernels import run_cases

    large = case in LARGE_KERNEL_CASES
    runs = ("eager",) if s.smoke else ("graphed",) if large else ("compiled", "graphed")
    rows, peak = run_cases([case], runs, s.large_kernel_repeats if large else s.kernel_repeats, log=log,
                           warmup=1 if large else 3, deadline=deadline)
    return {"peak_tflops": peak, "rows": [asdict(r) for r in rows]}


def kernels_profile(case: str, log) -> dict:
    """Full mode vs the plain DiT stack of one case, kernel time by category (``eval.kernel_profile``)."""
    from .kernel_profile import profile_case

    return profile_case(case, log)


def smoke_checkpoint(path: Path) -> str:
    """A tiny random flexified model exported like the shipped one (pixel space, MiniLM text): the CPU smoke size."""
    from ..config import ModelConfig, TextConfig
    from ..models.dit import FlexiVideoDiT
    from ..models.modes import flexify, lora_specs
    from ..models.serialization import ClipConfig, ExportSpec, save_model

    if not (path / "config.json").is_file():
        torch.manual_seed(0)
        model = FlexiVideoDiT(ModelConfig(preset="tiny", in_channels=3, text_dim=384))
        flexify(model, lora_specs({"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}, 4))
        save_model(model, path, ExportSpec(text=TextConfig(max_length=16), clip=ClipConfig(4, 16, 16, 8.0)))
    return str(path)


def run_suite(s: SuiteSettings, log=print) -> dict:
    """Run every section that fits in ``s.budget_s``; write ``speed.md`` and ``speed.json`` under ``s.out_dir``."""
    from ..compile_cache import compile_pipeline
    from ..pipeline import VideoPipeline
    from ..text import CachedTextEncoder

    start = time.perf_counter()
    left = lambda: s.budget_s - (time.perf_counter() - start)  # noqa: E731
    out = Path(s.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if s.smoke:
        s.checkpoint = smoke_checkpoint(out / "smoke_model")
    env = environment()
    log(f"device: {env['device']}; torch {env['torch']} (CUDA {env['cuda']}); checkpoint {s.checkpoint}")
    text = CachedTextEncoder(s.text_cache) if s.text_cache else None
    pipe = VideoPipeline.from_pretrained(s.checkpoint, text_encoder=text)
    if s.compile:
        compile_pipeline(pipe)
    pipe.sampling = s.sampling
    result = {"environment": env, "settings": {k: v for k, v in asdict(s).items() if k != "skipped"}}
    # (name, seconds it needs on an H200, compiles included: a rough guess that decides skipping), by priority.
    # A kernels section stops starting rows when the budget is spent, so the last one cannot overrun it.
    deadline = start + s.budget_s
    # The headline numbers first (end to end, GPU busy, the reference kernel row), so a short budget still has them.
    sections = [("end_to_end", 0, lambda: end_to_end(pipe, s, log, partial_e2e)),
                ("busy", 30, lambda: busy(pipe, s, log)),
                *[(f"kernels {c}", 60, lambda c=c: kernels(s, c, log, deadline)) for c in s.kernel_cases[:1]],
                ("step_ops", 5, lambda: step_ops(pipe, s, log)),
                ("equivalence", 20, lambda: equivalence_section(pipe, s, log)),
                ("first_video", 100, lambda: first_video(s, log, timeout_s=left())),
                ("equivalence_fp32", 50, lambda: equivalence_section(pipe, s, log, torch.float32)),
                *[(f"kernels {c}", 45, lambda c=c: kernels(s, c, log, deadline)) for c in s.kernel_cases[1:]],
                # the profile explains the kernel table's full-vs-plain gap; one compile and capture per stack
                *[(f"kernels_profile {c}", 90 if c in LARGE_KERNEL_CASES else 40,
                   lambda c=c: kernels_profile(c, log)) for c in s.kernel_cases]]

    def write(final: bool) -> str:
        """speed.json / speed.md of everything so far: a run cut short keeps the sections it finished."""
        report = dict(result)
        kern = [report.pop(k) for k in list(report) if k.startswith("kernels ")]
        if kern:
            rows = [KernelRow(**r) for k in kern for r in k["rows"]]
            report["kernels"] = {"peak_tflops": kern[0]["peak_tflops"], "rows": [asdict(r) for r in rows],
                                 "markdown": kernel_markdown(rows, env, kern[0]["peak_tflops"])}
        prof = [report.pop(k) for k in list(report) if k.startswith("kernels_profile ")]
        if prof:
            report["kernels_profile"] = prof
        # the sampling actually used: names a capture failure if one happened
        report.update(sampling=pipe._sampling_name(), skipped=list(s.skipped), complete=final,
                      suite_s=time.perf_counter() - start, section_s=dict(section_s))
        md = report_markdown(report)
        atomic_write(out / "speed.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2)))
        atomic_write(out / "speed.md", lambda tmp: Path(tmp).write_text(md))
        return md

    def partial_e2e(rows: dict) -> None:
        result["end_to_end"] = rows
        write(final=False)

    section_s = {}
    for name, need, fn in sections:
        if s.sections and name.split()[0] not in s.sections:
            continue
        if left() < need:
            s.skipped.append(f"{name}: {left():.0f} s of the {s.budget_s:.0f} s budget left, it needs ~{need} s")
            log(f"skipped {name}: time budget")
            continue
        t0 = time.perf_counter()
        log(f"[{t0 - start:6.1f} s] section {name}")
        try:
            result[name] = fn()
        except Exception as e:  # noqa: BLE001 - one section's failure must not lose the others' numbers
            s.skipped.append(f"{name}: failed with {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            log(f"section {name} failed: {e!r}")
        section_s[name] = time.perf_counter() - t0
        write(final=False)
    md = write(final=True)
    log(md)
    return result
