"""Grad-CAM in plain autograd (differentiable), and a label-free saliency objective built on it.

pytorch-grad-cam computes CAMs with hooks and ``.backward()`` and returns numpy arrays, so nothing can be
differentiated through it. :func:`grad_cam` computes the same quantity (gradient-weighted activations,
ReLU, per-image min-max scaling, bilinear resize to the input) with ``torch.autograd.grad``; with
``create_graph=True`` the CAM itself is differentiable in the input. pytorch-grad-cam stays the reference for
the alpha * Grad-CAM baseline maps; a test checks that both agree.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Objective, register_objective
from .classification import ClassificationObjective

__all__ = ["grad_cam", "default_cam_layer", "image_cam", "SaliencyObjective"]


def default_cam_layer(model: nn.Module) -> nn.Module:
    """The last feature stage of a timm model (``feature_info[-1]``), else its last child with parameters."""
    info = getattr(model, "feature_info", None)
    if info:
        name = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
        return model.get_submodule(name)
    children = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    return children[-1]


def grad_cam(model: nn.Module, inp: Tensor, layer: nn.Module, class_idx: Tensor | None = None,
             create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Grad-CAM of ``model`` on its (already preprocessed) input.

    Args:
        inp: (B, 3, h, w) network input.
        layer: module whose output activations are weighted.
        class_idx: (B,) classes; default the predicted ones.
        create_graph: keep the graph so the CAM is differentiable in ``inp``.

    Returns:
        (cam (B, h, w) in [0, 1], class_idx (B,)).
    """
    store: dict[str, Tensor] = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        if not inp.requires_grad:
            inp = inp.detach().requires_grad_(True)
        logits = model(inp)
    finally:
        handle.remove()
    if class_idx is None:
        class_idx = logits.argmax(1)
    class_idx = class_idx.to(logits.device).view(-1)
    score = logits.gather(1, class_idx.view(-1, 1)).sum()
    acts = store["a"]
    (grads,) = torch.autograd.grad(score, acts, create_graph=create_graph)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(1, keepdim=True))
    cam = cam - cam.amin(dim=(2, 3), keepdim=True)
    cam = cam / (cam.amax(dim=(2, 3), keepdim=True) + 1e-7)
    cam = F.interpolate(cam, size=inp.shape[-2:], mode="bilinear", align_corners=False)
    return cam[:, 0], class_idx


def image_cam(cls: ClassificationObjective, x: Tensor, class_idx: Tensor | None = None, layer: nn.Module | None = None,
              create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Grad-CAM in the image's own frame: (B, 1, H, W) in [0, 1] for images x (B, 3, H, W).

    The classifier sees a resized centre crop; the CAM is pasted back where that crop came from and the
    border outside it takes the nearest CAM value.
    """
    pre = cls.preprocess
    cam, idx = grad_cam(cls.model, pre(x), layer or default_cam_layer(cls.model), class_idx, create_graph)
    H, W = x.shape[-2:]
    s = pre.resize / min(H, W)
    nh, nw = max(pre.size, round(H * s)), max(pre.size, round(W * s))
    top, left = (nh - pre.size) // 2, (nw - pre.size) // 2
    full = F.pad(cam[:, None], (left, nw - pre.size - left, top, nh - pre.size - top), mode="replicate")
    if (nh, nw) != (H, W):
        full = F.interpolate(full, size=(H, W), mode="bilinear", align_corners=False)
    return full.clamp(0, 1), idx


@register_objective("saliency")
class SaliencyObjective(Objective):
    """Label-free: Grad-CAM-weighted distortion, optionally plus a CAM-preservation term.

    ``loss = sum(w * (x_hat - x)^2) / sum(w)`` with ``w = floor + cam(x)`` (per pixel, CAM of the classifier's
    prediction on the original), plus ``cam_weight * mean((cam(x_hat) - cam(x))^2)`` where the second CAM is
    differentiable (costs a double backward through the classifier; off by default).

    Args:
        model: classifier that defines saliency (timm name or alias).
        floor: weight outside salient regions, so the background is not free.
        cam_weight: weight of the CAM-preservation term.
    """

    def __init__(self, model: str = "tf_efficientnet_lite0", pretrained: bool = True, floor: float = 0.05,
                 cam_weight: float = 0.0):
        self.cls = ClassificationObjective(model, pretrained=pretrained)
        self.floor = float(floor)
        self.cam_weight = float(cam_weight)

    def prepare(self, x: Tensor, **_: Any) -> dict[str, Any]:
        cam, idx = image_cam(self.cls, x)
        return {"x": x.detach(), "cam": cam.detach(), "class_idx": idx, **self.cls.prepare(x)}

    def loss(self, x_hat: Tensor, ctx: dict[str, Any]) -> Tensor:
        w = self.floor + ctx["cam"]
        se = ((x_hat - ctx["x"]) ** 2).mean(1, keepdim=True)
        out = (w * se).flatten(1).sum(1) / w.flatten(1).sum(1)
        if self.cam_weight:
            cam_hat, _ = image_cam(self.cls, x_hat, ctx["class_idx"], create_graph=True)
            out = out + self.cam_weight * ((cam_hat - ctx["cam"]) ** 2).flatten(1).mean(1)
        return out

    @torch.no_grad()
    def evaluate(self, x_dec: Tensor, ctx: dict[str, Any]) -> list[dict[str, float]]:
        w = self.floor + ctx["cam"]
        se = ((x_dec - ctx["x"]) ** 2).mean(1, keepdim=True)
        wmse = (w * se).flatten(1).sum(1) / w.flatten(1).sum(1)
        cls = self.cls.evaluate(x_dec, ctx)
        return [{"saliency_psnr": float(10 * torch.log10(1 / wmse[i].clamp_min(1e-12))), **cls[i]}
                for i in range(x_dec.size(0))]
