"""Issue 35's ImageNet figures for the wider codec, from a `taskcomp report` folder of
experiments/codec_range/imagenet_classification_lowrate.yaml.

    python experiments/codec_range/imagenet_summary.py runs/codec_range_imagenet results/codec_range/imagenet \
        --summary results/codec_range/summary.json

The recipe's task-aware maps come from several start maps (q = 0.05, 0.1, 0.2, 0.4; methods task_aware,
task_aware_q10 (with the label only, added in session 3), task_aware_q20, task_aware_q40; the same but q 0.1 with
_label_free), so one family (with label, label-free) is the union of its methods'
points. Figures, Lite0 (the maps' model) first, Lite1 / Lite2 beside it:

- ``top1_lite0_task_aware_at_0.12_bpp``: the best mean top-1 among the with-label family's measured points whose
  mean real bpp is at most 0.12 (a measured point, no interpolation), with its method, setting and bpp;
- ``max_gain_points_at_or_below_0.15_bpp``: the largest gain of a family point with real bpp <= 0.15 over the
  uniform curve interpolated at the same real bpp (the report's comparison), with a bootstrap 95% interval over
  images at that point (the report's bootstrap_interval: images resampled, setting fixed).

Writes OUT/family_summary.json and merges the headline keys into --summary (atomic write).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from taskcomp.io import atomic_write
from taskcomp.runner.report import bootstrap_interval, load_records

MODELS = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
FAMILIES = {
    "task_aware": ("task_aware", "task_aware_q10", "task_aware_q20", "task_aware_q40"),
    "task_aware_label_free": ("task_aware_label_free", "task_aware_label_free_q20", "task_aware_label_free_q40"),
}


def family_points(summary: dict, family: tuple[str, ...], metric: str) -> list[dict]:
    """Every point of the family's methods in the report's comparisons, with its method name added."""
    pts = []
    for m in family:
        c = summary["comparisons"].get(f"{m} vs uniform, {metric}")
        for p in (c or {}).get("points", []):
            pts.append({"method": m, **p})
    return sorted(pts, key=lambda p: p["bpp"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="the run folder (per-image records, for the bootstrap intervals)")
    ap.add_argument("report", help="its `taskcomp report` output folder (summary.json)")
    ap.add_argument("--summary", help="results/codec_range/summary.json to merge the headline keys into")
    ap.add_argument("--low", type=float, default=0.12, help="rate bound of the top-1 figure (bpp)")
    ap.add_argument("--gain-bound", type=float, default=0.15, help="rate bound of the gain figure (bpp)")
    a = ap.parse_args()
    rep = json.loads((Path(a.report) / "summary.json").read_text())
    df = load_records(a.run)
    out: dict = {
        "run": str(a.run),
        "n_images": rep["n_images"],
        "families": {k: list(v) for k, v in FAMILIES.items()},
        "low_bpp": a.low,
        "gain_bound_bpp": a.gain_bound,
        "by_model": {},
    }
    for model in MODELS:
        metric = f"top1/{model}"
        per = {}
        for fam, methods in FAMILIES.items():
            pts = family_points(rep, methods, metric)
            low = [p for p in pts if p["bpp"] <= a.low]
            best_low = max(low, key=lambda p: p[metric], default=None)
            gains = [p for p in pts if p["bpp"] <= a.gain_bound and "gain_points" in p]
            best_gain = max(gains, key=lambda p: p["gain_points"], default=None)
            ci = None
            if best_gain is not None:
                ci = bootstrap_interval(df, metric, best_gain["method"], best_gain["setting"])
            per[fam] = {
                "points": pts,
                f"best_top1_at_or_below_{a.low}_bpp": best_low,
                f"max_gain_at_or_below_{a.gain_bound}_bpp": best_gain,
                "max_gain_ci95": ci,
            }
        out["by_model"][model] = per
    lite0 = out["by_model"]["tf_efficientnet_lite0"]["task_aware"]
    top = lite0[f"best_top1_at_or_below_{a.low}_bpp"]
    gain = lite0[f"max_gain_at_or_below_{a.gain_bound}_bpp"]
    head = {
        f"top1_lite0_task_aware_at_{a.low}_bpp": None
        if top is None
        else round(100 * top["top1/tf_efficientnet_lite0"], 2),
        f"top1_lite0_task_aware_at_{a.low}_bpp_point": None
        if top is None
        else {k: top[k] for k in ("method", "setting", "bpp")},
        f"max_gain_points_at_or_below_{a.gain_bound}_bpp": None if gain is None else round(gain["gain_points"], 2),
        f"max_gain_points_at_or_below_{a.gain_bound}_bpp_point": None
        if gain is None
        else {k: gain[k] for k in ("method", "setting", "bpp")},
        f"max_gain_points_at_or_below_{a.gain_bound}_bpp_ci95": lite0["max_gain_ci95"],
        "imagenet_n_images": rep["n_images"],
    }
    out["headline"] = head
    atomic_write(Path(a.report) / "family_summary.json", json.dumps(out, indent=2).encode())
    if a.summary:
        s = json.loads(Path(a.summary).read_text())
        s.update(head)
        atomic_write(Path(a.summary), json.dumps(s, indent=2).encode())
    print(json.dumps(head, indent=2))


if __name__ == "__main__":
    main()
