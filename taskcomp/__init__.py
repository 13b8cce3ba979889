"""taskcomp: task-aware image compression with a variable-rate SFT codec.

Package-level names are loaded on first use (PEP 562), so ``import taskcomp`` and ``taskcomp --help`` do not
import torch, timm or the other heavy libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["create_codec", "lambda_of_q", "list_codecs", "__version__"]

# name -> submodule that defines it (imported on first attribute access)
_LAZY = {"create_codec": ".codec", "lambda_of_q": ".codec", "list_codecs": ".codec"}

if TYPE_CHECKING:  # for type checkers and IDEs only
    from .codec import create_codec, lambda_of_q, list_codecs  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
