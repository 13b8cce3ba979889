"""Experiment behind the stable setting: does batch 8 against batch 1 change each image's real bpp, per optimiser
variant? The throughput recipe's task-aware setting (Lite0 label CE, lambda 0.1, 10 Adam steps, lr 0.3, grid /8,
init q 0.1) on N images spread over the set (as --limit N), 2 threads:

    python experiments/throughput/variants/variants.py base 16          > base.log       # the default
    python experiments/throughput/variants/variants.py eps=1e-5 16      > eps5.log       # Adam eps 1e-5
    python experiments/throughput/variants/variants.py last 16          > last.log       # keep the final iterate
    python experiments/throughput/variants/variants.py epslast=1e-4 16  > epslast4.log   # both
    python experiments/throughput/variants/variants.py lastcos 16       > lastcos.log    # final iterate, cosine lr

Each log ends with a JSON line: images within 1%, largest difference (%), per-image differences and kept steps.
Run before keep/lr_schedule were options, with the variants patched in; the chosen variant is now
`keep: last, lr_schedule: cosine` (results/throughput/recipe_stable.yaml), measured through `taskcomp run` in
results/throughput/README.md. "last" and "cos" now use those options (MapOptimizer's keep="last", the same last
iterate; lr_schedule="cosine", the same lr * (1 + cos(pi * k / 10)) / 2 at step k). Adam's eps is no option of
MapOptimizer, so the eps variants still patch torch.optim.Adam.
"""

import functools
import json
import os
import sys
import time
from pathlib import Path

import torch

from taskcomp import optimize as O
from taskcomp.codec import create_codec
from taskcomp.io import image_to_tensor, load_image
from taskcomp.objectives import create_objective
from taskcomp.runner.layouts import list_layout
from taskcomp.runner.run import spread
from taskcomp.runner.tasks import preprocess_image

torch.set_num_threads(2)
variant = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
items = spread(
    list_layout("imagenet-sample", Path(os.environ.get("TASKCOMP_DATA", "../shared/data")) / "imagenet-sample"), n
)

xs = [image_to_tensor(preprocess_image(load_image(it["path"]), 280, 256)[0]) for it in items]
codec = create_codec("sft-small").eval()
codec.update()
obj = create_objective("classification", model="tf_efficientnet_lite0")
ctxs = [obj.prepare(x, label=it["label"]) for x, it in zip(xs, items)]
kind, _, val = variant.partition("=")
if kind.startswith("eps"):
    orig = torch.optim.Adam
    torch.optim.Adam = functools.partial(orig, eps=float(val))
opt = O.MapOptimizer(
    codec,
    obj,
    lam=0.1,
    steps=10,
    lr=0.3,
    init="constant",
    init_q=0.1,
    downsample=8,
    clip=10.0,
    keep="last" if "last" in variant else "best",
    lr_schedule="cosine" if "cos" in variant else "constant",
)
out = {}
for bs in (1, 8):
    t = time.time()
    bpps = []
    for i in range(0, n, bs):
        r = O.optimize_images(opt, xs[i : i + bs], ctxs[i : i + bs])
        for j in range(len(xs[i : i + bs])):
            q = r.map_of(j) if hasattr(r, "map_of") else r.qmap[j : j + 1]
            b, _ = O.real_bpp(codec, xs[i + j], q)
            bpps.append((b, r.best_step[j]))
    out[bs] = bpps
    print(bs, round(time.time() - t, 1), flush=True)
d = [100 * (b8 / b1 - 1) for (b1, _), (b8, _) in zip(out[1], out[8])]
print(
    json.dumps(
        {
            "variant": variant,
            "within1": sum(abs(x) <= 1 for x in d),
            "max": round(max(map(abs, d)), 2),
            "mean_bpp_b1": sum(b for b, _ in out[1]) / n,
            "diffs": [round(x, 2) for x in d],
            "steps1": [s for _, s in out[1]],
            "steps8": [s for _, s in out[8]],
        }
    )
)
