"""Summary of a probe run folder beside the 50-receipt run folder, on the receipts the probe ran.

    python experiments/documents/probes/probe_summary.py runs/sroie_text_high_rate runs/sroie_text_full_doc2 \
        --out results/documents/probes/high_rate.json
    python experiments/documents/probes/probe_summary.py runs/sroie_text_fullres_maps runs/sroie_text_full_doc2 \
        --suffix @fullres --out results/documents/probes/fullres_maps.json

Means over the receipts the probe ran (points it did not make, e.g. the lower uniform levels, come from the run
folder's records of the same receipts), and the bits each map saves against sft-small-doc's uniform curve at equal
CER vs the original (``taskcomp.runner.report.compare_to_uniform`` on the mean curves; None outside uniform's range).
``--suffix``: keep the run folder's points of the same method and setting too, and name the probe's
``method + suffix``.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from taskcomp.runner.report import compare_to_uniform, load_records

METRICS = ["bpp", "cer/original", "cer/gt", "psnr"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probe", type=Path), ap.add_argument("full", type=Path), ap.add_argument("--out", required=True)
    ap.add_argument("--suffix", default="")
    a = ap.parse_args()
    probe = load_records(a.probe)
    probe["method"] = probe["method"] + a.suffix
    per_image = probe.groupby("image").size()
    images = sorted(per_image[per_image == per_image.max()].index)
    full = load_records(a.full)
    probed = set(zip(probe["method"], probe["setting"]))
    full = full[
        full["image"].isin(images)
        & full["method"].isin(["uniform", "box_mask", "task_aware", "webp"])
        & ~np.array([k in probed for k in zip(full["method"], full["setting"])])
    ]
    df = pd.concat([probe[probe["image"].isin(images)], full], ignore_index=True)
    groups = df.groupby(["method", "setting"])
    table = groups[METRICS].mean().reset_index()
    table = table[groups.size().to_numpy() == len(images)]  # points every image has
    table["n"] = len(images)
    saving = {}  # (method, setting) -> the uniform curve's bpp at the same mean CER vs the original, saving %
    for method in table["method"].unique():
        if method != "uniform":
            for p in compare_to_uniform(table, "cer/original", method, max_bpp=np.inf).get("points", []):
                saving[method, p["setting"]] = (p.get("uniform_bpp_at_same_metric"), p.get("bpp_saving_percent"))
    points = [
        {
            **{k: r[k] for k in ("method", "setting", "n")},
            **{k: float(r[k]) for k in METRICS},
            "uniform_bpp_at_same_cer": saving.get((r["method"], r["setting"]), (None, None))[0],
            "bpp_saving_percent": saving.get((r["method"], r["setting"]), (None, None))[1],
        }
        for r in table.to_dict("records")
    ]
    seconds = probe.groupby("method")["seconds"].mean().to_dict()
    out = {"images": images, "codec": "sft-small-doc", "probe_seconds_per_point": seconds, "points": points}
    Path(a.out).write_text(json.dumps(out, indent=1))
    for p in sorted(points, key=lambda p: (p["method"], p["bpp"])):
        s = f"{p['bpp_saving_percent']:+.1f}%" if p["bpp_saving_percent"] is not None else "-"
        print(
            f"{p['method']:15s} {p['setting']:12s} bpp {p['bpp']:.4f}  CER/orig {p['cer/original']:.4f}  "
            f"CER/gt {p['cer/gt']:.4f}  saving {s}"
        )


if __name__ == "__main__":
    main()
