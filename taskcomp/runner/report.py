"""Tables, plots and summary figures from a recipe run: ``taskcomp report RUN_DIR``.

Part of the runner, which writes a run's report when the run ends (``run.py``); the gallery of its example
images is :mod:`taskcomp.runner.gallery`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..datasets import data_root as default_data_root
from ..io import atomic_write, save_csv, save_figure
from ..yamlio import load as load_yaml
from .gallery import example_dir, gallery
from .layouts import LayoutError, annotation_file, coco_ground_truth
from .recipe import MAP_KINDS, method_kind, uniform_method

__all__ = [
    "run_items",
    "load_records",
    "curves",
    "compare_to_uniform",
    "per_image_comparison",
    "report",
    "bootstrap_interval",
    "add_bootstrap_intervals",
    "few_images_note",
    "run_annotations",
    "coco_ap",
    "higher_is_better",
    "LOWER_IS_BETTER",
    "DEFINITIONS",
    "FEW_IMAGES",
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "AP_UNDEFINED_NOTE",
]


def run_items(run_dir: str | Path) -> list[str] | None:
    """The item ids a run folder runs on (``run.json``, written by the runner), or None for a folder from before
    it (all records count then)."""
    p = Path(run_dir) / "run.json"
    if not p.is_file():
        return None
    try:
        return [str(i) for i in json.loads(p.read_text())["items"]]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{p} is damaged (no item list); rerun `taskcomp run` on the folder to rewrite it") from None


def load_records(run_dir: str | Path, only_run_items: bool = True):
    """Every record of a run folder (the last of repeated points) as a DataFrame; with ``only_run_items``, only the
    records of the folder's items (``run.json``): records of other images, left by an older run or copied in,
    are dropped (``df.attrs["records_outside_run"]`` counts them).

    Raises:
        FileNotFoundError: no record files.
    """
    import pandas as pd

    run_dir = Path(run_dir)
    rows = []
    for p in sorted(run_dir.glob("records*.jsonl")):
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill (or empty): the runner redoes that point
                continue
    if not rows:
        raise FileNotFoundError(f"no records*.jsonl in {run_dir}")
    df = pd.DataFrame(rows).drop_duplicates(subset=["image", "method", "setting"], keep="last")
    items = run_items(run_dir) if only_run_items else None
    outside = 0
    if items is not None:
        keep = df["image"].astype(str).isin(set(items))
        outside = int((~keep).sum())
        df = df[keep]
        if not len(df):
            raise FileNotFoundError(f"no records of the run's {len(items)} images in {run_dir}")
    df.attrs["records_outside_run"] = outside
    df.attrs["n_items"] = len(items) if items is not None else None
    return df


#: Metric column prefixes where less is better (character error rate); every other metric is better higher.
LOWER_IS_BETTER = ("cer/",)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of the metric column ``metric`` (e.g. ``top1/...``, ``cer/gt``) is better."""
    return not metric.startswith(LOWER_IS_BETTER)


def curves(df, metric_cols: list[str]):
    """Mean of bpp, PSNRs and the metric columns per (method, setting), with the image count."""
    extra = [c for c in ("psnr_text", "psnr_background", "seconds") if c in df]
    g = df.groupby(["method", "setting"])
    t = g[["bpp", "psnr", *extra, *metric_cols]].mean()
    t["n_images"] = g.size()
    return t.reset_index().sort_values(["method", "bpp"])


