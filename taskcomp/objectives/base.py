"""The objective interface and registry (timm-style).

An objective turns a reconstruction into a per-image differentiable loss, given targets prepared once from the
original image, and measures its task metric on a decoded image::

    ctx = objective.prepare(x)            # targets from the original (label, logits, CAM, ...)
    loss = objective.loss(x_hat, ctx)     # Tensor[B], differentiable in x_hat
    metrics = objective.evaluate(x_dec, ctx)   # list of dicts, one per image

Two optional hooks let an objective shape how its maps are made without the map makers knowing the task:
``initial_map`` (its own first map, e.g. Grad-CAM or the text boxes) and ``keeps_nothing`` (nothing to keep:
the lowest map is the optimum).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import Tensor

from ..devices import resolve_device

__all__ = [
    "Objective",
    "register_objective",
    "create_objective",
    "list_objectives",
    "objective_arguments",
    "objective_class",
]

_REGISTRY: dict[str, Callable[..., "Objective"]] = {}


class Objective:
    """Base class. Images are (B, 3, H, W) floats in [0, 1]."""

    name = "objective"
    device = torch.device("cpu")

    def to(self, device: str | torch.device) -> "Objective":
        """Move every model (``nn.Module``) and nested objective this objective holds to ``device``.

        Inputs follow: ``prepare``/``loss``/``evaluate`` take tensors on that device. Returns ``self``.
        """
        device = torch.device(device)
        for v in list(vars(self).values()):
            if isinstance(v, (torch.nn.Module, Objective)):
                v.to(device)
        self.device = device
        self._moved_to(device)
        return self

    def models(self) -> list[torch.nn.Module]:
        """Every model (``nn.Module``) this objective and its nested objectives hold, each once."""
        out: list[torch.nn.Module] = []
        values = list(vars(self).values())
        for v in list(values):  # nested in lists / tuples (WeightedObjective's parts: (name, weight, objective))
            if isinstance(v, (list, tuple)):
                values += [w for e in v for w in (e if isinstance(e, (list, tuple)) else (e,))]
        for v in values:
            found = v.models() if isinstance(v, Objective) else [v] if isinstance(v, torch.nn.Module) else []
            out += [m for m in found if all(m is not o for o in out)]
        return out

    @classmethod
    def resolve_arguments(cls, args: dict[str, Any]) -> dict[str, Any]:
        """Hook of :func:`objective_arguments`: the constructor's arguments (defaults filled in) with whatever
        they name resolved further (a weighted objective's parts get their own defaults). Default: unchanged."""
        return args

    def _moved_to(self, device: torch.device) -> None:
        """Hook for objectives that keep device-bound state outside their modules (loss helpers, readers)."""

    def prepare(self, x: Tensor, **targets: Any) -> dict[str, Any]:
        raise NotImplementedError

    def loss(self, x_hat: Tensor, ctx: dict[str, Any]) -> Tensor:
        raise NotImplementedError

    def evaluate(self, x_dec: Tensor, ctx: dict[str, Any]) -> list[dict[str, float]]:
        raise NotImplementedError

    def initial_map(self, kind: str, x: Tensor, ctx: dict[str, Any], level: float) -> Tensor | None:
        """This objective's own first map of kind ``kind`` for the map optimiser, or None when it has none.

        Kinds: ``"gradcam"`` (classification and saliency: ``level * CAM``, Grad-CAM of the classifier's
        prediction) and ``"box-mask"`` (text: ``level`` inside the text boxes read on the original). The generic
        starts (constant, random) belong to :class:`taskcomp.optimize.MapOptimizer`, not to objectives.

        Args:
            kind: the start asked for.
            x: the images (B, 3, H, W) in [0, 1] the maps are for.
            ctx: their context from :meth:`prepare`.
            level: the start's level or scale, in [0, 1].

        Returns:
            (B, 1, H, W) in [0, 1] on x's device, or None (default: this objective offers no such start).
        """
        return None

    def keeps_nothing(self, ctx: dict[str, Any]) -> bool:
        """True when ``ctx`` has nothing for a map to keep (text: a page where no text was read), so the lowest map
        (q = 0) is the optimum and need not be optimised. Default: False."""
        return False


def register_objective(name: str):
    """Class decorator: make an objective available to :func:`create_objective` under ``name``."""

    def deco(cls):
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return deco


def create_objective(name: str, device: str | torch.device | None = None, **kwargs: Any) -> Objective:
    """Create a registered objective, e.g. ``create_objective("classification", model="lite0")``.

    The task model is given as timm's ``create_model`` takes one: ``model=`` a name (classification and
    saliency: a timm name or alias; detection: an ultralytics ``.pt`` path), ``model=`` an ``nn.Module`` already
    built (a timm or other classifier; an ultralytics ``YOLO`` / ``DetectionModel``), or ``model=NAME,
    checkpoint_path=PATH`` for one's own weights of a timm architecture (detection: ``checkpoint_path=`` a .pt).

    Args:
        name: a registered name (:func:`list_objectives`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (see :func:`taskcomp.devices.resolve_device`);
            None keeps the models on the CPU.
        kwargs: the objective's own arguments.

    Raises:
        ValueError: unknown name, device or argument; a model of the wrong kind (e.g. a detector given to
            classification), a missing or foreign checkpoint (one line each).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown objective {name!r}; available: {', '.join(list_objectives())}")
    try:
        inspect.signature(_REGISTRY[name]).bind(**kwargs)
    except TypeError as e:
        params = [p for p in inspect.signature(_REGISTRY[name]).parameters if p not in ("self",)]
        raise ValueError(f"objective {name!r}: {e}; its arguments: {', '.join(params)}") from None
    obj = _REGISTRY[name](**kwargs)
    if device is not None:
        obj.to(resolve_device(device))
    return obj


def objective_arguments(name: str, **kwargs: Any) -> dict[str, Any]:
    """Every constructor argument of objective ``name`` as ``create_objective(name, **kwargs)`` would use it.

    Defaults are filled in from the objective's signature, without building it (no model loads), so a record
    of a run keeps what the run meant even when a default changes later (e.g. the text objective's
    ``max_boxes``). Values that are not plain JSON (a model object given in Python) are recorded by type name.

    Returns:
        ``{"name": name, arg: value, ...}`` in signature order; JSON-serialisable.

    Raises:
        ValueError: unknown objective or argument (one line, as :func:`create_objective`).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown objective {name!r}; available: {', '.join(list_objectives())}")
    sig = inspect.signature(_REGISTRY[name])
    try:
        bound = sig.bind(**kwargs)
    except TypeError as e:
        raise ValueError(f"objective {name!r}: {e}; its arguments: {', '.join(sig.parameters)}") from None
    bound.apply_defaults()
    out: dict[str, Any] = {"name": name}
    for k, v in bound.arguments.items():
        if sig.parameters[k].kind is inspect.Parameter.VAR_KEYWORD:
            out.update({kk: _plain(vv) for kk, vv in v.items()})
        elif sig.parameters[k].kind is not inspect.Parameter.VAR_POSITIONAL:
            out[k] = _plain(v)
    return _REGISTRY[name].resolve_arguments(out) if hasattr(_REGISTRY[name], "resolve_arguments") else out


def _plain(v: Any) -> Any:
    """``v`` as JSON would keep it: tuples become lists; objects other than plain values their type's name."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(e) for e in v]
    if isinstance(v, dict):
        return {str(k): _plain(e) for k, e in v.items()}
    return f"<{type(v).__module__}.{type(v).__qualname__}>"


def list_objectives() -> list[str]:
    """The registered objective names, sorted."""
    return sorted(_REGISTRY)


def objective_class(name: str) -> Callable[..., "Objective"] | None:
    """The class registered as objective ``name`` (its constructor's signature says its arguments), or None
    when no objective has that name."""
    return _REGISTRY.get(name)
