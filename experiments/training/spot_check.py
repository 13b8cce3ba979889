"""Spot check of a codec checkpoint on three Kodak images at q = 0, 0.5 and 1.

    python experiments/training/spot_check.py CHECKPOINT [--data-root DIR]

Per image and level: estimated bpp from the likelihoods of rounded latents (y + z, and z alone) and RGB PSNR
of the 8-bit reconstruction (`taskcomp.train.validate`, the training monitor). A quick check between full
`taskcomp eval-codec` runs, not a benchmark.
"""

import argparse

import torch

from taskcomp.codec import create_codec
from taskcomp.datasets import data_root
from taskcomp.io import image_to_tensor, load_image
from taskcomp.training.codec import validate

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("--data-root")
args = ap.parse_args()
torch.set_num_threads(1)
codec = create_codec("sft-small", checkpoint=args.checkpoint)
print(codec.checkpoint_info["meta"])
names = ["kodim01", "kodim05", "kodim19"]
images = [(n, image_to_tensor(load_image(data_root(args.data_root) / "kodak" / f"{n}.png"))) for n in names]
rows = validate(codec, images, [0.0, 0.5, 1.0])
for name in names:
    print(
        name,
        " | ".join(
            f"q={r['q']}: {r['bpp']:.3f} bpp (z {r['z_bpp']:.3f}) {r['psnr']:.2f} dB"
            for r in rows
            if r["image"] == name
        ),
    )
