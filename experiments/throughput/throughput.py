"""Throughput of the ImageNet recipe's task-aware method by batch size and process count, on this machine.

    python experiments/throughput/throughput.py [--images 16] [--out results/throughput]

Each setting runs `taskcomp run` (one process, 2 threads) or `torchrun --nproc_per_node 2 -m taskcomp run`
(two processes, 1 thread each) on the same ImageNet-sample images (evenly spread, `--limit`), with the
recipe's task-aware settings (10 Adam steps, lr 0.3, grid /8, label cross-entropy on EfficientNet-Lite0) at
one lambda, and the recipe's metrics per map (real .tcz coding and decoding, top-1 of Lite0/1/2). Busy time
per process is the sum of its records' `seconds` (optimising, coding, decoding, measuring; not model loading);
maps per second = maps / the busiest process's time. Also: batch 8 against batch 1 per image.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from taskcomp.runner.recipe import resolve_recipe

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = [(1, 1), (1, 4), (1, 8), (1, 16), (2, 1), (2, 4), (2, 16)]  # (processes, batch size)


def run_setting(recipe_path: Path, out: Path, procs: int, batch: int, limit: int) -> dict:
    args = [
        "run",
        str(recipe_path),
        "--limit",
        str(limit),
        "--batch-size",
        str(batch),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--threads",
        str(2 // procs),
    ]
    if procs == 1:
        cmd = [sys.executable, "-m", "taskcomp", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "-m", "taskcomp", *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(2 // procs)})
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    busy = {}
    records = {}
    for p in out.glob("records*.jsonl"):
        for line in p.read_text().splitlines():
            r = json.loads(line)
            busy[p.name] = busy.get(p.name, 0.0) + r["seconds"]
            records[r["image"]] = r
    n = len(records)
    return {
        "processes": procs,
        "batch_size": batch,
        "maps": n,
        "wall_s": round(wall, 1),
        "busy_s_per_process": {k: round(v, 1) for k, v in sorted(busy.items())},
        "maps_per_s": n / max(busy.values()),
        "records": records,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--out", default=str(ROOT / "results" / "throughput"))
    a = ap.parse_args()
    out = Path(a.out)
    base = yaml.safe_load(resolve_recipe("imagenet_classification").read_text())
    ta = dict(base["methods"]["task_aware"], **{"lambda": [a.lam]})
    recipe = {**base, "name": "imagenet_throughput", "methods": {"task_aware": ta}}
    recipe_path = out / "recipe.yaml"
    out.mkdir(parents=True, exist_ok=True)
    recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    rows = []
    for procs, batch in SETTINGS:
        run_dir = out / "runs" / f"p{procs}_b{batch}"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        r = run_setting(recipe_path, run_dir, procs, batch, a.images)
        rows.append(r)
        print(
            f"{procs} process(es), batch {batch}: {r['maps']} maps, {r['maps_per_s']:.3f} maps/s "
            f"(busy {r['busy_s_per_process']}, wall {r['wall_s']} s)",
            flush=True,
        )

    def find(p, b):
        return next(r for r in rows if (r["processes"], r["batch_size"]) == (p, b))

    b1, b8 = find(1, 1)["records"], find(1, 8)["records"]
    per_image = []
    for img in sorted(b1):
        r1, r8 = b1[img], b8[img]
        per_image.append(
            {
                "image": img,
                "bpp_b1": r1["bpp"],
                "bpp_b8": r8["bpp"],
                "bpp_rel_diff_percent": 100 * (r8["bpp"] / r1["bpp"] - 1),
                "top1_b1": r1["top1/tf_efficientnet_lite0"],
                "top1_b8": r8["top1/tf_efficientnet_lite0"],
            }
        )
    import pandas as pd

    df = pd.DataFrame(per_image)
    base_rate = find(1, 1)["maps_per_s"]
    table = pd.DataFrame(
        [
            {
                "processes": r["processes"],
                "batch_size": r["batch_size"],
                "maps": r["maps"],
                "maps_per_s": round(r["maps_per_s"], 4),
                "speed_vs_1x1": round(r["maps_per_s"] / base_rate, 2),
                "hours_for_50k_x_5_lambdas": round(250_000 / r["maps_per_s"] / 3600, 1),
                "wall_s": r["wall_s"],
            }
            for r in rows
        ]
    )
    summary = {
        "machine": "2 CPU cores (no GPU)",
        "images": a.images,
        "lambda": a.lam,
        "cpu_images_per_s": {f"procs{r['processes']}_batch{r['batch_size']}": round(r["maps_per_s"], 4) for r in rows},
        "batch8_top1_equal": int((df.top1_b1 == df.top1_b8).sum()),
        "batch8_bpp_within_1_percent": int((df.bpp_rel_diff_percent.abs() <= 1.0).sum()),
        "batch8_bpp_max_abs_diff_percent": round(float(df.bpp_rel_diff_percent.abs().max()), 3),
        "batch8_time_ratio_b1_over_b8": round(find(1, 8)["maps_per_s"] / base_rate, 3),
        "projected_hours_50k_x_5_lambdas": {
            f"procs{r['processes']}_batch{r['batch_size']}": round(250_000 / r["maps_per_s"] / 3600, 1) for r in rows
        },
    }
    (out / "throughput.md").write_text(
        "# Task-aware map throughput (ImageNet recipe, 256 px, this 2-core CPU)\n\n"
        f"Command: `python experiments/throughput/throughput.py --images {a.images} --lam {a.lam}`\n\n"
        + table.to_markdown(index=False)
        + "\n\n## Batch 8 against batch 1, per image\n\n"
        + df.to_markdown(index=False, floatfmt=".5f")
        + "\n"
    )
    prev = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    (out / "summary.json").write_text(json.dumps({**prev, **summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
