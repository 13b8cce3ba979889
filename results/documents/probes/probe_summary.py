"""Probe: task-aware maps and box masks at higher rates (init_q 0.5 / 0.75, box masks 0.75 / 1, uniform up to q = 1).

    taskcomp run results/documents/probes/high_rate.yaml --limit 50 --shard {0,5}/10 --threads 1
    python results/documents/probes/high_rate_summary.py runs/sroie_text_high_rate runs/sroie_text_full_doc2 \
        --out results/documents/probes/high_rate.json

Means over the receipts the probe ran (the lower uniform levels and the 768-px task-aware maps of the same receipts
come from the 50-receipt run folder), and the bits each map saves against sft-small-doc's uniform curve at equal
CER vs the original (linear interpolation on the mean curve; None outside it).
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
    a = ap.parse_args()
    probe = records(a.probe)
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
    out = {"images": images, "codec": "sft-small-doc", "points": points}
    Path(a.out).write_text(json.dumps(out, indent=1))
    for p in sorted(points, key=lambda p: (p["method"], p["bpp"])):
        s = f"{p['bpp_saving_percent']:+.1f}%" if p["bpp_saving_percent"] is not None else "-"
        print(f"{p['method']:15s} {p['setting']:12s} bpp {p['bpp']:.4f}  CER/orig {p['cer/original']:.4f}  "
              f"CER/gt {p['cer/gt']:.4f}  saving {s}")


if __name__ == "__main__":
    main()
