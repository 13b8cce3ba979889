"""Grad-CAM in plain autograd (differentiable), in the classifier's input frame and in the image's own frame.

pytorch-grad-cam computes CAMs with hooks and ``.backward()`` and returns numpy arrays, so nothing can be
differentiated through it. :func:`grad_cam` computes the same quantity (gradient-weighted activations,
ReLU, per-image min-max scaling, bilinear resize to the input) with ``torch.autograd.grad``; with
``create_graph=True`` the CAM itself is differentiable in the input. pytorch-grad-cam stays the reference for
the alpha * Grad-CAM baseline maps; a test checks that both agree. Used by the classification objective (its
Grad-CAM first map) and the saliency objective, so it sits below both.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["grad_cam", "default_cam_layer", "image_cam", "tokens_to_grid"]


def default_cam_layer(model: nn.Module) -> nn.Module:
    """The layer whose activations Grad-CAM weights by default.

    The last feature stage of a timm model (``feature_info[-1]``), else its last child with parameters. For a
    vision transformer that classifies from its prefix (class / distillation) tokens (timm
    ``global_pool="token"``), the last block's output reaches the head only through those tokens, so the
    patch tokens get zero gradient there; its first norm (``blocks[-1].norm1``) is taken instead, as
    pytorch-grad-cam's ViT tutorial does.
    """
    info = getattr(model, "feature_info", None)
    if info:
        name = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
        blocks = getattr(model, "blocks", None)
        if (
            getattr(model, "global_pool", None) == "token"
            and isinstance(blocks, nn.Sequential)
            and len(blocks)
            and not hasattr(model, "blocks_token_only")  # CaiT: class attention reads the last block's tokens
            and name == f"blocks.{len(blocks) - 1}"
            and hasattr(blocks[-1], "norm1")
        ):
            return blocks[-1].norm1
        return model.get_submodule(name)
    children = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    return children[-1]


def _layer_name(model: nn.Module, layer: nn.Module) -> str:
    return next((n for n, m in model.named_modules() if m is layer), type(layer).__name__) or "(the model)"


def _patch_grid(model: nn.Module, inp_hw: tuple[int, int]) -> tuple[int, int] | None:
    """The (rows, cols) patch grid of a timm patch-embedding model for an input of size inp_hw, if it has one."""
    for attr in ("patch_embed", "stem"):
        pe = getattr(model, attr, None)
        ps = getattr(pe, "patch_size", None)
        if ps is not None:
            ph, pw = (ps, ps) if isinstance(ps, int) else tuple(ps)[:2]
            return inp_hw[0] // ph, inp_hw[1] // pw
        gs = getattr(pe, "grid_size", None)
        if gs is not None:
            return tuple(gs)[:2]
    return None


def tokens_to_grid(acts: Tensor, model: nn.Module, inp_hw: tuple[int, int], layer_name: str = "layer") -> Tensor:
    """Bring a layer's activations to a (B, C, h, w) feature map (pytorch-grad-cam's ``reshape_transform``).

    - (B, C, h, w): returned as is; (B, h, w, C) when the model says ``output_fmt == "NHWC"`` (timm Swin):
      permuted.
    - (B, N, C) tokens (ViT, DeiT, DINOv2 with registers, CaiT, EVA, MLP-Mixer, ResMLP, LeViT): the first
      ``model.num_prefix_tokens`` (class, distillation, register tokens) are dropped when N exceeds the patch
      grid by that many, and the rest are laid out on the model's patch grid (input size // patch size), or
      on a square grid when the model has no patch embedding that tells.

    Raises:
        ValueError: activations that are not a tensor of one of these shapes, naming the layer and its shape.
    """
    shape = tuple(acts.shape) if isinstance(acts, Tensor) else type(acts).__name__
    if isinstance(acts, Tensor) and acts.dim() == 4:
        if getattr(model, "output_fmt", "NCHW") == "NHWC":
            return acts.permute(0, 3, 1, 2)
        return acts
    if isinstance(acts, Tensor) and acts.dim() == 3:
        n = acts.shape[1]
        prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
        grid = _patch_grid(model, inp_hw)
        for p in dict.fromkeys((prefix, 0)):
            m = n - p
            if grid is not None and grid[0] * grid[1] == m:
                h, w = grid
            elif m > 0 and math.isqrt(m) ** 2 == m:
                h = w = math.isqrt(m)
            else:
                continue
            return acts[:, p:].transpose(1, 2).reshape(acts.shape[0], acts.shape[2], h, w)
    raise ValueError(
        f"Grad-CAM layer {layer_name} outputs {shape}, neither a feature map (B, C, h, w) nor "
        f"tokens (B, N, C) on a patch grid; choose a layer with a spatial output"
    )


def grad_cam(
    model: nn.Module,
    inp: Tensor,
    layer: nn.Module,
    class_idx: Tensor | None = None,
    create_graph: bool = False,
    reshape_transform: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Grad-CAM of ``model`` on its (already preprocessed) input (Selvaraju et al., ICCV 2017).

    Args:
        inp: (B, 3, h, w) network input.
        layer: module whose output activations are weighted: a CNN feature map, or transformer / MLP-mixer
            tokens, laid out on the patch grid by :func:`tokens_to_grid`.
        class_idx: (B,) classes; default the predicted ones.
        create_graph: keep the graph so the CAM is differentiable in ``inp``.
        reshape_transform: as pytorch-grad-cam's: maps the layer's output to (B, C, h, w); default
            :func:`tokens_to_grid`.

    Returns:
        (cam (B, h, w) in [0, 1], class_idx (B,)).

    Raises:
        ValueError: a layer whose output cannot be laid out as a feature map (the message names its shape).
    """
    store: dict[str, Tensor] = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        if not inp.requires_grad:
            inp = inp.detach().requires_grad_(True)
        logits = model(inp)
    finally:
        handle.remove()
    if "a" not in store:
        raise ValueError(f"Grad-CAM layer {_layer_name(model, layer)} was not run by the model's forward")
    if class_idx is None:
        class_idx = logits.argmax(1)
    class_idx = class_idx.to(logits.device).view(-1)
    score = logits.gather(1, class_idx.view(-1, 1)).sum()
    raw = store["a"]
    to_grid = reshape_transform or (
        lambda t: tokens_to_grid(t, model, tuple(inp.shape[-2:]), _layer_name(model, layer))
    )
    acts = to_grid(raw)  # checks the shape before the backward pass
    (graw,) = torch.autograd.grad(score, raw, create_graph=create_graph)
    grads = to_grid(graw)  # as pytorch-grad-cam, the same transform for activations and gradients
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(1, keepdim=True))
    cam = cam - cam.amin(dim=(2, 3), keepdim=True)
    cam = cam / (cam.amax(dim=(2, 3), keepdim=True) + 1e-7)
    cam = F.interpolate(cam, size=inp.shape[-2:], mode="bilinear", align_corners=False)
    return cam[:, 0], class_idx


def image_cam(
    cls: Any, x: Tensor, class_idx: Tensor | None = None, layer: nn.Module | None = None, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    """Grad-CAM in the image's own frame: (B, 1, H, W) in [0, 1] for images x (B, 3, H, W).

    ``cls`` is a :class:`~taskcomp.objectives.classification.ClassificationObjective` (its ``model`` and
    ``preprocess`` are used); not imported here, since that objective builds on this module.

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
