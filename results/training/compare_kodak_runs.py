"""Side-by-side Kodak figures of two `taskcomp eval-codec` output folders (e.g. shipped vs candidate weights).

    python results/training/compare_kodak_runs.py results/kodak /tmp/kodak-candidate [--names A B]

Prints a markdown table: BD-rates against JPEG, WebP and the published table, the half-map check, real vs
estimated bpp, and the mean real bpp / PSNR at q = 0, 0.5 and 1 (from each folder's summary.json and mean.csv).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def figures(folder: Path) -> dict:
    s = json.loads((folder / "summary.json").read_text())
    bd, hm = s["bd_rate_psnr_percent"], s["half_map"]
    name = s["codec"]
    row = {
        "BD-rate vs JPEG (%)": f"{bd[f'{name} vs jpeg']:+.2f}",
        "BD-rate vs WebP (%)": f"{bd[f'{name} vs webp']:+.2f}",
        "BD-rate vs published (%)": f"{bd[f'{name} vs sft-published']:+.2f}",
        "half map: images >= 5 dB (of 24)": hm["images_with_gap_ge_5db"],
        "half map: min / mean gap (dB)": f"{hm['min_psnr_gap_db']:.2f} / {hm['mean_psnr_gap_db']:.2f}",
        "real vs estimated bpp, max abs (%)": f"{max(abs(v) for v in s['real_vs_estimated_bpp_percent_by_q'].values()):.2f}",
    }
    mean = pd.read_csv(folder / "mean.csv")
    sft = mean[mean["method"] == name]
    for q in (0.0, 0.5, 1.0):
        r = sft[(sft["q"] - q).abs() < 1e-9]
        if len(r):
            row[f"q={q:g}: bpp / PSNR"] = f"{r['bpp'].iloc[0]:.3f} / {r['psnr'].iloc[0]:.2f}"
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--names", nargs=2, default=None)
    args = ap.parse_args(argv)
    names = args.names or [args.a, args.b]
    if names[0] == names[1]:
        raise SystemExit("give the two folders different --names")
    df = pd.DataFrame({names[0]: figures(Path(args.a)), names[1]: figures(Path(args.b))})
    print(df.to_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
