"""Hyper-latent rate, estimated vs real, by input size (first 8 Kodak images, q = 0).

    python experiments/training/z_gap_by_size.py [CHECKPOINT] [--data-root DIR]

For top-left 192-px crops (the stage-3 training size), 384-px crops and full images: z bpp from the
likelihoods, z bpp of the rANS string, and the share of z elements with likelihood < 1e-6.
"""

import argparse

import numpy as np
import torch

from taskcomp.codec import create_codec
from taskcomp.datasets import kodak_paths
from taskcomp.io import image_to_tensor, load_image

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint", nargs="?")
ap.add_argument("--data-root")
args = ap.parse_args()
torch.set_num_threads(1)
codec = create_codec("sft-small", checkpoint=args.checkpoint)
rows: dict[str, list] = {}
for p in kodak_paths(args.data_root)[:8]:
    x = image_to_tensor(load_image(p))
    for name, xx in [("192-px crops", x[..., :192, :192]), ("384-px crops", x[..., :384, :384]), ("full images", x)]:
        with torch.no_grad():
            out = codec.compress(xx, torch.zeros_like(xx[:, :1]))
        n_px = xx.shape[-2] * xx.shape[-1]
        lik = out["likelihoods"]["z"]
        rows.setdefault(name, []).append(
            (
                float(-torch.log2(lik).sum()) / n_px,
                len(out["strings"][1][0]) * 8 / n_px,
                float((lik < 1e-6).float().mean()),
            )
        )
for name, v in rows.items():
    est, real, share = np.mean(v, axis=0)
    print(f"{name}: z estimated {est:.4f} bpp, real {real:.4f} bpp, likelihood < 1e-6: {100 * share:.1f}%")
