"""The frontier's numbers and what is written from them: intervals and ties, FVD against its floor, Pareto fronts,
the headline table, ``frontier.json`` / ``frontier.md`` / ``frontier.png`` / ``samples.gif`` and the checkpoint's
``calibration.json``. Everything here is a pure function of the measurements (``--replot`` re-renders from JSON).
"""
from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..calibration import Calibration, Entry
from ..data.synthetic import ATTRIBUTES
from .frontier_search import ADAPTIVE, BASELINE, baseline_for, best_full_within, pareto_front
from .stats import mean_ci, paired_diff_ci

FVD_TOLERANCE = 0.10  # headline target: FVD above the floor within 10% of full@reference's
COHERENCE = {"jump": False, "straightness": True}  # per-clip temporal coherence metric -> higher is better


def _tie(iv: dict) -> bool:
    return iv["low"] <= 0.0 <= iv["high"]


def _verdict(iv: dict, higher_is_better: bool) -> str:
    if _tie(iv):
        return "tie"
    return "better" if (iv["low"] > 0) == higher_is_better else "worse"


def _fvd(m, ref_m, real: dict, reference, resamples: int) -> dict:
    from .fvd_stats import fvd_by_size, fvd_infinity, fvd_interval, paired_fvd_diff

    n = m.features.shape[0] * m.features.shape[1]
    sizes = sorted({max(2, n // 4), max(2, n // 2), n})
    if ("floor", n) not in real:  # the floor is the same for every row
        floor = real["floor"][:n]
        real["floor", n] = (fvd_by_size(reference, floor, sizes), fvd_interval(reference, floor[:, None, :], resamples))
    floor_by, floor_iv = real["floor", n]
    by = fvd_by_size(reference, m.features, sizes)
    iv = fvd_interval(reference, m.features, resamples)
    out = {"fvd": iv.as_dict(), "n_fake": n, "floor": floor_iv.as_dict(), "above_floor": iv.mean - floor_iv.mean,
           "by_size": by, "floor_by_size": floor_by}
    if len(sizes) >= 2:
        out["fvd_inf"], out["floor_inf"] = fvd_infinity(by)["fvd_inf"], fvd_infinity(floor_by)["fvd_inf"]
    if ref_m is not None and ref_m is not m:
        out["vs_reference"] = paired_fvd_diff(reference, m.features, ref_m.features, resamples).as_dict()
    return out


def fvd_check(real: dict, reference, n: int, resamples: int) -> dict:
    """Does FVD see what prompts control? Real clips with direction / speed swapped vs real clips, same N."""
    from .fvd_stats import fvd_interval

    cached = real.get(("floor", n))
    floor = (cached[1] if cached else fvd_interval(reference, real["floor"][:n, None, :], resamples)).as_dict()
    out = {"n": n, "floor": floor}
    for key, feats in list(real.items()):
        if isinstance(key, str) and key.endswith("swapped"):
            iv = fvd_interval(reference, feats[:n, None, :], resamples).as_dict()
            out[key] = {**iv, "responds": iv["low"] > floor["high"]}
    return out


def _flops_from(family: str) -> str:
    """Where a row's FLOPs come from: its schedule, or (adaptive: chosen per sample) the mean its samples ran."""
    return "measured mean over the samples" if family == ADAPTIVE else "schedule"


def summarize(s, fr, screened: list, final: list, real: dict | None) -> dict:
    """The report dict (``frontier.json``) from the screen and front-line measurements."""
    from .frontier import QUALITY, intervals

    hib = QUALITY[s.quality]
    ref_final = next((m for m in final if m.candidate.label == f"full@{s.steps}"), None)
    reference = None
    if real is not None:
        from .fvd_stats import FrechetReference

        reference = FrechetReference(real["reference"], device="cuda" if torch.cuda.is_available() else "cpu")
    by_label = {m.candidate.label: m for m in final}
    rows = []
    for m in final:
        c = m.candidate
        row = {"label": c.label, "family": c.family, "spec": c.spec, "steps": c.steps, "guidance": c.guidance,
               "flops_fraction": m.flops, "n_prompts": m.scores["fidelity"].shape[0],
               "n_seeds": m.scores["fidelity"].shape[1], "timings": m.timings, "gen_seconds": m.seconds,
               "flops_from": _flops_from(c.family)}
        key = ("intervals", ref_final is not None)  # bootstraps: once per row, not once per rewrite
        iv = m.cache[key] = m.cache.get(key) or intervals(m, ref_final)
        row["metrics"], row["vs_reference"] = iv["metrics"], iv.get("vs", {})
        base = baseline_for(m.flops, s.steps).label
        if c.spec != "full" and base in by_label:
            row["baseline"] = base
            if "vs_baseline" not in m.cache:
                m.cache["vs_baseline"] = {k: paired_diff_ci(v, by_label[base].scores[k]).as_dict()
                                          for k, v in m.scores.items()}
            row["vs_baseline"] = m.cache["vs_baseline"]
            row["verdict_vs_baseline"] = _verdict(row["vs_baseline"][s.quality], hib)
        if c.spec != "full":  # against fewer full steps at each headline budget it fits in (paired, quality axis)
            for b in s.budgets:
                full = getattr(best_full_within(b, s.steps), "label", None)
                if m.flops <= b + 1e-9 and full in by_label and full != row.get("baseline"):
                    key = ("vs_fewer_steps", full)
                    if key not in m.cache:
                        m.cache[key] = paired_diff_ci(m.scores[s.quality], by_label[full].scores[s.quality]).as_dict()
                    row.setdefault("vs_fewer_steps", {})[full] = m.cache[key]
        if reference is not None and m.features is not None:
            if m.fvd is None:  # the bootstrap is the slow part: once per row, not once per rewrite
                m.fvd = _fvd(m, ref_final, real, reference, s.fvd_resamples)
            row["fvd"] = m.fvd
        rows.append(row)
    _speedups(rows, f"full@{s.steps}")
    for key in ["flops"] + sorted({k for r in rows for k in r["timings"]}):
        cost = [r["flops_fraction"] if key == "flops" else r["timings"].get(key) for r in rows]
        front = set(pareto_front(cost, [r["metrics"][s.quality]["mean"] for r in rows], hib))
        for i, r in enumerate(rows):
            r.setdefault("front", {})[key] = i in front
    screen = []
    ref_screen = next((m for m in screened if m.candidate.label == f"full@{s.steps}"), None)
    for m in screened:
        q = mean_ci(m.scores[s.quality]).as_dict()
        d = paired_diff_ci(m.scores[s.quality], ref_screen.scores[s.quality]).as_dict() if ref_screen else None
        with np.errstate(invalid="ignore"):  # per prompt (seed mean): paired comparisons from the JSON alone
            per_prompt = np.nanmean(m.scores[s.quality], axis=1)
        screen.append({"label": m.candidate.label, "family": m.candidate.family, "flops_fraction": m.flops,
                       "flops_from": _flops_from(m.candidate.family),
                       "quality": q, "vs_reference": d, "scores": [round(float(v), 5) for v in per_prompt]})
    front = set(pareto_front([r["flops_fraction"] for r in screen], [r["quality"]["mean"] for r in screen], hib))
    for i, r in enumerate(screen):
        r["front"] = i in front
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() and fr.cuda else "CPU"
    b = fr.budget
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    report = {"device": dev, "date": date, "settings": asdict(s), "clip": list(fr.clip), "quality": s.quality,
              "higher_is_better": hib, "rows": rows, "screen": screen, "truncated": list(fr.truncated),
              "time": {"elapsed_s": b.elapsed(), "limit_s": b.limit,  # what the estimates of eval.frontier_budget used
                       "s_per_full_clip": b.generation.per, "s_per_scored_clip": b.scoring.per,
                       "s_per_featurized_clip": b.features.per, "s_per_rewritten_row": b.rewrite.per}}
    if real is not None and reference is not None:
        if "fvd_check" not in real:
            real["fvd_check"] = fvd_check(real, reference, s.prompts * s.seeds, s.fvd_resamples)
        report["fvd_check"] = real["fvd_check"]
    report["headline"] = headline(rows, s, screen)
    return report


def _speedups(rows: list[dict], ref_label: str) -> None:
    ref = next((r for r in rows if r["label"] == ref_label), None)
    for r in rows:
        r["speedups"] = {k: (ref["timings"][k] / t if ref and t and ref["timings"].get(k) else None)
                         for k, t in r["timings"].items()}


def headline(rows: list[dict], s, screen: list[dict] | None = None) -> list[dict]:
    """Per budget B: the best FlexiDiT front-line schedule within B, full@reference, full@N at equal FLOPs, and each
    target (every attribute and coherence metric tied with full@reference or better; FVD above floor within 10% of
    full@reference's; strictly better than full@N at equal FLOPs) as met or missed by how much; and the comparison
    with the obvious alternative, the best full@N within B (``fewer_steps``). ``s``: the settings (or their dict
    from ``frontier.json``); ``screen``: the report's screen rows, used where full@N never reached the front line."""
    from .frontier import QUALITY

    if isinstance(s, dict):
        from types import SimpleNamespace

        s = SimpleNamespace(**s)
    hib = QUALITY[s.quality]
    ref = next((r for r in rows if r["label"] == f"full@{s.steps}"), None)
    out = []
    for b in s.budgets:
        flexi = [r for r in rows if r["family"] != BASELINE and r["flops_fraction"] <= b + 1e-9]
        if not flexi or ref is None:
            out.append({"budget": b, "schedule": None,
                        "fewer_steps": fewer_steps(None, b, rows, screen or [], s, hib)})
            continue
        best = max(flexi, key=lambda r: ((1 if hib else -1) * r["metrics"][s.quality]["mean"], -r["flops_fraction"]))
        targets = {}
        for k, higher in [*((a, True) for a in ATTRIBUTES), *COHERENCE.items()]:
            d = best["vs_reference"].get(k)
            if d is not None and math.isfinite(d["mean"]):
                targets[k] = {"met": d["high"] >= 0.0 if higher else d["low"] <= 0.0, "diff": d}
        if "fvd" in best and "fvd" in ref:
            mine, theirs = best["fvd"]["above_floor"], ref["fvd"]["above_floor"]
            limit = (1 + FVD_TOLERANCE) * theirs
            targets["fvd"] = {"met": mine <= limit, "above_floor": mine, "limit": limit,
                              "missed_by_pct": 100 * (mine / theirs - 1) if theirs > 0 else None,
                              "diff": best["fvd"].get("vs_reference")}
        if "vs_baseline" in best:
            d = best["vs_baseline"][s.quality]
            targets["better_than_baseline"] = {"met": (d["low"] > 0) if hib else (d["high"] < 0), "diff": d,
                                               "baseline": best["baseline"]}
        out.append({"budget": b, "schedule": best["label"], "flops_fraction": best["flops_fraction"],
                    "baseline": best.get("baseline"), "targets": targets,
                    "fewer_steps": fewer_steps(best, b, rows, screen or [], s, hib)})
    return out


def fewer_steps(best: dict | None, budget: float, rows: list[dict], screen: list[dict], s, hib: bool) -> dict:
    """The best FlexiDiT schedule within ``budget`` against the best full@N within it (largest N whose FLOPs fit).

    Paired on the front line when both rows ran there; else on the screen, where both were screened, marked
    ``screen only``: paired per prompt when the JSON has the screen's per-prompt scores, else by their separate
    intervals (``paired`` False: overlapping intervals are a tie). ``verdict`` is the FlexiDiT schedule's: better,
    tie or worse; ``ahead``: which point estimate is higher (the full@N's on a tie is worth saying)."""
    within = best_full_within(budget, s.steps)
    if within is None:
        return {"full": None, "source": None, "verdict": None}
    label = within.label
    out = {"full": label, "source": None, "verdict": None}
    full = next((r for r in rows if r["label"] == label), None)
    if best is None:
        if full is not None:
            out.update(source="front line", full_quality=full["metrics"][s.quality])
        return out
    if full is not None:
        d = best.get("vs_fewer_steps", {}).get(label) or \
            (best["vs_baseline"][s.quality] if best.get("baseline") == label and "vs_baseline" in best else None)
        if d is not None:
            out.update(source="front line", paired=True, diff=d, verdict=_verdict(d, hib),
                       full_quality=full["metrics"][s.quality], quality=best["metrics"][s.quality])
            out["ahead"] = _ahead(d["mean"], hib)
            return out
    by = {r["label"]: r for r in screen}
    theirs, mine = by.get(label), by.get(best["label"])
    if theirs is None or mine is None:
        return out
    out.update(source="screen", n=f"{s.screen_prompts} x 1", full_quality=theirs["quality"], quality=mine["quality"])
    if theirs.get("scores") and mine.get("scores"):
        from .stats import paired_diff_ci

        d = paired_diff_ci(np.array(mine["scores"], float), np.array(theirs["scores"], float)).as_dict()
        out.update(paired=True, diff=d, verdict=_verdict(d, hib))
        out["ahead"] = _ahead(d["mean"], hib)
        return out
    a, f = mine["quality"], theirs["quality"]
    better = a["low"] > f["high"] if hib else a["high"] < f["low"]
    worse = a["high"] < f["low"] if hib else a["low"] > f["high"]
    out.update(paired=False, verdict="better" if better else "worse" if worse else "tie",
               ahead=_ahead(a["mean"] - f["mean"], hib))
    return out


def _ahead(diff: float, higher_is_better: bool) -> str:
    """Whose point estimate is better, from the FlexiDiT schedule's difference to full@N."""
    if diff == 0:
        return "neither"
    return "flexidit" if (diff > 0) == higher_is_better else "full"


def calibration_of(report: dict, final: list, s) -> Calibration:
    """The table ``--compute`` reads: one entry per front-line schedule."""
    entries = []
    for r, m in zip(report["rows"], final):
        q = r["metrics"][s.quality]
        with np.errstate(invalid="ignore"):
            per_prompt = np.nanmean(m.scores[s.quality], axis=1)
        times = {}
        for key, t in r["timings"].items():
            bs, kind = key.split("_")
            if t is not None and (kind == "compiled" or bs not in times):
                times[bs] = t
        f = r.get("fvd")  # FVD - floor and its interval, as the headline shows them: --compute --quality fvd
        fvd = (f["above_floor"], f["fvd"]["low"] - f["floor"]["mean"], f["fvd"]["high"] - f["floor"]["mean"]) \
            if f else (None, None, None)
        entries.append(Entry(r["label"], r["spec"], r["steps"], r["guidance"] or s.guidance_scale,
                             r["flops_fraction"], q["mean"], q["low"], q["high"], times,
                             [round(float(v), 5) for v in per_prompt], *fvd))
    return Calibration(s.quality, report["higher_is_better"], s.steps, report["clip"], entries, report["device"],
                       f"tools/benchmark.py --checkpoint {s.checkpoint}")


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_outputs(report: dict, s, final: list, fr, figures: bool = True) -> None:
    """``frontier.json``, ``frontier.md`` and the calibration table; with ``figures`` also ``frontier.png`` and
    ``samples.gif`` (the run's intermediate rewrites skip them: ``--replot`` draws the plot from the JSON)."""
    from ..video_io import to_uint8, write_video

    out = Path(s.output)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / "frontier.json", json.dumps(report, indent=1, default=float))
    render(report, out, figures)
    samples = [m.samples for m in final if m.samples is not None]
    if samples and figures:
        grid = torch.cat([torch.cat(list(v), dim=-1) for v in samples], dim=-2)  # (3, T, rows*H, 4*W)
        write_video(out / "samples.gif", to_uint8(grid), fps=fr.pipe.defaults.fps)
    if s.calibration and final:
        path = calibration_of(report, final, s).save(s.calibration_dir or s.checkpoint)
        fr.log(f"wrote {path}")


def render(report: dict, out: Path, figure: bool = True) -> None:
    """``frontier.md`` (and ``frontier.png``) from the report dict."""
    from .frontier_render import markdown, plot

    _atomic_text(out / "frontier.md", markdown(report))
    if figure:
        plot(report, out / "frontier.png")


def rewrite_from_json(out_dir: str | Path, headline_into: tuple[str, ...] = ()) -> None:
    """Re-render ``frontier.md`` and ``frontier.png`` from ``frontier.json`` (no GPU needed), and write its headline
    table between the markers of each file in ``headline_into`` (``frontier_render.insert_headline``)."""
    from .frontier_render import headline_block, insert_headline

    out = Path(out_dir)
    path = out / "frontier.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run the frontier first (tools/benchmark.py --output {out_dir})")
    report = json.loads(path.read_text())
    for target in headline_into:  # checked first: a bad target leaves every file as it was
        if not Path(target).is_file():
            raise FileNotFoundError(f"--headline-into {target}: no such file")
    # the headline is a pure function of rows and screen: recomputed, so a replot applies today's headline logic
    report["headline"] = headline(report["rows"], report["settings"], report.get("screen"))
    render(report, out)
    block = headline_block(report, str(path))
    for target in headline_into:
        insert_headline(target, block)
