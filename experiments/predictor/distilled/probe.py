"""Selection probe for issue 36 on held-out training photos (never imagenet-sample): which one-pass maps keep the
per-image maps' gain?

Each method gives coarse-grid logits for 224-px crops (the targets' preprocessing); every map is coded through
the codec's straight-through forward (estimated bpp) and scored label-free against the original crop's
EfficientNet-Lite0 prediction (top-1 agreement and KL, the targets' own task loss). The gain of a method is its
agreement minus uniform's interpolated at the same mean bpp. Images: the targets' held-out tenth (they have
per-image maps) plus ``--extra`` photos from the targets' fixed order that no target was made of.

    python experiments/predictor/distilled/probe.py --targets runs/targets-lite0 --out results/predictor/distilled/probe \
        --methods uniform,per_image,blur1,blur2,distilled,amp2,amp4,onestep,gradcam \
        --predictor onestep_distilled=results/predictor/distilled/lite0-onestep.pth --extra 40
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from taskcomp.codec import create_codec
from taskcomp.codec.sft import bits_from_likelihoods
from taskcomp.datasets import data_root
from taskcomp.io import image_to_tensor
from taskcomp.objectives import create_objective
from taskcomp.optimize import MapOptimizer, logit
from taskcomp.predictors import create_predictor
from taskcomp.training.distill import held_out
from taskcomp.training.targets import _load_crop, done_images, load_targets, target_images

LAMS = [0.01, 0.1, 1.0]


def blur(logits: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian low-pass of a map (in probability space), its mean kept."""
    m = torch.sigmoid(logits)
    r = int(math.ceil(3 * sigma))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    p = F.pad(m, (r, r, r, r), mode="replicate")
    p = F.conv2d(p, k.view(1, 1, 1, -1))
    p = F.conv2d(p, k.view(1, 1, -1, 1))
    return logit(p * (m.mean() / p.mean().clamp_min(1e-6)).clamp(max=1 / p.max().clamp_min(1e-6)))


def amplify(logits: torch.Tensor, k: float) -> torch.Tensor:
    """Logits spread k times around their mean (the predictor's placement, sharpened)."""
    mu = logits.mean(dim=(-2, -1), keepdim=True)
    return mu + k * (logits - mu)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", required=True, help="a make-targets folder (its held-out tenth is probed)")
    ap.add_argument("--out", required=True, help="folder for records.jsonl (resumes)")
    ap.add_argument("--data-root", default=None, help="default: $TASKCOMP_DATA or ../shared/data")
    ap.add_argument("--data", default="train,photos/imagen", help="the targets' photo folders (the extra images' pool)")
    ap.add_argument(
        "--methods",
        default="uniform,per_image,distilled,onestep",
        help="comma-separated: uniform, per_image, blurS (sigma S cells), distilled, ampK (logits spread K x), "
        "onestep, gradcam",
    )
    ap.add_argument("--predictor", action="append", default=[], help="NAME=PATH, a predictor method (repeatable)")
    ap.add_argument("--extra", type=int, default=40, help="photos without targets added to the held-out ones")
    ap.add_argument("--limit", type=int, default=None, help="probe only the first N images")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    root = data_root(a.data_root)
    spec, entries = load_targets(a.targets)
    val = [e for e in entries if held_out(e["image"])]
    done = done_images(Path(a.targets))
    order = target_images(root, a.data.split(","))
    extra = [rel for rel, _ in order[len(order) // 2 :] if rel not in done][: a.extra]
    images = [(e["image"], e) for e in val] + [(rel, None) for rel in extra]
    images = images[: a.limit]
    codec = create_codec("sft-small")
    objective = create_objective("classification", model="tf_efficientnet_lite0")
    opt = MapOptimizer(codec, objective, lam=0.1, init_q=0.1, downsample=8)
    methods = a.methods.split(",")
    predictors = {"distilled": "results/predictor/distilled/lite0-distilled-all.pth"}
    for s in a.predictor:
        k, v = s.split("=", 1)
        predictors[k] = v
        methods.append(k)
    loaded = {}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rec_path = out / "records.jsonl"
    have = set()
    if rec_path.is_file():
        for line in open(rec_path):
            r = json.loads(line)
            have.add((r["image"], r["method"], r["setting"]))
    f = open(rec_path, "a")
    t_start = time.perf_counter()
    for n, (rel, entry) in enumerate(images):
        x = image_to_tensor(_load_crop(Path(root) / rel, spec["resize"], spec["crop"]))
        ctx = objective.prepare(x)
        ref = ctx["ref_logits"].argmax(1)
        tgt = None
        if entry is not None:
            tgt = torch.from_numpy(np.load(Path(a.targets) / entry["file"])["logits"].astype(np.float32))

        def points(method):
            if method == "uniform":
                for q in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3):
                    yield f"q={q}", torch.full((1, 1, 28, 28), float(logit(torch.tensor(q)))), 0.0
            elif method == "per_image" and tgt is not None:
                for j, lam in enumerate(LAMS):
                    yield f"lam={lam}", tgt[j : j + 1], 0.0
            elif method.startswith("blur") and tgt is not None:
                for j, lam in enumerate(LAMS):
                    yield f"lam={lam}", blur(tgt[j : j + 1], float(method[4:])), 0.0
            elif method == "onestep":
                for lam in LAMS:
                    t0 = time.perf_counter()
                    o = MapOptimizer(
                        codec,
                        objective,
                        lam=lam,
                        optimizer="ngd",
                        steps=1,
                        lr=2.0,
                        keep="last",
                        init_q=0.1,
                        downsample=8,
                    )
                    yield f"lam={lam}", o.run(x, ctx).logits.detach(), time.perf_counter() - t0
            elif method == "gradcam":
                for alpha in (0.15, 0.3, 0.5):
                    t0 = time.perf_counter()
                    o = MapOptimizer(codec, objective, lam=0.1, init="gradcam", alpha=alpha, downsample=8)
                    yield f"alpha={alpha}", o.initial_logits(x, ctx).clamp(-9, 9), time.perf_counter() - t0
            elif method in predictors or method.startswith("amp"):
                name, k = (method, 1.0) if method in predictors else ("distilled", float(method[3:]))
                if name not in loaded:
                    loaded[name] = create_predictor(predictors[name]).eval()
                for lam in (0.01, 0.03, 0.1, 0.3, 1.0):
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        lg = loaded[name](x, lam)
                    yield f"lam={lam}", amplify(lg, k), time.perf_counter() - t0

        for method in methods:
            for setting, lg, map_s in points(method):
                if (rel, method, setting) in have:
                    continue
                with torch.no_grad():
                    qmap = opt.to_map(lg, x.shape[-2:])
                    o = codec(x, qmap, quantize="ste")
                    bpp = bits_from_likelihoods(o["likelihoods"]) / (x.shape[-2] * x.shape[-1])
                    x_hat = o["x_hat"].clamp(0, 1)
                    task = objective.loss(x_hat, ctx)
                    agree = float(objective.logits(x_hat).argmax(1) == ref)
                r = {
                    "image": rel,
                    "has_target": tgt is not None,
                    "method": method,
                    "setting": setting,
                    "bpp": float(bpp),
                    "kl": float(task),
                    "agree": agree,
                    "map_mean": float(qmap.mean()),
                    "map_seconds": map_s,
                }
                f.write(json.dumps(r) + "\n")
                f.flush()
        print(f"{n + 1}/{len(images)} {rel} {time.perf_counter() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
