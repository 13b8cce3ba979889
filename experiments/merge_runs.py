"""Merge run folders of one recipe made on different image sets into one folder that `taskcomp report` reads.

The COCO results use 76 images: the union of `--limit 20` and `--limit 60` (two spreads over coco-val). A run
folder never mixes image sets, so each limit runs in its own folder; this writes OUT/records.merged.jsonl (every
record of the inputs, a point repeated across inputs kept once: the last input's), OUT/recipe.yaml (the
first input's; the inputs' recipes must be equal) and OUT/run.json (the union of the items), then
`taskcomp report OUT` works as on any run folder.

    python experiments/merge_runs.py runs/hevc_coco_20 runs/hevc_coco_60 --out runs/hevc_coco
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from taskcomp.io import atomic_write
from taskcomp.runner.report import run_items


def merge(inputs: list[Path], out: Path) -> int:
    """Write the merged folder; returns the number of records written. Raises ValueError on unequal recipes."""
    recipe = (inputs[0] / "recipe.yaml").read_text()
    for d in inputs[1:]:
        if (d / "recipe.yaml").read_text() != recipe:
            raise ValueError(f"{d}/recipe.yaml differs from {inputs[0]}/recipe.yaml: not one experiment")
    records: dict[tuple, str] = {}
    items: list[str] = []
    for d in inputs:
        for it in run_items(d) or []:
            if it not in items:
                items.append(it)
        for p in sorted(d.glob("records*.jsonl")):
            for line in p.read_text().splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                records[(r["image"], r["method"], r["setting"])] = line
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "recipe.yaml", recipe.encode())
    atomic_write(out / "records.merged.jsonl", ("\n".join(records.values()) + "\n").encode())
    run = {"merged_from": [str(d) for d in inputs], "n_items": len(items), "items": items}
    atomic_write(out / "run.json", json.dumps(run, indent=1).encode())
    return len(records)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path, help="run folders of one recipe")
    ap.add_argument("--out", required=True, type=Path, help="merged folder (records.merged.jsonl, run.json)")
    a = ap.parse_args(argv)
    try:
        n = merge(a.inputs, a.out)
    except (OSError, ValueError) as e:
        print(f"merge_runs: error: {e}", file=sys.stderr)
        return 2
    print(f"{n} records of {len(a.inputs)} folders in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
