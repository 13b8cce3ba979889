"""Task adapters of the recipe runner: how each task loads and preprocesses an image, prepares the objective's
targets, makes its baseline maps and measures a decoded image.

Metric columns are named ``metric/variant`` (e.g. ``top1/tf_efficientnet_lite1``, ``cer/gt``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F

from ..bench.metrics import psnr
from ..datasets import preprocess_image
from ..io import load_image
from ..objectives import create_objective
from ..objectives.detection import detector_eigencam
from ..objectives.saliency import image_cam
from ..objectives.text import cer, levenshtein, line_scores, reading_text, word_accuracy
from .layouts import list_items, list_layout

__all__ = [
    "preprocess_image",
    "ClassificationTask",
    "TextTask",
    "DetectionTask",
    "TASKS",
    "list_items",
    "objective_spec",
]


def _note_input_size(item: dict[str, Any], img: np.ndarray) -> np.ndarray:
    """Remember the loaded image's own size in ``item``: records say both the size coded (``width``,
    ``height``: after the recipe's ``preprocess``, a documented benchmark setting) and the input's."""
    item["input_size"] = (int(img.shape[1]), int(img.shape[0]))
    return img


def _input_size(item: dict[str, Any]) -> dict[str, int]:
    """``input_width`` / ``input_height`` of a record: the image file's size before the recipe's preprocessing."""
    if "input_size" not in item:
        return {}
    return {"input_width": item["input_size"][0], "input_height": item["input_size"][1]}


class ClassificationTask:
    """ImageNet-sample classification: maps optimised for one classifier, top-1/top-5 of several."""

    baseline = "gradcam"
    default_objective = "classification"  # when the recipe names none

    def __init__(self, recipe: dict[str, Any]):
        spec = objective_spec(recipe)
        self.objective = create_objective(spec.pop("name"), **spec)
        names = recipe.get("eval_models") or [self.objective.model_name]
        self.evaluators = {
            n: (self.objective if n == self.objective.model_name else create_objective("classification", model=n))
            for n in names
        }
        self.cam_model = self.evaluators[names[0]]
        ta = recipe["methods"].get("task_aware")
        self.use_label = bool((ta or {}).get("use_label", True))
        self.maps_use_label = ta is not None and self.use_label  # task_aware maps need every item's label
        self.targets_in_context = self.use_label  # methods with use_label: false derive a label-free context
        self.recipe = recipe
        self.pre = recipe.get("preprocess", {})

    @staticmethod
    def items(root: Path) -> list[dict[str, Any]]:
        """The items of a folder in the default layout (imagenet-sample); recipes go through :func:`list_items`."""
        return list_layout("imagenet-sample", root)

    def load(self, item):
        img = _note_input_size(item, load_image(item["path"]))
        return preprocess_image(img, self.pre.get("resize"), self.pre.get("crop"))[0]

    def contexts(self, x, item):
        """Objective targets: with a label, cross-entropy (if ``use_label``) and top-1 against it; without one
        (label-free layouts), KL to the original's prediction and top-1 as agreement with that prediction."""
        label = item.get("label")
        if label is None and self.maps_use_label:
            raise ValueError(
                f"{item['id']} has no label but use_label is true: set methods.task_aware.use_label: false"
            )
        ev = {n: e.prepare(x, label=label) for n, e in self.evaluators.items()}
        opt = self.objective.prepare(x, label=label) if self.use_label else self.objective.prepare(x)
        return opt, {"eval": ev, "cam": None}

    def baseline_map(self, x, state, value: float):
        if state["cam"] is None:
            state["cam"], _ = image_cam(self.cam_model, x)
        return (value * state["cam"]).clamp(0, 1).detach()

    def metrics(self, arr, dec_arr, x_dec, state, item) -> dict[str, Any]:
        rec = {"label": item.get("label"), **_input_size(item)}
        for n, e in self.evaluators.items():
            m = e.evaluate(x_dec, state["eval"][n])[0]
            rec[f"top1/{n}"], rec[f"top5/{n}"] = m["top1"], m["top5"]
            rec[f"pred/{n}"] = m["pred"]  # class index predicted on the decoded image (not a mean-able metric)
        return rec


def _sroie_lines(csv_path: Path) -> list[tuple[float, float, float, float, str]]:
    """Ground-truth text lines of one SROIE receipt: (x0, y0, x1, y1, transcript) from 4-point boxes."""
    out = []
    # utf-8-sig: a byte-order mark would make the first line's x1 unreadable (and the line silently dropped)
    for line in csv_path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
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
        dist += levenshtein(ref, h)
        chars += len(ref)
        n = len(ref.split())
        words += n
        words_found += word_accuracy(ref, h) * n
    return dist / max(chars, 1), (words_found / words if words else 1.0)


