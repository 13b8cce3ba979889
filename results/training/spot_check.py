"""Spot check of a codec checkpoint on three Kodak images at q = 0, 0.5 and 1.

    python results/training/spot_check.py CHECKPOINT [--data-root DIR]

Per image and level: estimated bpp from the likelihoods of rounded latents (y + z, and z alone) and RGB PSNR
of the 8-bit reconstruction. A quick check between full `taskcomp eval-codec` runs, not a benchmark.
"""

import argparse

import torch

from taskcomp.bench.metrics import psnr
from taskcomp.codec import bits_from_likelihoods, create_codec
from taskcomp.datasets import data_root
from taskcomp.io import image_to_tensor, load_image, tensor_to_image

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("--data-root")
args = ap.parse_args()
torch.set_num_threads(1)
codec = create_codec("sft-small", checkpoint=args.checkpoint)
print(codec.checkpoint_info["meta"])
for name in ["kodim01", "kodim05", "kodim19"]:
    img = load_image(data_root(args.data_root) / "kodak" / f"{name}.png")
    x = image_to_tensor(img)
    n_px = x.shape[-2] * x.shape[-1]
    row = []
    for q in [0.0, 0.5, 1.0]:
        with torch.no_grad():
            out = codec(x, torch.full((1, 1, *x.shape[-2:]), q), quantize="round")
        bpp = float(bits_from_likelihoods(out["likelihoods"]).sum()) / n_px
        z_bpp = float(-torch.log2(out["likelihoods"]["z"]).sum()) / n_px
        row.append(f"q={q}: {bpp:.3f} bpp (z {z_bpp:.3f}) {psnr(img, tensor_to_image(out['x_hat'])):.2f} dB")
    print(name, " | ".join(row))
