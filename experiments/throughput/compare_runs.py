"""Per-image differences between two run folders of the same recipe and images (e.g. batch 8 against batch 1,
or 1 thread against 2): real bpp and top-1 of each task-aware map.

    python experiments/throughput/compare_runs.py RUN_A RUN_B [--metric top1/tf_efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(run: Path) -> dict:
    out = {}
    for p in run.glob("records*.jsonl"):
        for line in p.read_text().splitlines():
            r = json.loads(line)
            out[(r["image"], r["method"], r["setting"])] = r
    return out


def compare(a: Path, b: Path, metric: str = "top1/tf_efficientnet_lite0") -> dict:
    ra, rb = load(a), load(b)
    keys = sorted(set(ra) & set(rb))
    diffs = [100 * (rb[k]["bpp"] / ra[k]["bpp"] - 1) for k in keys]
    pred = "pred/" + metric.split("/", 1)[1] if metric.startswith("top1/") else None
    return {
        "a": str(a),
        "b": str(b),
        "n": len(keys),
        "bpp_within_1_percent": sum(abs(d) <= 1 for d in diffs),
        "bpp_identical": sum(ra[k]["bpp"] == rb[k]["bpp"] for k in keys),
        "bpp_max_abs_diff_percent": round(max(map(abs, diffs)), 3) if diffs else None,
        "bpp_median_abs_diff_percent": round(sorted(map(abs, diffs))[len(diffs) // 2], 3) if diffs else None,
        "metric_equal": sum(ra[k][metric] == rb[k][metric] for k in keys),
        # the predicted class itself (a correct/incorrect match can hide two different wrong classes)
        "pred_equal": sum(ra[k].get(pred) == rb[k].get(pred) for k in keys) if pred else None,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--metric", default="top1/tf_efficientnet_lite0")
    a = ap.parse_args()
    print(json.dumps(compare(Path(a.run_a), Path(a.run_b), a.metric), indent=2))
