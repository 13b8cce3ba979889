"""Experiment behind the stable setting: does batch 8 against batch 1 change each image's real bpp, per optimiser
variant? The throughput recipe's task-aware setting (Lite0 label CE, lambda 0.1, 10 Adam steps, lr 0.3, grid /8,
init q 0.1) on N images spread over the set (as --limit N), 2 threads; variants are patched in, not options of taskcomp:

    python results/throughput/variants/variants.py base 16          > base.log       # the default
    python results/throughput/variants/variants.py eps=1e-5 16      > eps5.log       # Adam eps 1e-5
    python results/throughput/variants/variants.py last 16          > last.log       # keep the final iterate
    python results/throughput/variants/variants.py epslast=1e-4 16  > epslast4.log   # both
    python results/throughput/variants/variants.py lastcos 16       > lastcos.log    # final iterate, cosine lr

Each log ends with a JSON line: images within 1%, largest difference (%), per-image differences and kept steps.
Run before keep/lr_schedule were options; the chosen variant is now `keep: last, lr_schedule: cosine`
(recipe_stable.yaml), measured through `taskcomp run` in ../README.md.
"""
import functools, json, os, sys, time
import torch
from pathlib import Path
from taskcomp.runner.layouts import list_layout
from taskcomp.runner.run import spread
from taskcomp.runner.tasks import preprocess_image
from taskcomp.io import load_image
from taskcomp.codec import create_codec
from taskcomp.objectives import create_objective
from taskcomp import optimize as O

torch.set_num_threads(2)
variant = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
items = spread(list_layout("imagenet-sample", Path(os.environ.get("TASKCOMP_DATA", "../shared/data")) / "imagenet-sample"), n)
from taskcomp.io import image_to_tensor
xs = [image_to_tensor(preprocess_image(load_image(it["path"]), 280, 256)[0]) for it in items]
codec = create_codec("sft-small").eval(); codec.update()
obj = create_objective("classification", model="tf_efficientnet_lite0")
ctxs = [obj.prepare(x, label=it["label"]) for x, it in zip(xs, items)]
kind, _, val = variant.partition("=")
if kind.startswith("eps"):
    orig = torch.optim.Adam
    torch.optim.Adam = functools.partial(orig, eps=float(val))
if "last" in variant:
    _ot = O.MapOptimizer.objective_terms
    _calls = [0]
    def ot(self, *a, **k):
        o, b, t = _ot(self, *a, **k); _calls[0] += 1
        return o - 1e6 * _calls[0], b, t  # a constant per call: gradients unchanged, the last iterate is kept
    O.MapOptimizer.objective_terms = ot
if "cos" in variant:
    _A = torch.optim.Adam
    class CosAdam(_A):
        """Adam whose lr follows a cosine from lr to 0 over the 10 steps."""
        def step(self, closure=None):
            k = getattr(self, "_k", 0)
            import math
            for g in self.param_groups:
                g.setdefault("lr0", g["lr"])
                g["lr"] = g["lr0"] * 0.5 * (1 + math.cos(math.pi * k / 10))
            self._k = k + 1
            return super().step(closure)
    torch.optim.Adam = CosAdam
opt = O.MapOptimizer(codec, obj, lam=0.1, steps=10, lr=0.3, init="constant", init_q=0.1, downsample=8, clip=10.0)
out = {}
for bs in (1, 8):
    t = time.time(); bpps = []
    for i in range(0, n, bs):
        r = O.optimize_images(opt, xs[i:i+bs], ctxs[i:i+bs])
        for j in range(len(xs[i:i+bs])):
            q = r.map_of(j) if hasattr(r, "map_of") else r.qmap[j:j+1]
            b, _ = O.real_bpp(codec, xs[i+j], q)
            bpps.append((b, r.best_step[j]))
    out[bs] = bpps
    print(bs, round(time.time()-t, 1), flush=True)
d = [100*(b8/b1-1) for (b1,_),(b8,_) in zip(out[1], out[8])]
print(json.dumps({"variant": variant, "within1": sum(abs(x)<=1 for x in d), "max": round(max(map(abs,d)),2),
                  "mean_bpp_b1": sum(b for b,_ in out[1])/n, "diffs": [round(x,2) for x in d],
                  "steps1": [s for _,s in out[1]], "steps8": [s for _,s in out[8]]}))
