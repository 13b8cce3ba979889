"""Held-out photos for choosing between codec weights without looking at Kodak (the test set).

    python experiments/training/holdout_images.py [N] [--data-root ROOT]

Prints the paths of the first N (default 24, by file name) COCO val photos of `coco-val/images` whose bytes
are not among the codec's training photos (`train/`; 3 COCO files are in both). Use them with
`taskcomp eval-codec --images $(python experiments/training/holdout_images.py) --methods sft,webp --out DIR`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=24)
    ap.add_argument("--data-root", default=os.environ.get("TASKCOMP_DATA", "../shared/data"))
    args = ap.parse_args(argv)
    root = Path(args.data_root)
    digest = lambda p: hashlib.md5(p.read_bytes()).hexdigest()  # noqa: E731
    seen = {digest(p) for p in (root / "train").rglob("*") if p.is_file()}
    picked = [p for p in sorted((root / "coco-val" / "images").glob("*.jpg")) if digest(p) not in seen][: args.n]
    print("\n".join(str(p) for p in picked))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
