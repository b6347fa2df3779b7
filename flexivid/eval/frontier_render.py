"""``frontier.md`` and ``frontier.png`` from the frontier report dict (``eval.frontier_report``).

Intervals are bootstrap 95% over prompts; a difference whose interval contains 0 is a tie, written ``≈`` in the
tables and drawn as a hollow marker in the plot.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..data.synthetic import ATTRIBUTES
from ..fileio import atomic_write
from .frontier_search import BASELINE


def _iv(d: dict | None, digits: int = 3) -> str:
    if d is None or not math.isfinite(d.get("mean", math.nan)):
        return "n/a"
    return f"{d['mean']:.{digits}f} [{d['low']:.{digits}f}, {d['high']:.{digits}f}]"


def _diff(d: dict | None, digits: int = 3) -> str:
    if d is None or not math.isfinite(d.get("mean", math.nan)):
        return "n/a"
    mark = "≈ " if d["low"] <= 0 <= d["high"] else ""
    return f"{mark}{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


def _num(v, digits: int = 3) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def _target(t: dict | None, what: str) -> str:
    """One target cell: ``met`` or ``MISSED`` and by how much."""
    if t is None:
        return "n/a"
    if what == "fvd":
        by = "" if t["met"] else f", {_num(t['missed_by_pct'], 0)}% over"
        return f"{'met' if t['met'] else 'MISSED'} ({_num(t['above_floor'], 1)} vs <= {_num(t['limit'], 1)}{by})"
    if what == "baseline":
        d = t["diff"]
        return f"{'met' if t['met'] else 'MISSED'}: {_diff(d)}" + ("" if t["met"] else
                                                                   " (tie)" if d["low"] <= 0 <= d["high"] else "")
    missed = [f"{k} {_diff(v['diff'])}" for k, v in t.items() if not v["met"]]
    return "met" if not missed else "MISSED: " + "; ".join(missed)


VERDICT = {"better": "FlexiDiT wins at this budget", "tie": "fewer steps ties at this budget",
           "worse": "fewer steps wins at this budget"}


VERDICT_WORD = {"better": "better", "tie": "tie", "worse": "worse (fewer steps wins)"}


def _verdict_of(d: dict, report: dict) -> str:
    if d["low"] <= 0 <= d["high"]:
        return "tie"
    return "better" if (d["low"] > 0) == report.get("higher_is_better", True) else "worse"


def fewer_steps_verdict(f: dict | None) -> str:
    """One plain line: the best FlexiDiT schedule within a budget against the best full@N within it."""
    if not f:
        return "n/a"
    if f.get("full") is None:
        return "no full@N fits this budget (not even one full step)"
    if f.get("source") is None:
        return f"not compared: {f['full']} was not measured"
    if f.get("verdict") is None:
        return f"no FlexiDiT schedule to compare with {f['full']}"
    word = VERDICT[f["verdict"]]
    if f["verdict"] == "tie" and f.get("ahead") == "full":
        word = "fewer steps wins or ties at this budget"
    where = "" if f["source"] == "front line" else f", both screen only ({f['n']})"
    if f.get("paired"):
        return f"{word}: {_diff(f['diff'])} vs {f['full']}{where}"
    return (f"{word}: {f['full']} {_iv(f['full_quality'])} vs this schedule's {_iv(f['quality'])}{where}, "
            f"unpaired (overlapping intervals are a tie)")


def fvd_verdict(mine: dict | None, full: dict | None) -> str:
    """The same comparison on FVD above the floor (lower is better): apart intervals decide, overlapping ones tie
    (the two FVDs are drawn on different clips, so no paired interval exists)."""
    a, b = (mine or {}).get("fvd"), (full or {}).get("fvd")
    if not a or not b:
        return ""
    ia, ib = a["fvd"], b["fvd"]
    word = ("FlexiDiT wins" if ia["high"] < ib["low"] else "fewer steps wins" if ib["high"] < ia["low"]
            else "tie (intervals overlap)")
    return (f"; on FVD - floor: {word}, {_num(a['above_floor'], 1)} vs {full['label']}'s "
            f"{_num(b['above_floor'], 1)}")


def headline_table(report: dict) -> list[str]:
    """Per budget: the best FlexiDiT schedule beside fewer full steps at equal FLOPs, the best full@N within the
    budget (fewer steps at the same budget) and full@reference, with intervals; each target as met or missed by how
    much, and the verdict against fewer steps (the README's table: ``--replot --headline-into``). A row that only
    the screen measured shows its screen numbers, marked as such."""
    s, q = report["settings"], report["quality"]
    ref = f"full@{s['steps']}"
    by = {r["label"]: r for r in report["rows"]}
    screen = {r["label"]: r for r in report.get("screen", [])}
    only = f"screen only ({s['screen_prompts']} x 1)"
    keys = sorted({k for r in report["rows"] for k in r["timings"]})
    head = ["FLOPs budget", "schedule", "FLOPs %", f"{q} [95% CI]", "FVD - floor [95% CI]"] + \
        [f"speed-up {k}" for k in keys] + [f"attributes + coherence tied with {ref}", f"FVD - floor <= 1.1x {ref}'s",
                                           "strictly better than full@N at equal FLOPs",
                                           "vs fewer steps at this budget (best full@N within it)"]
    body, notes = [], []
    for h in report.get("headline", []):
        f = h.get("fewer_steps") or {}
        if h.get("schedule") is None:
            notes.append(f"- <= {h['budget']}: no FlexiDiT schedule reached the front line")
            continue
        t = h["targets"]
        attrs = {k: v for k, v in t.items() if k not in ("fvd", "better_than_baseline")}
        for label in dict.fromkeys([h["schedule"], h.get("baseline"), f.get("full"), ref]):
            r = by.get(label)
            if r is None and label in screen and label is not None:
                sr = screen[label]
                body.append([f"<= {h['budget']}", f"{label} — {only}", f"{100 * sr['flops_fraction']:.1f}",
                             _iv(sr["quality"]), "n/a"] + ["n/a" for _ in keys] + ["", "", "", ""])
                continue
            if r is None:
                continue
            fv = r.get("fvd") or {}
            iv = fv.get("fvd")
            fvd = "n/a" if not fv else f"{_num(fv['above_floor'], 1)} [{iv['low'] - fv['floor']['mean']:.1f}, " \
                                       f"{iv['high'] - fv['floor']['mean']:.1f}]"
            mine = label == h["schedule"]
            body.append([f"<= {h['budget']}", f"**{label}**" if mine else label,
                         f"{100 * r['flops_fraction']:.1f}", _iv(r["metrics"][q]), fvd] +
                        [_num(r["speedups"].get(k), 2) for k in keys] +
                        ([_target(attrs, "attrs"), _target(t.get("fvd"), "fvd"),
                          _target(t.get("better_than_baseline"), "baseline"),
                          fewer_steps_verdict(f) + fvd_verdict(r, by.get(f.get("full")))]
                         if mine else ["", "", "", ""]))
        fvd = fvd_verdict(by.get(h["schedule"]), by.get(f.get("full")))
        notes.append(f"- <= {h['budget']}: **{h['schedule']}** against {f.get('full') or 'full@N'}, the most full "
                     f"steps within the budget, on {q}: {fewer_steps_verdict(f)}{fvd}.")
    return _table(head, body) + ([""] + notes if notes else [])


def attribute_table(report: dict) -> list[str]:
    """Every front-line row: each fidelity attribute's accuracy and the temporal coherence (jump rate,
    straightness), mean [95% CI] over prompts."""
    keys = [*ATTRIBUTES, "jump", "straightness"]
    body = [[r["label"], f"{100 * r['flops_fraction']:.1f}"] + [_iv(r["metrics"].get(k)) for k in keys]
            for r in report["rows"]]
    return _table(["schedule", "FLOPs %", *keys[:-2], "jump rate", "straightness"], body)


HEADLINE_START = "<!-- frontier headline: written by tools/benchmark.py --replot --headline-into; do not edit -->"
HEADLINE_END = "<!-- end of frontier headline -->"


def headline_block(report: dict, source: str) -> str:
    """The headline table with the lines that say what it is and where its raw file lies."""
    s = report["settings"]
    cut = f" Cut by the time limit: {'; '.join(report['truncated'])}." if report.get("truncated") else ""
    return "\n".join([
        f"Best FlexiDiT schedule per FLOPs budget, beside full@N at equal FLOPs, the most full steps within the "
        f"budget (fewer steps at the same budget; a row only the {s['screen_prompts']}-prompt screen measured is "
        f"marked screen only) and full@{s['steps']} "
        f"({report['device']}, {report.get('date', 'date not recorded')}; "
        f"{s['prompts']} held-out prompts x {s['seeds']} seeds; quality axis {report['quality']}; intervals: paired "
        f"bootstrap 95% over prompts, `≈` = tie; FVD - floor: FVD and its interval less the real-vs-real floor at "
        f"the same N). Raw: `{source}`, written by `tools/benchmark.py`.{cut}", "",
        *headline_table(report)])


def insert_headline(path: str | Path, block: str) -> None:
    """Replace the text between the headline markers of ``path`` with ``block`` (atomically)."""
    path = Path(path)
    text = path.read_text()
    if text.count(HEADLINE_START) != 1 or text.count(HEADLINE_END) != 1:
        raise ValueError(f"{path}: needs exactly one '{HEADLINE_START}' line and one '{HEADLINE_END}' line after it; "
                         f"add them where the table goes")
    before, rest = text.split(HEADLINE_START)
    _, after = rest.split(HEADLINE_END)
    atomic_write(path, lambda tmp: Path(tmp).write_text(f"{before}{HEADLINE_START}\n{block}\n{HEADLINE_END}{after}"))


def markdown(report: dict) -> str:
    s, q = report["settings"], report["quality"]
    ref = f"full@{s['steps']}"
    rows = report["rows"]
    lines = [f"# Compute-quality frontier ({report['device']})", "",
             f"checkpoint `{s['checkpoint']}`, clip {'x'.join(map(str, report['clip']))}; front line: "
             f"{s['prompts']} held-out test prompts x {s['seeds']} seeds; screen: {s['screen_prompts']} prompts x 1 "
             f"seed; guidance {s['guidance_scale']}; quality axis: {q}; FLOPs as a fraction of {ref}; LoRA "
             f"{'merged per mode' if s['merge_adapters'] else 'unmerged (peft)'}. Intervals: paired bootstrap 95% "
             f"over prompts (seeds of a prompt resampled together); `≈` marks a tie (interval contains 0).", ""]
    t = report.get("time")
    if t:
        limit = f" of its {t['limit_s']:.0f} s limit" if t["limit_s"] > 0 else ""
        lines += [f"Ran {t['elapsed_s']:.0f} s{limit}: {_num(t['s_per_full_clip'], 4)} s per generated clip of "
                  f"{ref}'s FLOPs, {_num(t['s_per_scored_clip'], 4)} s per scored clip, "
                  f"{_num(t['s_per_featurized_clip'], 4)} s per I3D clip, {_num(t['s_per_rewritten_row'], 2)} s per "
                  f"table row rewritten.", ""]
    if report.get("truncated"):
        lines += ["**Cut by the time limit:** " + "; ".join(report["truncated"]) + ".", ""]
    lines += ["## Headline", ""] + headline_table(report)
    metrics = [q] + [k for k in ("fidelity", *ATTRIBUTES, "jump", "straightness", "psnr", "ssim") if k != q]
    head = ["schedule", "family", "FLOPs %"] + [f"{k}" for k in metrics[:1]] + [f"Δ{k} vs {ref}" for k in metrics]
    body = []
    for r in rows:
        body.append([r["label"], r["family"], f"{100 * r['flops_fraction']:.1f}", _iv(r["metrics"][q])] +
                    [_diff(r["vs_reference"].get(k)) for k in metrics])
    lines += ["", f"## Front line: differences from {ref} (paired)", ""] + _table(head, body)
    lines += ["", "## Front line: fidelity per attribute and temporal coherence", "",
              "Accuracy per attribute, jump rate (share of clips whose object jumps more than twice the fastest "
              "speed between two frames, or cannot be tracked) and path straightness; mean [95% CI].", ""]
    lines += attribute_table(report)
    body = []
    for r in rows:
        if "vs_baseline" in r:
            body.append([r["label"], f"{100 * r['flops_fraction']:.1f}", r["baseline"],
                         _diff(r["vs_baseline"][q]), r["verdict_vs_baseline"]])
    if body:
        lines += ["", f"## Against fewer full steps at equal FLOPs (full@floor(FLOPs x {s['steps']}))", ""]
        lines += _table(["schedule", "FLOPs %", "baseline", f"Δ{q}", "verdict"], body)
    body = [[r["label"], f"{100 * r['flops_fraction']:.1f}", full, _diff(d), VERDICT_WORD[_verdict_of(d, report)]]
            for r in rows for full, d in r.get("vs_fewer_steps", {}).items()]
    if body:
        lines += ["", "## Against the most full steps within each budget (fewer steps at the same budget)", ""]
        lines += _table(["schedule", "FLOPs %", "full@N", f"Δ{q}", "verdict"], body)
    if any("fvd" in r for r in rows):
        body = []
        for r in rows:
            f = r.get("fvd")
            if f:
                body.append([r["label"], str(f["n_fake"]), _iv(f["fvd"], 1), _iv(f["floor"], 1),
                             _num(f["above_floor"], 1), _num(f.get("fvd_inf"), 1), _num(f.get("floor_inf"), 1),
                             _diff(f.get("vs_reference"), 1)])
        lines += ["", "## FVD (I3D, whole-frame bilinear 224, 16 frames) against its real-vs-real floor", "",
                  f"Reference: {s['fvd_real']} real test clips. Floor: as many OTHER real clips as fakes, against "
                  f"the same reference. FVD-inf: line through FVD at N/4, N/2, N clips extrapolated to 1/N = 0. "
                  f"Interval: prompts resampled, bias-corrected percentile.", ""]
        lines += _table(["schedule", "N", "FVD", "floor", "FVD - floor", "FVD-inf", "floor-inf",
                         f"ΔFVD vs {ref}"], body)
    check = report.get("fvd_check")
    if check:
        lines += ["", f"FVD response check (real clips, N = {check['n']}): floor {_iv(check['floor'], 1)}; " +
                  "; ".join(f"{k}: {_iv(v, 1)} ({'responds' if v['responds'] else 'DOES NOT respond'})"
                            for k, v in check.items() if k.endswith("swapped"))]
    keys = sorted({k for r in rows for k in r["timings"]})
    if keys:
        body = [[r["label"], f"{100 * r['flops_fraction']:.1f}"] +
                [f"{_num(r['timings'].get(k), 4)} ({_num(r['speedups'].get(k), 2)}x)" for k in keys] +
                [", ".join(k for k, v in r["front"].items() if v) or "-"] for r in rows]
        lines += ["", "## Wall-clock (s/video, speed-up vs " + ref + "; round-robin, median of repeats)", ""]
        lines += _table(["schedule", "FLOPs %", *keys, "on the Pareto front of"], body)
    if report.get("screen"):
        body = [[r["label"], r["family"], f"{100 * r['flops_fraction']:.1f}", _iv(r["quality"]),
                 _diff(r["vs_reference"]), "yes" if r["front"] else ""]
                for r in sorted(report["screen"], key=lambda r: r["flops_fraction"])]
        lines += ["", f"## Screen ({s['screen_prompts']} prompts x 1 seed; {len(body)} candidates)", ""]
        lines += _table(["schedule", "family", "FLOPs %", q, f"Δ vs {ref}", "front"], body)
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q, rows = report["quality"], report["rows"]
    keys = sorted({k for r in rows for k in r["timings"] if r["timings"].get(k)})
    panels = [("flops", "FLOPs (fraction of full)")] + [(k, f"seconds per video, {k}") for k in keys]
    fvd = any("fvd" in r for r in rows)
    fig, axes = plt.subplots(1, len(panels) + fvd, figsize=(5 * (len(panels) + fvd), 4.2), squeeze=False)
    axes = axes[0]
    families = list(dict.fromkeys([BASELINE] + [r["family"] for r in rows] +
                                  [r["family"] for r in report.get("screen", [])]))
    colours = {f: f"C{i}" for i, f in enumerate(families)}

    def cost(r, key):
        return r["flops_fraction"] if key == "flops" else r["timings"].get(key)

    for ax, (key, label) in zip(axes, panels):
        if key == "flops":
            for r in report.get("screen", []):
                ax.plot(r["flops_fraction"], r["quality"]["mean"], ".", color=colours[r["family"]], alpha=0.3)
        for fam in families:
            # by cost only: two rows of one family can cost the same (then the tuple would compare the row dicts)
            pts = sorted(((cost(r, key), r) for r in rows if r["family"] == fam and cost(r, key)),
                         key=lambda p: p[0])
            for x, r in pts:
                m, tie = r["metrics"][q], r["vs_reference"].get(q)
                hollow = tie is not None and tie["low"] <= 0 <= tie["high"]
                ax.errorbar(x, m["mean"], yerr=[[m["mean"] - m["low"]], [m["high"] - m["mean"]]], fmt="o",
                            color=colours[fam], mfc="none" if hollow else colours[fam], capsize=2)
            if fam == BASELINE and pts:  # fewer full steps: the baseline curve
                ax.plot([x for x, _ in pts], [r["metrics"][q]["mean"] for _, r in pts], "-", color=colours[fam])
        front = sorted((cost(r, key), r["metrics"][q]["mean"]) for r in rows if r["front"].get(key) and cost(r, key))
        if front:
            ax.step([x for x, _ in front], [y for _, y in front], "k--", where="post", lw=0.8, label="Pareto front")
        ax.set_xlabel(label)
        ax.set_ylabel(q)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[f], label=f) for f in families]
    handles.append(plt.Line2D([], [], marker="o", ls="", mfc="none", color="k", label="tie with full (hollow)"))
    axes[0].legend(handles=handles, fontsize=7)
    if fvd:
        ax = axes[-1]
        for r in rows:
            f = r.get("fvd")
            if f:
                tie = f.get("vs_reference")
                hollow = tie is not None and tie["low"] <= 0 <= tie["high"]
                ax.errorbar(r["flops_fraction"], f["fvd"]["mean"], fmt="o", ms=7, color=colours[r["family"]],
                            mfc="white" if hollow else colours[r["family"]], capsize=2, zorder=3,
                            yerr=[[f["fvd"]["mean"] - f["fvd"]["low"]], [f["fvd"]["high"] - f["fvd"]["mean"]]])
        floor = next((r["fvd"]["floor"]["mean"] for r in rows if r.get("fvd")), None)
        if floor is not None:
            ax.axhline(floor, color="grey", ls=":", label="real-vs-real floor, same N")
            ax.legend(fontsize=7)
        ax.set_xlabel("FLOPs (fraction of full)")
        ax.set_ylabel("FVD (lower is better)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"flexivid frontier ({report['device']}); error bars: bootstrap 95%")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
