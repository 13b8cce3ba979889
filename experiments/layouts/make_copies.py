"""Make the must-show data copies of 20 imagenet-sample images (symlinks, evenly spread over the 1000 classes).

    python experiments/layouts/make_copies.py runs/layouts-data   # then: taskcomp run ... --data-root runs/layouts-data

OUT gets a data root of its own: ``imagenet-imagefolder20/<synset>/<file>`` (torchvision ImageFolder),
``imagenet-flat20/<file>`` (a flat folder, no labels), ``imagenet-sample20/`` (the same 20 in the
imagenet-sample layout: images/ and labels.csv, the reference).
"""

import csv
import sys
from pathlib import Path

import numpy as np

from taskcomp.datasets import data_root


def main(out: str, root: str | None = None, n: int = 20) -> None:
    src = data_root(root) / "imagenet-sample"
    with open(src / "labels.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    rows = [rows[i] for i in np.linspace(0, len(rows) - 1, n).round().astype(int)]
    out = Path(out)
    for r in rows:
        img = (src / "images" / r["file"]).resolve()
        for dst in (
            out / "imagenet-imagefolder20" / r["synset"] / r["file"],
            out / "imagenet-flat20" / r["file"],
            out / "imagenet-sample20" / "images" / r["file"],
        ):
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.is_symlink():
                dst.symlink_to(img)
    with open(out / "imagenet-sample20" / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} images x 3 layouts under {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2], *(sys.argv[2:3] or []))
