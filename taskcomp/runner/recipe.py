"""Recipes: the YAML files that describe an experiment (task, data, preprocessing, codec, objective, methods
with their sweeps), their validation, and the list of points they ask for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["load_recipe", "resolve_recipe", "list_recipes", "parse_shard", "settings", "is_map_method",
           "is_optimized", "is_predicted", "MAP_OPTIONS"]

#: Keys of a task-aware or predicted method that are not MapOptimizer arguments.
MAP_OPTIONS = ("lambda", "use_label", "use_gt", "predictor", "checkpoint", "refine")


def is_optimized(method: str) -> bool:
    """Per-image optimised maps: ``task_aware`` and variants named ``task_aware_*`` (e.g. label-free)."""
    return method == "task_aware" or method.startswith("task_aware_")


def is_predicted(method: str) -> bool:
    """Maps from a trained predictor: ``predicted`` and ``predicted_*`` (``refine: K`` adds K optimiser steps)."""
    return method == "predicted" or method.startswith("predicted_")


def is_map_method(method: str) -> bool:
    """Methods swept over lambda."""
    return is_optimized(method) or is_predicted(method)


def _shipped_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("taskcomp") / "recipes"))


def list_recipes() -> list[str]:
    """Names of the recipes and training configs shipped in the package (``taskcomp/recipes/NAME.yaml``)."""
    d = _shipped_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def resolve_recipe(name_or_path: str | Path) -> Path:
    """The YAML file of a recipe (or training config) given by path or by the name of a shipped one.

    An existing file wins; otherwise ``NAME`` or ``NAME.yaml`` names a file shipped in ``taskcomp/recipes/``
    (``taskcomp run imagenet_classification`` works from any folder), and ``recipes/NAME.yaml``, the repository
    folder the shipped files came from, still resolves to them.

    Raises:
        FileNotFoundError: neither a file nor a shipped name (the message lists the shipped names).
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        raise FileNotFoundError(f"recipe {p} is a folder; give a YAML file or a shipped recipe's name")
    stem = p.name[: -len(p.suffix)] if p.suffix in (".yaml", ".yml") else p.name
    if (len(p.parts) == 1 or p.parent.as_posix() == "recipes") and stem in list_recipes():
        return _shipped_dir() / f"{stem}.yaml"
    raise FileNotFoundError(f"recipe not found: {name_or_path} is neither a file nor a shipped recipe "
                            f"({', '.join(list_recipes())})")


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read and validate a recipe given by path or shipped name (:func:`resolve_recipe`).

    Raises:
        FileNotFoundError: no such file or shipped recipe.
        ValueError: malformed YAML or an invalid recipe (one line naming the key and the keys allowed).
    """
    path = resolve_recipe(path)
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


def settings(methods: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, setting label, params) for every point of every method."""
    out = []
    for method, spec in methods.items():
        spec = spec or {}
        if method == "uniform":
            out += [(method, f"q={q:.2f}", {"q": float(q)}) for q in spec.get("q", [])]
        elif method in ("gradcam", "box_mask", "saliency"):
            key = "q_in" if method == "box_mask" else "alpha"
            out += [(method, f"{key}={a:.2f}", {key: float(a)}) for a in spec.get(key, [])]
        elif is_map_method(method):
            out += [(method, f"lambda={lam:g}", {"lam": float(lam)}) for lam in spec.get("lambda", [])]
        elif method in ("jpeg", "webp"):
            out += [(method, f"quality={q}", {"quality": int(q)}) for q in spec.get("quality", [])]
        elif method == "original":
            out.append((method, "uncompressed", {}))
        else:
            raise ValueError(f"unknown method {method!r} in recipe "
                             "(original, uniform, gradcam, box_mask, saliency, task_aware, task_aware_*, predicted, "
                             "predicted_*, jpeg, webp)")
    return out


