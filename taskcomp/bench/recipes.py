"""Whole experiments from a recipe: ``taskcomp run recipes/imagenet_classification.yaml``.

A recipe names the task, the data, the preprocessing, the codec, the objective the maps are optimised for,
and the methods with their sweeps. Every (image, method, setting) gives one record in
``OUT/records.shard{i}of{n}.jsonl``, written as soon as it is done; a rerun skips finished records, and
``--limit`` / ``--shard i/n`` split the work across processes or machines. Codec records carry the codec's
weights id (``weights``), and a run folder refuses to resume with other weights. ``taskcomp report OUT`` makes the
tables and plots.

Tasks plug in as adapters (:class:`ClassificationTask`, :class:`TextTask`, :class:`DetectionTask`): they list the items, load and
preprocess an image, prepare the objective's targets, make the task's baseline maps and measure a decoded
image. Metric columns are named ``metric/variant`` (e.g. ``top1/tf_efficientnet_lite1``, ``cer/gt``).
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

from ..bitstream import decode, weights_id
from ..io import atomic_write, image_to_tensor, load_image, tensor_to_image
from .baselines import pillow_roundtrip
from .metrics import psnr

__all__ = ["load_recipe", "run_recipe", "parse_shard", "preprocess_image", "ClassificationTask", "TextTask",
           "DetectionTask", "TASKS"]


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


def preprocess_image(arr: np.ndarray, resize: int | None = None, crop: int | None = None,
                     max_side: int | None = None) -> tuple[np.ndarray, float]:
    """Resize the short side to ``resize`` (bicubic) and centre-crop ``crop``; or shrink so the long side is
    at most ``max_side`` (Lanczos). Returns (uint8 image, scale applied to coordinates)."""
    im = Image.fromarray(arr)
    scale = 1.0
    if resize:
        w, h = im.size
        scale = resize / min(w, h)
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
    if max_side and max(im.size) > max_side:
        s = max_side / max(im.size)
        im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.LANCZOS)
        scale *= s
    if crop:
        w, h = im.size
        left, top = (w - crop) // 2, (h - crop) // 2
        im = im.crop((left, top, left + crop, top + crop))
    return np.asarray(im), scale


class ClassificationTask:
    """ImageNet-sample classification: maps optimised for one classifier, top-1/top-5 of several."""

    baseline = "gradcam"

    def __init__(self, recipe: dict[str, Any]):
        from ..objectives import create_objective

        spec = dict(recipe.get("objective", {"name": "classification"}))
        self.objective = create_objective(spec.pop("name"), **spec)
        names = recipe.get("eval_models") or [self.objective.model_name]
        self.evaluators = {n: (self.objective if n == self.objective.model_name
                               else create_objective("classification", model=n)) for n in names}
        self.cam_model = self.evaluators[names[0]]
        self.use_label = bool((recipe["methods"].get("task_aware") or {}).get("use_label", True))
        self.pre = recipe.get("preprocess", {})

    @staticmethod
    def items(root: Path) -> list[dict[str, Any]]:
        import pandas as pd

        df = pd.read_csv(root / "labels.csv")
        return [{"id": r.file, "path": root / "images" / r.file, "label": int(r.class_index)} for r in df.itertuples()]

    def load(self, item):
        return preprocess_image(load_image(item["path"]), self.pre.get("resize"), self.pre.get("crop"))[0]

    def contexts(self, x, item):
        ev = {n: e.prepare(x, label=item["label"]) for n, e in self.evaluators.items()}
        opt = self.objective.prepare(x, label=item["label"]) if self.use_label else self.objective.prepare(x)
        return opt, {"eval": ev, "cam": None}

    def baseline_map(self, x, state, value: float):
        from ..objectives.saliency import image_cam

        if state["cam"] is None:
            state["cam"], _ = image_cam(self.cam_model, x)
        return (value * state["cam"]).clamp(0, 1).detach()

    def metrics(self, arr, dec_arr, x_dec, state, item) -> dict[str, Any]:
        rec = {"label": item["label"]}
        for n, e in self.evaluators.items():
            m = e.evaluate(x_dec, state["eval"][n])[0]
            rec[f"top1/{n}"], rec[f"top5/{n}"] = m["top1"], m["top5"]
        return rec


def _sroie_lines(csv_path: Path) -> list[tuple[float, float, float, float, str]]:
    """Ground-truth text lines of one SROIE receipt: (x0, y0, x1, y1, transcript) from 4-point boxes."""
    out = []
    for line in csv_path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(",", 8)
        if len(parts) < 9:
            continue
        try:
            xs, ys = [float(v) for v in parts[0:8:2]], [float(v) for v in parts[1:8:2]]
        except ValueError:
            continue
        out.append((min(xs), min(ys), max(xs), max(ys), parts[8].strip()))
    return out


def _line_scores(gt_lines, reading) -> tuple[float, float]:
    """CER and word accuracy of easyocr's reading against ground-truth lines, matched by position.

    Each read box goes to the ground-truth line that contains its centre (the nearest line centre
    otherwise); a line's hypothesis is its boxes' text left to right. CER = total edit distance / total
    ground-truth characters; word accuracy over all ground-truth words.
    """
    from ..objectives.text import _levenshtein, word_accuracy

    if not gt_lines:
        return 0.0, 1.0
    assigned: list[list[tuple[float, str]]] = [[] for _ in gt_lines]
    centres = np.array([((a + c) / 2, (b + d) / 2) for a, b, c, d, _ in gt_lines])
    for box, text, *_ in reading:
        pts = np.asarray(box, dtype=float)
        cx, cy = pts[:, 0].mean(), pts[:, 1].mean()
        inside = [i for i, (a, b, c, d, _) in enumerate(gt_lines) if a <= cx <= c and b <= cy <= d]
        i = inside[0] if inside else int(np.argmin(((centres - (cx, cy)) ** 2).sum(1)))
        assigned[i].append((pts[:, 0].min(), text))
    dist = chars = 0
    words_found = words = 0.0
    for (_, _, _, _, ref), hyp in zip(gt_lines, assigned):
        h = " ".join(t for _, t in sorted(hyp))
        dist += _levenshtein(ref, h)
        chars += len(ref)
        n = len(ref.split())
        words += n
        words_found += word_accuracy(ref, h) * n
    return dist / max(chars, 1), (words_found / words if words else 1.0)


class TextTask:
    """SROIE receipts: CER / word accuracy of easyocr's reading against ground truth and the original."""

    baseline = "box_mask"

    def __init__(self, recipe: dict[str, Any]):
        from ..objectives import create_objective

        spec = dict(recipe.get("objective", {"name": "text"}))
        self.objective = create_objective(spec.pop("name"), **spec)
        self.pre = recipe.get("preprocess", {})
        self.use_gt = bool((recipe["methods"].get("task_aware") or {}).get("use_gt", False))

    @staticmethod
    def items(root: Path) -> list[dict[str, Any]]:
        imgs = sorted((root / "images").glob("*.jpg"))
        return [{"id": p.name, "path": p, "boxes": root / "boxes" / f"{p.stem}.csv"} for p in imgs]

    def load(self, item):
        arr, scale = preprocess_image(load_image(item["path"]), max_side=self.pre.get("max_side"))
        item["gt"] = [(a * scale, b * scale, c * scale, d * scale, t) for a, b, c, d, t in
                      (_sroie_lines(item["boxes"]) if item["boxes"].is_file() else [])]
        return arr

    def contexts(self, x, item):
        texts = [[(int(a), int(b), int(np.ceil(c)), int(np.ceil(d)), t) for a, b, c, d, t in item["gt"]]]
        ctx = self.objective.prepare(x, texts=texts) if self.use_gt else self.objective.prepare(x)
        orig = ctx if not self.use_gt else self.objective.prepare(x)
        H, W = x.shape[-2:]
        mask = np.zeros((H, W), bool)
        for a, b, c, d, _ in item["gt"]:
            mask[int(b): int(np.ceil(d)), int(a): int(np.ceil(c))] = True
        return ctx, {"orig": orig, "mask": mask}

    def baseline_map(self, x, state, value: float):
        return self.objective.box_mask(state["orig"], tuple(x.shape[-2:]), q_in=value, q_out=0.0)

    def metrics(self, arr, dec_arr, x_dec, state, item) -> dict[str, Any]:
        reading = self.objective.read(x_dec[0])
        cer_gt, wacc_gt = _line_scores(item["gt"], reading)
        m = self.objective.evaluate(x_dec, state["orig"], readings=[reading])[0]
        mask = state["mask"]
        rec = {"cer/gt": cer_gt, "word_acc/gt": wacc_gt, "cer/original": m["cer"], "word_acc/original": m["word_acc"]}
        if mask.any():
            rec["psnr_text"] = psnr(arr[mask], dec_arr[mask])
        if (~mask).any():
            rec["psnr_background"] = psnr(arr[~mask], dec_arr[~mask])
        return rec


