"""Recipes: the YAML files that describe an experiment (task, data, preprocessing, codec, objective, methods
with their sweeps), their validation, and the list of points they ask for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "load_recipe",
    "read_yaml",
    "check_config_keys",
    "validate_recipe",
    "check_objective",
    "resolve_recipe",
    "list_recipes",
    "parse_shard",
    "settings",
    "is_map_method",
    "is_optimized",
    "is_predicted",
    "MAP_OPTIONS",
    "RecipeError",
    "METHOD_KINDS",
    "MAP_KINDS",
    "RecipeMethod",
    "method_kind",
    "parse_methods",
    "STANDARD_OPTIONS",
    "standard_format",
    "uniform_method",
]

#: Keys of a task-aware or predicted method that are not MapOptimizer arguments.
MAP_OPTIONS = ("lambda", "use_label", "use_gt", "predictor", "checkpoint", "refine")
#: Keys of an HEVC / H.264 method that set the standard encoder, not the map (taskcomp.codec.standard).
STANDARD_OPTIONS = ("crf", "chroma", "preset", "qp_per_q")


class RecipeError(ValueError):
    """A recipe that cannot run: malformed YAML, an unknown key, a value of the wrong type (one line)."""


# A value's kind -> (test, words for the message). bool is not a number here (YAML's `steps: yes`).
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    import math

    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


_KINDS = {
    "str": (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int>=0": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "int>=1": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "num>0": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "num>=0": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "num": (lambda v: _is_num(v), "a finite number"),
    "num|null": (lambda v: v is None or _is_num(v), "a number or null"),
    "unit": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "open_unit": (lambda v: _is_num(v) and 0 < v < 1, "a number strictly between 0 and 1"),
    "map": (lambda v: isinstance(v, dict), "a mapping (key: value)"),
    "data": (lambda v: isinstance(v, (str, dict)) and bool(v), "a folder name or {path: DIR, layout: NAME, ...}"),
    "strs": (
        lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v),
        "a non-empty list of strings",
    ),
    "units": (
        lambda v: isinstance(v, list) and bool(v) and all(_is_num(x) and 0 <= x <= 1 for x in v),
        "a non-empty list of numbers in [0, 1]",
    ),
    "nums>=0": (
        lambda v: isinstance(v, list) and bool(v) and all(_is_num(x) and x >= 0 for x in v),
        "a non-empty list of numbers >= 0",
    ),
    "nums>0": (
        lambda v: isinstance(v, list) and bool(v) and all(_is_num(x) and x > 0 for x in v),
        "a non-empty list of numbers > 0",
    ),
    "crfs": (
        lambda v: isinstance(v, list) and bool(v) and all(_is_num(x) and 0 <= x <= 51 for x in v),
        "a non-empty list of numbers in [0, 51] (x265/x264 CRF)",
    ),
    "chroma": (lambda v: str(v) in ("auto", "420", "444"), "auto, 420 or 444"),
    "preset": (
        lambda v: v in ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"),
        "an x265/x264 preset: ultrafast, superfast, veryfast, faster, fast, medium, slow, slower or veryslow",
    ),
    "qualities": (
        lambda v: isinstance(v, list) and bool(v) and all(_is_int(x) and 0 <= x <= 100 for x in v),
        "a non-empty list of integers in [0, 100]",
    ),
    "optimizer": (lambda v: v in ("adam", "lbfgs", "ngd"), "adam, lbfgs or ngd"),
    "init": (lambda v: v in ("constant", "gradcam", "random", "box_mask"), "constant, gradcam, random or box_mask"),
    "reading": (lambda v: v in ("page", "boxes"), "page or boxes"),
    "synthesis": (lambda v: v in ("float64", "float32"), "float64 or float32"),
    "keep": (lambda v: v in ("best", "last"), "best or last"),
    "lr_schedule": (lambda v: v in ("constant", "cosine"), "constant or cosine"),
    "memory_format": (lambda v: v in ("auto", "channels_last", "contiguous"), "auto, channels_last or contiguous"),
}

#: Top-level keys of a recipe and their kinds (``name``, ``data`` and ``methods`` are required).
RECIPE_KEYS = {
    "name": "str",
    "task": "str",
    "data": "data",
    "out": "str",
    "preprocess": "map",
    "codec": "str",
    "checkpoint": "str",
    "objective": "map",
    "eval_models": "strs",
    "methods": "map",
    "batch_size": "int>=1",
    "coco_category": "int>=0",
    "ap_conf": "unit",
    "examples": "int>=0",
    "reading": "reading",
    "synthesis": "synthesis",
}
TASK_NAMES = ("classification", "text", "detection")
PREPROCESS_KEYS = {"resize": "int>=1", "crop": "int>=1", "max_side": "int>=1", "working_side": "int>=1"}
#: MapOptimizer's keyword arguments as recipe keys (kept equal to its signature by a test).
OPTIMIZER_KEYS = {
    "steps": "int>=0",
    "lr": "num>0",
    "optimizer": "optimizer",
    "init": "init",
    "init_q": "open_unit",
    "alpha": "num",
    "downsample": "int>=1",
    "clip": "num|null",
    "scale": "num",
    "keep": "keep",
    "lr_schedule": "lr_schedule",
    "memory_format": "memory_format",
}
#: Keys of each method (the first is its sweep, required); task_aware_* / predicted_* as task_aware / predicted.
METHOD_KEYS = {
    "original": {},
    "uniform": {"q": "units"},
    "gradcam": {"alpha": "nums>=0"},
    "saliency": {"alpha": "nums>=0"},
    "box_mask": {"q_in": "units"},
    "jpeg": {"quality": "qualities"},
    "webp": {"quality": "qualities"},
    "task_aware": {"lambda": "nums>=0", "use_label": "bool", "use_gt": "bool", **OPTIMIZER_KEYS},
    "hevc": {"crf": "crfs", "chroma": "chroma", "preset": "preset"},
    "h264": {"crf": "crfs", "chroma": "chroma", "preset": "preset"},
    # hevc_* / h264_*: per-image optimised maps (made through the SFT codec) coded as HEVC / H.264
    "hevc_task_aware": {
        "crf": "crfs",
        "lambda": "nums>=0",
        "use_label": "bool",
        "use_gt": "bool",
        "chroma": "chroma",
        "preset": "preset",
        "qp_per_q": "num>0",
        **OPTIMIZER_KEYS,
    },
    "predicted": {
        "lambda": "nums>0",
        "predictor": "str",
        "checkpoint": "str",
        "refine": "int>=0",
        "use_label": "bool",
        "use_gt": "bool",
        **OPTIMIZER_KEYS,
    },
}


#: What a recipe method does, decoded once from its name by :func:`method_kind`: ``original`` (the uncompressed
#: image), ``uniform`` (one q everywhere), ``baseline`` (a map made without the task objective's gradient:
#: ``gradcam``, ``saliency``, ``box_mask``), ``optimized`` (per-image optimised maps: ``task_aware``,
#: ``task_aware_*``), ``predicted`` (a trained predictor's maps: ``predicted``, ``predicted_*``), ``jpeg``, ``webp``,
#: ``standard`` (plain-CRF HEVC or H.264: ``hevc``, ``h264``) and ``standard_map`` (per-image optimised maps, made
#: through the SFT codec, coded as HEVC / H.264 with per-block QP offsets: ``hevc_*``, ``h264_*``).
METHOD_KINDS = ("original", "uniform", "baseline", "optimized", "predicted", "jpeg", "webp", "standard", "standard_map")
#: The kinds whose maps come from the task objective, swept over lambda (:func:`is_map_method`).
MAP_KINDS = ("optimized", "predicted")
# Methods whose kind is their whole name; task_aware* and predicted* take any suffix (variants of one recipe).
_KIND_OF_NAME = {
    "original": "original",
    "uniform": "uniform",
    "gradcam": "baseline",
    "saliency": "baseline",
    "box_mask": "baseline",
    "jpeg": "jpeg",
    "webp": "webp",
    "hevc": "standard",
    "h264": "standard",
}


def method_kind(method: str) -> str | None:
    """The kind (one of :data:`METHOD_KINDS`) of a recipe method's name, or None for a name no recipe may use.

    ``task_aware`` and ``task_aware_*`` are ``optimized``; ``predicted`` and ``predicted_*`` are ``predicted``
    (the suffix only names a variant, e.g. ``task_aware_label_free``); every other method is its own name.
    This is the one place where a method's name is decoded."""
    if method == "task_aware" or method.startswith("task_aware_"):
        return "optimized"
    if method == "predicted" or method.startswith("predicted_"):
        return "predicted"
    if method.startswith(("hevc_", "h264_")):
        return "standard_map"
    return _KIND_OF_NAME.get(method)


