"""Receipts at their own resolution: both codecs' runs of `sroie_text_full` side by side (issue 24).

    python experiments/documents/summarize.py runs/sroie_text_full runs/sroie_text_full_doc --out results/documents
    python experiments/documents/summarize.py runs/sroie_text_full_doc2 runs/sroie_text_full --uniform-only runs/sroie_text_full

``--uniform-only RUN``: that run contributes only its uniform maps, and its recipe may differ from the others' in
the objective and the map methods (which uniform maps do not use).
``--full-res-maps RUN``: a run of `probes/fullres_maps.yaml` (task-aware maps optimised at the receipt's own
resolution instead of a 768-px copy); its points join as ``task_aware_fullres@CODEC``. Its recipe may differ from
its codec's run only in ``preprocess.working_side`` and the methods.

    python experiments/documents/summarize.py runs/sroie_text_full_doc2 runs/sroie_text_full --uniform-only runs/sroie_text_full \
        --full-res-maps runs/sroie_text_fullres_maps --out results/documents

Reads the records of each run folder (one codec each; JPEG, WebP and the original come from the first), keeps the
receipts that every run finished, and writes ``table.md`` / ``table.csv`` (means per method and setting),
``cer_vs_bpp.png`` (CER against the ground truth and against the original's reading, PSNR, against real bpp) and
``summary.json``:

- ``bpp_saving_vs_uniform_percent``: for each map method (task_aware, box_mask) of each codec, the bpp
  saving at equal mean CER against the uniform curve of the same codec and against sft-small's (interpolated on
  the mean curves, uniform made monotone: ``taskcomp.runner.report.compare_to_uniform``); the best over settings heads it;
- ``cer_gain_vs_webp_at_equal_bpp``: CER points (x100) below WebP's curve at the same real bpp (positive: reads
  better than WebP), per method and setting inside WebP's bpp range;
- ``bd_rate_percent``: BD-rate of each codec's uniform maps against the other codec's, JPEG's and WebP's curves, in
  PSNR and in 1 - CER against the original's reading (negative: fewer bits for the same quality);
- ``seconds_per_map``: mean seconds per task-aware map on one CPU thread: ``map_seconds`` (optimisation at the
  working resolution), ``target_seconds`` (easyocr's reading of the original's working copy, once per receipt),
  their sum, and ``point_seconds`` (the whole point: map, upsampling, coding at full resolution, decoding and the
  evaluation reading); box masks: the same targets and no optimisation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from taskcomp.runner.report import compare_to_uniform, load_records

METRICS = ("cer/original", "cer/gt")
MAP_METHODS = ("task_aware", "task_aware_fullres", "box_mask")


def _comparable(fixed: dict, uniform_only: bool) -> dict:
    """The recipe settings two runs must share; only those uniform maps depend on for a uniform-only run."""
    if not uniform_only:
        return fixed
    return {k: v for k, v in fixed.items() if k not in ("objective", "methods")} | {
        "uniform": (fixed.get("methods") or {}).get("uniform")
    }


def load_full_res_maps(run: Path, codec_runs: dict[str, dict]) -> pd.DataFrame:
    """The task-aware points of a full-resolution-maps run, as ``task_aware_fullres@CODEC``."""
    import yaml

    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    codec = recipe.get("codec", "sft-small")
    if codec not in codec_runs:
        raise SystemExit(f"{run}: codec {codec} has no run among the runs given")
    mine, theirs = (_without_working_side(r) for r in (recipe, codec_runs[codec]))
    if mine != theirs:
        raise SystemExit(
            f"{run}: its recipe differs from its codec's run in "
            f"{sorted(k for k in mine if mine[k] != theirs.get(k))}: not comparable"
        )
    df = load_records(run)
    df = df[df["method"] == "task_aware"].copy()
    df["method"] = f"task_aware_fullres@{codec}"
    print(f"{run}: codec {codec}, {df['image'].nunique()} receipts (task-aware maps at full resolution)")
    return df


def _without_working_side(recipe: dict) -> dict:
    from taskcomp.runner.run import _FIXED_KEYS

    fixed = {k: recipe.get(k) for k in _FIXED_KEYS if k not in ("checkpoint", "methods")}
    fixed["preprocess"] = {k: v for k, v in (fixed.get("preprocess") or {}).items() if k != "working_side"}
    return fixed


def load(runs: list[Path], uniform_only: set[Path] = frozenset(), full_res_maps: list[Path] = ()) -> pd.DataFrame:
    import yaml

    from taskcomp.runner.run import _FIXED_KEYS

    frames, first, codecs, recipes = [], None, set(), {}
    for i, run in enumerate(runs):
        df = load_records(run)
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        codec = recipe.get("codec", "sft-small")
        if "weights" in df and df["weights"].nunique() == 1:
            codec_id = f"{codec} ({df['weights'].dropna().iloc[0]})"
        else:
            codec_id = codec
        if codec in codecs:
            raise SystemExit(f"{run}: a second run of codec {codec}: give one run per codec")
        codecs.add(codec)
        if run not in uniform_only:
            recipes[codec] = recipe
        fixed = {k: recipe.get(k) for k in _FIXED_KEYS if k not in ("codec", "checkpoint")} | {
            "methods": recipe.get("methods")
        }
        only = run in uniform_only
        if only and i == 0:
            raise SystemExit(f"{run}: a uniform-only run cannot come first (JPEG, WebP and the original come from it)")
        if first is not None:
            mine, theirs = _comparable(fixed, only), _comparable(first, only)
            if mine != theirs:
                raise SystemExit(
                    f"{run}: its recipe differs from {runs[0]}'s in "
                    f"{sorted(k for k in mine if mine[k] != theirs.get(k))}: not comparable"
                )
        first = first or fixed
        print(f"{run}: codec {codec_id}, {df['image'].nunique()} receipts" + (" (uniform maps only)" if only else ""))
        if only:
            df = df[df["method"] == "uniform"]
        is_codec = df["method"].isin(["uniform", "box_mask"]) | df["method"].str.startswith("task_aware")
        df = df[is_codec | (i == 0)].copy()
        df.loc[is_codec, "method"] = df.loc[is_codec, "method"] + "@" + codec
        frames.append(df)
    frames += [load_full_res_maps(run, recipes) for run in full_res_maps]
    df = pd.concat(frames, ignore_index=True)
    # Receipts with every point of every run: a mean over other images would not compare.
    points = df.drop_duplicates(["image", "method", "setting"]).groupby("image").size()
    expected = df.drop_duplicates(["method", "setting"]).shape[0]
    complete = points[points == expected].index
    if not len(complete):
        raise SystemExit("no receipt has every point of every run yet")
    return df[df["image"].isin(complete)]


def mean_table(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["bpp", "psnr", *METRICS, "word_acc/gt", "word_acc/original", "seconds"]
    cols = [c for c in cols if c in df]
    return df.groupby(["method", "setting"], sort=False)[cols].mean().reset_index()


def _as_uniform(table: pd.DataFrame, method: str) -> pd.DataFrame:
    """``table`` with ``method``'s rows labelled uniform (the reference curve of compare_to_uniform) and the
    original uniform rows dropped."""
    t = table[table["method"] != "uniform"].copy()
    t.loc[t["method"] == method, "method"] = "uniform"
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument(
        "--uniform-only",
        type=Path,
        action="append",
        default=[],
        help="a run (also listed among the runs) that contributes only its uniform maps",
    )
    ap.add_argument("--out", type=Path, default=Path("results/documents"))
    ap.add_argument(
        "--max-bpp",
        type=float,
        default=0.35,
        help="low-rate range: only points at or below it count in both headline figures and their point lists",
    )
    ap.add_argument(
        "--full-res-maps",
        type=Path,
        action="append",
        default=[],
        help="a run of probes/fullres_maps.yaml: its task-aware maps join as task_aware_fullres",
    )
    a = ap.parse_args()
    bad = [r for r in a.uniform_only if r not in a.runs]
    if bad:
        raise SystemExit(f"--uniform-only {bad[0]}: not among the runs given")
    df = load(a.runs, set(a.uniform_only), a.full_res_maps)
    table = mean_table(df)
    a.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(a.out / "table.csv", index=False)
    (a.out / "table.md").write_text(table.to_markdown(index=False, floatfmt=".4f") + "\n")
    codecs = sorted({m.split("@")[1] for m in table["method"] if "@" in m})
    summary: dict = {
        "receipts": sorted(df["image"].unique().tolist()),
        "n_receipts": int(df["image"].nunique()),
        "codecs": codecs,
        "bpp_saving_vs_uniform_percent": {},
        "cer_gain_vs_webp_at_equal_bpp": {},
        "seconds_per_map": {},
    }
    for metric in METRICS:
        for codec in codecs:
            for ref in codecs:
                for m in MAP_METHODS:
                    method = f"{m}@{codec}"
                    if method not in set(table["method"]):
                        continue
                    t = _as_uniform(table, f"uniform@{ref}")
                    c = compare_to_uniform(t, metric, method, a.max_bpp)
                    low = [p for p in c.get("points", []) if "bpp_saving_percent" in p and p["bpp"] <= a.max_bpp]
                    if c:
                        best = max(low, key=lambda p: p["bpp_saving_percent"], default=None)
                        summary["bpp_saving_vs_uniform_percent"][f"{method} vs uniform@{ref}, {metric}"] = {
                            "best": best["bpp_saving_percent"] if best else None,
                            "best_setting": best["setting"] if best else None,
                            "points": [
                                {
                                    k: p[k]
                                    for k in (
                                        "setting",
                                        "bpp",
                                        metric,
                                        "bpp_saving_percent",
                                        "uniform_bpp_at_same_metric",
                                    )
                                    if k in p
                                }
                                for p in c["points"]
                            ],
                        }
            for m in ("uniform", *MAP_METHODS):
                method = f"{m}@{codec}"
                if method not in set(table["method"]):
                    continue
                c = compare_to_uniform(_as_uniform(table, "webp"), metric, method, a.max_bpp)
                if c:
                    pts = [
                        {
                            "setting": p["setting"],
                            "bpp": p["bpp"],
                            metric: p[metric],
                            "webp_at_same_bpp": p["uniform_at_same_bpp"],
                            "cer_gain_points": p["gain_points"],
                        }
                        for p in c["points"]
                        if "gain_points" in p and p["bpp"] <= a.max_bpp
                    ]
                    summary["cer_gain_vs_webp_at_equal_bpp"][f"{method}, {metric}"] = {
                        "best": max((p["cer_gain_points"] for p in pts), default=None),
                        "points": pts,
                    }
    # RD of the codecs' uniform maps against each other and against JPEG / WebP: BD-rate (%) on the mean curves,
    # PSNR over the whole receipt and CER against the original's reading (as a quality, 1 - CER), each over the
    # common range of the two curves.
    from taskcomp.bench.metrics import bd_rate

    summary["bd_rate_percent"] = {}
    for codec in codecs:
        test = table[table["method"] == f"uniform@{codec}"].sort_values("bpp")
        for ref in [f"uniform@{c}" for c in codecs if c != codec] + ["jpeg", "webp"]:
            r = table[table["method"] == ref].sort_values("bpp")
            for name, col, f in (("psnr", "psnr", lambda v: v), ("cer/original", "cer/original", lambda v: 1 - v)):
                try:
                    v = bd_rate(
                        r["bpp"].to_numpy(), f(r[col].to_numpy()), test["bpp"].to_numpy(), f(test[col].to_numpy())
                    )
                except ValueError as e:
                    v = f"not computed: {e}"
                summary["bd_rate_percent"][f"uniform@{codec} vs {ref}, {name}"] = v
    for method in table["method"].unique():
        if method.split("@")[0].startswith("task_aware"):
            rows = df[df["method"] == method]
            if "map_seconds" in rows and rows["map_seconds"].notna().all():
                summary["seconds_per_map"][method] = {
                    "map_seconds": float(rows["map_seconds"].mean()),
                    "target_seconds": float(rows.groupby("image")["target_seconds"].first().mean()),
                    "map_and_targets_seconds": float((rows["map_seconds"] + rows["target_seconds"]).mean()),
                    "point_seconds": float(rows["seconds"].mean()),
                }
            else:  # records from before map_seconds: the point's whole time (map, coding, decoding, reading)
                summary["seconds_per_map"][method] = {"point_seconds": float(rows["seconds"].mean())}
    for method in table["method"].unique():  # a box mask is the lines read on the original: the targets' time
        base, _, codec = method.partition("@")
        ta = summary["seconds_per_map"].get(f"task_aware@{codec}", {})
        if base == "box_mask" and "target_seconds" in ta:
            summary["seconds_per_map"][method] = {
                "map_seconds": 0.0,
                "target_seconds": ta["target_seconds"],
                "map_and_targets_seconds": ta["target_seconds"],
                "point_seconds": float(df[df["method"] == method]["seconds"].mean()),
                "note": "the box mask's map is the lines easyocr reads on the original's working copy (the "
                "task-aware maps' targets, timed there); drawing it takes milliseconds",
            }
    plot(table, a.out / "cer_vs_bpp.png", summary["n_receipts"])
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['n_receipts']} receipts; wrote {a.out}/table.md, summary.json, cer_vs_bpp.png")


def plot(table: pd.DataFrame, path: Path, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, col in zip(axes, ("cer/original", "cer/gt", "psnr")):
        for method in table["method"].unique():
            if method == "original":
                if col in table:
                    ax.axhline(
                        float(table[table["method"] == method][col].iloc[0]), color="k", ls=":", lw=1, label="original"
                    )
                continue
            t = table[table["method"] == method].sort_values("bpp")
            t = t[t["bpp"] <= 0.6]
            style = "o-" if method.startswith(("uniform", "task_aware")) else "s--"
            ax.plot(t["bpp"], t[col], style, ms=3, label=method)
        ax.set_xlabel("bpp (real file size, the receipt's own pixels)")
        ax.set_ylabel(col)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"SROIE receipts at their own resolution: {n} receipts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
