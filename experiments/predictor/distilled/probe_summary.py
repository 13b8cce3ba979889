"""Table of probe.py's records: per method and setting, mean estimated bpp, top-1 agreement with the original and
KL; the gain over uniform interpolated at the same mean bpp (agreement points, and KL ratio), with a 95% bootstrap
interval over images. ``--subset target`` keeps the images that have per-image maps (the targets' held-out tenth).

    python experiments/predictor/distilled/probe_summary.py results/predictor/distilled/probe/records.jsonl
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd


def uniform_at(u: pd.DataFrame, bpp: float, col: str) -> float:
    u = u.sort_values("bpp")
    return float(np.interp(bpp, u["bpp"], u[col]))


def table(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["method", "setting"], sort=False)[["bpp", "agree", "kl", "map_mean", "map_seconds"]].mean()
    u = g.loc["uniform"]
    g["gain_agree"] = [100 * (r.agree - uniform_at(u, r.bpp, "agree")) for r in g.itertuples()]
    g["kl_vs_uniform"] = [r.kl / uniform_at(u, r.bpp, "kl") for r in g.itertuples()]
    return g


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("records")
    ap.add_argument("--subset", choices=["all", "target", "extra"], default="all")
    ap.add_argument("--boot", type=int, default=500)
    a = ap.parse_args()
    try:
        lines = open(a.records).readlines()
    except OSError as e:
        raise SystemExit(f"probe_summary: cannot read {a.records}: {e.strerror}") from None
    df = pd.DataFrame([json.loads(line) for line in lines])
    if a.subset != "all":
        df = df[df.has_target == (a.subset == "target")]
    images = df.image.unique()
    full = {m for m, n in df.groupby("method").image.nunique().items() if n == len(images)}
    df = df[df.method.isin(full)]
    t = table(df)
    rng = np.random.default_rng(0)
    by = {im: d for im, d in df.groupby("image")}
    boots = []
    for _ in range(a.boot):
        pick = rng.choice(images, len(images))
        boots.append(table(pd.concat([by[i] for i in pick]))["gain_agree"])
    b = pd.concat(boots, axis=1)
    t["gain_lo"] = b.quantile(0.025, axis=1)
    t["gain_hi"] = b.quantile(0.975, axis=1)
    print(f"{len(images)} images ({a.subset})")
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(t.round(4).to_string())


if __name__ == "__main__":
    main()
