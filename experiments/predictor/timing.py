"""Seconds per map at 256 px on the CPU, side by side in one process: the predictor's one pass, the predictor
plus 2 optimiser steps, and 10-step per-image optimisation (label-free), on the same images at one lambda.

    python experiments/predictor/timing.py [--images 20] [--threads 1] [--lam 0.1] > results/predictor/timing.json
    python experiments/predictor/timing.py --predictor PATH.pth --limit 200 --one-step > TIMING.json

``--predictor`` times another predictor (a registered name or checkpoint); ``--one-step`` adds the training-free
one-step map (one normalised gradient step, ``optimizer="ngd"``, as the recipe's ``task_aware_one_step``).

Images: the first N of imagenet-sample spread as the recipe's --limit 100 takes them (Resize 280, CenterCrop 256).
The map only: encoding the .tcz costs the same for every method and is left out. The three methods alternate
per image, so machine noise falls on all of them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from taskcomp.codec import create_codec
from taskcomp.datasets import data_root
from taskcomp.io import image_to_tensor, load_image
from taskcomp.objectives import create_objective
from taskcomp.optimize import MapOptimizer
from taskcomp.predictors import create_predictor
from taskcomp.runner.layouts import list_layout
from taskcomp.runner.run import spread
from taskcomp.runner.tasks import preprocess_image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--predictor", default="lite0-classification")
    ap.add_argument("--limit", type=int, default=100, help="the recipe's --limit the images are spread as")
    ap.add_argument("--one-step", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    codec = create_codec("sft-small")
    obj = create_objective("classification", model="tf_efficientnet_lite0")
    pred = create_predictor(a.predictor)
    items = spread(list_layout("imagenet-sample", data_root() / "imagenet-sample"), a.limit)[: a.images]
    times = {"predicted": [], "predicted_refine2": [], "per_image_10_steps": []}
    if a.one_step:
        times["one_step"] = []
    for it in items:
        x = image_to_tensor(preprocess_image(load_image(it["path"]), 280, 256)[0])
        ctx = obj.prepare(x)
        t0 = time.perf_counter()
        with torch.no_grad():
            m = pred.predict_map(x, a.lam)
        times["predicted"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            m = pred.predict_map(x, a.lam)
        MapOptimizer(codec, obj, lam=a.lam, steps=2, lr=0.3, init=m, downsample=8).run(x, ctx)
        times["predicted_refine2"].append(time.perf_counter() - t0)
        if a.one_step:
            t0 = time.perf_counter()
            MapOptimizer(
                codec, obj, lam=a.lam, steps=1, lr=2.0, optimizer="ngd", keep="last", init_q=0.1, downsample=8
            ).run(x, ctx)
            times["one_step"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        MapOptimizer(codec, obj, lam=a.lam, steps=10, lr=0.3, init_q=0.1, downsample=8).run(x, ctx)
        times["per_image_10_steps"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "images": len(items),
                "predictor": a.predictor,
                "threads": a.threads,
                "lambda": a.lam,
                "size": "256x256",
                "seconds_per_map": {k: round(v, 4) for k, v in med.items()},
                "speedup_vs_per_image": round(med["per_image_10_steps"] / med["predicted"], 1),
                "refine2_speedup_vs_per_image": round(med["per_image_10_steps"] / med["predicted_refine2"], 2),
                "statistic": "median over images",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
