#!/usr/bin/env bash
# Runs a small slice of every committed result's commands into OUT, so a behaviour-unchanged refactor
# (issue 37) can be checked file by file against the code before it:
#   PYTHONPATH=/path/to/old/checkout bash experiments/refactor_check/reference.sh OUT_BEFORE
#   bash experiments/refactor_check/reference.sh OUT_AFTER
#   python experiments/refactor_check/compare.py OUT_BEFORE OUT_AFTER
# One torch thread throughout (results are bitwise reproducible on one thread). Data root: $TASKCOMP_DATA.
set -euo pipefail
OUT=${1:?usage: reference.sh OUT}
D=${TASKCOMP_DATA:-../shared/data}
mkdir -p "$OUT"
K=$D/kodak
IMG=$(ls "$D"/imagenet-sample/images | head -1)
DOC=$(ls "$D"/sroie/images 2>/dev/null | head -1 || true)
T="--threads 1"
taskcomp run imagenet_classification --limit 2 --out "$OUT/imagenet" $T
taskcomp report "$OUT/imagenet" --out "$OUT/imagenet_report" --data-root "$D"
taskcomp run coco_detection --limit 1 --out "$OUT/coco" $T
taskcomp report "$OUT/coco" --out "$OUT/coco_report" --data-root "$D"
taskcomp run sroie_text --limit 1 --out "$OUT/sroie" $T
taskcomp report "$OUT/sroie" --out "$OUT/sroie_report" --data-root "$D"
taskcomp eval-codec --images "$K/kodim01.png" "$K/kodim02.png" --out "$OUT/eval_codec" --no-maps $T
mkdir -p "$OUT/optimize" "$OUT/predictor" "$OUT/ocr"
taskcomp optimize "$D/imagenet-sample/images/$IMG" -o "$OUT/optimize/x.tcz" --save-map "$OUT/optimize/map.npy" \
  --save-decoded "$OUT/optimize/x.png" --lambda 0.1 --steps 5 --json "$OUT/optimize/r.json" --compare $T
taskcomp optimize "$D/imagenet-sample/images/$IMG" -o "$OUT/optimize/t.tcz" --target-bpp 0.3 --steps 3 $T \
  --json "$OUT/optimize/t.json"
taskcomp optimize "$D/imagenet-sample/images/$IMG" --predictor -o "$OUT/predictor/x.tcz" --save-map "$OUT/predictor/map.npy" \
  --json "$OUT/predictor/r.json" $T
taskcomp optimize "$D/imagenet-sample/images/$IMG" --predictor --refine 2 -o "$OUT/predictor/r2.tcz" \
  --json "$OUT/predictor/r2.json" $T
if [ -n "$DOC" ]; then
  taskcomp ocr-map "$D/sroie/images/$DOC" -o "$OUT/ocr/doc.tcz" --save-map "$OUT/ocr/map.npy" --json "$OUT/ocr/r.json" $T
fi
echo "reference outputs in $OUT"
