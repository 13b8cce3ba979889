"""How much of the targets' placement a distilled predictor reproduces, on the targets' held-out tenth.

For each predictor: held-out KL (as ``distill-predictor`` reports it), the KL once each predicted map is shifted
to its target's mean (an oracle level: what is left is placement), the mean spatial Pearson correlation of
predicted and target logits per map, and the predicted logits' spatial spread against the targets'.

    python experiments/predictor/distilled/placement.py runs/targets-lite0-onestep results/predictor/distilled/lite0-onestep.pth
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from taskcomp.datasets import data_root
from taskcomp.predictors import create_predictor
from taskcomp.training.distill import _stack, feature_cache, held_out
from taskcomp.training.targets import load_targets


def kl(pred, y):
    p = torch.sigmoid(y)
    ce = F.binary_cross_entropy_with_logits(pred, p, reduction="none")
    return (ce - F.binary_cross_entropy_with_logits(y, p, reduction="none")).flatten(1).mean(1)


def corr(a, b):
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-9)


def shift_to_level(pred, level, iters=60):
    """Per-map logit shift s with mean(sigmoid(pred + s)) = level (bisection)."""
    lo, hi = torch.full_like(level, -20.0), torch.full_like(level, 20.0)
    for _ in range(iters):
        mid = (lo + hi) / 2
        too_high = torch.sigmoid(pred + mid.view(-1, 1, 1, 1)).flatten(1).mean(1) > level
        hi, lo = torch.where(too_high, mid, hi), torch.where(too_high, lo, mid)
    return pred + ((lo + hi) / 2).view(-1, 1, 1, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets")
    ap.add_argument("predictors", nargs="+")
    ap.add_argument("--data-root")
    a = ap.parse_args()
    spec, entries = load_targets(a.targets)
    val = [e for e in entries if held_out(e["image"])]
    Y = torch.stack([torch.from_numpy(np.load(Path(a.targets) / e["file"])["logits"].astype(np.float32)) for e in val])
    L = Y.shape[1]
    y = Y.reshape(-1, 1, *Y.shape[-2:])
    level = torch.sigmoid(y).flatten(1).mean(1)
    const = torch.logit(level.clamp(1e-4, 1 - 1e-4)).view(-1, 1, 1, 1).expand_as(y)
    rows = {
        "targets": a.targets,
        "held_out_images": len(val),
        "target_logit_spread": float(y.flatten(1).std(1).mean()),
        "kl_own_constant": float(kl(const, y).mean()),
        "predictors": {},
    }
    for p in a.predictors:
        model = create_predictor(p).eval()
        cache = feature_cache(a.targets, model, spec, val, data_root(a.data_root), log=lambda *x: None)
        feats = [f.repeat_interleave(L, 0) for f in _stack(cache, [e["image"] for e in val], [0] * len(val))]
        t = model.lambda_code(torch.tensor([float(v) for v in spec["lambdas"]]), L, torch.device("cpu"))
        with torch.no_grad():
            pred = model.decode(feats, t.repeat(len(val)), tuple(y.shape[-2:]))
        rows["predictors"][p] = {
            "held_out_kl": float(kl(pred, y).mean()),
            "held_out_kl_oracle_level": float(kl(shift_to_level(pred, level), y).mean()),
            "spatial_correlation": float(corr(pred, y).mean()),
            "predicted_logit_spread": float(pred.flatten(1).std(1).mean()),
        }
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
