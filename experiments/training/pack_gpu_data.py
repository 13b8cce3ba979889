"""Pack the training photos for a GPU machine whose working-tree transfer is capped at 64 MiB.

    python experiments/training/pack_gpu_data.py OUT_DIR [--data-root DIR] [--budget-mb 44]

What stage 3 of sft-small trained on (`recipes/train_sft_small_gpu.yaml`, `--data OUT_DIR`): the 49 wikipedia
photos downscaled by 2 (Lanczos, JPEG quality 95; short side 384), the 80 coco photos as they are, then
imagenette photos in a seeded random order (seed 0) until the budget is reached (2,503 of 4,000 at 44 MB).
Stage 4 (`recipes/train_sft_small_gpu2.yaml`): `--wiki-downscale 1.5 --budget-mb 35` (short side 512; 1,313 imagenette).
Kodak is never included.
"""

import argparse
import random
import shutil
from pathlib import Path

from PIL import Image

from taskcomp.datasets import data_root

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--data-root")
ap.add_argument("--budget-mb", type=float, default=44.0)
ap.add_argument("--wiki-downscale", type=float, default=2.0, help="stage 3: 2; stage 4: 1.5 (short side 512)")
args = ap.parse_args()
src, dst = data_root(args.data_root) / "train", Path(args.out)
for sub in ("wikipedia", "coco", "imagenette"):
    (dst / sub).mkdir(parents=True, exist_ok=True)
total = 0
for p in sorted(q for q in (src / "wikipedia").rglob("*") if q.is_file()):
    im = Image.open(p).convert("RGB")
    im = im.resize((round(im.width / args.wiki_downscale), round(im.height / args.wiki_downscale)), Image.LANCZOS)
    o = dst / "wikipedia" / f"{p.stem}.jpg"
    im.save(o, quality=95)
    total += o.stat().st_size
for p in sorted(q for q in (src / "coco").rglob("*") if q.is_file()):
    shutil.copy(p, dst / "coco" / p.name)
    total += p.stat().st_size
photos = sorted(q for q in (src / "imagenette").rglob("*") if q.is_file())
random.Random(0).shuffle(photos)
n = 0
for p in photos:
    if total + p.stat().st_size > args.budget_mb * 1e6:
        break
    shutil.copy(p, dst / "imagenette" / f"{p.parent.name}_{p.name}")
    total += p.stat().st_size
    n += 1
print(f"{dst}: 49 wikipedia (downscaled by {args.wiki_downscale:g}), 80 coco, {n} imagenette; {total / 1e6:.1f} MB")
