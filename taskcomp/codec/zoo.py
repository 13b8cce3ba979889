"""Codec factory (timm-style): ``create_codec("sft-small")`` returns a ready model. The registry it reads (configs,
shipped and retired weights) is :mod:`taskcomp.codec.registry`, re-exported here.

``sft-small`` ships its weights inside the package (``taskcomp/weights/sft-small.pth``), trained with
``taskcomp train`` in stages, each from the previous stage's weights: ``recipes/train_sft_small.yaml`` (CPU),
``train_sft_small_gpu.yaml`` and ``train_sft_small_gpu2.yaml`` (one GPU), then the past stages' configs kept in
``results/training/configs/`` (``train_sft_small_cpu5.yaml``, ``train_sft_small_gpu6.yaml``, ``train_sft_small_cpu7.yaml``); see ``results/training/README.md``. ``sft-medium`` is
sft-small with wider deep stages and more latent channels, grown from the trained sft-small by
``taskcomp widen-codec`` (``widen.py``); no weights ship with it. ``sft-paper`` is the
published layout; its weights (micmic123/QmapCompression) are hosted outside the package registries, so
pass ``checkpoint=PATH_OR_URL``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_codec_checkpoint
from .registry import CODEC_CONFIGS, DEFAULT_CODEC, RETIRED_WEIGHTS, list_codecs, resolve_name, shipped_checkpoint
from .sft import SFTCodec
from .sft_context import build_codec_model

__all__ = [
    "CODEC_CONFIGS",
    "DEFAULT_CODEC",
    "RETIRED_WEIGHTS",
    "list_codecs",
    "create_codec",
    "shipped_checkpoint",
    "resolve_name",
]


def create_codec(
    name: str | None = DEFAULT_CODEC,
    checkpoint: str | Path | None = None,
    pretrained: bool = True,
    device: str | torch.device | None = None,
) -> SFTCodec:
    """Create a codec by name.

    Args:
        name: a registered codec (:func:`list_codecs`; default ``sft-small``, shipped weights). None with a
            ``checkpoint``: the checkpoint's own codec; None without one: the default.
        checkpoint: a taskcomp or published-format checkpoint (path or URL); overrides shipped weights.
        pretrained: load the shipped weights when no checkpoint is given; False gives a random init.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (:func:`taskcomp.devices.resolve_device`); None: CPU.
            Entropy coding always runs on the CPU; the transforms run here.

    Returns:
        The model in eval mode; ``model.checkpoint_info`` holds its name and weights hash.
    """
    if name is None and checkpoint is not None:
        return _from_checkpoint(None, checkpoint, device)
    key = resolve_name(name or DEFAULT_CODEC)
    dev = None
    if device is not None:
        from ..devices import resolve_device

        dev = resolve_device(device)  # a bad device fails before any weights load
    if checkpoint is None and pretrained:
        checkpoint = shipped_checkpoint(key)
        if checkpoint is None:
            hint = " (the published SFT checkpoint)" if key == "sft-paper" else " (one made by `taskcomp train`)"
            raise CheckpointError(
                f"no weights ship with {key}; pass --checkpoint PATH_OR_URL{hint} (Python: checkpoint=..., or "
                "pretrained=False for a random init)"
            )
    if checkpoint is None:
        model = build_codec_model(CODEC_CONFIGS[key]).eval()
        model.update()
        model.checkpoint_info = {"codec": key, "hash": None, "meta": {}}
        return model.to(dev) if dev is not None else model
    return _from_checkpoint(key, checkpoint, device)


def _from_checkpoint(key: str | None, checkpoint, device):
    """Load ``checkpoint``; with ``key``, refuse a checkpoint of another registered codec (another layout)."""
    dev = None
    if device is not None:
        from ..devices import resolve_device

        dev = resolve_device(device)
    model, info = load_codec_checkpoint(checkpoint, config=CODEC_CONFIGS[key] if key else None)
    other = info.get("codec")
    if key and other in CODEC_CONFIGS and other != key and model.config != CODEC_CONFIGS[key]:
        raise CheckpointError(
            f"checkpoint {checkpoint} is a {other} codec, not {key}: pass --codec {other}, or no --codec"
        )
    model.checkpoint_info = info
    return model.to(dev) if dev is not None else model
