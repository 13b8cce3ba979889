"""Summary of a probe run folder beside the 50-receipt run folder, on the receipts the probe ran.

    python results/documents/probes/probe_summary.py runs/sroie_text_high_rate runs/sroie_text_full_doc2 \
        --out results/documents/probes/high_rate.json
    python results/documents/probes/probe_summary.py runs/sroie_text_fullres_maps runs/sroie_text_full_doc2 \
        --suffix @fullres --out results/documents/probes/fullres_maps.json

Means over the receipts the probe ran (points it did not make, e.g. the lower uniform levels, come from the run
folder's records of the same receipts), and the bits each map saves against sft-small-doc's uniform curve at equal
CER vs the original (linear interpolation on the mean curve; None outside it). ``--suffix``: keep the run folder's
points of the same method and setting too, and name the probe's ``method + suffix``.
"""

import argparse
import collections
import json
from pathlib import Path

import numpy as np


def records(folder):
    return [json.loads(l) for f in sorted(Path(folder).glob("records.*.jsonl")) for l in f.open() if l.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probe"), ap.add_argument("full"), ap.add_argument("--out", required=True)
    ap.add_argument("--suffix", default="")
    a = ap.parse_args()
    probe = [{**r, "method": r["method"] + a.suffix} for r in records(a.probe)]
    per_image = collections.Counter(r["image"] for r in probe)
    images = sorted(i for i, n in per_image.items() if n == max(per_image.values()))
    probed = {(r["method"], r["setting"]) for r in probe}
    rows = [r for r in probe if r["image"] in images] + [
        r for r in records(a.full) if r["image"] in images and (r["method"], r["setting"]) not in probed
        and r["method"] in ("uniform", "box_mask", "task_aware", "webp")]
    groups = collections.defaultdict(list)
    for r in rows:
        groups[(r["method"], r["setting"])].append(r)
    points = [{"method": m, "setting": s, "n": len(v), **{k: float(np.mean([r[k] for r in v]))
                                                          for k in ("bpp", "cer/original", "cer/gt", "psnr")}}
              for (m, s), v in sorted(groups.items()) if len(v) == len(images)]
    uni = sorted((p["bpp"], p["cer/original"]) for p in points if p["method"] == "uniform")
    ub, uc = np.array([u[0] for u in uni]), np.array([u[1] for u in uni])
    for p in points:
        c = p["cer/original"]
        inside = p["method"] != "uniform" and uc.min() <= c <= uc.max() and np.all(np.diff(uc) < 0)
        p["uniform_bpp_at_same_cer"] = float(np.interp(-c, -uc, ub)) if inside else None
        p["bpp_saving_percent"] = (100 * (1 - p["bpp"] / p["uniform_bpp_at_same_cer"])
                                   if p["uniform_bpp_at_same_cer"] else None)
    seconds = {m: float(np.mean([r["seconds"] for r in probe if r["method"] == m])) for m in {r["method"] for r in probe}}
    out = {"images": images, "codec": "sft-small-doc", "probe_seconds_per_point": seconds, "points": points}
    Path(a.out).write_text(json.dumps(out, indent=1))
    for p in sorted(points, key=lambda p: (p["method"], p["bpp"])):
        s = f"{p['bpp_saving_percent']:+.1f}%" if p["bpp_saving_percent"] is not None else "-"
        print(f"{p['method']:15s} {p['setting']:12s} bpp {p['bpp']:.4f}  CER/orig {p['cer/original']:.4f}  "
              f"CER/gt {p['cer/gt']:.4f}  saving {s}")


if __name__ == "__main__":
    main()