def standard_format(method: str) -> str | None:
    """The standard bitstream (``hevc`` or ``h264``) a method of kind ``standard`` / ``standard_map`` codes, else
    None."""
    if method_kind(method) not in ("standard", "standard_map"):
        return None
    return method.split("_", 1)[0]


def uniform_method(method: str) -> str:
    """The method whose curve a method is compared with at equal bpp: ``uniform`` (SFT maps), or for HEVC / H.264
    maps (``hevc_*``, ``h264_*``) the plain-CRF method of the same format (``hevc``, ``h264``)."""
    return standard_format(method) if method_kind(method) == "standard_map" else "uniform"


@dataclass(frozen=True)
class RecipeMethod:
    """One entry of a recipe's ``methods:``, parsed once (:func:`parse_methods`).

    Attributes:
        name: the method's name as the recipe writes it and the records carry it (e.g. ``task_aware_label_free``).
        kind: one of :data:`METHOD_KINDS` (:func:`method_kind`).
        spec: the method's keys (its sweep and options, :data:`METHOD_KEYS`); ``{}`` for a method written bare.
    """

    name: str
    kind: str
    spec: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def makes_map(self) -> bool:
        """Maps from the task objective (optimised or predicted), swept over lambda."""
        return self.kind in MAP_KINDS

    @property
    def keys(self) -> dict[str, str]:
        """The keys this method allows, with their kinds (:data:`METHOD_KEYS`; its first key is its sweep)."""
        if self.kind == "optimized":
            return METHOD_KEYS["task_aware"]
        if self.kind == "predicted":
            return METHOD_KEYS["predicted"]
        if self.kind == "standard_map":
            return METHOD_KEYS["hevc_task_aware"]
        return METHOD_KEYS[self.name]