class TextTask:
    """SROIE receipts: CER / word accuracy of easyocr's reading against ground truth and the original.

    Recipe settings: ``preprocess.working_side`` (px): maps are optimised (and box masks made) on a copy whose
    long side is this, then upsampled; the image is coded and read at its own size, so bpp counts its own pixels.
    ``reading``: ``page`` (default; easyocr's ``readtext``, detection and recognition, lines matched to the ground
    truth by position) or ``boxes`` (easyocr's recogniser on each ground-truth line box, no detection: seconds
    instead of tens of seconds per full-resolution receipt on a CPU; needs box ground truth). With ``boxes``,
    ``cer/original`` compares with the recogniser's reading of the same boxes on the original.
    """

    baseline = "box_mask"
    default_objective = "text"  # when the recipe names none
    reading = "page"  # recipe key reading (set per recipe in __init__)

    def __init__(self, recipe: dict[str, Any]):
        spec = objective_spec(recipe)
        self.objective = create_objective(spec.pop("name"), **spec)
        self.pre = recipe.get("preprocess", {})
        self.reading = recipe.get("reading", "page")
        self.use_gt = bool((recipe["methods"].get("task_aware") or {}).get("use_gt", False))
        self.targets_in_context = self.use_gt
        self.recipe = recipe

    @staticmethod
    def items(root: Path) -> list[dict[str, Any]]:
        """The items of a folder in the default layout (sroie); recipes go through :func:`list_items`."""
        return list_layout("sroie", root)

    def load(self, item):
        """Preprocessed image; sets ``item["gt"]``, the box ground truth scaled to it ([] without boxes)."""
        img = _note_input_size(item, load_image(item["path"]))
        arr, scale = preprocess_image(img, max_side=self.pre.get("max_side"))
        boxes = item.get("boxes")
        item["gt"] = [
            (a * scale, b * scale, c * scale, d * scale, t)
            for a, b, c, d, t in (_sroie_lines(Path(boxes)) if boxes is not None and Path(boxes).is_file() else [])
        ]
        return arr

    def contexts(self, x, item):
        """Objective context (ground-truth boxes if ``use_gt``, else easyocr's reading of the original) and the
        text-box mask of the box ground truth (empty without it).

        With ``preprocess.working_side`` the objective context and ``state["orig"]`` are prepared on the working
        copy ``state["work"]`` (1, 3, h, w) and their boxes are in its pixels; ``state["mask"]``,
        ``state["orig_lines"]`` (reading: boxes) and ``item["gt"]`` are in x's own pixels.

        Raises:
            ValueError: ``use_gt`` or ``reading: boxes`` on an item without box ground truth.
        """
        if self.use_gt and item.get("boxes") is None:
            raise ValueError(
                f"{item['id']} has no box ground truth but use_gt is true: set methods.task_aware.use_gt: false"
            )
        if self.reading == "boxes" and not item["gt"]:
            raise ValueError(
                f"{item['id']} has no box ground truth (no readable line in its csv) but the recipe "
                "reads boxes: set reading: page"
            )
        H, W = x.shape[-2:]
        side, s, xw = self.pre.get("working_side"), 1.0, x
        if side and max(H, W) > side:
            s = side / max(H, W)
            xw = F.interpolate(
                x,
                size=(max(1, round(H * s)), max(1, round(W * s))),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        texts = [
            [(int(a * s), int(b * s), int(np.ceil(c * s)), int(np.ceil(d * s)), t) for a, b, c, d, t in item["gt"]]
        ]
        ctx = self.objective.prepare(xw, texts=texts) if self.use_gt else self.objective.prepare(xw)
        orig = ctx if not self.use_gt else self.objective.prepare(xw)
        mask = np.zeros((H, W), bool)
        for a, b, c, d, _ in item["gt"]:
            mask[int(b) : int(np.ceil(d)), int(a) : int(np.ceil(c))] = True
        state = {"orig": orig, "mask": mask}
        if xw is not x:
            state["work"] = xw  # taken by the runner: maps are made at this size
        if self.reading == "boxes":
            state["orig_lines"] = [t for _, t, _ in self.objective.read_boxes(x[0], item["gt"])]
        return ctx, state

    def baseline_map(self, x, state, value: float):
        """Box-mask map (1, 1, h, w): ``value`` inside the boxes read on the original, 0 outside. x must be the
        image the context was prepared on (the working copy when there is one); the runner upsamples the map."""
        return self.objective.box_mask(state["orig"], tuple(x.shape[-2:]), q_in=value, q_out=0.0)

    def metrics(self, arr, dec_arr, x_dec, state, item) -> dict[str, Any]:
        """CER / word accuracy against the original's reading always; against the ground truth when the item has
        one (box lines matched by position, else whole-page ``gt_text``); PSNR inside / outside the boxes."""
        if self.reading == "boxes":
            reading = self.objective.read_boxes(x_dec[0], item["gt"])
            state["reading"] = reading
            hyps = [t for _, t, _ in reading]
            rec = {**_input_size(item)}
            rec["cer/original"], rec["word_acc/original"] = line_scores(state["orig_lines"], hyps)
            rec["cer/gt"], rec["word_acc/gt"] = line_scores([g[4] for g in item["gt"]], hyps)
            self._psnr_in_out(rec, arr, dec_arr, state["mask"])
            return rec
        reading = self.objective.read(x_dec[0])
        state["reading"] = reading  # this point's reading, for the gallery examples (taskcomp.pictures)
        m = self.objective.evaluate(x_dec, state["orig"], readings=[reading])[0]
        rec = {"cer/original": m["cer"], "word_acc/original": m["word_acc"], **_input_size(item)}
        if item.get("boxes") is not None:
            rec["cer/gt"], rec["word_acc/gt"] = _line_scores(item["gt"], reading)
        elif item.get("gt_text") is not None:
            ref, hyp = " ".join(item["gt_text"].split()), " ".join(reading_text(reading).split())
            rec["cer/gt"], rec["word_acc/gt"] = cer(ref, hyp), word_accuracy(ref, hyp)
        self._psnr_in_out(rec, arr, dec_arr, state["mask"])
        return rec

    @staticmethod
    def _psnr_in_out(rec: dict[str, Any], arr, dec_arr, mask) -> dict[str, Any]:
        """Adds ``psnr_text`` / ``psnr_background`` (dB, inside / outside the ground-truth boxes) to ``rec``
        and returns it."""
        if mask.any():
            rec["psnr_text"] = psnr(arr[mask], dec_arr[mask])
            if (~mask).any():
                rec["psnr_background"] = psnr(arr[~mask], dec_arr[~mask])
        return rec


class DetectionTask:
    """COCO val: detections of the decoded image (for AP against COCO ground truth in the report) and their
    agreement with the detections on the original."""

    baseline = "saliency"
    default_objective = "detection"  # when the recipe names none

    def __init__(self, recipe: dict[str, Any]):
        spec = objective_spec(recipe)
        self.objective = create_objective(spec.pop("name"), **spec)
        parts = getattr(self.objective, "parts", None)
        self.det = next(o for n, _, o in parts if n == "detection") if parts else self.objective
        self.pre = recipe.get("preprocess", {})
        self.category = int(recipe.get("coco_category", 1))
        self.ap_conf = float(recipe.get("ap_conf", 0.001))
        self.targets_in_context = False  # maps use the original's detections
        self.recipe = recipe

    @staticmethod
    def items(root: Path) -> list[dict[str, Any]]:
        """The items of a folder in the default layout (coco); recipes go through :func:`list_items`."""
        return list_layout("coco", root)

    def load(self, item):
        img = _note_input_size(item, load_image(item["path"]))
        arr, item["scale"] = preprocess_image(img, max_side=self.pre.get("max_side"))
        return arr

    def contexts(self, x, item):
        ctx = self.objective.prepare(x)
        det_ctx = ctx.get("detection", ctx) if isinstance(ctx, dict) and "detection" in ctx else ctx
        return ctx, {"det": det_ctx, "cam": None}

    def baseline_map(self, x, state, value: float):
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
        dets = [
            [round(a / s, 1), round(b / s, 1), round((c - a) / s, 1), round((e - b) / s, 1), round(conf, 4)]
            for a, b, c, e, conf, _ in d.tolist()
        ]
        m = self.det.evaluate(x_dec, state["det"])[0]
        return {
            "coco_id": item["coco_id"],
            "detections": dets,
            "f1/original": m["f1_vs_original"],
            "recall/original": m["recall_vs_original"],
            **_input_size(item),
        }


TASKS = {"classification": ClassificationTask, "text": TextTask, "detection": DetectionTask}


def objective_spec(recipe: dict[str, Any]) -> dict[str, Any]:
    """A copy of the recipe's ``objective`` mapping, or, when it names none, its task's default objective
    (``{"name": ...}``)."""
    return dict(recipe.get("objective") or {"name": TASKS[recipe.get("task", "classification")].default_objective})