class DetectionTask:
    """COCO val: detections of the decoded image (for AP against COCO ground truth in the report) and their
    agreement with the detections on the original."""

    baseline = "saliency"

    def __init__(self, recipe: dict[str, Any]):
        from ..objectives import create_objective

        spec = dict(recipe.get("objective", {"name": "detection"}))
        self.objective = create_objective(spec.pop("name"), **spec)
        parts = getattr(self.objective, "parts", None)
        self.det = next(o for n, _, o in parts if n == "detection") if parts else self.objective
        self.pre = recipe.get("preprocess", {})
        self.category = int(recipe.get("coco_category", 1))
        self.ap_conf = float(recipe.get("ap_conf", 0.001))

    @staticmethod
    def items(root: Path) -> list[dict[str, Any]]:
        with open(root / "instances.json") as f:
            d = json.load(f)
        return [{"id": im["file_name"], "path": root / "images" / im["file_name"], "coco_id": im["id"]}
                for im in sorted(d["images"], key=lambda i: i["file_name"])]

    def load(self, item):
        arr, item["scale"] = preprocess_image(load_image(item["path"]), max_side=self.pre.get("max_side"))
        return arr

    def contexts(self, x, item):
        ctx = self.objective.prepare(x)
        det_ctx = ctx.get("detection", ctx) if isinstance(ctx, dict) and "detection" in ctx else ctx
        return ctx, {"det": det_ctx, "cam": None}

    def baseline_map(self, x, state, value: float):
        from ..objectives.detection import detector_eigencam

        if state["cam"] is None:
            state["cam"] = detector_eigencam(self.det, x)
        return (value * state["cam"]).clamp(0, 1)

    def metrics(self, arr, dec_arr, x_dec, state, item) -> dict[str, Any]:
        # AP wants the whole precision-recall curve: detections down to ap_conf (COCO's usual 0.001, at most
        # 100 per image as COCO counts); all the objective's classes score as one COCO category, so NMS is
        # class-agnostic (the default detector's Normal and Fall boxes on one person are one detection). The
        # agreement with the original is the objective's own (its threshold, per-class NMS).
        d = self.det.detect(x_dec, conf=self.ap_conf, max_det=100, agnostic=True)[0]
        s = item["scale"]
        dets = [[round(a / s, 1), round(b / s, 1), round((c - a) / s, 1), round((e - b) / s, 1), round(conf, 4)]
                for a, b, c, e, conf, _ in d.tolist()]
        m = self.det.evaluate(x_dec, state["det"])[0]
        return {"coco_id": item["coco_id"], "detections": dets, "f1/original": m["f1_vs_original"],
                "recall/original": m["recall_vs_original"]}


