"""Compare task results of several codec weights: the same recipe on the same images, one report folder each.

    python experiments/compare_task_weights.py --metric cer/original --metric cer/gt \\
        "stage 3=results/sroie_text" "stage 7=results/sroie_text/stage7" > results/sroie_text/compare_weights.md

Each folder is a `taskcomp report` output (`table.csv`: the mean per method and setting). Per metric it prints
  1. the metric of each method's mean curve at fixed real bpp (linear interpolation, blank outside the curve's
     own bpp range), per weights;
  2. every non-uniform point (task-aware, the task's baseline map, JPEG, WebP) against the same weights' uniform
     curve: uniform's metric at the point's bpp, and the bpp uniform needs for the point's metric (the saving
     is positive when the point needs fewer bits than uniform maps of that codec).
Uniform curves are made monotone first, as in `taskcomp report`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from taskcomp.runner.report import compare_to_uniform, higher_is_better


def at(df: pd.DataFrame, method: str, metric: str, bpp: float) -> str:
    d = df[df["method"] == method].sort_values("bpp")
    if len(d) < 2 or not d["bpp"].min() <= bpp <= d["bpp"].max():
        return ""
    return f"{np.interp(bpp, d['bpp'], d[metric]):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="LABEL=REPORT_FOLDER")
    ap.add_argument("--metric", action="append", required=True, help="metric column (repeatable)")
    ap.add_argument("--grid", type=float, nargs="+", default=[0.2, 0.25, 0.3, 0.4, 0.5, 0.7])
    a = ap.parse_args()
    tables = {}
    for arg in a.runs:
        label, _, folder = arg.partition("=")
        if not folder or not (Path(folder) / "table.csv").is_file():
            ap.error(f"{arg!r}: expected LABEL=FOLDER with a table.csv (a `taskcomp report` output)")
        tables[label] = pd.read_csv(Path(folder) / "table.csv")
    methods = [
        m
        for m in ("uniform", "task_aware", "box_mask", "saliency", "gradcam", "jpeg", "webp")
        if any(m in set(t["method"]) for t in tables.values())
    ]

    for metric in a.metric:
        better = "higher" if higher_is_better(metric) else "lower"
        print(f"## {metric} ({better} is better)")
        print()
        print(f"Mean {metric} at fixed real bpp:")
        print()
        print("| method | weights | images | bpp range | " + " | ".join(f"@ {b:g}" for b in a.grid) + " |")
        print("|---" * (4 + len(a.grid)) + "|")
        for method in methods:
            for label, t in tables.items():
                d = t[t["method"] == method]
                if d.empty:
                    continue
                cells = [at(t, method, metric, b) for b in a.grid]
                print(
                    f"| {method} | {label} | {int(d['n_images'].max())} | {d['bpp'].min():.3f}-{d['bpp'].max():.3f} | "
                    + " | ".join(cells)
                    + " |"
                )
        print()
        print(f"Each point against the same weights' uniform curve ({metric}):")
        print()
        print(
            "| weights | method | setting | bpp | metric | uniform at same bpp | uniform bpp for same metric | saving |"
        )
        print("|---" * 8 + "|")
        for method in (m for m in methods if m != "uniform"):
            for label, t in tables.items():
                for p in compare_to_uniform(t, metric, method=method).get("points", []):
                    u_at = f"{p['uniform_at_same_bpp']:.3f}" if "uniform_at_same_bpp" in p else "outside"
                    u_bpp = f"{p['uniform_bpp_at_same_metric']:.3f}" if "uniform_bpp_at_same_metric" in p else "outside"
                    saving = f"{p['bpp_saving_percent']:+.1f}%" if "bpp_saving_percent" in p else ""
                    print(
                        f"| {label} | {method} | {p['setting']} | {p['bpp']:.3f} | {p[metric]:.3f} | {u_at} | "
                        f"{u_bpp} | {saving} |"
                    )
        print()


if __name__ == "__main__":
    main()