def parse_methods(recipe: dict[str, Any]) -> list[RecipeMethod]:
    """The methods of a validated recipe (:func:`validate_recipe`), in the recipe's order.

    Args:
        recipe: a recipe mapping; its ``methods:`` (method name -> keys or null) is read.

    Raises:
        RecipeError: a method name no recipe may use (one line naming the methods allowed).
    """
    out = []
    for name, spec in (recipe.get("methods") or {}).items():
        kind = method_kind(str(name))
        if kind is None:
            raise RecipeError(
                f"unknown method {name!r}; methods: {', '.join(METHOD_KEYS)}, "
                "task_aware_* (per-image optimised), predicted_* (predictor), hevc_* / h264_* (optimised maps as HEVC/H.264)"
            )
        out.append(RecipeMethod(str(name), kind, dict(spec or {})))
    return out


def _method_keys(method: str) -> dict[str, str] | None:
    kind = method_kind(method)
    return None if kind is None else RecipeMethod(method, kind).keys


def _check_keys(source: str, where: str, d: dict, allowed: dict[str, str]) -> None:
    """``where``: the dotted path of ``d`` in the recipe ('' at the top)."""
    at = f"{source}: {where}" if where else source
    for k, v in d.items():
        if k not in allowed:
            raise RecipeError(f"{at}: unknown key {k!r}; allowed: {', '.join(allowed) or 'none'}")
        test, words = _KINDS[allowed[k]]
        if not test(v):
            raise RecipeError(f"{source}: {where + '.' if where else ''}{k} must be {words}, got {v!r}")