TASKS = {"classification": ClassificationTask, "text": TextTask, "detection": DetectionTask}


def _settings(methods: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, setting label, params) for every point of every method."""
    out = []
    for method, spec in methods.items():
        spec = spec or {}
        if method == "uniform":
            out += [(method, f"q={q:.2f}", {"q": float(q)}) for q in spec.get("q", [])]
        elif method in ("gradcam", "box_mask", "saliency"):
            key = "q_in" if method == "box_mask" else "alpha"
            out += [(method, f"{key}={a:.2f}", {key: float(a)}) for a in spec.get(key, [])]
        elif method == "task_aware":
            out += [(method, f"lambda={lam:g}", {"lam": float(lam)}) for lam in spec.get("lambda", [])]
        elif method in ("jpeg", "webp"):
            out += [(method, f"quality={q}", {"quality": int(q)}) for q in spec.get("quality", [])]
        elif method == "original":
            out.append((method, "uncompressed", {}))
        else:
            raise ValueError(f"unknown method {method!r} in recipe "
                             "(original, uniform, gradcam, box_mask, saliency, task_aware, jpeg, webp)")
    return out


def run_recipe(recipe: dict[str, Any], out: Path, data_root: Path, limit: int | None = None,
               shard: str | None = None, log=print) -> int:
    """Run (or resume) a recipe; returns the number of new records."""
    from tqdm import tqdm

    from ..codec import create_codec
    from ..maps import uniform_map
    from ..optimize import MapOptimizer, real_bpp

    torch.set_flush_denormal(True)
    task_name = recipe.get("task", "classification")
    if task_name not in TASKS:
        raise ValueError(f"unknown task {task_name!r}; recipes support {', '.join(TASKS)}")
    settings = _settings(recipe["methods"])
    for method, _, _ in settings:
        if method in ("gradcam", "box_mask", "saliency") and method != TASKS[task_name].baseline:
            raise ValueError(f"method {method} does not apply to task {task_name}")

    # Items come from the task's data layout; the task's models load only when there is work to do.
    items = TASKS[task_name].items(data_root / recipe["data"])
    if limit and limit < len(items):
        # Evenly spread, not the first N: ImageNet-sample is ordered by class (the first 200 are all animals).
        items = [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]
    si, sn = parse_shard(shard)
    items = items[si::sn]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False).encode())
    rec_path = out / f"records.shard{si}of{sn}.jsonl"
    done = set()
    folder_weights: dict[str, str] = {}  # weights id -> a record file that holds points coded with it
    for p in out.glob("records*.jsonl"):
        for line in p.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done.add((r["image"], r["method"], r["setting"]))
                if r.get("weights"):
                    folder_weights.setdefault(r["weights"], p.name)
    todo = [(it, s) for it in items for s in settings if (it["id"], s[0], s[1]) not in done]
    log(f"{len(items)} images x {len(settings)} points: {len(todo)} to do, {len(items) * len(settings) - len(todo)} done")
    if not todo:
        return 0

    task = TASKS[task_name](recipe)
    codec = create_codec(recipe.get("codec", "sft-small"), checkpoint=recipe.get("checkpoint"))
    wid = weights_id(codec).hex()
    # A run folder's codec points must come from one set of weights: resuming with other weights (a new
    # shipped checkpoint, another `checkpoint:`) would silently mix two codecs in one table.
    other = sorted(set(folder_weights) - {wid})
    if other:
        raise ValueError(f"{out} holds codec points made with weights {other[0]} ({folder_weights[other[0]]}); "
                         f"this codec's weights are {wid}: use another --out")
    ta = dict(recipe["methods"].get("task_aware") or {})
    for k in ("lambda", "use_label", "use_gt"):
        ta.pop(k, None)

    by_image: dict[str, list] = {}
    for it, s in todo:
        by_image.setdefault(it["id"], [it, []])[1].append(s)
    n_new = 0
    with open(rec_path, "a") as f:
        for img_id, (it, sets) in tqdm(by_image.items(), desc=recipe["name"], dynamic_ncols=True):
            arr = task.load(it)
            x = image_to_tensor(arr)
            H, W = arr.shape[:2]
            opt_ctx, state = task.contexts(x, it)
            for method, setting, params in sets:
                t0 = time.perf_counter()
                extra: dict[str, Any] = {}
                if method == "original":  # the task metric's ceiling: the preprocessed image, 24 bpp raw RGB
                    dec_arr, bpp, x_dec = arr, 24.0, x
                elif method in ("jpeg", "webp"):
                    dec_arr, n_bytes, _, _ = pillow_roundtrip(arr, method, params["quality"])
                    bpp = 8 * n_bytes / (H * W)
                    x_dec = image_to_tensor(dec_arr)
                else:
                    if method == "uniform":
                        qmap = uniform_map(H, W, params["q"])
                    elif method == "task_aware":
                        res = MapOptimizer(codec, task.objective, lam=params["lam"], **ta).run(x, opt_ctx)
                        qmap = res.qmap
                        extra = {"best_step": res.best_step[0], "map_mean": float(qmap.mean())}
                    else:
                        qmap = task.baseline_map(x, state, next(iter(params.values())))
                    bpp, data = real_bpp(codec, x, qmap)
                    with torch.inference_mode():
                        x_dec = decode(codec, data)
                    dec_arr = tensor_to_image(x_dec)
                    extra["weights"] = wid  # every point this codec coded names its weights
                rec = {"image": img_id, "method": method, "setting": setting, **params, "width": W, "height": H,
                       "bpp": bpp, "psnr": psnr(arr, dec_arr), **task.metrics(arr, dec_arr, x_dec, state, it),
                       "seconds": time.perf_counter() - t0, **extra}
                f.write(json.dumps(rec) + "\n")
                f.flush()
                n_new += 1
    return n_new
