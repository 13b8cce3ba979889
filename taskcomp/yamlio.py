"""The one YAML reader of the package: recipes, training configs, run folders' ``recipe.yaml`` / ``config.yaml``
and the configs stored in training checkpoints are all read through :func:`load` / :func:`read`.

Two things differ from ``yaml.safe_load``:

- A mapping that names a key twice (at any level) is refused: PyYAML silently keeps the last value, so a recipe
  with ``task_aware:`` written twice ran only the second block (cf. yaml/pyyaml#165). The error names the key and
  the line of its second appearance.
- Numbers written as in papers are numbers: PyYAML follows YAML 1.1, whose float pattern needs a dot and a
  signed exponent, so ``1e-2``, ``3e-4`` and ``1E5`` were read as strings. Here any decimal with an exponent
  (``1e-2``, ``1E5``, ``2.5e+3``, ``.5e-3``) is a float, as in YAML 1.2 and Python.

Merge keys (``<<: *base``) still override as YAML defines; only a key written twice in one mapping is refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

__all__ = ["StrictLoader", "StrictDumper", "load", "dump", "read", "describe_error"]

# YAML 1.1's float pattern with the exponent's dot and sign made optional (YAML 1.2 / Python spelling).
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_FLOAT_TAG = "tag:yaml.org,2002:float"


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys and reads ``1e-2``-style numbers as floats."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: SafeConstructor reports it
                    continue
                if first is not key_node:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key!r} (first at line {first.start_mark.line + 1}); YAML would keep only "
                        "the last value: merge the two or rename one",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


# The resolvers are class-level: give StrictLoader its own copy with the float pattern replaced.
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, _FLOAT if tag == _FLOAT_TAG else rx) for tag, rx in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _c in "-+0123456789.":  # a float may now start with any of these (e.g. '+.5', '-1e3')
    _lst = StrictLoader.yaml_implicit_resolvers.setdefault(_c, [])
    if not any(tag == _FLOAT_TAG for tag, _ in _lst):
        _lst.insert(0, (_FLOAT_TAG, _FLOAT))


class StrictDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes the strings :class:`StrictLoader` would read as numbers (e.g. ``'1e-2'``)."""


StrictDumper.yaml_implicit_resolvers = StrictLoader.yaml_implicit_resolvers


def dump(data, **kw) -> str:
    """``yaml.safe_dump(data, **kw)`` that :func:`load` reads back equal (strings such as ``'1e-2'`` quoted)."""
    return yaml.dump(data, Dumper=StrictDumper, **kw)


def load(text_or_stream) -> Any:
    """Parse YAML text (or an open text stream) with :class:`StrictLoader`.

    Raises:
        yaml.YAMLError: malformed YAML; a duplicate key is a ``yaml.constructor.ConstructorError`` whose
            ``problem`` names the key and whose ``problem_mark`` is its second appearance.
    """
    return yaml.load(text_or_stream, Loader=StrictLoader)  # noqa: S506 (StrictLoader is a SafeLoader)


def describe_error(e: yaml.YAMLError) -> str:
    """A YAML error in one line: ``at line L, column C: problem``."""
    mark = getattr(e, "problem_mark", None)
    where = f"at line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = " ".join(str(getattr(e, "problem", None) or e).split())
    return where + problem


def read(path: str | Path, what: str = "file", error: type[Exception] = ValueError) -> Any:
    """The content of the YAML file ``path`` (:func:`load`); ``None`` for an empty file.

    Args:
        path: the file.
        what: its role in messages ("recipe", "training config", ...).
        error: the exception class raised (a ValueError subclass such as
            :class:`taskcomp.runner.recipe.RecipeError`).

    Raises:
        ``error``: one line naming ``what``, the path, the line and column and the problem, for malformed YAML,
            a duplicate key, or text that is not UTF-8.
        OSError: the file cannot be read (FileNotFoundError when missing).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return load(f)
    except yaml.YAMLError as e:
        dup = "duplicate key" in str(getattr(e, "problem", "") or "")
        raise error(f"{what} {path}: {'ambiguous' if dup else 'malformed'} YAML {describe_error(e)}") from None
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
