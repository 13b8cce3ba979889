"""Compare codec weights on the same 200 ImageNet-sample images (same recipe, same maps protocol).

    python experiments/imagenet_classification/compare_weights.py [LABEL=REPORT_DIR ...] > compare_weights.md

Each REPORT_DIR is a `taskcomp report` output (`table.csv`, `summary.json`). Default: stage 3
(results/imagenet_classification/), stage 4 (`stage4/` there) and stage 6 (`stage6/` there). Prints, for the
uniform and task-aware curves of each, top-1 (%) of each classifier interpolated linearly at fixed real bpp, only
inside each curve's own bpp range (blank outside it), then each weights' task-aware points against the uniform
curve at the same real bpp.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

here = Path(__file__).resolve().parents[2] / "results" / "imagenet_classification"
args = sys.argv[1:] or [f"stage 3={here}", f"stage 4={here / 'stage4'}", f"stage 6={here / 'stage6'}"]
runs = {label: Path(folder) for label, folder in (a.split("=", 1) for a in args)}
tables = {label: pd.read_csv(folder / "table.csv") for label, folder in runs.items()}
first = next(iter(tables.values()))
models = [c.split("/", 1)[1] for c in first.columns if c.startswith("top1/")]
grid = [0.15, 0.2, 0.25, 0.3, 0.4]


def at(df: pd.DataFrame, method: str, col: str, bpp: float) -> str:
    d = df[df["method"] == method].sort_values("bpp")
    if d.empty or not d["bpp"].min() <= bpp <= d["bpp"].max():
        return ""
    return f"{100 * np.interp(bpp, d['bpp'], d[col]):.1f}"


print(f"Top-1 (%) of {models[0]} (the model the maps are made for) at fixed real bpp:")
print()
print("| method | weights | n | bpp range | " + " | ".join(f"@ {b}" for b in grid) + " |")
print("|---" * (4 + len(grid)) + "|")
for method in ("uniform", "task_aware"):
    for name, df in tables.items():
        d = df[df["method"] == method]
        cells = [at(df, method, f"top1/{models[0]}", b) for b in grid]
        print(
            f"| {method} | {name} | {int(d['n_images'].iloc[0])} | {d['bpp'].min():.3f}-{d['bpp'].max():.3f} | "
            + " | ".join(cells)
            + " |"
        )
print()
print(f"Cross-model top-1 (%) at the same bpp grid ({' / '.join(models[1:])}):")
print()
print("| method | weights | " + " | ".join(str(b) for b in grid) + " |")
print("|---" * (2 + len(grid)) + "|")
for method in ("uniform", "task_aware"):
    for name, df in tables.items():
        cells = [" / ".join(at(df, method, f"top1/{m}", b) for m in models[1:]).strip(" /") for b in grid]
        print(f"| {method} | {name} | " + " | ".join(cells) + " |")
print()
print("Task-aware vs uniform at the task-aware point's real bpp (uniform interpolated; from each `summary.json`):")
print()
print("| weights | lambda | bpp | " + " | ".join(models) + " |")
print("|---" * (3 + len(models)) + "|")
for name, folder in runs.items():
    comparisons = json.loads((folder / "summary.json").read_text())["comparisons"]
    by_model = {
        c["metric"].split("/", 1)[1]: c
        for c in comparisons.values()
        if c["metric"].startswith("top1/") and c["points"] and c["points"][0]["setting"].startswith("lambda")
    }
    for i, point in enumerate(by_model[models[0]]["points"]):
        cells = []
        for m in models:
            p = by_model[m]["points"][i]
            cells.append(
                f"{100 * p[f'top1/{m}']:.1f} vs {100 * p['uniform_at_same_bpp']:.1f} ({p['gain_points']:+.1f})"
            )
        print(f"| {name} | {point['setting'].split('=', 1)[1]} | {point['bpp']:.3f} | " + " | ".join(cells) + " |")
