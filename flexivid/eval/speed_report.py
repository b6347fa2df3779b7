"""The speed suite's ``speed.md``: tables and target verdicts from ``speed.json``'s numbers (``eval.speed``)."""
from __future__ import annotations

from .equivalence import equivalence_markdown
from .kernel_profile import profile_markdown

# The issue's targets: speed-up x FLOPs fraction (1 = a FLOP saved is time saved) per batch, and GPU busy at batch 1.
EFFICIENCY_TARGET = {1: 0.75, 16: 0.85}
BUSY_TARGET = 0.80


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def report_markdown(r: dict) -> str:
    env, st = r["environment"], r["settings"]
    base = st["schedules"][0]
    lines = [f"# Speed suite: {env['device']}", "",
             *([] if r.get("complete", True) else ["**Partial: the run stopped before its last section.**", ""]),
             f"torch {env['torch']}, CUDA {env['cuda']}, Python {env['python']}; checkpoint `{st['checkpoint']}`; "
             f"sampling: {r['sampling']}, compile {'on' if st['compile'] else 'off'}; {st['repeats']} round-robin "
             f"repeats after one warm-up, every schedule in one process; suite ran {r['suite_s']:.0f} s"
             + (" (" + ", ".join(f"{k} {v:.0f} s" for k, v in r.get("section_s", {}).items()) + ")"
                if r.get("section_s") else "") + ".", "",
             f"Speed-up = median of `{base}` / median of the row (same batch, same run). FLOPs = the pipeline's count "
             f"(both guidance branches) over `{base}`'s. Efficiency = speed-up x FLOPs fraction: 1.0 means every FLOP "
             f"saved is time saved.", ""]
    for bs, rows in r.get("end_to_end", {}).items():
        target = EFFICIENCY_TARGET.get(int(bs))
        lines += [f"## End to end, batch {bs}", "",
                  "| schedule | FLOPs vs " + base + " | median ms | min ms | max ms | speed-up | efficiency |"
                  + (f" efficiency >= {target} |" if target else ""),
                  "|---|---|---|---|---|---|---|" + ("---|" if target else "")]
        for row in rows:
            if "error" in row:
                frac = "-" if row["flops_vs_base"] is None else f"{row['flops_vs_base']:.3f}"
                lines.append(f"| {row['schedule']} | {frac} | failed: {row['error'][:120]} |")
                continue
            ok = "" if not target or "eager" in row["schedule"] or row["schedule"] == base else \
                f" {_mark(row['efficiency'] >= target)} |"
            lines.append(f"| {row['schedule']} | {row['flops_vs_base']:.3f} | {row['median_ms']:.1f} | "
                         f"{row['min_ms']:.1f} | {row['max_ms']:.1f} | {row['speedup']:.2f}x | "
                         f"{row['efficiency']:.2f} |" + (ok or (" - |" if target else "")))
        flexi = [x for x in rows if not x["schedule"].startswith("full") and x["flops_vs_base"] <= 0.33
                 and "error" not in x]
        if flexi:
            best = max(flexi, key=lambda x: x["speedup"])
            goal = {1: 2.5, 16: 3.0}.get(int(bs))
            verdict = f" (target >= {goal}x: {_mark(best['speedup'] >= goal)})" if goal else ""
            lines += ["", f"Best FlexiDiT schedule at <= 0.33 of the FLOPs: `{best['schedule']}`, "
                          f"{best['speedup']:.2f}x{verdict}."]
        lines.append("")
    eq = [*r.get("equivalence", []), *r.get("equivalence_fp32", [])]
    if eq:
        lines += ["## Graphed sampling vs the eager loop (same prompts, seeds and noise)", "",
                  "`step compiled` is what `--compile on` runs (Inductor fuses the step's element-wise work, so its "
                  "roundings differ); `step eager` captures the eager loop's own kernels; `full@1` is one Euler "
                  "step from pure noise, so its difference is the velocity difference at step 0.", ""]
        lines += equivalence_markdown(eq) + [""]
    if "busy" in r:
        timed = {(bs, x["schedule"]): x.get("median_ms") for bs, rows in r.get("end_to_end", {}).items() for x in rows}
        lines += ["## Where the time goes (torch.profiler, one call each)", "",
                  "GPU busy = union of the kernel intervals of one profiled call. The profiler adds host work per "
                  "kernel, so its own wall-clock overstates the host's share; `busy / timed` divides the same GPU "
                  "time by the unprofiled median of the end-to-end table.", "",
                  "| batch | schedule | profiled wall ms | GPU busy ms | busy % (profiled) | busy / timed | kernels |",
                  "|---|---|---|---|---|---|---|"]
        for bs, rows in r["busy"].items():
            for x in rows:
                t = timed.get((bs, x["schedule"]))
                lines.append(f"| {bs} | {x['schedule']} | {x['wall_ms']:.1f} | {x['gpu_busy_ms']:.1f} | "
                             f"{_pct(x['busy_fraction'])} | {_pct(x['gpu_busy_ms'] / t if t else None)} | "
                             f"{x['kernels']} |")
        b1 = next((x for x in r["busy"].get("1", []) if x["schedule"] == base), None)
        if b1 and b1["busy_fraction"] is not None and env["cuda"]:
            lines += ["", f"`{base}` at batch 1 keeps the GPU busy {100 * b1['busy_fraction']:.0f}% of its wall-clock "
                          f"(target >= {BUSY_TARGET:.0%}: {_mark(b1['busy_fraction'] >= BUSY_TARGET)})."]
        lines += [""] + fixed_cost_lines(r.get("end_to_end", {}))
        lines.append("")
    if "step_ops" in r:
        lines += ["## What one step launches (torch.profiler)", "",
                  "A guided step of each mode (both guidance branches in one call, the combine and the Euler update), "
                  "and the text encoding the steps read, once per call: CUDA kernels of the captured graph on the GPU, "
                  "top-level aten ops of the step function on the CPU.", "",
                  "| what | batch | sampling backend | CUDA kernels | aten ops |", "|---|---|---|---|---|"]
        lines += [f"| {x['what']} | {x['batch']} | {x['backend']} | {x['kernels']} | {x['aten_ops']} |"
                  for x in r["step_ops"]] + [""]
    if "first_video" in r:
        lines += ["## Time to first video (`tools/generate_video.py`, default schedule, fresh process each)", "",
                  "In-process: from the script's start (imports included) to the first video in memory; process: "
                  "the whole command, interpreter start-up included.", "",
                  "| run | first video s | process s | exit |", "|---|---|---|---|"]
        for x in r["first_video"][:-1]:
            first = f"{x['first_video_s']:.1f}" if x["first_video_s"] is not None else "-"
            lines.append(f"| {x['run']} | {first} | {x['process_wall_s']:.1f} | {x['rc']} |")
        lines += ["", f"The cold run wrote {r['first_video'][-1]['bytes'] / 1e6:.1f} MB of cache artifacts; the third "
                      f"run started with an empty Inductor cache directory and loaded only that file.", ""]
    if "kernels" in r:
        lines += ["## Kernel table", "", r["kernels"]["markdown"], kernel_verdicts(r["kernels"]["rows"]), ""]
    if "kernels_profile" in r:
        lines += ["## Where the full mode loses to the plain DiT stack (torch.profiler, one forward each)", "",
                  "The kernel table's random-weight full-mode forward and plain DiT stack, profiled once each "
                  "(graphed on the GPU: CUDA kernel durations; eager on the CPU: op self times). Categories by kernel "
                  "name: matmul (gemm, cutlass, cuBLAS, nvjet), attention (flash, fmha, efficient, cuDNN SDPA), "
                  "norm+elementwise (Inductor's fused triton kernels, elementwise, reductions, norms), copies "
                  "(memcpy, memset, copy, cat), other.", "", profile_markdown(r["kernels_profile"])]
    if r["skipped"]:
        lines += ["## Skipped or failed", ""] + [f"- {x}" for x in r["skipped"]] + [""]
    return "\n".join(lines)


