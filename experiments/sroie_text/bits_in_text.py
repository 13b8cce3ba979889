"""Where the bits go on receipts: share of the codec's rate inside the ground-truth text boxes.

    python experiments/sroie_text/bits_in_text.py [--data-root DIR] [--limit 50] > OUT.txt   (progress on stderr)

The same receipts and working resolution as recipes/sroie_text.yaml (768 px long side, --limit spreads evenly).
For uniform maps at q = 0, 0.1, 0.2, 0.3, 0.5 it attributes each latent's estimated bits (y at stride 16,
z at stride 64) to pixels in proportion to the text-box area of its block, and prints the text-box area share,
the bit share inside the boxes, and the bound on the saving a map can make at equal text quality: a map with
q = 0 outside the boxes and the uniform q inside spends at least bits_text(q) + bits_background(0), so it saves
at most (bits_background(q) - bits_background(0)) / bits(q) against the uniform map q.
"""

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F

from taskcomp.bitstream import weights_id
from taskcomp.codec import create_codec
from taskcomp.datasets import data_root
from taskcomp.io import image_to_tensor, load_image
from taskcomp.runner.tasks import _sroie_lines, preprocess_image

ap = argparse.ArgumentParser()
ap.add_argument("--data-root")
ap.add_argument("--limit", type=int, default=50)
args = ap.parse_args()
torch.set_num_threads(1)
root = data_root(args.data_root) / "sroie"
imgs = sorted((root / "images").glob("*.jpg"))
imgs = [imgs[i] for i in np.linspace(0, len(imgs) - 1, args.limit).round().astype(int)]
codec = create_codec("sft-small")
qs = [0.0, 0.1, 0.2, 0.3, 0.5]


def text_share(bits: torch.Tensor, mask: torch.Tensor, stride: int) -> float:
    """Bits of (1, C, h, w) latents attributed to the mask's area, per block of stride x stride pixels."""
    frac = F.avg_pool2d(mask, stride)[0, 0]  # mask padded to the latent grid's pixel size
    return float((bits.sum(1)[0] * frac).sum())


rows = []
for p in imgs:
    arr, scale = preprocess_image(load_image(p), max_side=768)
    H, W = arr.shape[:2]
    m = np.zeros((H, W), np.float32)
    for a, b, c, d, _ in _sroie_lines(root / "boxes" / f"{p.stem}.csv"):
        m[int(b * scale) : int(np.ceil(d * scale)), int(a * scale) : int(np.ceil(c * scale))] = 1
    x = image_to_tensor(arr)
    Hp, Wp = -(-H // 64) * 64, -(-W // 64) * 64
    mask = F.pad(torch.from_numpy(m)[None, None], (0, Wp - W, 0, Hp - H))
    for q in qs:
        with torch.no_grad():
            lik = codec(x, torch.full_like(x[:, :1], q), quantize="round")["likelihoods"]
        by, bz = -torch.log2(lik["y"]), -torch.log2(lik["z"])
        total = float(by.sum() + bz.sum())
        inside = text_share(by, mask, 16) + text_share(bz, mask, 64)
        rows.append((p.stem, q, float(m.mean()), total / (H * W), inside / total, total, total - inside))
    print(p.stem, f"text area {100 * m.mean():.1f}%", file=sys.stderr, flush=True)  # progress

import pandas as pd  # noqa: E402

df = pd.DataFrame(rows, columns=["image", "q", "text_area", "bpp_est", "bit_share_text", "bits", "bits_background"])
bg0 = df[df.q == 0].set_index("image")["bits_background"]
df["max_saving"] = (df["bits_background"] - df["image"].map(bg0)) / df["bits"]
print(f"{len(imgs)} receipts, sft-small weights {weights_id(codec).hex()}; mean over receipts:")
print(df.groupby("q")[["text_area", "bpp_est", "bit_share_text", "max_saving"]].mean().round(3).to_string())
