"""Seconds per map-optimisation step on this machine, per task, in each memory format, side by side.

    python -m taskcomp.bench.map_speed --data ../shared/data --out results/map_speed [--threads 1] [--repeats 3]

For each task (classification: EfficientNet-Lite0 on a 256-px ImageNet crop; text: the recogniser on a SROIE
receipt at a 768-px working side; detection: the YOLOv8 person detector on a COCO val image at 640 px) the real
:class:`taskcomp.optimize.MapOptimizer` runs ``--steps`` steps from the same first map, once per memory format,
the formats interleaved within each repeat so that the machine's load falls on both alike. Reported: median
seconds per step (targets excluded: ``objective.prepare`` runs once, outside the timing), the ratio
contiguous / channels_last, and how far the two formats' final maps and straight-through bpp differ (float noise
only: the same arithmetic in another order). Writes ``OUT/map_speed.json`` and ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

FORMATS = ("contiguous", "channels_last")


def _image(path: Path, side: int | None = None, crop: int | None = None) -> torch.Tensor:
    from ..io import image_to_tensor, load_image

    x = image_to_tensor(load_image(path))
    H, W = x.shape[-2:]
    if side is not None and max(H, W) > side:
        s = side / max(H, W)
        x = F.interpolate(x, size=(round(H * s), round(W * s)), mode="bilinear", align_corners=False, antialias=True)
    if crop is not None:  # Resize (crop * 280 / 256) on the short side, then a centre crop, as the ImageNet recipe
        s = round(crop * 280 / 256) / min(H, W)
        x = F.interpolate(x, size=(round(H * s), round(W * s)), mode="bilinear", align_corners=False, antialias=True)
        H, W = x.shape[-2:]
        t, l = (H - crop) // 2, (W - crop) // 2
        x = x[..., t : t + crop, l : l + crop]
    return x.contiguous()


def cases(data: Path) -> list[dict[str, Any]]:
    """The tasks timed: name, objective spec, image, optimiser settings (those of the shipped recipes)."""
    return [
        {
            "task": "classification",
            "objective": {"name": "classification", "model": "lite0"},
            "image": data / "imagenet-sample/images/n01530575_brambling.jpg",
            "crop": 256,
            "side": None,
            "opt": {"lr": 0.3, "init_q": 0.1, "downsample": 8},
        },
        {
            "task": "text",
            "objective": {"name": "text", "det_weight": 0.0, "rec_weight": 1.0},
            "image": data / "sroie/images/007.jpg",
            "crop": None,
            "side": 768,
            "opt": {"lr": 0.3, "init_q": 0.25, "downsample": 8},
        },
        {
            "task": "detection",
            "objective": {"name": "detection"},
            "image": data / "coco-val/images/000000000139.jpg",
            "crop": None,
            "side": 640,
            "opt": {"lr": 0.3, "init_q": 0.1, "downsample": 8},
        },
    ]


def time_case(codec, case: dict[str, Any], steps: int, repeats: int, lam: float) -> dict[str, Any]:
    from ..objectives import create_objective
    from ..optimize import MapOptimizer

    spec = dict(case["objective"])
    objective = create_objective(spec.pop("name"), **spec)
    x = _image(case["image"], side=case["side"], crop=case["crop"])
    ctx = objective.prepare(x)
    seconds: dict[str, list[float]] = {f: [] for f in FORMATS}
    last: dict[str, Any] = {}
    for r in range(repeats + 1):  # repeat 0 warms both formats up (oneDNN primitive caches) and is not counted
        for fmt in FORMATS:
            opt = MapOptimizer(codec, objective, lam=lam, steps=steps, memory_format=fmt, **case["opt"])
            t = time.perf_counter()
            res = opt.run(x, ctx)
            if r:
                seconds[fmt].append((time.perf_counter() - t) / (steps + 1))  # steps + the final scoring pass
            last[fmt] = res
    med = {f: statistics.median(v) for f, v in seconds.items()}
    maps = [last[f].qmap for f in FORMATS]
    bpps = [last[f].log[-1]["bpp"] for f in FORMATS]
    return {
        "task": case["task"],
        "image": case["image"].name,
        "size": list(x.shape[-2:]),
        "steps": steps,
        "seconds_per_step": med,
        "all_seconds_per_step": seconds,
        "speedup_channels_last": med["contiguous"] / med["channels_last"],
        "map_max_abs_diff": float((maps[0] - maps[1]).abs().max()),
        "final_bpp": dict(zip(FORMATS, bpps)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("TASKCOMP_DATA", "../shared/data"), help="data root")
    ap.add_argument("--out", default="results/map_speed", help="output folder")
    ap.add_argument("--codec", default="sft-small")
    ap.add_argument("--tasks", default="classification,text,detection", help="comma list")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lam", type=float, default=1.0)
    a = ap.parse_args(argv)
    for name in ("threads", "steps", "repeats"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(a, name)}")
    if not (math.isfinite(a.lam) and a.lam >= 0):
        ap.error(f"--lam must be a finite number >= 0, got {a.lam}")
    from ..codec import create_codec
    from ..io import atomic_write

    data = Path(a.data)
    wanted = [t.strip() for t in a.tasks.split(",") if t.strip()]
    todo = [c for c in cases(data) if c["task"] in wanted]
    unknown = set(wanted) - {c["task"] for c in cases(data)}
    if unknown or not todo:
        raise SystemExit(
            f"map_speed: unknown task(s) {sorted(unknown) or wanted}; choose from classification, text, detection"
        )
    missing = [str(c["image"]) for c in todo if not c["image"].is_file()]
    if missing:
        raise SystemExit(f"map_speed: image not found: {missing[0]} (give --data, the data root)")
    torch.set_num_threads(a.threads)
    codec = create_codec(a.codec).eval()
    rows = []
    for case in todo:
        row = time_case(codec, case, a.steps, a.repeats, a.lam)
        print(
            f"{row['task']}: {row['seconds_per_step']['contiguous']:.3f} s/step contiguous, "
            f"{row['seconds_per_step']['channels_last']:.3f} channels_last: x{row['speedup_channels_last']:.2f}",
            flush=True,
        )
        rows.append(row)
    out = Path(a.out)
    meta = {
        "codec": a.codec,
        "threads": a.threads,
        "steps": a.steps,
        "repeats": a.repeats,
        "lambda": a.lam,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "command": "python -m taskcomp.bench.map_speed " + " ".join(argv if argv is not None else os.sys.argv[1:]),
    }
    atomic_write(out / "map_speed.json", json.dumps({"meta": meta, "rows": rows}, indent=1).encode())
    lines = [
        "| task | image | size | s/step contiguous | s/step channels_last | speed-up | map max diff | bpp (both) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, b = r["seconds_per_step"], r["final_bpp"]
        lines.append(
            f"| {r['task']} | {r['image']} | {r['size'][0]}x{r['size'][1]} | {s['contiguous']:.3f} | "
            f"{s['channels_last']:.3f} | {r['speedup_channels_last']:.2f}x | {r['map_max_abs_diff']:.1e} | "
            f"{b['contiguous']:.4f} / {b['channels_last']:.4f} |"
        )
    atomic_write(out / "table.md", ("\n".join(lines) + "\n").encode())
    print(f"wrote {out / 'map_speed.json'} and {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