def validate_recipe(r: Any, source: str = "recipe") -> dict[str, Any]:
    """Check a recipe's keys and value types before any work; returns it, with ``objective: NAME`` (a bare name)
    written as ``{name: NAME}``.

    Allowed keys: :data:`RECIPE_KEYS` at the top, :data:`PREPROCESS_KEYS` under ``preprocess``, per method
    :data:`METHOD_KEYS` (``task_aware_*`` as ``task_aware``, ``predicted_*`` as ``predicted``; their non-sweep
    keys are :class:`taskcomp.optimize.MapOptimizer` arguments and ``use_label`` / ``use_gt``; predicted methods
    add ``predictor``, ``checkpoint`` and ``refine``). ``data`` options and ``objective`` arguments are checked
    by the layout (:func:`taskcomp.runner.layouts.data_spec`) and :func:`check_objective`.

    Raises:
        RecipeError (a ValueError): one line naming the key and the keys (or values) allowed.
    """
    if not isinstance(r, dict):
        raise RecipeError(
            f"{source}: a recipe is a mapping of keys (name, task, data, methods, ...), got {type(r).__name__}"
        )
    for key in ("name", "data", "methods"):
        if key not in r:
            raise RecipeError(f"{source} lacks '{key}'")
    if isinstance(r.get("objective"), str):  # `objective: text` is the objective's name with its defaults
        r = {**r, "objective": {"name": r["objective"]}}
    _check_keys(source, "", r, RECIPE_KEYS)
    if r.get("task", "classification") not in TASK_NAMES:
        raise RecipeError(f"{source}: unknown task {r['task']!r}; tasks: {', '.join(TASK_NAMES)}")
    _check_keys(source, "preprocess", r.get("preprocess") or {}, PREPROCESS_KEYS)
    task = r.get("task", "classification")
    pre = r.get("preprocess") or {}
    if task != "text" and ("working_side" in pre or "reading" in r):
        raise RecipeError(f"{source}: preprocess.working_side and reading apply to task text, not {task}")
    if "working_side" in pre and "max_side" in pre:
        raise RecipeError(
            f"{source}: preprocess has max_side (the image is shrunk and coded small) and working_side "
            "(maps are made small, the image is coded at its own size): give one"
        )
    for method, spec in (r.get("methods") or {}).items():
        if isinstance(spec, dict) and spec.get("init") == "box_mask" and task != "text":
            raise RecipeError(f"{source}: methods.{method}.init box_mask needs task text (text boxes), not {task}")
    obj = r.get("objective")
    if obj is not None and not isinstance(obj.get("name"), str):
        raise RecipeError(f"{source}: objective needs a name (e.g. objective: {{name: classification}})")
    if not r["methods"]:
        raise RecipeError(f"{source}: methods is empty; methods: {', '.join(METHOD_KEYS)}, task_aware_*, predicted_*")
    for method, spec in r["methods"].items():
        allowed = _method_keys(str(method))
        if allowed is None:
            raise RecipeError(
                f"{source}: methods: unknown method {method!r}; methods: {', '.join(METHOD_KEYS)}, "
                "task_aware_* (per-image optimised), predicted_* (predictor), hevc_* / h264_* (optimised maps as "
                "HEVC/H.264)"
            )
        if spec is not None and not isinstance(spec, dict):
            raise RecipeError(
                f"{source}: methods.{method} must be a mapping of its keys "
                f"({', '.join(allowed) or 'none'}), got {spec!r}"
            )
        spec = spec or {}
        _check_keys(source, f"methods.{method}", spec, allowed)
        sweep = next(iter(allowed), None)
        if sweep is not None and sweep not in spec:
            raise RecipeError(f"{source}: methods.{method} needs {sweep}: (the values it sweeps)")
        if method_kind(str(method)) == "standard_map" and "lambda" not in spec:
            raise RecipeError(f"{source}: methods.{method} needs lambda: (the maps it codes, one per lambda)")
        if is_map_method(str(method)):
            _check_optimizer_ranges(source, str(method), spec)
    return r


def _check_optimizer_ranges(source: str, method: str, spec: dict[str, Any]) -> None:
    """A map method's optimiser keys within the ranges :class:`taskcomp.optimize.MapOptimizer` accepts (e.g.
    ``lr`` in (0, 1e6], ``init_q`` in [1e-4, 1 - 1e-4], ``alpha`` and ``scale`` > 0), checked before any work."""
    from ..optimize import check_optimizer_args

    kw = {k: spec[k] for k in OPTIMIZER_KEYS if k in spec and k != "init"}  # init: box_mask is the runner's
    try:
        check_optimizer_args(**kw)
    except ValueError as e:
        raise RecipeError(f"{source}: methods.{method}.{e}") from None


