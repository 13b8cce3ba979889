"""Stage-3 against stage-4 codec weights on the same 200 ImageNet-sample images (same recipe, same maps protocol).

    python results/imagenet_classification/compare_weights.py [OLD_TABLE] [NEW_TABLE] > compare_weights.md

Reads the two `taskcomp report` tables (default: `table.csv` here, made with stage-3 weights, and
`stage4/table.csv`). For the uniform and task-aware curves of each, top-1 (%) of each classifier interpolated
linearly at fixed real bpp, only inside each curve's own bpp range (blank outside it).
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

here = Path(__file__).parent
old = pd.read_csv(sys.argv[1] if len(sys.argv) > 1 else here / "table.csv")
new = pd.read_csv(sys.argv[2] if len(sys.argv) > 2 else here / "stage4" / "table.csv")
models = [c.split("/", 1)[1] for c in old.columns if c.startswith("top1/")]
grid = [0.15, 0.2, 0.25, 0.3, 0.4]


def at(df: pd.DataFrame, method: str, col: str, bpp: float) -> str:
    d = df[df["method"] == method].sort_values("bpp")
    if d.empty or not d["bpp"].min() <= bpp <= d["bpp"].max():
        return ""
    return f"{100 * np.interp(bpp, d['bpp'], d[col]):.1f}"


print("| method | weights | n | bpp range | " + " | ".join(f"lite0 @ {b}" for b in grid) + " |")
print("|---" * (4 + len(grid)) + "|")
for method in ("uniform", "task_aware"):
    for name, df in (("stage 3", old), ("stage 4", new)):
        d = df[df["method"] == method]
        cells = [at(df, method, "top1/tf_efficientnet_lite0", b) for b in grid]
        print(f"| {method} | {name} | {int(d['n_images'].iloc[0])} | {d['bpp'].min():.3f}-{d['bpp'].max():.3f} | "
              + " | ".join(cells) + " |")
print()
print("Cross-model top-1 (%) at the same bpp grid (Lite1 / Lite2):")
print()
print("| method | weights | " + " | ".join(str(b) for b in grid) + " |")
print("|---" * (2 + len(grid)) + "|")
for method in ("uniform", "task_aware"):
    for name, df in (("stage 3", old), ("stage 4", new)):
        cells = [" / ".join(at(df, method, f"top1/{m}", b) for m in models[1:]).strip(" /") for b in grid]
        print(f"| {method} | {name} | " + " | ".join(cells) + " |")
