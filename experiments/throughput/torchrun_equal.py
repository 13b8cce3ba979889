"""`torchrun --nproc_per_node 2 -m taskcomp run imagenet_classification --limit 20` against one process.

    python experiments/throughput/torchrun_equal.py [--limit 20] [--out results/throughput/torchrun_check]

Runs the full ImageNet recipe (all methods) twice on the same 20 imagenet-sample images (evenly spread): one
process and torchrun with 2 processes (gloo on this CPU), every process with 1 thread: float results depend on
the thread count, and map optimisation amplifies such noise (see throughput.md), so the comparison that checks
the sharding holds the arithmetic fixed. Compares every record:
the same points, the same .tcz files (SHA-256 of each codec point's bytes), the same predicted class of every
evaluator, and reports PSNR / bpp differences; writes torchrun_equal.md and `torchrun_records_equal` into
summary.json beside this script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from taskcomp.runner.recipe import resolve_recipe

ROOT = Path(__file__).resolve().parents[2]


def records(run_dir: Path) -> dict:
    out = {}
    for p in run_dir.glob("records*.jsonl"):
        for line in p.read_text().splitlines():
            r = json.loads(line)
            out[(r["image"], r["method"], r["setting"])] = r
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "results" / "throughput" / "torchrun_check"))
    ap.add_argument("--compare-only", action="store_true", help="compare the two existing run folders")
    a = ap.parse_args()
    out = Path(a.out)
    recipe = resolve_recipe("imagenet_classification")
    runs = {
        "one": [sys.executable, "-m", "taskcomp"],
        "two": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "taskcomp"],
    }
    walls = {}
    sp = ROOT / "results" / "throughput" / "summary.json"
    if a.compare_only:
        walls = {k: float(v) for k, v in json.loads(sp.read_text()).get("torchrun_wall_s", {}).items()}
        runs = {}
    for name, launcher in runs.items():
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        threads = "1"
        cmd = [
            *launcher,
            "run",
            str(recipe),
            "--limit",
            str(a.limit),
            "--out",
            str(d),
            "--device",
            "cpu",
            "--threads",
            threads,
        ]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": threads})
        walls[name] = time.perf_counter() - t0
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
        print(f"{name}: {walls[name]:.0f} s", flush=True)
    ra, rb = records(out / "one"), records(out / "two")
    same_points = set(ra) == set(rb)
    codec_pts = [k for k in ra if "tcz_sha256" in ra[k]]
    files_equal = sum(ra[k]["tcz_sha256"] == rb[k].get("tcz_sha256") for k in codec_pts if k in rb)
    pred_cols = sorted(c for c in next(iter(ra.values())) if c.startswith("pred/"))
    preds_equal = sum(all(ra[k][c] == rb[k][c] for c in pred_cols) for k in ra if k in rb)
    top1_cols = sorted(c for c in next(iter(ra.values())) if c.startswith(("top1/", "top5/")))
    metrics_equal = sum(all(ra[k][c] == rb[k][c] for c in top1_cols) for k in ra if k in rb)
    import math

    psnr_diff = max(abs(ra[k]["psnr"] - rb[k]["psnr"]) for k in ra if k in rb and math.isfinite(ra[k]["psnr"]))
    bpp_diff = max(abs(ra[k]["bpp"] - rb[k]["bpp"]) for k in ra if k in rb)
    shards = sorted(p.name for p in (out / "two").glob("records*.jsonl"))
    report_written = (out / "two" / "summary.json").is_file()
    equal = same_points and files_equal == len(codec_pts) and preds_equal == len(ra) and metrics_equal == len(ra)
    lines = [
        "# torchrun (2 processes) against one process: the ImageNet recipe on 20 images",
        "",
        f"Command: `python experiments/throughput/torchrun_equal.py --limit {a.limit}` (runs `taskcomp run "
        f"imagenet_classification --limit {a.limit} --threads 1` and `torchrun --nproc_per_node 2 -m "
        f"taskcomp run ... --threads 1`, CPU, gloo)",
        "",
        "| | value |",
        "|---|---|",
        f"| records (one process / torchrun) | {len(ra)} / {len(rb)} |",
        f"| same (image, method, setting) points | {same_points} |",
        f"| codec points with byte-identical .tcz (SHA-256) | {files_equal} of {len(codec_pts)} |",
        f"| records with every predicted class equal ({', '.join(pred_cols)}) | {preds_equal} of {len(ra)} |",
        f"| records with equal top-1/top-5 on every model | {metrics_equal} of {len(ra)} |",
        f"| largest PSNR difference (dB) / bpp difference | {psnr_diff:.3g} / {bpp_diff:.3g} |",
        f"| torchrun record files | {', '.join(shards)} |",
        f"| merged report written by rank 0 | {report_written} |",
        f"| wall time, one process (1 thread) / torchrun (2 x 1 thread) | {walls['one']:.0f} s / {walls['two']:.0f} s |",
        "",
        f"torchrun_records_equal: **{equal}**",
        "",
    ]
    (ROOT / "results" / "throughput" / "torchrun_equal.md").write_text("\n".join(lines))
    prev = json.loads(sp.read_text()) if sp.is_file() else {}
    prev.update(
        {
            "torchrun_records_equal": equal,
            "torchrun_limit": a.limit,
            "torchrun_wall_s": {k: round(v) for k, v in walls.items()},
        }
    )
    sp.write_text(json.dumps(prev, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
