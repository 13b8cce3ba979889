"""summary.json of the predictor comparison: predicted maps against uniform and per-image optimised maps.

    python experiments/predictor/imagenet/summarize.py runs/predictor_imagenet [--timing results/predictor/timing.json]
    python experiments/predictor/imagenet/summarize.py RUN --predicted predicted_distilled \
        --refine predicted_distilled_refine --also predicted task_aware_one_step --out SUMMARY.json

``--predicted`` / ``--refine`` name the methods the issue-21 keys are computed for; ``--also`` adds the same
figures for other one-pass methods under ``others`` (e.g. the old predictor, the training-free baseline).

Definitions (curves are means over the run's images; every bpp is the real .tcz size):
- gain_vs_uniform_points[model]: the largest top-1 gain (points) of a ``predicted`` point over the uniform curve
  interpolated at its bpp, among points at or below 0.3 bpp (``taskcomp.runner.report.compare_to_uniform``).
- fraction_of_per_image_gain[model]: at each label-free per-image point (``task_aware_label_free``), the
  predicted curve's gain over uniform at that bpp (the predicted curve interpolated) divided by the per-image
  point's gain, summed over the per-image points: sum(gain_predicted) / sum(gain_per_image).
- refine_minus_per_image_points[model]: the ``predicted_refine`` curve's top-1 minus the label-free per-image
  point's, at each of the latter's bpps (interpolated), mean over them.
- speedup_vs_per_image: from the side-by-side timing (``timing.py``), if given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from taskcomp.batch import jsonable
from taskcomp.io import atomic_write
from taskcomp.runner.report import compare_to_uniform, curves, load_records


def _interp(t, method: str, col: str, bpps) -> np.ndarray:
    """The method's mean curve (monotone in bpp order: running best) interpolated at ``bpps``; NaN outside it."""
    c = t[t["method"] == method].sort_values("bpp")
    b, m = c["bpp"].to_numpy(), np.maximum.accumulate(c[col].to_numpy())
    out = np.interp(bpps, b, m)
    out[(np.asarray(bpps) < b[0]) | (np.asarray(bpps) > b[-1])] = np.nan
    return out


def _fraction(t, lf, col: str, method: str) -> tuple[float | None, np.ndarray, np.ndarray]:
    b = lf["bpp"].to_numpy()
    unif = _interp(t, "uniform", col, b)
    pred = _interp(t, method, col, b)
    g_lf, g_pred = 100 * (lf[col].to_numpy() - unif), 100 * (pred - unif)
    ok = ~np.isnan(g_pred) & ~np.isnan(g_lf)
    frac = float(g_pred[ok].sum() / g_lf[ok].sum()) if ok.any() and g_lf[ok].sum() > 0 else None
    return frac, unif, pred


def summarize(
    run: Path,
    timing: Path | None = None,
    predicted: str = "predicted",
    refine: str = "predicted_refine",
    also: list[str] = (),
) -> dict:
    df = load_records(run)
    cols = sorted(c for c in df.columns if c.startswith("top1/"))
    t = curves(df, cols)
    s: dict = {
        "run": str(run),
        "n_images": int(df["image"].nunique()),
        "gain_vs_uniform_points": {},
        "fraction_of_per_image_gain": {},
        "refine_minus_per_image_points": {},
        "per_model": {},
    }
    lf = t[t["method"] == "task_aware_label_free"].sort_values("bpp")
    for col in cols:
        model = col.split("/", 1)[1]
        c = compare_to_uniform(t, col, predicted, 0.3)
        s["gain_vs_uniform_points"][model] = c.get("max_gain_points_at_or_below_0.3_bpp")
        b = lf["bpp"].to_numpy()
        s["fraction_of_per_image_gain"][model], unif, pred = _fraction(t, lf, col, predicted)
        ref = _interp(t, refine, col, b) if (t["method"] == refine).any() else np.full(len(b), np.nan)
        for m in also:
            o = s.setdefault("others", {}).setdefault(
                m, {"gain_vs_uniform_points": {}, "fraction_of_per_image_gain": {}}
            )
            o["gain_vs_uniform_points"][model] = compare_to_uniform(t, col, m, 0.3).get(
                "max_gain_points_at_or_below_0.3_bpp"
            )
            o["fraction_of_per_image_gain"][model] = _fraction(t, lf, col, m)[0]
        d = 100 * (ref - lf[col].to_numpy())
        s["refine_minus_per_image_points"][model] = float(np.nanmean(d)) if np.isfinite(d).any() else None
        s["per_model"][model] = {
            "label_free_points": [
                {
                    "bpp": float(bb),
                    "per_image": float(100 * v),
                    "uniform": float(u * 100),
                    "predicted": float(p * 100),
                    "predicted_refine": float(r * 100),
                }
                for bb, v, u, p, r in zip(b, lf[col], unif, pred, ref)
            ]
        }
    if timing and Path(timing).is_file():
        tm = json.loads(Path(timing).read_text())
        s["speedup_vs_per_image"] = tm["speedup_vs_per_image"]
        s["seconds_per_map"] = tm["seconds_per_map"]
    return s


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--timing", type=Path)
    ap.add_argument("--predicted", default="predicted", help="the predictor method the issue's keys are for")
    ap.add_argument("--refine", default="predicted_refine", help="its refined method")
    ap.add_argument("--also", nargs="*", default=[], help="other one-pass methods, summarised alike")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[3] / "results" / "predictor" / "imagenet" / "summary.json",
    )
    a = ap.parse_args()
    s = summarize(a.run, a.timing, a.predicted, a.refine, a.also)
    s = jsonable(s)  # a point outside a curve's bpp range is NaN in the arithmetic, null in the JSON
    atomic_write(a.out, json.dumps(s, indent=2, allow_nan=False).encode())
    print(json.dumps({k: v for k, v in s.items() if k != "per_model"}, indent=2))
