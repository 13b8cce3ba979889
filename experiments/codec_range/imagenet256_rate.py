"""Real bpp (file size) of uniform maps on 256-px ImageNet crops, per codec: the rate range a classification
recipe can reach.

    python experiments/codec_range/imagenet256_rate.py --codecs sft-small sft-small-lowrate --every 5 \
        --out results/codec_range/imagenet256_rate.json

Images: imagenet-sample (one ImageNet training image per class), every ``--every``-th file in name order, each
resized to a short side of 280 px and centre-cropped to 256 (the ImageNet recipe's preprocessing).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from taskcomp.bitstream import encode
from taskcomp.codec import create_codec
from taskcomp.datasets import data_root, list_images
from taskcomp.io import atomic_write, image_to_tensor, load_image
from taskcomp.runner.tasks import preprocess_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codecs", nargs="+", default=["sft-small", "sft-small-lowrate"])
    ap.add_argument("--qualities", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--data-root")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    qs = [float(v) for v in a.qualities.split(",")]
    paths = list_images(data_root(a.data_root) / "imagenet-sample" / "images")[:: a.every]
    crops = [image_to_tensor(preprocess_image(load_image(p), 280, 256)[0]) for p in paths]
    result = {
        "images": [p.name for p in paths],
        "preprocess": "resize 280 (short side), centre crop 256",
        "qualities": qs,
        "codecs": {},
    }
    out = Path(a.out)
    if out.is_file():  # codecs measured earlier on the same images and q grid are kept
        old = json.loads(out.read_text())
        if (old["images"], old["qualities"]) == (result["images"], qs):
            result["codecs"] = old["codecs"]
    for name in a.codecs:
        codec = create_codec(name)
        t0 = time.time()
        bpp = np.zeros((len(crops), len(qs)))
        for i, x in enumerate(crops):
            for j, q in enumerate(qs):
                data = encode(codec, x, torch.full_like(x[:, :1], q))
                bpp[i, j] = 8 * len(data) / (x.shape[-2] * x.shape[-1])
        rises = bool(np.all(np.diff(bpp, axis=1) > 0))
        result["codecs"][name] = {
            "weights": codec.checkpoint_info["hash"][:16],
            "mean_real_bpp": dict(zip(map(str, qs), np.round(bpp.mean(0), 4).tolist())),
            "rate_rises_with_q_on_every_image": rises,
            "seconds": round(time.time() - t0, 1),
        }
        print(name, result["codecs"][name], flush=True)
    atomic_write(a.out, json.dumps(result, indent=2).encode())


if __name__ == "__main__":
    main()