def _monotone(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(x)
    return x[order], np.maximum.accumulate(y[order])


def _uniform_bpp_at(ub: np.ndarray, um: np.ndarray, val: float) -> float | None:
    """First bpp at which a monotone uniform curve reaches ``val``; None outside its metric range."""
    if not um[0] <= val <= um[-1]:
        return None
    k = int(np.searchsorted(um, val, side="left"))
    if k == 0:
        return float(ub[0])
    b0, b1, m0, m1 = ub[k - 1], ub[k], um[k - 1], um[k]
    return float(b0 + (b1 - b0) * (val - m0) / (m1 - m0) if m1 > m0 else b1)


#: What each figure of a comparison means (written into summary.json).
DEFINITIONS = {
    "points[].gain_points / bpp_saving_percent": "mean curve: the method's setting (metric and bpp averaged over "
    "the images) against the mean curve it is compared with (uniform maps; plain CRF for hevc_* / h264_*): metric "
    "gain in points at equal bpp; bits saved at equal metric",
    "mean_curve_best_gain_points_at_or_below_B_bpp": "the largest gain_points among the settings at or below B bpp "
    "(mean curve; its setting in mean_curve_best_gain_setting)",
    "mean_curve_best_bpp_saving_percent": "the largest bpp_saving_percent among the settings (mean curve; its "
    "setting in mean_curve_best_bpp_saving_setting)",
    "mean_curve_best_*_ci95": "bootstrap 95% percentile interval over images of the headline figure at its "
    "setting: images resampled with replacement (1000 resamples, seed 0), mean curves and the figure recomputed on "
    "each; 'defined' counts the resamples where the figure exists (inside uniform's range). Signed as the figure: "
    "gain in points (positive: better than uniform), bpp saving in % (positive: fewer bits, negative: more bits); "
    "`taskcomp report` prints a saving worded as 'X% more bits' with the interval of the extra bits (the bounds "
    "negated)",
    "per_image.SETTING.bpp_saving_median_percent": "per image: the median over images of the bits saved at equal "
    "metric against each image's own uniform curve (a different figure from the mean curve's: with a 0/1 metric "
    "such as top-1, an image that uniform already gets right at its lowest q counts as a loss)",
}


def compare_to_uniform(table, metric: str, method: str = "task_aware", max_bpp: float = 0.3) -> dict:
    """Gain of ``method`` over uniform maps at equal bpp, and bpp saving at equal metric (interpolated), on the
    mean curves (``table``: one row per method and setting, metric and bpp averaged over the images).

    Uniform's curve is made monotone (running best) before interpolation; only ``method`` points inside
    uniform's bpp range (gain) or metric range (saving) count. Gains are in points (x100) in the direction
    of better (a CER drop is a positive gain). The headline figures (``mean_curve_best_*``) are the best of the
    per-setting figures in ``points`` and name their setting, so a headline always equals one setting's figure;
    see :data:`DEFINITIONS`. Settings whose mean metric is NaN (undefined on every image) are skipped.
    """
    u = table[table["method"] == uniform_method(method)]  # HEVC maps: plain-CRF HEVC
    t = table[table["method"] == method]
    u, t = u[u[metric].notna()], t[t[metric].notna()]
    if len(u) < 2 or not len(t):
        return {}
    sign = 1.0 if higher_is_better(metric) else -1.0
    ub, um = _monotone(u["bpp"].to_numpy(), sign * u[metric].to_numpy())
    points = []
    for _, r in t.sort_values("bpp").iterrows():
        val = sign * r[metric]
        p = {"setting": r["setting"], "bpp": float(r["bpp"]), metric: float(r[metric])}
        if ub[0] <= r["bpp"] <= ub[-1]:
            p["uniform_at_same_bpp"] = float(sign * np.interp(r["bpp"], ub, um))
            p["gain_points"] = 100 * sign * (p[metric] - p["uniform_at_same_bpp"])
        b_eq = _uniform_bpp_at(ub, um, val)
        if b_eq is not None:
            p["uniform_bpp_at_same_metric"] = float(b_eq)
            p["bpp_saving_percent"] = 100 * (1 - r["bpp"] / b_eq)
        points.append(p)
    low = [p for p in points if p["bpp"] <= max_bpp and "gain_points" in p]
    best_gain = max(low, key=lambda p: p["gain_points"], default=None)
    best_saving = max(
        (p for p in points if "bpp_saving_percent" in p), key=lambda p: p["bpp_saving_percent"], default=None
    )
    gain = best_gain["gain_points"] if best_gain else None
    return {
        "metric": metric,
        "points": points,
        f"mean_curve_best_gain_points_at_or_below_{max_bpp}_bpp": gain,
        "mean_curve_best_gain_setting": best_gain["setting"] if best_gain else None,
        "mean_curve_best_bpp_saving_percent": best_saving["bpp_saving_percent"] if best_saving else None,
        "mean_curve_best_bpp_saving_setting": best_saving["setting"] if best_saving else None,
        # the same figure under its name before issue 22 (read by experiments/predictor/imagenet/summarize.py)
        f"max_gain_points_at_or_below_{max_bpp}_bpp": gain,
    }


def per_image_comparison(df, metric: str, method: str = "task_aware", tol: float = 1e-9) -> dict:
    """Per setting of ``method``: on how many images it beats that image's own uniform curve at its bpp.

    Each image's uniform points are made monotone (running best) and interpolated at the method's real bpp;
    images where that bpp lies outside the image's uniform range count as ``outside``. A mean curve can hide
    a gain made on a few images (or average away gains made at different rates); this says how widely it
    holds. Also the median over images of the bpp saving at equal metric against the image's own uniform
    curve (``bpp_saving_median_percent``, over ``n_saving`` images whose metric lies inside their uniform
    range) and ``beyond_uniform``: images where the method's metric beats every uniform point of that image.
    Needs the per-image records (a DataFrame).
    """
    sign = 1.0 if higher_is_better(metric) else -1.0
    out: dict[str, dict] = {}
    savings: dict[str, list[float]] = {}
    for img, g in df.groupby("image"):
        g = g[g[metric].notna()]  # undefined on this image (e.g. agreement F1 with no detection on either)
        u = g[g["method"] == uniform_method(method)]
        if len(u) < 2:
            continue
        ub, um = _monotone(u["bpp"].to_numpy(), sign * u[metric].to_numpy())
        t = g[g["method"] == method]
        for setting, bpp, val in zip(t["setting"], t["bpp"], t[metric]):
            c = out.setdefault(setting, {"better": 0, "tied": 0, "worse": 0, "outside": 0, "beyond_uniform": 0})
            b_eq = _uniform_bpp_at(ub, um, sign * val)
            if b_eq is not None:
                savings.setdefault(setting, []).append(100 * (1 - bpp / b_eq))
            elif sign * val > um[-1]:
                c["beyond_uniform"] += 1
            if not ub[0] <= bpp <= ub[-1]:
                c["outside"] += 1
                continue
            d = sign * val - np.interp(bpp, ub, um)
            c["better" if d > tol else "worse" if d < -tol else "tied"] += 1
    for setting, c in out.items():
        v = savings.get(setting, [])
        c["n_saving"] = len(v)
        c["bpp_saving_median_percent"] = float(np.median(v)) if v else None
    return out


#: Below this many images a report's tables carry :func:`few_images_note`.
FEW_IMAGES = 30
#: Bootstrap of the headline figures: resamples of the images (with replacement) and the generator's seed.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def few_images_note(n_images: int) -> str | None:
    """The note a table over fewer than :data:`FEW_IMAGES` images carries (None from that many on)."""
    if n_images >= FEW_IMAGES:
        return None
    return (
        f"Note: only {n_images} image{'s' if n_images != 1 else ''}. Means over so few images are noisy: "
        "read the headline figures with their bootstrap 95% intervals (summary.json, *_ci95), and do not "
        f"compare them with results over hundreds of images; {FEW_IMAGES} or more are needed before this note "
        "goes away."
    )


def _point_figures(ub: np.ndarray, um: np.ndarray, bpp: float, val: float) -> tuple[float | None, float | None]:
    """(gain in points at equal bpp, bpp saving in % at equal metric) of one point (bpp, sign * metric) against a
    monotone uniform curve (ub, um), as :func:`compare_to_uniform` computes them; None outside uniform's range."""
    gain = 100 * (val - float(np.interp(bpp, ub, um))) if ub[0] <= bpp <= ub[-1] else None
    b_eq = _uniform_bpp_at(ub, um, val)
    return gain, (100 * (1 - bpp / b_eq) if b_eq is not None and b_eq > 0 else None)


def bootstrap_interval(
    df,
    metric: str,
    method: str,
    setting: str,
    figure: str = "gain_points",
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> dict | None:
    """Bootstrap interval over images of one mean-curve figure of ``method``'s ``setting`` against uniform maps.

    The images are resampled with replacement ``n_resamples`` times (numpy generator seeded with ``seed``); on each
    resample the mean curves (metric and bpp averaged over the resampled images, per method and setting, as
    :func:`curves` averages them for the headline: the metric over the images where it is defined, bpp over every
    image) are formed and the figure is computed as :func:`compare_to_uniform` does: ``gain_points`` (metric
    points gained at equal bpp) or ``bpp_saving_percent`` (bits saved at equal metric). The setting stays fixed
    (the headline's), so the interval is that of the figure reported, not of a best-of over resamples.

    Args:
        df: per-image records (:func:`load_records`): columns image, method, setting, bpp and ``metric``.

    Returns:
        ``{"low", "high", "level", "resamples", "defined", "seed", "n_images"}`` (percentile interval over the
        resamples where the figure is defined, ``defined`` of them), or None when it is undefined on every
        resample or the records lack the metric per image.
    """
    if metric not in df:
        return None
    sign = 1.0 if higher_is_better(metric) else -1.0
    base = uniform_method(method)  # the curve the method is compared with (plain CRF for HEVC / H.264 maps)
    d = df[df["method"].isin([base, method])]
    images = sorted(d["image"].astype(str).unique())
    if not images:
        return None
    pos = {img: i for i, img in enumerate(images)}
    u_settings = sorted(d.loc[d["method"] == base, "setting"].astype(str).unique())
    cols = [(base, st) for st in u_settings] + [(method, setting)]
    col_of = {c: j for j, c in enumerate(cols)}
    n, k = len(images), len(cols)
    M, B = np.full((n, k), np.nan), np.full((n, k), np.nan)
    for img, m, st, b, v in zip(d["image"].astype(str), d["method"], d["setting"].astype(str), d["bpp"], d[metric]):
        j = col_of.get((m, st))
        if j is not None:
            M[pos[img], j], B[pos[img], j] = sign * float(v), float(b)
    if np.isnan(M[:, -1]).all():
        return None
    rng = np.random.default_rng(seed)
    key = 0 if figure == "gain_points" else 1
    vals = []
    # The headline's own statistic on each resample (curves(): pandas means per method and setting): the metric
    # averaged over the records where it is defined, bpp over every record, NaN metric or not.
    ok_m, ok_b = ~np.isnan(M), ~np.isnan(B)
    M0, B0 = np.where(ok_m, M, 0), np.where(ok_b, B, 0)
    for _ in range(n_resamples):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            mm = M0.T @ w / (ok_m.T @ w)
            bb = B0.T @ w / (ok_b.T @ w)
        good = np.isfinite(mm[:-1]) & np.isfinite(bb[:-1])
        if good.sum() < 2 or not (np.isfinite(mm[-1]) and np.isfinite(bb[-1])):
            continue
        ub, um = _monotone(bb[:-1][good], mm[:-1][good])
        v = _point_figures(ub, um, float(bb[-1]), float(mm[-1]))[key]
        if v is not None:
            vals.append(v)
    if not vals:
        return None
    a = (1 - level) / 2
    lo, hi = np.quantile(vals, [a, 1 - a])
    return {
        "low": float(lo),
        "high": float(hi),
        "level": level,
        "resamples": n_resamples,
        "defined": len(vals),
        "seed": seed,
        "n_images": n,
    }


def add_bootstrap_intervals(comparison: dict, df, method: str, **kw) -> dict:
    """Add ``mean_curve_best_gain_points_ci95`` and ``mean_curve_best_bpp_saving_percent_ci95`` (each
    :func:`bootstrap_interval`'s dict, or None) to a :func:`compare_to_uniform` result, for its headline settings.
    Returns ``comparison``."""
    metric = comparison.get("metric")
    for fig, setting_key, out_key in (
        ("gain_points", "mean_curve_best_gain_setting", "mean_curve_best_gain_points_ci95"),
        ("bpp_saving_percent", "mean_curve_best_bpp_saving_setting", "mean_curve_best_bpp_saving_percent_ci95"),
    ):
        st = comparison.get(setting_key)
        comparison[out_key] = (
            bootstrap_interval(df, metric, method, st, figure=fig, **kw) if st is not None and metric else None
        )
    return comparison


#: The note of a table whose AP is undefined (NaN) for some rows.
AP_UNDEFINED_NOTE = (
    "Note: AP is undefined (NaN) where the images scored hold no non-crowd ground-truth box of the "
    "category: there is nothing to recall (pycocotools returns -1). It is not 0."
)


def coco_ap(df, annotations: Path, category: int):
    """AP@[.5:.95] and AP@0.5 (pycocotools) per (method, setting) from records with ``detections``: a DataFrame.

    AP is NaN (undefined, never 0) where the (method, setting)'s images hold no non-crowd ground truth of
    ``category``; the DataFrame's ``attrs["note"]`` is then :data:`AP_UNDEFINED_NOTE`. The annotations are read
    with :func:`taskcomp.runner.layouts.read_coco` (exporters' files without ``iscrowd``, ``area``, ... work;
    LayoutError names the file and field of one that cannot be scored)."""
    import contextlib
    import io

    import pandas as pd
    from pycocotools.cocoeval import COCOeval

    gt = coco_ground_truth(annotations, category)
    name = gt.loadCats([category])[0]["name"]
    rows = []
    for (method, setting), g in df.groupby(["method", "setting"]):
        res = [
            {"image_id": int(r.coco_id), "category_id": category, "bbox": d[:4], "score": d[4]}
            for r in g.itertuples()
            for d in r.detections
        ]
        img_ids = sorted({int(i) for i in g["coco_id"]})
        has_gt = bool(gt.getAnnIds(imgIds=img_ids, catIds=[category], iscrowd=False))
        ap = ap50 = 0.0 if has_gt else float("nan")  # no detections: 0 against ground truth, else undefined
        if res and has_gt:
            with contextlib.redirect_stdout(io.StringIO()):
                ev = COCOeval(gt, gt.loadRes(res), "bbox")
                ev.params.imgIds = sorted(int(i) for i in g["coco_id"])
                ev.params.catIds = [category]
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            # pycocotools' -1 means undefined (no ground truth to recall), not 0
            ap, ap50 = (float(v) if v >= 0 else float("nan") for v in ev.stats[:2])
        rows.append({"method": method, "setting": setting, f"ap/{name}": ap, f"ap50/{name}": ap50})
    out = pd.DataFrame(rows)
    if len(out) and out[[f"ap/{name}", f"ap50/{name}"]].isna().any().any():
        out.attrs["note"] = AP_UNDEFINED_NOTE
    return out


def run_annotations(recipe: dict, data_root: str | Path | None = None) -> Path:
    """The COCO instances JSON a detection run's records are scored against: the recipe's data under ``data_root``
    (None: the default data root, :func:`taskcomp.datasets.data_root`).

    Raises:
        LayoutError: one line; without ``data_root`` it adds that the run's data root may differ from the default
            one and to pass ``--data-root`` (``taskcomp run RECIPE --data-root DIR`` reads the data elsewhere).
    """
    root = default_data_root(data_root)
    try:
        return annotation_file(recipe, root)
    except LayoutError as e:
        if data_root is not None and str(data_root) != "":
            raise
        raise LayoutError(
            f"{e}; the run's data root may differ from {root}: pass --data-root DIR, the folder given to taskcomp run"
        ) from None


def _json_safe(value):
    """``value`` with every non-finite float as None: summary.json stays strict JSON (an undefined metric, e.g. AP
    without ground truth, is null there and NaN in the tables)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
        return _json_safe(value.item())
    return value


def report(
    run_dir: str | Path, out_dir: str | Path | None = None, max_bpp: float = 0.3, data_root: str | Path | None = None
) -> dict:
    """Write ``table.csv``, ``table.md``, ``metrics_vs_bpp.png``, ``summary.json`` and, when the run kept examples,
    ``gallery.png`` (original | uniform | task-aware at the same real bpp | map, per example image) for a run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir
    out.mkdir(parents=True, exist_ok=True)
    df = load_records(run_dir)
    metric_cols = sorted(c for c in df.columns if "/" in c and not c.startswith("pred/"))  # pred/: class ids
    table = curves(df, metric_cols)
    ap_note = None
    if "detections" in df:
        recipe = load_yaml((run_dir / "recipe.yaml").read_text())
        ann = run_annotations(recipe, data_root)  # the data layout's COCO JSON
        ap = coco_ap(df, ann, int(recipe.get("coco_category", 1)))
        ap_note = ap.attrs.get("note")  # AP undefined on these images: NaN, said so under the table
        table = table.merge(ap, on=["method", "setting"], how="left")
        metric_cols += [c for c in ap.columns if "/" in c]
    save_csv(table, out / "table.csv")
    note = few_images_note(int(df["image"].nunique()))  # a table over few images says so
    atomic_write(
        out / "table.md",
        (
            table.to_markdown(index=False, floatfmt=".4f")
            + "\n"
            + (f"\n{note}\n" if note else "")
            + (f"\n{ap_note}\n" if ap_note else "")
        ).encode(),
    )

    shown = [c for c in metric_cols if not c.startswith("top5/")]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4.5), squeeze=False)
    summary = {"run": str(run_dir), "n_images": int(df["image"].nunique()), "comparisons": {}}
    if df.attrs.get("n_items") is not None:  # run.json: the images the run is for, and what was left out
        summary["n_images_planned"] = df.attrs["n_items"]
        summary["records_outside_run"] = df.attrs["records_outside_run"]
    short = {
        f"{m} {st}": int(n)
        for m, st, n in zip(table["method"], table["setting"], table["n_images"])
        if n < summary["n_images"]
    }
    if short:  # a mean over fewer images than the others is not comparable with them
        summary["incomplete_settings"] = short
    if note:
        summary["few_images_note"] = note
    if ap_note:
        summary["ap_note"] = ap_note
    summary["definitions"] = DEFINITIONS
    if "weights" in df:  # codec weights ids of the codec points (records written before session 10 lack them)
        summary["codec_weights"] = sorted(df["weights"].dropna().unique().tolist())
    for ax, col in zip(axes[0], shown):
        pct = 100 if col.startswith(("top1/", "top5/", "word_acc/")) else 1
        orig = table[table["method"] == "original"]
        if len(orig):
            ax.axhline(pct * float(orig[col].iloc[0]), color="k", ls=":", lw=1, label="original (uncompressed)")
            summary.setdefault("original", {})[col] = float(orig[col].iloc[0])
        for method in table["method"].unique():
            if method == "original":
                continue
            t = table[table["method"] == method].sort_values("bpp")
            t = t[t["bpp"] <= 1.5]
            # uniform and task maps solid (HEVC / H.264 as well); baselines and JPEG / WebP dashed
            solid = method == "uniform" or method_kind(method) in (*MAP_KINDS, "standard", "standard_map")
            ax.plot(t["bpp"], pct * t[col], "o-" if solid else "s--", ms=3, label=method)
        ax.set_xlabel("bpp (real file size)")
        ax.set_ylabel(col + (" (%)" if pct == 100 else ""))
        ax.grid(alpha=0.3)
        ax.legend()
        # each against its own uniform curve: SFT maps against uniform SFT maps, HEVC maps against plain CRF
        compared = [m for m in table["method"].unique() if method_kind(m) in (*MAP_KINDS, "standard_map")]
        for method in compared + ["gradcam", "box_mask", "saliency"]:
            c = compare_to_uniform(table, col, method, max_bpp)
            if c:
                if col in df:  # per-image metrics (not AP, which exists only over the whole set)
                    c["per_image"] = per_image_comparison(df, col, method)
                    add_bootstrap_intervals(c, df, method)  # headline figures' 95% interval over images
                summary["comparisons"][f"{method} vs {uniform_method(method)}, {col}"] = c
    fig.suptitle(f"{run_dir.name}: {summary['n_images']} images")
    fig.tight_layout()
    save_figure(fig, out / "metrics_vs_bpp.png")
    plt.close(fig)
    inputs = _gallery_inputs(run_dir, df, data_root)
    if inputs is not None:
        task, per_ap = inputs
        if gallery(run_dir, df, task, out / "gallery.png", per_image_ap=per_ap) is not None:
            summary["gallery"] = "gallery.png"
            # predicted maps get a gallery of their own
            for m in sorted(m for m in df["method"].unique() if method_kind(m) == "predicted"):
                if gallery(run_dir, df, task, out / f"gallery_{m}.png", per_image_ap=per_ap, method=m) is not None:
                    summary.setdefault("galleries", {})[m] = f"gallery_{m}.png"
    atomic_write(out / "summary.json", json.dumps(_json_safe(summary), indent=2, allow_nan=False).encode())
    return summary


