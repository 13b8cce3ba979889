"""Codec checkpoints: taskcomp's own format and the published SFT format.

taskcomp format: ``torch.save`` of ``{"format": "taskcomp-codec", "version": 1, "codec": NAME,
"config": SFTConfig dict, "state_dict": ..., "meta": {...}}`` (training checkpoints add optimizer state).
The state dict includes the entropy coder's CDF tables, so every machine codes with identical tables.

Published format (micmic123/QmapCompression, CompressAI 1.0): ``{"itr", "model", "optimizer",
"aux_optimizer"}``; the entropy bottleneck's parameters carry CompressAI 1.0's list-style names
(``_matrices.i``, ``_biases.i``, ``_factors.i``), renamed here explicitly because CompressAI's own remap of
old keys mangles them.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch

from .registry import shipped_checkpoint
from .sft import SFTCodec, SFTConfig

__all__ = [
    "CheckpointError",
    "state_dict_hash",
    "save_codec",
    "load_codec_checkpoint",
    "published_to_taskcomp",
    "taskcomp_to_published",
]

FORMAT = "taskcomp-codec"

_EB_OLD = re.compile(r"^entropy_bottleneck\._(matrices|biases|factors)\.(\d+)$")
_EB_NEW = re.compile(r"^entropy_bottleneck\.(matrices|biases|factors)\.(\d+)$")


_MASK_SUFFIX = "context_prediction.mask"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded (unknown format, wrong keys, corrupt)."""


def state_dict_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over the sorted keys and raw tensor bytes: identifies the weights and CDF tables."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def published_to_taskcomp(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the published checkpoint's keys to this package's (current CompressAI) names."""
    out = {}
    for k, v in state_dict.items():
        k = k[len("module.") :] if k.startswith("module.") else k
        m = _EB_OLD.match(k)
        out[f"entropy_bottleneck.{m.group(1)}.{m.group(2)}" if m else k] = v
    return out


def taskcomp_to_published(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`published_to_taskcomp` (used to test the loader, and to export)."""
    out = {}
    for k, v in state_dict.items():
        m = _EB_NEW.match(k)
        out[f"entropy_bottleneck._{m.group(1)}.{m.group(2)}" if m else k] = v
    return out


def save_codec(
    model: SFTCodec,
    path: str | Path,
    name: str,
    meta: dict[str, Any] | None = None,
    half: bool = False,
    base: str | None = None,
    **extra,
) -> str:
    """Save ``model`` in taskcomp format, atomically, with its entropy coder's CDF tables. Returns the hash.

    Args:
        half: store parameters as float16 (half the file). The model's own parameters are rounded to float16
            first and the CDF tables recomputed from them, so the saved file codes exactly as ``model`` does
            afterwards (buffers such as CDFs and the scale table stay exact).
        base: name of a registered codec with shipped weights that ``model`` was trained over (frozen parts):
            only the tensors that differ from the base's are stored, with the base's name and hash; loading
            takes the rest from the shipped base (a context codec over sft-small: ~2.5M of 6.7M parameters).
            Tensors of the base that ``half`` would round are compared after rounding them the same way.

    Raises:
        CheckpointError: ``base`` has no shipped weights.
    """
    import io

    from ..io import atomic_write

    if half:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
        model.update(force=True)
    else:
        model.update()
    params = {n for n, _ in model.named_parameters()}
    sd = {
        k: (v.detach().cpu().half() if half and k in params else v.detach().cpu())
        for k, v in model.state_dict().items()
    }
    # Context masks are fixed by the architecture (the constructor makes them); not stored.
    sd = {k: v for k, v in sd.items() if not k.endswith(_MASK_SUFFIX)}
    if base is not None:
        base_sd, base_hash = _base_state(base)
        sd = {
            k: v
            for k, v in sd.items()
            if k not in base_sd or base_sd[k].shape != v.shape or not torch.equal(base_sd[k].to(v.dtype), v)
        }
        extra = {**extra, "base": base, "base_hash": base_hash}
    ckpt = {
        "format": FORMAT,
        "version": 1,
        "codec": name,
        "config": model.config.to_dict(),
        "state_dict": sd,
        "meta": {**dict(meta or {}), "storage": "float16" if half else "float32"},
        **extra,
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write(path, buf.getvalue())
    return state_dict_hash(model.state_dict())


def _base_state(base: str) -> tuple[dict[str, torch.Tensor], str]:
    """State dict and hash of the shipped weights of registered codec ``base``."""
    path = shipped_checkpoint(base)
    if path is None:
        raise CheckpointError(f"base codec {base} has no shipped weights")
    model, info = load_codec_checkpoint(path)
    return model.state_dict(), info["hash"]


def _read(path_or_url: str | Path) -> Any:
    s = str(path_or_url)
    if s.startswith(("http://", "https://")):
        return torch.hub.load_state_dict_from_url(s, map_location="cpu", weights_only=False)
    p = Path(s)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for corrupt files
        raise CheckpointError(f"cannot read checkpoint {p}: {type(e).__name__}: {e}") from None


def load_codec_checkpoint(path_or_url: str | Path, config: SFTConfig | None = None) -> tuple[SFTCodec, dict]:
    """Load a codec from a taskcomp or published-format checkpoint (file path or URL).

    Returns:
        (model in eval mode with CDF tables ready, info dict with ``codec``, ``hash``, ``meta``).
    Raises:
        CheckpointError: unknown format or keys that do not match the model.
    """
    ckpt = _read(path_or_url)
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
        cfg = SFTConfig.from_dict(ckpt["config"])
        sd, name, meta = ckpt["state_dict"], ckpt.get("codec", "sft-custom"), ckpt.get("meta", {})
        if ckpt.get("base"):  # only what differs from a shipped base codec's weights is stored
            base_sd, base_hash = _base_state(ckpt["base"])
            if base_hash != ckpt.get("base_hash"):
                raise CheckpointError(
                    f"{path_or_url} was trained over {ckpt['base']} weights {str(ckpt.get('base_hash'))[:16]}, but "
                    f"the shipped {ckpt['base']} is {base_hash[:16]}; use the taskcomp version it came with"
                )
            sd = {**{k: v for k, v in base_sd.items()}, **sd}
    elif isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        cfg = config or SFTConfig()
        sd, name, meta = published_to_taskcomp(ckpt["model"]), "sft-paper", {"itr": ckpt.get("itr")}
    else:
        raise CheckpointError(f"{path_or_url} is neither a taskcomp codec checkpoint nor a published SFT checkpoint")
    from .sft_context import build_codec_model

    model = build_codec_model(cfg)
    sd = {**{k: v for k, v in model.state_dict().items() if k.endswith(_MASK_SUFFIX)}, **sd}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(
            f"checkpoint {path_or_url} does not match the {name} layout: {' '.join(first[:3])[:400]}"
        ) from None
    model.update(force=False)  # fills CDF tables only where the checkpoint had none
    model.eval()
    info = {"codec": name, "hash": state_dict_hash(model.state_dict()), "meta": meta, "config": cfg}
    return model, info
