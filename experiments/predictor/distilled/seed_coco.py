"""Seed a COCO run folder with the stage-7 records (results/coco_detection/stage7) of the images a ``--limit``
run takes, so new methods are added beside uniform and per-image maps made with the same recipe and weights.

    python experiments/predictor/distilled/seed_coco.py --limit 20 --out runs/predictor_coco_20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from taskcomp.datasets import data_root
from taskcomp.io import atomic_write
from taskcomp.runner.layouts import list_items
from taskcomp.runner.recipe import load_recipe
from taskcomp.runner.run import spread

STAGE7 = Path(__file__).resolve().parents[3] / "results/coco_detection/stage7/records"
KEEP = ("original", "uniform", "task_aware")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-root")
    a = ap.parse_args()
    recipe = load_recipe(str(STAGE7 / "recipe.yaml"))
    ids = {it["id"] for it in spread(list_items(recipe, data_root(a.data_root)), a.limit)}
    out = Path(a.out)
    if out.exists():
        raise SystemExit(f"{out} exists: seed a new folder")
    out.mkdir(parents=True)
    lines, found = [], set()
    for f in sorted(STAGE7.glob("records.*.jsonl")):
        for line in open(f):
            r = json.loads(line)
            if r["image"] in ids and r["method"] in KEEP:
                lines.append(json.dumps(r))
                found.add(r["image"])
    atomic_write(out / "records.stage7.jsonl", ("\n".join(lines) + "\n").encode())
    print(f"{len(lines)} stage-7 records of {len(found)} of the {len(ids)} images -> {out}")
    if len(found) < len(ids):
        print(
            f"note: stage 7 ran on 76 images; {len(ids) - len(found)} of these have no records (use --limit 20 or 60)"
        )


if __name__ == "__main__":
    main()
