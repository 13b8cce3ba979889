"""A label-free saliency objective built on the differentiable Grad-CAM of :mod:`taskcomp.objectives.gradcam`
(whose names are re-exported here, where they lived before)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import Objective, register_objective
from .classification import ClassificationObjective
from .gradcam import default_cam_layer, grad_cam, image_cam, tokens_to_grid

__all__ = ["grad_cam", "default_cam_layer", "image_cam", "tokens_to_grid", "SaliencyObjective"]


@register_objective("saliency")
class SaliencyObjective(Objective):
    """Label-free: Grad-CAM-weighted distortion, optionally plus a CAM-preservation term.

    ``loss = sum(w * (x_hat - x)^2) / sum(w)`` with ``w = floor + cam(x)`` (per pixel, CAM of the classifier's
    prediction on the original), plus ``cam_weight * mean((cam(x_hat) - cam(x))^2)`` where the second CAM is
    differentiable (costs a double backward through the classifier; off by default).

    Args:
        model: classifier that defines saliency: timm name or alias, or an ``nn.Module`` (as
            :class:`~taskcomp.objectives.classification.ClassificationObjective` takes it).
        pretrained, checkpoint_path: the classifier's weights (as timm's ``create_model``).
        floor: weight outside salient regions, so the background is not free.
        cam_weight: weight of the CAM-preservation term.
        cam_layer: name of the submodule whose activations Grad-CAM weights (default :func:`default_cam_layer`).

    Raises:
        ValueError: a model that is not a classifier, an unknown ``cam_layer``.
    """

    def __init__(
        self,
        model: str | nn.Module = "tf_efficientnet_lite0",
        pretrained: bool = True,
        floor: float = 0.05,
        cam_weight: float = 0.0,
        checkpoint_path: str | None = None,
        cam_layer: str | None = None,
    ):
        self.cls = ClassificationObjective(model, pretrained=pretrained, checkpoint_path=checkpoint_path)
        self.floor = float(floor)
        self.cam_weight = float(cam_weight)
        self.cam_layer = None
        if cam_layer is not None:
            try:
                self.cam_layer = self.cls.model.get_submodule(cam_layer)
            except AttributeError:
                raise ValueError(f"{self.cls.model_name} has no layer {cam_layer!r} for Grad-CAM") from None

    def prepare(self, x: Tensor, **_: Any) -> dict[str, Any]:
        cam, idx = image_cam(self.cls, x, layer=self.cam_layer)
        return {"x": x.detach(), "cam": cam.detach(), "class_idx": idx, **self.cls.prepare(x)}

    def loss(self, x_hat: Tensor, ctx: dict[str, Any]) -> Tensor:
        w = self.floor + ctx["cam"]
        se = ((x_hat - ctx["x"]) ** 2).mean(1, keepdim=True)
        out = (w * se).flatten(1).sum(1) / w.flatten(1).sum(1)
        if self.cam_weight:
            cam_hat, _ = image_cam(self.cls, x_hat, ctx["class_idx"], layer=self.cam_layer, create_graph=True)
            out = out + self.cam_weight * ((cam_hat - ctx["cam"]) ** 2).flatten(1).mean(1)
        return out

    def initial_map(self, kind: str, x: Tensor, ctx: dict[str, Any], level: float) -> Tensor | None:
        """``kind="gradcam"``: ``level * ctx["cam"]`` (the CAM prepared on the original), as its classifier's
        :meth:`~taskcomp.objectives.classification.ClassificationObjective.initial_map`; None for other kinds."""
        return self.cls.initial_map(kind, x, ctx, level)

    @torch.no_grad()
    def evaluate(self, x_dec: Tensor, ctx: dict[str, Any]) -> list[dict[str, float]]:
        w = self.floor + ctx["cam"]
        se = ((x_dec - ctx["x"]) ** 2).mean(1, keepdim=True)
        wmse = (w * se).flatten(1).sum(1) / w.flatten(1).sum(1)
        cls = self.cls.evaluate(x_dec, ctx)
        return [
            {"saliency_psnr": float(10 * torch.log10(1 / wmse[i].clamp_min(1e-12))), **cls[i]}
            for i in range(x_dec.size(0))
        ]
