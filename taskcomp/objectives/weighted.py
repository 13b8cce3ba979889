"""A weighted sum of objectives, for one map that serves several tasks (e.g. detection + text)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..checks import MAX_WEIGHT, check_number
from .base import Objective, create_objective, objective_arguments, register_objective

__all__ = ["WeightedObjective", "parse_task_spec"]


def parse_task_spec(spec: str) -> list[dict[str, Any]]:
    """``"detection:1,text:0.5"`` -> ``[{"name": "detection", "weight": 1.0}, {"name": "text", "weight": 0.5}]``.

    A name without ``:w`` has weight 1.
    """
    parts = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, w = item.partition(":")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise ValueError(f"bad weight {w!r} for task {name!r} (expected name:weight)") from None
        _check_weight(weight, name)
        parts.append({"name": name, "weight": weight})
    if not parts:
        raise ValueError("empty task list")
    return parts


def _split_part(spec: dict[str, Any]) -> tuple[str, float, dict[str, Any]]:
    """A part ``{"name": ..., "weight": w (default 1), **kwargs}`` -> (name, float weight, kwargs)."""
    spec = dict(spec)
    name, weight = spec.pop("name"), spec.pop("weight", 1.0)
    return name, _check_weight(weight, name), spec


def _check_weight(weight, name) -> float:
    """A task weight: a finite number in [0, MAX_WEIGHT] (one-line ValueError naming the task)."""
    try:
        return check_number(weight, "weight", 0, MAX_WEIGHT)
    except ValueError as e:
        raise ValueError(f"task {name}: {e} (raise lambda for a stronger task term)") from None


@register_objective("weighted")
class WeightedObjective(Objective):
    """``loss = sum_i w_i * loss_i``; metrics of every part, prefixed ``name/``.

    Args:
        objectives: list of ``{"name": ..., "weight": ..., **kwargs}`` (kwargs go to each objective).
    """

    def __init__(self, objectives: list[dict[str, Any]]):
        if not objectives:
            raise ValueError("a weighted objective needs at least one part")
        self.parts = []
        for spec in objectives:
            name, weight, kwargs = _split_part(spec)
            self.parts.append((name, weight, create_objective(name, **kwargs)))

    @classmethod
    def resolve_arguments(cls, args: dict[str, Any]) -> dict[str, Any]:
        """Each part's own arguments with their defaults filled in, and its weight as a float."""
        parts = []
        for spec in args.get("objectives") or []:
            if not isinstance(spec, dict) or "name" not in spec:
                raise ValueError(f"objective 'weighted': each part needs a name, got {spec!r}")
            name, weight, kwargs = _split_part(spec)
            parts.append({"weight": weight, **objective_arguments(name, **kwargs)})
        return {**args, "objectives": parts}

    def _moved_to(self, device) -> None:
        for _, _, obj in self.parts:
            obj.to(device)

    def prepare(self, x: Tensor, **targets: Any) -> dict[str, Any]:
        return {name: obj.prepare(x, **targets.get(name, {})) for name, _, obj in self.parts}

    def loss(self, x_hat: Tensor, ctx: dict[str, Any]) -> Tensor:
        return torch.stack([w * obj.loss(x_hat, ctx[name]) for name, w, obj in self.parts]).sum(0)

    def evaluate(self, x_dec: Tensor, ctx: dict[str, Any]) -> list[dict[str, float]]:
        out = [{} for _ in range(x_dec.size(0))]
        for name, _, obj in self.parts:
            for i, m in enumerate(obj.evaluate(x_dec, ctx[name])):
                out[i].update({f"{name}/{k}": v for k, v in m.items()})
        return out
