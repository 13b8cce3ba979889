"""Add the COCO part (issue 35) to results/codec_range/summary.json from the COCO report's summary.

    python experiments/codec_range/coco_summary.py results/codec_range/coco/summary.json \
        --summary results/codec_range/summary.json

Keys: ``coco_ap50_person``: each task-aware point (real bpp, AP@0.5, uniform interpolated at its bpp, gain,
uniform's bpp at equal AP@0.5) at or below 0.12 bpp, and the largest gain among them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from taskcomp.io import atomic_write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("coco", type=Path)
    ap.add_argument("--summary", type=Path, required=True)
    a = ap.parse_args()
    rep = json.loads(a.coco.read_text())
    comp = rep["comparisons"]["task_aware vs uniform, ap50/person"]
    pts = [p for p in comp["points"] if p["bpp"] <= 0.12]
    best = max(pts, key=lambda p: p["gain_points"]) if pts else None
    s = json.loads(a.summary.read_text())
    s["coco_ap50_person"] = {
        "n_images": rep["n_images"],
        "points_at_or_below_0.12_bpp": pts,
        "max_gain_points_at_or_below_0.12_bpp": best["gain_points"] if best else None,
        "max_gain_setting": best["setting"] if best else None,
        "note": "AP@0.5 over the 76 images' detections (a set metric: no per-image bootstrap interval)",
    }
    atomic_write(a.summary, json.dumps(s, indent=2).encode())
    print(json.dumps(s["coco_ap50_person"], indent=1))


if __name__ == "__main__":
    main()
