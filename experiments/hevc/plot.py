"""The HEVC figure of results/hevc/: top-1 against real bpp on Lite0/1/2, task-aware HEVC against plain-CRF HEVC,
with the SFT codec's uniform curve and task-aware points, JPEG and WebP (from the report's table.csv).

    python experiments/hevc/plot.py results/hevc/imagenet/table.csv -o results/hevc/imagenet_hevc.png
"""

from __future__ import annotations

import argparse
import io
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from taskcomp.io import atomic_write  # noqa: E402

# method -> (label, style); the methods drawn, in this order
STYLE = {
    "hevc": ("HEVC, plain CRF (uniform map)", dict(color="tab:green", ls="-", marker="o")),
    "hevc_task_aware": ("HEVC + task-aware map (label)", dict(color="tab:red", ls="-", marker="o")),
    "hevc_label_free": ("HEVC + task-aware map (label-free)", dict(color="tab:red", ls="--", marker="^")),
    "h264": ("H.264, plain CRF", dict(color="tab:olive", ls="-", marker=".")),
    "h264_label_free": ("H.264 + task-aware map (label-free)", dict(color="tab:pink", ls="--", marker=".")),
    "uniform": ("SFT codec, uniform map", dict(color="tab:blue", ls="-", marker="s")),
    "task_aware": ("SFT codec, task-aware (label)", dict(color="tab:blue", ls="", marker="*", ms=12)),
    "task_aware_label_free": ("SFT codec, task-aware (label-free)", dict(color="tab:cyan", ls="", marker="*", ms=12)),
    "jpeg": ("JPEG", dict(color="0.5", ls=":", marker="x")),
    "webp": ("WebP", dict(color="tab:orange", ls=":", marker="x")),
}


def plot(table: pd.DataFrame, max_bpp: float = 0.9):
    models = [c for c in table.columns if c.startswith("top1/")]
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.4), squeeze=False)
    for ax, col in zip(axes[0], models):
        orig = table[table["method"] == "original"]
        if len(orig):
            ax.axhline(100 * orig[col].iloc[0], color="k", ls=":", lw=1, label="uncompressed")
        for method, (label, style) in STYLE.items():
            t = table[(table["method"] == method) & (table["bpp"] <= max_bpp)].sort_values("bpp")
            if len(t):
                st = dict(style)
                ax.plot(t["bpp"], 100 * t[col], label=label, ms=st.pop("ms", 4), **st)
        ax.set_title(col.split("/")[1])
        ax.set_xlabel("bpp (real file size)")
        ax.set_ylabel("top-1 (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("table", help="table.csv of `taskcomp report`")
    ap.add_argument("-o", "--output", required=True, help="PNG file")
    a = ap.parse_args(argv)
    fig = plot(pd.read_csv(a.table))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write(a.output, buf.getvalue())
    print(a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
