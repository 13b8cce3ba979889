"""Near-duplicate check between the predictor's training photos and the evaluation images.

    python experiments/predictor/overlap_check.py > results/predictor/overlap_check.txt

imagenet-sample (evaluation) holds ImageNet training images, one per class; train/imagenette holds ImageNet
training images of 10 classes, and photos/imagen ImageNet-like photos. For every evaluation image whose synset
also names training photos, compare it with each of them: 32x32 grayscale thumbnails, centre-cropped to a square,
Pearson correlation. Correlation > 0.95 flags a near-duplicate (a re-encoded or resized copy scores > 0.99).
"""

from __future__ import annotations

import csv
from collections import defaultdict

import numpy as np
from PIL import Image

from taskcomp.datasets import data_root, list_images


def thumb(path) -> np.ndarray:
    im = Image.open(path).convert("L")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((32, 32), Image.BILINEAR)
    a = np.asarray(im, np.float64).ravel()
    return (a - a.mean()) / (a.std() + 1e-9)


def main() -> None:
    root = data_root()
    train = defaultdict(list)
    for folder in ("train", "photos/imagen"):
        for p in list_images(root / folder):
            train[p.name.split("_")[0]].append(p)
    rows = list(csv.DictReader(open(root / "imagenet-sample" / "labels.csv")))
    shared = [r for r in rows if r["synset"] in train]
    print(
        f"{len(rows)} evaluation images; {len(shared)} share a synset with training photos "
        f"({sum(len(train[r['synset']]) for r in shared)} photos compared)"
    )
    flagged = 0
    for r in shared:
        t = thumb(root / "imagenet-sample" / "images" / r["file"])
        best = max((float(t @ thumb(p)) / t.size, p.name) for p in train[r["synset"]])
        flag = best[0] > 0.95
        flagged += flag
        print(f"{r['file']}: max correlation {best[0]:.3f} ({best[1]})" + ("  NEAR-DUPLICATE" if flag else ""))
    print(f"near-duplicates: {flagged}")


if __name__ == "__main__":
    main()
