"""results/hevc/summary.json from the HEVC experiments' reports and records (issue 38).

    python experiments/hevc/summary.py --imagenet results/hevc/imagenet --coco results/hevc/coco \
        --imagenet-run runs/hevc_imagenet --out results/hevc/summary.json

Keys: ``gain_vs_uniform_points`` (per eval model: the best mean-curve top-1 gain of task-aware HEVC over plain-CRF
HEVC at equal real bpp at or below 0.3 bpp, with its setting and bootstrap 95% interval), ``bpp_saving_percent``
(per eval model: the best bits saved at equal top-1), both for the maps with the label (``hevc_task_aware``) and
without (``hevc_label_free``, and its qp_per_q variants); the SFT codec's own figures beside them; seconds per
image of the HEVC path (encode + decode, map making apart); COCO person AP@0.5 when given. Every figure is read
from the report's summary.json (``taskcomp report``), none is typed in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from taskcomp.io import atomic_write
from taskcomp.runner.report import load_records

HEVC_METHODS = ("hevc_task_aware", "hevc_label_free", "hevc_label_free_qp05", "hevc_label_free_qp2", "h264_label_free")
SFT_METHODS = ("task_aware", "task_aware_label_free")


def _figures(summary: dict, method: str, metric: str, max_bpp: float) -> dict | None:
    for key, c in summary["comparisons"].items():
        if key.startswith(f"{method} vs ") and key.endswith(f", {metric}"):
            return {
                "against": key.split(" vs ")[1].split(",")[0],
                "gain_points": c.get(f"mean_curve_best_gain_points_at_or_below_{max_bpp}_bpp"),
                "gain_setting": c.get("mean_curve_best_gain_setting"),
                "gain_ci95": c.get("mean_curve_best_gain_points_ci95"),
                "bpp_saving_percent": c.get("mean_curve_best_bpp_saving_percent"),
                "saving_setting": c.get("mean_curve_best_bpp_saving_setting"),
                "saving_ci95": c.get("mean_curve_best_bpp_saving_percent_ci95"),
                "points": c.get("points"),
            }
    return None


def imagenet_part(report_dir: Path, run_dir: Path | None, max_bpp: float = 0.3) -> dict:
    s = json.loads((report_dir / "summary.json").read_text())
    metrics = sorted({k.split(", ")[1] for k in s["comparisons"] if k.split(", ")[1].startswith("top1/")})
    out: dict = {"n_images": s["n_images"], "max_bpp": max_bpp, "methods": {}}
    for method in HEVC_METHODS + SFT_METHODS:
        per = {m.split("/")[1]: _figures(s, method, m, max_bpp) for m in metrics}
        if any(per.values()):
            out["methods"][method] = per
    head = out["methods"].get("hevc_task_aware") or {}
    out["gain_vs_uniform_points"] = {m: (f or {}).get("gain_points") for m, f in head.items()}
    out["bpp_saving_percent"] = {m: (f or {}).get("bpp_saving_percent") for m, f in head.items()}
    if run_dir is not None:
        df = load_records(run_dir)
        hevc = df[df["method"].str.startswith(("hevc", "h264"))]
        out["seconds_per_image"] = {
            "hevc_encode": float(hevc.loc[hevc["method"].str.startswith("hevc"), "enc_s"].mean()),
            "hevc_decode": float(hevc.loc[hevc["method"].str.startswith("hevc"), "dec_s"].mean()),
            "map_making_sft_stand_in": float(df.loc[df["method"] == "hevc_label_free", "map_seconds"].mean()),
            "note": "encode/decode: one 256x256 crop, x265 preset slow, 2-core CPU shared by two shards; map making: "
            "10 Adam steps through sft-small and Lite0, once per image and lambda (shared by the methods coding it)",
        }
    return out


def coco_part(report_dir: Path) -> dict:
    s = json.loads((report_dir / "summary.json").read_text())
    out = {"n_images": s["n_images"], "methods": {}}
    for method in ("hevc_task_aware", "task_aware"):
        f = _figures(s, method, "ap50/person", 0.3)
        if f:
            out["methods"][method] = f
    table = (report_dir / "table.csv").read_text().splitlines()
    out["table"] = "table.csv"
    out["n_rows"] = len(table) - 1
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--imagenet", type=Path, required=True, help="report folder of the ImageNet run")
    ap.add_argument("--imagenet-run", type=Path, help="the ImageNet run folder (records: seconds per image)")
    ap.add_argument("--coco", type=Path, help="report folder of the COCO run")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    summary = {"imagenet": imagenet_part(a.imagenet, a.imagenet_run)}
    summary["gain_vs_uniform_points"] = summary["imagenet"]["gain_vs_uniform_points"]
    summary["bpp_saving_percent"] = summary["imagenet"]["bpp_saving_percent"]
    if a.coco is not None and (a.coco / "summary.json").is_file():
        summary["coco"] = coco_part(a.coco)
    old = json.loads(a.out.read_text()) if a.out.is_file() else {}
    old.update(summary)  # keeps keys other programs wrote (e.g. steering, kodak)
    atomic_write(a.out, json.dumps(old, indent=2).encode())
    print(json.dumps({k: summary[k] for k in ("gain_vs_uniform_points", "bpp_saving_percent")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
