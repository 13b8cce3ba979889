"""How the demo's bundled images were chosen (results/demo/README.md): every Kodak image as a demo candidate
(centred square, 256 px: taskcomp.demo.kodak_candidate), label-free Lite0 maps at the demo's settings against
the uniform map of equal real bpp; one JSON line per (image, lambda) in OUT/candidates.jsonl (resumable).

    OMP_NUM_THREADS=1 python scripts/demo_candidates.py --data-root ../shared/data --out results/demo --lambdas 0.1
"""

import argparse
import json
import time
from pathlib import Path

import torch

from taskcomp.codec import create_codec
from taskcomp.datasets import kodak_paths
from taskcomp.demo import kodak_candidate, run_demo_image
from taskcomp.io import load_image
from taskcomp.objectives import create_objective

p = argparse.ArgumentParser()
p.add_argument("--data-root", default=None)
p.add_argument("--out", default="results/demo")
p.add_argument("--lambdas", default="0.1")
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
out = Path(a.out)
out.mkdir(parents=True, exist_ok=True)
f = out / "candidates.jsonl"
done = set()
if f.is_file():
    for line in f.read_text().splitlines():
        r = json.loads(line)
        done.add((r["image"], r["lambda"]))
codec = create_codec("sft-small", device="cpu")
clf = create_objective("classification", device="cpu")
for lam in [float(v) for v in a.lambdas.split(",")]:
    for path in kodak_paths(a.data_root):
        if (path.name, lam) in done:
            continue
        t0 = time.perf_counter()
        img = kodak_candidate(load_image(path))
        r = run_demo_image(codec, clf, img, path.name, lam=lam)
        rec = {
            "image": path.name,
            "lambda": lam,
            "pred_original": r.pred_original,
            "uniform_q": r.uniform_q,
            "bpp_met": r.bpp_met,
            "map_seconds": r.seconds,
            "seconds": time.perf_counter() - t0,
            "q_mean": float(r.qmap.mean()),
        }
        for k, row in r.rows.items():
            rec[k] = {kk: row[kk] for kk in ("bytes", "bpp", "psnr", "pred", "keeps")}
        with open(f, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
