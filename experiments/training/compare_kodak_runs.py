"""Side-by-side figures of two `taskcomp eval-codec` output folders (e.g. shipped vs candidate weights).

    python experiments/training/compare_kodak_runs.py results/kodak /tmp/kodak-candidate [--names A B]

Works for Kodak folders and for folders made with `eval-codec --images` (e.g. the held-out photos of
`holdout_images.py`; no published-table comparison there). Prints a markdown table: BD-rates against JPEG,
WebP and the published table where present, the BD-rate of the second codec against the first, the half-map
check, real vs estimated bpp, and the mean real bpp / PSNR at q = 0, 0.5 and 1 (from each folder's
summary.json, mean.csv and CompressAI-style codec JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from taskcomp.bench.metrics import bd_rate  # noqa: E402


def figures(folder: Path) -> tuple[dict, dict]:
    """The table column of one folder, and its codec's mean RD curve (CompressAI-style results)."""
    s = json.loads((folder / "summary.json").read_text())
    bd, hm = s["bd_rate_psnr_percent"], s["half_map"]
    name = s["codec"]
    row = {"images": s.get("images", "Kodak (24 images)")}
    for ref, label in (("jpeg", "JPEG"), ("webp", "WebP"), ("sft-published", "published")):
        v = bd.get(f"{name} vs {ref}")
        row[f"BD-rate vs {label} (%)"] = f"{v:+.2f}" if isinstance(v, float) else "n/a"
    row.update(
        {
            f"half map: images >= 5 dB (of {hm['n_images']})": hm["images_with_gap_ge_5db"],
            "half map: min / mean gap (dB)": f"{hm['min_psnr_gap_db']:.2f} / {hm['mean_psnr_gap_db']:.2f}",
            "real vs estimated bpp, max abs (%)": f"{max(abs(v) for v in s['real_vs_estimated_bpp_percent_by_q'].values()):.2f}",
        }
    )
    mean = pd.read_csv(folder / "mean.csv")
    sft = mean[mean["method"] == name]
    for q in (0.0, 0.5, 1.0):
        r = sft[(sft["q"] - q).abs() < 1e-9]
        if len(r):
            row[f"q={q:g}: bpp / PSNR"] = f"{r['bpp'].iloc[0]:.3f} / {r['psnr'].iloc[0]:.2f}"
    return row, json.loads((folder / f"{name}.json").read_text())["results"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--names", nargs=2, default=None)
    args = ap.parse_args(argv)
    names = args.names or [args.a, args.b]
    if names[0] == names[1]:
        raise SystemExit("give the two folders different --names")
    (fa, ca), (fb, cb) = figures(Path(args.a)), figures(Path(args.b))
    fa[f"BD-rate vs {names[0]} (%)"] = ""
    fb[f"BD-rate vs {names[0]} (%)"] = f"{bd_rate(ca['bpp'], ca['psnr-rgb'], cb['bpp'], cb['psnr-rgb']):+.2f}"
    print(pd.DataFrame({names[0]: fa, names[1]: fb}).to_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
