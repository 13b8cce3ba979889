"""Records of the same images through two layouts: labels, bpp, PSNR and top-1 per (image file, method, setting).

python experiments/layouts/compare.py results/layouts/imagenet_imagefolder results/layouts/imagenet_sample20
"""

import json
import sys
from pathlib import Path


def records(run: Path) -> dict:
    out = {}
    for p in sorted(run.glob("records*.jsonl")):
        for line in p.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out[(Path(r["image"]).name, r["method"], r["setting"])] = r
    return out


def main(a: str, b: str) -> None:
    ra, rb = records(Path(a)), records(Path(b))
    keys = sorted(set(ra) & set(rb))
    cols = sorted({c for k in keys for c in ra[k] if c.startswith(("top1/", "top5/"))} | {"label", "bpp", "psnr"})
    diff = {c: sum(ra[k].get(c) != rb[k].get(c) for k in keys) for c in cols}
    gap = {
        c: max(
            (
                abs(ra[k][c] - rb[k][c])
                for k in keys
                if isinstance(ra[k].get(c), float) and abs(ra[k][c]) != float("inf")
            ),
            default=0.0,
        )
        for c in cols
    }
    print(
        f"{len(keys)} records in both ({len(ra)} in {a}, {len(rb)} in {b}); images: "
        + ", ".join(sorted({k[0] for k in keys}))
    )
    print("| field | records that differ | largest difference |\n|---|---|---|")
    for c in cols:
        print(f"| {c} | {diff[c]} of {len(keys)} | {gap[c]:.2g} |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
