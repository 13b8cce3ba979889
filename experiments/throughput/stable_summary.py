"""Batch and thread stability of the stable optimiser setting (keep: last, lr_schedule: cosine) against the
recipe's default (keep: best, constant lr), from the run folders in runs/; adds them to summary.json.

    python experiments/throughput/stable_summary.py

Runs compared (16 imagenet-sample images, --limit 16; commands in README.md):
  p1_b1 / p1_b8                   default setting, batch 1 / 8, 2 threads (throughput.py)
  p1_b1_threads1                  default setting, batch 1, 1 thread
  keeplast_b1 / keeplast_b8       keep: last, constant lr (recipe_keep_last.yaml)
  stable_b1 / stable_b8           keep: last, lr_schedule: cosine (recipe_stable.yaml)
  stable_b1_threads1              the same, batch 1, 1 thread
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # this program's folder (compare_runs.py)
RESULTS = HERE.parents[1] / "results" / "throughput"  # what it reads and writes
sys.path.insert(0, str(HERE))
from compare_runs import compare, load  # noqa: E402

PAIRS = {
    "default_batch8_vs_batch1": ("p1_b1", "p1_b8"),
    "default_1thread_vs_2threads": ("p1_b1", "p1_b1_threads1"),
    "keep_last_batch8_vs_batch1": ("keeplast_b1", "keeplast_b8"),
    "stable_batch8_vs_batch1": ("stable_b1", "stable_b8"),
    "stable_1thread_vs_2threads": ("stable_b1", "stable_b1_threads1"),
}


def seconds(run: Path) -> float:
    return sum(r["seconds"] for r in load(run).values())


def main() -> None:
    out = {}
    for name, (a, b) in PAIRS.items():
        ra, rb = RESULTS / "runs" / a, RESULTS / "runs" / b
        if not (ra.is_dir() and rb.is_dir()):
            continue
        c = compare(ra, rb)
        c.pop("a"), c.pop("b")
        c["top1_equal_lite0"] = c.pop("metric_equal")
        c["predicted_class_equal_lite0"] = c.pop("pred_equal")
        c["seconds"] = {a: round(seconds(ra), 1), b: round(seconds(rb), 1)}
        out[name] = c
    (RESULTS / "stable.json").write_text(json.dumps(out, indent=2) + "\n")
    summary = json.loads((RESULTS / "summary.json").read_text())
    st = out.get("stable_batch8_vs_batch1")
    if st:
        summary["batch8_stable"] = {
            "setting": "keep: last, lr_schedule: cosine",
            "bpp_within_1_percent": st["bpp_within_1_percent"],
            "bpp_max_abs_diff_percent": st["bpp_max_abs_diff_percent"],
            "top1_equal": st["top1_equal_lite0"],
            "predicted_class_equal": st["predicted_class_equal_lite0"],
            "time_ratio_b1_over_b8": round(st["seconds"]["stable_b1"] / st["seconds"]["stable_b8"], 3),
        }
        (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
