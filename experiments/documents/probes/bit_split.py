"""Where a receipt's bits go: inside the ground-truth text lines or outside them, and what a map that keeps the
lines at a uniform map's level and drops the rest to q = 0 can save at most.

    python experiments/documents/probes/bit_split.py --codec sft-small-doc --every 5 --out results/documents/probes/bit_split.json

For the benchmark's 50 SROIE receipts (`--limit 50` of `sroie_text_full`, at full resolution, none trained on;
`--every k`: every k-th of them) and uniform levels q: the estimated rate (sum of -log2 likelihoods, within 0.5% of the file sizes here) split
into y's bits at latent positions (16 x 16 px) that touch a ground-truth box grown by 2 px, y's bits elsewhere, and
z's bits; and the rate of the box map (q inside the grown boxes, 0 outside), whose saving against uniform q is
the most any map can save that leaves every text line at q: the lines then read no better than under uniform q
(they read worse: results/documents/README.md), so a map that saves more must lower q inside the lines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from taskcomp.codec import create_codec
from taskcomp.io import atomic_write, image_to_tensor, load_image
from taskcomp.runner.layouts import list_items
from taskcomp.runner.recipe import load_recipe
from taskcomp.runner.run import spread
from taskcomp.runner.tasks import _sroie_lines


def box_map(lines, H: int, W: int, q: float, margin: int = 2) -> torch.Tensor:
    m = torch.zeros(1, 1, H, W)
    for a, b, c, d, _ in lines:
        m[..., max(0, int(b) - margin) : int(d) + 1 + margin, max(0, int(a) - margin) : int(c) + 1 + margin] = q
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("TASKCOMP_DATA", "../shared/data"))
    ap.add_argument("--codec", default="sft-small-doc")
    ap.add_argument("--levels", default="0,0.2,0.5")
    ap.add_argument("--every", type=int, default=1, help="every k-th of the benchmark's 50 receipts")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.every < 1:
        ap.error("--every must be >= 1")
    torch.set_num_threads(a.threads)
    net = create_codec(a.codec).eval()
    # the benchmark's own 50 (as `taskcomp run sroie_text_full --limit 50` picks them), none trained on
    items = spread(list_items(load_recipe("sroie_text_full"), Path(a.data)), 50)[:: a.every]
    levels = [float(v) for v in a.levels.split(",")]
    rows, t0 = [], time.time()
    for k, item in enumerate(items):
        x = image_to_tensor(load_image(item["path"]))
        H, W = x.shape[-2:]
        lines = _sroie_lines(item["boxes"])
        inside = box_map(lines, H, W, 1.0)
        for q in levels:
            with torch.inference_mode():
                out = net(x, torch.full((1, 1, H, W), q), quantize="round")
                ly = -torch.log2(out["likelihoods"]["y"]).sum(1, keepdim=True)
                z = float(-torch.log2(out["likelihoods"]["z"]).sum())
                h, w = ly.shape[-2:]
                cells = F.adaptive_max_pool2d(F.pad(inside, (0, w * 16 - W, 0, h * 16 - H)), (h, w))
                y_in, y_out = float((ly * cells).sum()), float((ly * (1 - cells)).sum())
                boxed = net(x, box_map(lines, H, W, q), quantize="round")
                bits_box = sum(float(-torch.log2(l).sum()) for l in boxed["likelihoods"].values())
            n = H * W
            total = (y_in + y_out + z) / n
            rows.append(
                {
                    "id": item["id"],
                    "width": W,
                    "height": H,
                    "q": q,
                    "bpp": total,
                    "bpp_y_text": y_in / n,
                    "bpp_y_outside": y_out / n,
                    "bpp_z": z / n,
                    "text_cell_fraction": float(cells.mean()),
                    "box_map_bpp": bits_box / n,
                    "box_map_saving_percent": 100 * (1 - bits_box / n / total),
                }
            )
        print(f"{k + 1}/{len(items)} {item['id']} {time.time() - t0:.0f} s", flush=True)
    summary = {}
    for q in levels:
        r = [row for row in rows if row["q"] == q]
        summary[str(q)] = {
            "receipts": len(r),
            "mean_bpp": statistics.mean(v["bpp"] for v in r),
            "share_outside_text_percent": 100
            * statistics.mean((v["bpp_y_outside"] + v["bpp_z"]) / v["bpp"] for v in r),
            "share_y_outside_text_percent": 100 * statistics.mean(v["bpp_y_outside"] / v["bpp"] for v in r),
            "mean_box_map_bpp": statistics.mean(v["box_map_bpp"] for v in r),
            "box_map_saving_percent_mean": statistics.mean(v["box_map_saving_percent"] for v in r),
            "box_map_saving_percent_max": max(v["box_map_saving_percent"] for v in r),
            "saving_of_mean_bpp_percent": 100
            * (1 - statistics.mean(v["box_map_bpp"] for v in r) / statistics.mean(v["bpp"] for v in r)),
        }
    atomic_write(
        a.out,
        json.dumps(
            {
                "codec": a.codec,
                "data": f"sroie_text_full --limit 50, every {a.every}: {len(items)} receipts",
                "summary": summary,
                "rows": rows,
            },
            indent=1,
        ).encode(),
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
