"""Start a run folder for a changed map protocol from an old one, keeping the points the change cannot touch.

    python experiments/documents/copy_codec_points.py runs/sroie_text_full_doc runs/sroie_text_full_doc2

Copies run.json and the records of the methods that do not use the text objective (original, uniform, jpeg,
webp: the same codec weights, reading and synthesis, so the same numbers) into a new folder; `taskcomp run`
into it then computes only the box-mask and task-aware points. Used when the objective's max_boxes went from 64
to all boxes (recipe sroie_text_full): the old folder's recipe.yaml is not copied, so the runner writes the new one.
"""

import json
import shutil
import sys
from pathlib import Path

KEEP = {"original", "uniform", "jpeg", "webp"}

if len(sys.argv) != 3:
    raise SystemExit("usage: copy_codec_points.py OLD_RUN_FOLDER NEW_RUN_FOLDER")
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
if not (src / "run.json").is_file():
    raise SystemExit(f"{src} is not a run folder (no run.json)")
if dst.exists():
    raise SystemExit(f"{dst} exists: choose another folder")
rows = [l for p in sorted(src.glob("records*.jsonl")) for l in p.read_text().splitlines() if l.strip()]
kept = [l for l in rows if json.loads(l)["method"] in KEEP]
tmp = dst.with_name(dst.name + ".partial")  # the folder appears whole or not at all
shutil.rmtree(tmp, ignore_errors=True)
tmp.mkdir(parents=True)
run = json.loads((src / "run.json").read_text())
run.pop("objective", None)  # the new folder's objective is the new recipe's: the runner records it
(tmp / "run.json").write_text(json.dumps(run, indent=1))
(tmp / "records.copied.jsonl").write_text("".join(l + "\n" for l in kept))
tmp.rename(dst)
print(f"{dst}: {len(kept)} of {len(rows)} records of {src} copied ({', '.join(sorted(KEEP))})")