def _gallery_inputs(run_dir: Path, df, data_root=None):
    """(task, per-image AP) for :func:`taskcomp.runner.gallery.gallery` of the run's examples (``OUT/examples``, kept by
    the runner for the recipe's ``examples`` first images): per-image AP50 and the ground truth's box count for
    detection panels (None for other tasks). Computed once per report, whatever number of galleries it draws.
    None when the run kept no examples."""
    ids = [i for i in df["image"].astype(str).unique() if (example_dir(run_dir, i) / "original.png").is_file()]
    if not ids:
        return None
    recipe = load_yaml((run_dir / "recipe.yaml").read_text()) if (run_dir / "recipe.yaml").is_file() else {}
    task = recipe.get("task", "classification")
    per_ap = None
    if task == "detection" and "detections" in df:
        ann = run_annotations(recipe, data_root)
        cat = int(recipe.get("coco_category", 1))
        d = df[df["image"].astype(str).isin(ids)].copy()
        gt = coco_ground_truth(ann, cat)
        n_gt = {
            str(i): len(gt.getAnnIds(imgIds=[int(c)], catIds=[cat], iscrowd=False))
            for i, c in zip(d["image"].astype(str), d["coco_id"])
        }
        d["method"] = d["method"] + "\t@\t" + d["image"].astype(str)  # one AP per image and point
        t = coco_ap(d, ann, cat)
        col = next(c for c in t.columns if c.startswith("ap50/"))
        per_ap = {}
        for m, st, v in zip(t["method"], t["setting"], t[col]):
            method, img = m.split("\t@\t")
            per_ap[(img, method, st)] = (float(v) if n_gt[img] else None, n_gt[img])
    return task, per_ap
