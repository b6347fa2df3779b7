"""Markdown tables from ``tools/motion_oracle.py``'s JSONL files (the figures of docs/results.md, recomputed).

    python tools/motion_oracle_report.py docs/results/motion_oracle/*.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flexivid.eval.stats import mean_ci  # noqa: E402


def fmt(d: dict, digits: int = 3, scale: float = 1.0) -> str:
    return f"{d['mean'] * scale:.{digits}f} [{d['low'] * scale:.{digits}f}, {d['high'] * scale:.{digits}f}]"


def pct(d: dict) -> str:
    return f"{d['mean']:.1f}% [{d['low']:.1f}, {d['high']:.1f}]"


def value_tables(rows: list[dict]) -> list[str]:
    """The value of direction and speed per t (x 1e3 for losses), then the equivariant predictors' extra loss."""
    out = []
    has_model = any("loss_model" in r for r in rows)
    head = "| t | oracle loss, full caption (x1e-3) | + without direction | + without speed | + without both |"
    out += [head + (" shipped model's loss (x1e-3) |" if has_model else ""), "|---" * (5 + has_model) + "|"]
    for r in rows:
        cells = [str(r["t"]), fmt(r["loss_full"], 3, 1e3)]
        for k in ("no_direction", "no_speed", "neither"):
            cells.append(f"{fmt(r[f'extra_{k}'], 3, 1e3)} ({pct(r[f'extra_{k}_pct'])})" if f"extra_{k}" in r else "-")
        if has_model:
            cells.append(fmt(r["loss_model"], 3, 1e3) if "loss_model" in r else "-")
        out.append("| " + " | ".join(cells) + " |")
    if any("no_position" in r["per_clip"] for r in rows):
        out += ["", "| t | + reversal-equivariant | + translation-equivariant | direction's value to a "
                "translation-equivariant predictor | speed's value to it |", "|---|---|---|---|---|"]
        for r in rows:
            pc = {k: np.array(v) for k, v in r["per_clip"].items()}
            cells = [str(r["t"]), pct(r["extra_reversal_pct"]) if "extra_reversal_pct" in r else "-",
                     pct(r["extra_no_position_pct"])]
            for k in ("no_position_no_direction", "no_position_no_speed"):
                if k in pc:
                    gain = mean_ci(pc[k] - pc["no_position"]).as_dict()
                    base = pc["no_position"].mean()
                    cells.append(f"{100 * gain['mean'] / base:.1f}% [{100 * gain['low'] / base:.1f}, "
                                 f"{100 * gain['high'] / base:.1f}]")
                else:
                    cells.append("-")
            out.append("| " + " | ".join(cells) + " |")
    return out


def sample_table(rows: list[dict]) -> list[str]:
    out = ["| told | when | prior | direction | speed | jump rate | straightness |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        prior = "anywhere (translation-equivariant)" if r.get("anywhere") else "plan_path"
        out.append(f"| {r['attribute']} | {r['variant']} | {prior} | {fmt(r['direction'])} | {fmt(r['speed'])} | "
                   f"{fmt(r['jump'])} | {fmt(r['straightness'])} |")
    return out


def classify_table(rows: list[dict]) -> list[str]:
    out = ["| t | clips | model: accuracy | model: axis accuracy | model: sign accuracy (true vs reversed) | "
           "model: margin (% of its loss) | model: loss (x1e-3) | oracle: accuracy | oracle: loss (x1e-3) | "
           "oracle posterior: accuracy |", "|---" * 10 + "|"]
    for r in rows:
        cells = [str(r["t"]), str(r["clips"])]
        cells += [fmt(r["model_accuracy"], 2), fmt(r["model_axis_accuracy"], 2), fmt(r["model_sign_accuracy"], 2),
                  pct(r["model_margin_pct"]), fmt(r["model_loss_true"], 3, 1e3)] \
            if "model_accuracy" in r else ["-"] * 5
        cells += [fmt(r["oracle_accuracy"], 2), fmt(r["oracle_loss_true"], 3, 1e3),
                  fmt(r["oracle_posterior_accuracy"], 2)] if "oracle_accuracy" in r else ["-", "-", "-"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="JSONL files written by tools/motion_oracle.py")
    args = ap.parse_args(argv)
    for path in args.files:
        if not Path(path).is_file():
            print(f"error: no such file {path}; pass JSONL files written by tools/motion_oracle.py", file=sys.stderr)
            return 2
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        kinds = {r.get("experiment") for r in rows}
        if len(kinds) != 1 or not kinds <= {"value", "sample", "classify"}:
            print(f"error: {path} is not one experiment of tools/motion_oracle.py (found {sorted(map(str, kinds))})",
                  file=sys.stderr)
            return 2
        table = {"value": value_tables, "sample": sample_table, "classify": classify_table}[kinds.pop()](rows)
        print(f"\n{path}\n\n" + "\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
