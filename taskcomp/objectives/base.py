"""The objective interface and registry (timm-style).

An objective turns a reconstruction into a per-image differentiable loss, given targets prepared once from the
original image, and measures its task metric on a decoded image::

    ctx = objective.prepare(x)            # targets from the original (label, logits, CAM, ...)
    loss = objective.loss(x_hat, ctx)     # Tensor[B], differentiable in x_hat
    metrics = objective.evaluate(x_dec, ctx)   # list of dicts, one per image
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor

__all__ = ["Objective", "register_objective", "create_objective", "list_objectives"]

_REGISTRY: dict[str, Callable[..., "Objective"]] = {}


class Objective:
    """Base class. Images are (B, 3, H, W) floats in [0, 1]."""

    name = "objective"

    def prepare(self, x: Tensor, **targets: Any) -> dict[str, Any]:
        raise NotImplementedError

    def loss(self, x_hat: Tensor, ctx: dict[str, Any]) -> Tensor:
        raise NotImplementedError

    def evaluate(self, x_dec: Tensor, ctx: dict[str, Any]) -> list[dict[str, float]]:
        raise NotImplementedError


def register_objective(name: str):
    """Class decorator: make an objective available to :func:`create_objective` under ``name``."""

    def deco(cls):
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return deco


def create_objective(name: str, **kwargs: Any) -> Objective:
    """Create a registered objective, e.g. ``create_objective("classification", model="lite0")``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown objective {name!r}; available: {', '.join(list_objectives())}")
    return _REGISTRY[name](**kwargs)


def list_objectives() -> list[str]:
    return sorted(_REGISTRY)