def fixed_cost_lines(e2e: dict) -> list[str]:
    """Per-call fixed cost and per-step cost of the full mode, fitted from full@30 and full@10 of the same run:
    ``T(n) = F + n * S``. F (checking, FLOPs bookkeeping, noise, decode, copy back) weighs on short schedules. Fitted
    twice: from the medians, and from each schedule's fastest repeat (host jitter only ever adds time, so a spread
    in the short schedule's repeats inflates the medians' F)."""
    out = []
    for bs, rows in e2e.items():
        fits = []
        for stat in ("median_ms", "min_ms"):
            t = {x["schedule"]: x.get(stat) for x in rows}
            if t.get("full@30") and t.get("full@10"):
                step = (t["full@30"] - t["full@10"]) / 20
                fits.append((stat.split("_")[0], step, t["full@30"] - 30 * step))
        if fits:
            out.append(f"- batch {bs}: a full step costs {fits[0][1]:.2f} ms, the call around the steps "
                       f"{fits[0][2]:.2f} ms (fit of full@30 and full@10)"
                       + "".join(f"; from the fastest repeats: {s:.2f} ms a step, {f:.2f} ms around them"
                                 for name, s, f in fits[1:]) + ".")
    return out


def kernel_verdicts(rows: list[dict]) -> str:
    """The issue's kernel targets, read off the best run (graphed if present) of each preset."""
    out = []
    for preset in dict.fromkeys(x["preset"] for x in rows):
        mine = [x for x in rows if x["preset"] == preset]
        run = "graphed" if any(x["run"] == "graphed" for x in mine) else mine[-1]["run"]
        by_mode = {x["mode"]: x for x in mine if x["run"] == run}
        full, plain, cs = by_mode.get("full"), by_mode.get("plain"), by_mode.get("coarse_space")
        if full and plain:
            rel = full["tflops"] / plain["tflops"]
            out.append(f"- {preset} ({run}): full {full['tflops']:.0f} TFLOP/s = {rel:.2f} of the plain DiT stack "
                       f"({plain['tflops']:.0f})" + (f"; target >= 420 TFLOP/s: {_mark(full['tflops'] >= 420)}"
                                                     if preset == "reference" else
                                                     f"; target >= 0.95: {_mark(rel >= 0.95)}"))
        if cs:
            k = cs["ratio_time"] / cs["ratio_flops"]
            out.append(f"- {preset} ({run}): coarse_space time ratio {cs['ratio_time']:.3f} vs FLOPs ratio "
                       f"{cs['ratio_flops']:.3f} = {k:.2f}x" + (f"; target <= 1.3x: {_mark(k <= 1.3)}"
                                                                if preset == "reference" else ""))
    return "\n".join(out)
