"""Whole experiments from a recipe: ``taskcomp run recipes/imagenet_classification.yaml``.

A recipe names the data, the preprocessing, the codec, the objective the maps are optimised for, the models
that evaluate the decoded images (same-model and cross-model), and the methods with their sweeps. Every
(image, method, setting) gives one record in ``OUT/records.jsonl``, written as soon as it is done; a rerun
skips finished records, and ``--limit`` / ``--shard i/n`` split the work. ``taskcomp report OUT`` makes the
tables and plots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from ..bitstream import decode
from ..io import image_to_tensor, load_image
from .baselines import pillow_roundtrip
from .metrics import psnr

__all__ = ["load_recipe", "run_recipe", "imagenet_items", "preprocess_image", "parse_shard"]


def load_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe not found: {path}")
    with open(path) as f:
        r = yaml.safe_load(f) or {}
    for key in ("name", "data", "methods"):
        if key not in r:
            raise ValueError(f"recipe {path} lacks '{key}'")
    return r


def parse_shard(s: str | None) -> tuple[int, int]:
    if not s:
        return 0, 1
    try:
        i, n = (int(v) for v in s.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n, got {s!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {s}: need 0 <= i < n")
    return i, n


def imagenet_items(root: Path) -> list[dict[str, Any]]:
    """Rows of ``imagenet-sample/labels.csv``: file path and class index."""
    import pandas as pd

    df = pd.read_csv(root / "labels.csv")
    return [{"id": r.file, "path": root / "images" / r.file, "label": int(r.class_index)} for r in df.itertuples()]


def preprocess_image(arr: np.ndarray, resize: int | None, crop: int | None) -> np.ndarray:
    """Resize the short side to ``resize`` (bicubic) and centre-crop ``crop`` x ``crop``, on uint8."""
    im = Image.fromarray(arr)
    if resize:
        w, h = im.size
        s = resize / min(w, h)
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    if crop:
        w, h = im.size
        left, top = (w - crop) // 2, (h - crop) // 2
        im = im.crop((left, top, left + crop, top + crop))
    return np.asarray(im)


def _settings(methods: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, setting label, params) for every point of every method."""
    out = []
    for method, spec in methods.items():
        spec = spec or {}
        if method == "uniform":
            out += [(method, f"q={q:.2f}", {"q": float(q)}) for q in spec.get("q", [])]
        elif method == "gradcam":
            out += [(method, f"alpha={a:.2f}", {"alpha": float(a)}) for a in spec.get("alpha", [])]
        elif method == "task_aware":
            out += [(method, f"lambda={lam:g}", {"lam": float(lam)}) for lam in spec.get("lambda", [])]
        elif method in ("jpeg", "webp"):
            out += [(method, f"quality={q}", {"quality": int(q)}) for q in spec.get("quality", [])]
        else:
            raise ValueError(f"unknown method {method!r} in recipe (uniform, gradcam, task_aware, jpeg, webp)")
    return out


def run_recipe(recipe: dict[str, Any], out: Path, data_root: Path, limit: int | None = None,
               shard: str | None = None, log=print) -> int:
    """Run (or resume) a classification recipe; returns the number of new records."""
    from tqdm import tqdm

    from ..codec import create_codec
    from ..maps import uniform_map
    from ..objectives import create_objective
    from ..objectives.saliency import image_cam
    from ..optimize import MapOptimizer, real_bpp

    torch.set_flush_denormal(True)
    if recipe.get("task", "classification") != "classification":
        raise ValueError("only classification recipes are supported so far")
    items = imagenet_items(data_root / recipe["data"])
    if limit:
        items = items[:limit]
    si, sn = parse_shard(shard)
    items = items[si::sn]
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    rec_path = out / f"records.shard{si}of{sn}.jsonl"
    done = set()
    for p in out.glob("records*.jsonl"):
        for line in p.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done.add((r["image"], r["method"], r["setting"]))

    settings = _settings(recipe["methods"])
    todo = [(it, s) for it in items for s in settings if (it["id"], s[0], s[1]) not in done]
    log(f"{len(items)} images x {len(settings)} points: {len(todo)} to do, {len(items) * len(settings) - len(todo)} done")
    if not todo:
        return 0

    codec = create_codec(recipe.get("codec", "sft-small"), checkpoint=recipe.get("checkpoint"))
    obj_spec = dict(recipe.get("objective", {"name": "classification"}))
    objective = create_objective(obj_spec.pop("name"), **obj_spec)
    eval_names = recipe.get("eval_models") or [objective.model_name]
    evaluators = {n: (objective if n == objective.model_name else create_objective("classification", model=n))
                  for n in eval_names}
    ta = dict(recipe["methods"].get("task_aware") or {})
    ta.pop("lambda", None)
    use_label = bool(ta.pop("use_label", True))
    pre = recipe.get("preprocess", {})

    n_new = 0
    by_image: dict[str, list] = {}
    for it, s in todo:
        by_image.setdefault(it["id"], [it, []])[1].append(s)
    with open(rec_path, "a") as f:
        for img_id, (it, sets) in tqdm(by_image.items(), desc=recipe["name"], dynamic_ncols=True):
            arr = preprocess_image(load_image(it["path"]), pre.get("resize"), pre.get("crop"))
            x = image_to_tensor(arr)
            H, W = arr.shape[:2]
            ctxs = {n: e.prepare(x, label=it["label"]) for n, e in evaluators.items()}
            opt_ctx = objective.prepare(x, label=it["label"]) if use_label else objective.prepare(x)
            cam = None
            for method, setting, params in sets:
                t0 = time.perf_counter()
                extra: dict[str, Any] = {}
                if method in ("jpeg", "webp"):
                    dec_arr, n_bytes, _, _ = pillow_roundtrip(arr, method, params["quality"])
                    bpp = 8 * n_bytes / (H * W)
                    x_dec = image_to_tensor(dec_arr)
                else:
                    if method == "uniform":
                        qmap = uniform_map(H, W, params["q"])
                    elif method == "gradcam":
                        if cam is None:
                            cam, _ = image_cam(evaluators[eval_names[0]], x)
                        qmap = (params["alpha"] * cam).clamp(0, 1).detach()
                    else:
                        res = MapOptimizer(codec, objective, lam=params["lam"], **ta).run(x, opt_ctx)
                        qmap = res.qmap
                        extra = {"best_step": res.best_step[0], "map_mean": float(qmap.mean())}
                    bpp, data = real_bpp(codec, x, qmap)
                    with torch.inference_mode():
                        x_dec = decode(codec, data)
                    dec_arr = (x_dec[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
                rec = {"image": img_id, "label": it["label"], "method": method, "setting": setting, **params,
                       "bpp": bpp, "psnr": psnr(arr, dec_arr), "seconds": time.perf_counter() - t0, **extra}
                for n, e in evaluators.items():
                    m = e.evaluate(x_dec, ctxs[n])[0]
                    rec[f"top1/{n}"], rec[f"top5/{n}"] = m["top1"], m["top5"]
                f.write(json.dumps(rec) + "\n")
                f.flush()
                n_new += 1
    return n_new