def check_objective(recipe: dict[str, Any], source: str = "recipe") -> None:
    """The recipe's ``objective:`` names a registered objective and only its arguments (imports the objectives,
    not their models).

    Raises:
        RecipeError: unknown objective or argument (one line with the objective's arguments).
    """
    import inspect

    from ..objectives import list_objectives, objective_class

    spec = dict(recipe.get("objective") or {})
    name = spec.pop("name", None)
    if name is None:
        return
    if objective_class(name) is None:
        raise RecipeError(
            f"{source}: objective.name: unknown objective {name!r}; objectives: {', '.join(list_objectives())}"
        )
    params = inspect.signature(objective_class(name).__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [k for k, p in params.items() if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for k in spec:
        if k not in allowed:
            raise RecipeError(
                f"{source}: objective: unknown key {k!r} for objective {name}; allowed: name, {', '.join(allowed)}"
            )


def is_optimized(method: str) -> bool:
    """Per-image optimised maps: ``task_aware`` and variants named ``task_aware_*`` (e.g. label-free); kind
    ``optimized`` (:func:`method_kind`)."""
    return method_kind(method) == "optimized"


def is_predicted(method: str) -> bool:
    """Maps from a trained predictor: ``predicted`` and ``predicted_*`` (``refine: K`` adds K optimiser steps);
    kind ``predicted`` (:func:`method_kind`)."""
    return method_kind(method) == "predicted"


def is_map_method(method: str) -> bool:
    """Methods whose maps come from the task objective, swept over lambda: kinds :data:`MAP_KINDS` and
    ``standard_map`` (optimised maps coded as HEVC / H.264) (:func:`method_kind`)."""
    return method_kind(method) in (*MAP_KINDS, "standard_map")


def _shipped_dir() -> Path:
    """The folder of the shipped recipes: the repository's top-level ``recipes/``, installed in the wheel as
    ``taskcomp/recipes/`` (setup.py and pyproject.toml's package-dir map the package ``taskcomp.recipes`` to it); an editable install or a
    checkout reads ``recipes/`` beside the ``taskcomp`` folder."""
    from importlib import resources

    installed = Path(str(resources.files("taskcomp") / "recipes"))
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "recipes"


def list_recipes() -> list[str]:
    """Names of the recipes and training configs shipped in the package (``recipes/NAME.yaml``, installed as
    ``taskcomp/recipes/NAME.yaml``)."""
    d = _shipped_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def resolve_recipe(name_or_path: str | Path) -> Path:
    """The YAML file of a recipe (or training config) given by path or by the name of a shipped one.

    An existing file wins; otherwise ``NAME`` or ``NAME.yaml`` names a shipped file (:func:`list_recipes`;
    ``taskcomp run imagenet_classification`` works from any folder), and ``recipes/NAME.yaml``, the repository
    folder the shipped files live in, resolves to them from any folder too.

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
    raise FileNotFoundError(
        f"recipe not found: {name_or_path} is neither a file nor a shipped recipe ({', '.join(list_recipes())})"
    )


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read and validate a recipe given by path or shipped name (:func:`resolve_recipe`).

    Raises:
        FileNotFoundError: no such file or shipped recipe.
        ValueError: malformed YAML or an invalid recipe (one line naming the key and the keys allowed).
    """
    path = resolve_recipe(path)
    return validate_recipe(read_yaml(path, "recipe"), f"recipe {path}")


def read_yaml(path: str | Path, what: str = "recipe") -> Any:
    """A YAML file's content (read by :func:`taskcomp.yamlio.read`: ``1e-2`` is a number); malformed YAML, a key
    written twice in one mapping, or non-UTF-8 text is a one-line :class:`RecipeError` with the line and column
    (``what`` names the file's role in the message)."""
    from ..yamlio import read

    return read(path, what, RecipeError)


def check_config_keys(path: str | Path, allowed, what: str = "config") -> None:
    """A training config file is a YAML mapping of known keys (``allowed``): one-line :class:`RecipeError`
    otherwise (a typo such as ``stpes:`` would otherwise be ignored and the default used)."""
    d = read_yaml(path, what)
    if d is None:
        return
    if not isinstance(d, dict):
        raise RecipeError(f"{what} {path} must be a mapping of keys to values, got {type(d).__name__}")
    allowed = list(allowed)
    for k in d:
        if k not in allowed:
            raise RecipeError(f"{what} {path}: unknown key {k!r}; allowed: {', '.join(allowed)}")


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
        kind = method_kind(method)
        if kind == "uniform":
            out += [(method, f"q={q:.2f}", {"q": float(q)}) for q in spec.get("q", [])]
        elif kind == "baseline":
            key = "q_in" if method == "box_mask" else "alpha"
            out += [(method, f"{key}={a:.2f}", {key: float(a)}) for a in spec.get(key, [])]
        elif kind in MAP_KINDS:
            out += [(method, f"lambda={lam:g}", {"lam": float(lam)}) for lam in spec.get("lambda", [])]
        elif kind in ("jpeg", "webp"):
            out += [(method, f"quality={q}", {"quality": int(q)}) for q in spec.get("quality", [])]
        elif kind == "standard":
            out += [(method, f"crf={c:g}", {"crf": float(c)}) for c in spec.get("crf", [])]
        elif kind == "standard_map":
            out += [
                (method, f"lambda={lam:g},crf={c:g}", {"lam": float(lam), "crf": float(c)})
                for lam in spec.get("lambda", [])
                for c in spec.get("crf", [])
            ]
        elif kind == "original":
            out.append((method, "uncompressed", {}))
        else:
            raise ValueError(
                f"unknown method {method!r} in recipe "
                "(original, uniform, gradcam, box_mask, saliency, task_aware, task_aware_*, predicted, "
                "predicted_*, jpeg, webp, hevc, h264, hevc_*, h264_*)"
            )
    return out
