"""Prepare the COCO run of the detection predictor beside the maps already measured on the same 76 images.

    python experiments/predictor/coco/prepare.py --predictor runs/predictor-yolov8-person-detection/predictor.pth \
        --out runs/predictor_coco
    taskcomp run runs/predictor_coco/recipe.yaml --out runs/predictor_coco --threads 2
    taskcomp report runs/predictor_coco --out results/predictor/coco/report --max-bpp 0.3

The 76 coco-val images of results/coco_detection/stage7 (uniform, EigenCAM saliency, per-image task-aware maps,
JPEG, WebP, all coded with the shipped sft-small weights a2bd4bf504947ac7) are the evaluation set. This script
writes OUT/instances_76.json (those images and their annotations, cut from coco-val/instances.json), copies the
stage-7 records into OUT, and writes OUT/recipe.yaml: the stage-7 recipe with data pointing at the 76-image JSON
and a `predicted` method added, so `taskcomp run` codes only the predicted points and the report puts every
method side by side (AP@0.5 is over the same 76 images for all).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parents[3] / "results" / "predictor" / "coco"
STAGE7 = HERE.parent.parent / "coco_detection" / "stage7" / "records"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictor", required=True, help="predictor checkpoint (taskcomp train-predictor's export)")
    ap.add_argument("--out", default="runs/predictor_coco")
    ap.add_argument("--data-root", default=os.environ.get("TASKCOMP_DATA", "../shared/data"))
    ap.add_argument("--lambdas", default="0.1,0.3,1,3")
    a = ap.parse_args()
    out = Path(a.out)
    if out.exists():
        raise SystemExit(f"prepare.py: {out} exists: choose another --out")
    recs = [json.loads(l) for p in sorted(STAGE7.glob("records*.jsonl")) for l in p.read_text().splitlines()]
    ids = sorted({r["image"] for r in recs})
    full = json.loads((Path(a.data_root) / "coco-val" / "instances.json").read_text())
    wanted = set(ids)
    images = [im for im in full["images"] if im["file_name"] in wanted]
    keep = {im["id"] for im in images}
    sub = {
        **{k: v for k, v in full.items() if k not in ("images", "annotations")},
        "images": images,
        "annotations": [an for an in full["annotations"] if an["image_id"] in keep],
    }
    assert len(images) == len(ids) == 76, (len(images), len(ids))
    out.mkdir(parents=True)
    (out / "instances_76.json").write_text(json.dumps(sub))
    for p in STAGE7.glob("records*.jsonl"):
        shutil.copy(p, out / p.name)
    recipe = yaml.safe_load((STAGE7 / "recipe.yaml").read_text())
    recipe["name"] = "predictor_coco"
    recipe["out"] = str(out)
    recipe["data"] = {
        "path": str((Path(a.data_root) / "coco-val").resolve()),
        "layout": "coco",
        "annotations": str((out / "instances_76.json").resolve()),
    }
    recipe["methods"]["predicted"] = {
        "lambda": [float(x) for x in a.lambdas.split(",")],
        "predictor": str(Path(a.predictor).resolve()),
    }
    text = yaml.safe_dump(recipe, sort_keys=False)
    (out / "recipe.yaml").write_text(text)
    print(f"{out}: 76 images, {len(recs)} stage-7 records, predicted lambdas {a.lambdas}")


if __name__ == "__main__":
    main()
