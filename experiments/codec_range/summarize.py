"""results/codec_range/summary.json and the RD plot: a re-targeted codec against sft-small on Kodak.

    python experiments/codec_range/summarize.py --new results/codec_range/kodak --base results/kodak \
        --imagenet results/codec_range/imagenet256_rate.json --out results/codec_range

Inputs are `taskcomp eval-codec` folders (records.jsonl: real bpp = file size, PSNR-RGB of the decoded file) and
the output of experiments/codec_range/imagenet256_rate.py. BD-rate is taken on the mean curves (bpp and PSNR
averaged over the 24 images at each uniform q), over the PSNR range both curves share.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from taskcomp.bench.metrics import bd_rate  # noqa: E402
from taskcomp.bench.published import PUBLISHED_SFT_KODAK  # noqa: E402
from taskcomp.codec import create_codec  # noqa: E402
from taskcomp.io import atomic_write, save_figure  # noqa: E402


def load_records(folder: Path) -> pd.DataFrame:
    """An eval-codec folder's records.jsonl, the last line of each point winning (as eval-codec reads it)."""
    r = pd.read_json(folder / "records.jsonl", lines=True)
    return r.drop_duplicates(["image", "method", "setting", "weights"], keep="last")


def uniform_points(records: pd.DataFrame, method: str) -> pd.DataFrame:
    """One row per uniform q of ``method``: mean real bpp, estimated bpp and PSNR over the images."""
    r = records[(records.method == method) & records.setting.str.startswith("q=")]
    return r.groupby("q")[["bpp", "bpp_est", "psnr"]].mean().reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new", required=True, help="eval-codec folder of the new codec (with jpeg and webp)")
    ap.add_argument("--base", required=True, help="eval-codec folder of sft-small")
    ap.add_argument("--new-codec", default="sft-small-lowrate")
    ap.add_argument("--imagenet", help="imagenet256_rate.py output")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    new, base = load_records(Path(a.new)), load_records(Path(a.base))
    # Each folder may hold points of older weights: keep the shipped weights' (and the baselines').
    for df, name in ((new, a.new_codec), (base, "sft-small")):
        wid = create_codec(name).checkpoint_info["hash"][:16]
        df.drop(df.index[(df.method == name) & (df.weights != wid)], inplace=True)
    n, b = uniform_points(new, a.new_codec), uniform_points(base, "sft-small")
    per_image = new[(new.method == a.new_codec) & new.setting.str.startswith("q=")].pivot_table(
        index="image", columns="q", values="bpp"
    )
    rises = (per_image.diff(axis=1).iloc[:, 1:] > 0).all(axis=1)
    new_summary = json.loads((Path(a.new) / "summary.json").read_text())
    summary = {
        "codec": a.new_codec,
        "q0_bpp_kodak": round(float(n.loc[n.q == 0, "bpp"].iloc[0]), 4),
        "q0_psnr_kodak": round(float(n.loc[n.q == 0, "psnr"].iloc[0]), 3),
        "sft_small_q0_bpp_kodak": round(float(b.loc[b.q == 0, "bpp"].iloc[0]), 4),
        "rate_rises_with_q_on_every_image": bool(rises.all()),
        "images_where_rate_not_monotone": sorted(rises.index[~rises]),
        "bd_rate_vs_sft_small_percent": round(bd_rate(b.bpp, b.psnr, n.bpp, n.psnr), 2),
        "psnr_range_shared_db": [round(max(b.psnr.min(), n.psnr.min()), 2), round(min(b.psnr.max(), n.psnr.max()), 2)],
        "bd_rate_psnr_percent": new_summary.get("bd_rate_psnr_percent"),
        "half_map": new_summary.get("half_map"),
        "real_vs_estimated_bpp_percent_by_q": new_summary.get("real_vs_estimated_bpp_percent_by_q"),
        "mean_curve_new": n.round(4).to_dict("list"),
        "mean_curve_sft_small": b.round(4).to_dict("list"),
        "weights": sorted(set(new.loc[new.method == a.new_codec, "weights"])),
    }
    if a.imagenet:
        im = json.loads(Path(a.imagenet).read_text())
        summary["q0_bpp_imagenet256"] = im["codecs"][a.new_codec]["mean_real_bpp"]["0.0"]
        summary["imagenet256"] = im
    fig, ax = plt.subplots(figsize=(7, 5))
    pub = PUBLISHED_SFT_KODAK["results"]
    ax.plot(pub["bpp"], pub["psnr-rgb"], "k--", label="SFT published (27.6M parameters)")
    for df, name, style in ((b, "sft-small", "o-"), (n, a.new_codec, "s-")):
        ax.plot(df.bpp, df.psnr, style, label=f"{name} (q = 0..1)")
    for m in ("jpeg", "webp"):
        pts = new[new.method == m].groupby("quality")[["bpp", "psnr"]].mean().sort_values("bpp")
        pts = pts[pts.bpp <= 1.2]
        ax.plot(pts.bpp, pts.psnr, ".:", label=m.upper())
    ax.set(xlabel="bpp (file size)", ylabel="PSNR-RGB (dB)", title="Kodak, 24 images, uniform maps", xlim=(0, 1.1))
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, out / "rd_kodak.png")
    atomic_write(out / "summary.json", json.dumps(summary, indent=2).encode())
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}, indent=2))


if __name__ == "__main__":
    main()
