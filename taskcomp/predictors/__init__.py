"""Task-aware quality-map predictors: a map in one forward pass instead of per-image optimisation.

Registry (timm-style)::

    from taskcomp.predictors import create_predictor
    pred = create_predictor("lite0-classification")           # shipped weights
    pred = create_predictor("runs/predictor/predictor.pth")   # a checkpoint of `taskcomp train-predictor`
    qmap = pred.predict_map(x, lam=0.1)                        # (B, 1, H, W) in [0, 1]

Checkpoint format: ``torch.save`` of ``{"format": "taskcomp-predictor", "version": 1, "name": NAME,
"config": PredictorConfig dict, "state_dict": decoder weights, "meta": {...}}``; the frozen backbone is not
stored (it comes from its pretrained package).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..codec import state_dict_hash
from ..devices import resolve_device
from ..io import atomic_write
from ..task_models import resolve_classifier_name
from .film import FeatureFiLMPredictor, PredictorConfig

__all__ = [
    "FeatureFiLMPredictor",
    "PredictorConfig",
    "PredictorError",
    "create_predictor",
    "list_predictors",
    "save_predictor",
    "load_predictor_checkpoint",
    "check_task_model",
    "check_codec",
    "PREDICTOR_WEIGHTS",
    "default_predictor",
]

FORMAT = "taskcomp-predictor"
_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"

#: Registered predictors: name -> (shipped weights file, default config). A name whose file is not shipped
#: needs ``checkpoint=``.
PREDICTOR_WEIGHTS: dict[str, tuple[str, PredictorConfig]] = {
    "lite0-classification": ("predictor-lite0-classification.pth", PredictorConfig()),
    "yolov8-person-detection": (
        "predictor-yolov8-person-detection.pth",
        PredictorConfig(task="detection", task_model="default"),
    ),
}


class PredictorError(ValueError):
    """A predictor that cannot be created: unknown name, unreadable or foreign checkpoint, wrong task model."""


def list_predictors() -> list[str]:
    """Registered predictor names."""
    return sorted(PREDICTOR_WEIGHTS)


def default_predictor(task: str, model_name: str | None = None) -> str:
    """The registered predictor for ``task`` maps of ``model_name`` (None: any model of that task).

    Raises:
        PredictorError: none registered.
    """
    for name, (_, cfg) in PREDICTOR_WEIGHTS.items():
        if cfg.task == task and (model_name is None or cfg.task_model == model_name):
            return name
    raise PredictorError(
        f"no registered predictor for {task} maps of {model_name}: give a checkpoint "
        "(--predictor PATH; predictor: PATH in a recipe)"
    )


def save_predictor(
    model: FeatureFiLMPredictor, path: str | Path, name: str, meta: dict[str, Any] | None = None
) -> None:
    """Write ``model``'s decoder and config as a predictor checkpoint (atomically)."""
    buf = io.BytesIO()
    torch.save(
        {
            "format": FORMAT,
            "version": 1,
            "name": name,
            "config": model.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.decoder_state_dict().items()},
            "meta": meta or {},
        },
        buf,
    )
    atomic_write(Path(path), buf.getvalue())


def load_predictor_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a predictor checkpoint's dict.

    Raises:
        PredictorError: missing or unreadable file, or not a taskcomp predictor checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise PredictorError(f"predictor checkpoint not found: {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign or cut files
        raise PredictorError(f"{path} is not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        what = ck.get("format") if isinstance(ck, dict) and "format" in ck else "another kind of file"
        raise PredictorError(f"{path} is not a taskcomp predictor checkpoint ({what})")
    return ck


def create_predictor(
    name: str = "lite0-classification",
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    pretrained: bool = True,
) -> FeatureFiLMPredictor:
    """Create a map predictor in eval mode.

    Args:
        name: a registered name (:func:`list_predictors`), or the path of a predictor checkpoint.
        checkpoint: weights to load instead of the shipped ones.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (None: the CPU).
        pretrained: load the backbone's pretrained weights (False only for tests).

    Raises:
        PredictorError: unknown name, no shipped weights, unreadable or foreign checkpoint, weights that do not fit.
    """
    if checkpoint is None and name not in PREDICTOR_WEIGHTS:
        if Path(name).suffix in (".pth", ".pt") or Path(name).is_file():
            checkpoint = name
        else:
            raise PredictorError(
                f"unknown predictor {name!r}; registered: {', '.join(list_predictors())} (or give a checkpoint path)"
            )
    if checkpoint is None:
        fname, _ = PREDICTOR_WEIGHTS[name]
        checkpoint = _WEIGHTS / fname
        if not checkpoint.is_file():
            raise PredictorError(
                f"no trained weights are shipped for predictor {name!r}: give a checkpoint of "
                "`taskcomp train-predictor` (--predictor PATH; predictor: PATH in a recipe; "
                "checkpoint= in Python)"
            )
    ck = load_predictor_checkpoint(checkpoint)
    try:
        config = PredictorConfig(**ck["config"])
    except TypeError as e:
        raise PredictorError(f"{checkpoint}: bad predictor config ({e})") from None
    model = FeatureFiLMPredictor(config, pretrained=pretrained)
    own = model.decoder_state_dict()
    sd = ck["state_dict"]
    if set(sd) != set(own) or any(sd[k].shape != own[k].shape for k in own):
        raise PredictorError(
            f"{checkpoint}: weights do not fit a {config.backbone} predictor of width {config.channels}"
        )
    model.load_state_dict(sd, strict=False)
    model.digest = state_dict_hash(sd)[:16]  # names these weights in records (runs never mix two predictors)
    model.meta = dict(ck.get("meta", {}))
    model.name = ck.get("name", name)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if device is not None:
        model.to(resolve_device(device))
    return model


def check_task_model(predictor: FeatureFiLMPredictor, task: str, model_name: str | None) -> None:
    """Refuse a predictor trained for another task or task model than the objective it is used with.

    Raises:
        PredictorError: one line naming both.
    """
    cfg = predictor.config
    if cfg.task != task:
        raise PredictorError(f"predictor {getattr(predictor, 'name', '?')} was trained for {cfg.task} maps, not {task}")
    if cfg.task_model in ("", "default"):  # trained for the task's default model (e.g. the offline detector)
        return
    if model_name is not None and resolve_classifier_name(model_name) != resolve_classifier_name(cfg.task_model):
        raise PredictorError(
            f"predictor {getattr(predictor, 'name', '?')} was trained for {cfg.task_model} maps, not {model_name}"
        )


def check_codec(predictor: FeatureFiLMPredictor, codec) -> None:
    """Refuse a predictor whose maps were made for another codec: other weights where its checkpoint records
    them (``config.codec_weights``), else another codec name (``config.codec``; checkpoints made before the
    weights were recorded name ``sft-small``, the codec they were trained with).

    Args:
        codec: the :class:`taskcomp.codec.SFTCodec` the maps will be coded with.

    Raises:
        PredictorError: one line naming both.
    """
    from ..bitstream import weights_id

    cfg = predictor.config
    name = getattr(codec, "checkpoint_info", {}).get("codec", "sft-custom")
    wid = weights_id(codec).hex()
    who = getattr(predictor, "name", "?")
    if cfg.codec_weights:
        if cfg.codec_weights[:16] != wid[:16]:
            raise PredictorError(
                f"predictor {who} was made for codec {cfg.codec} weights {cfg.codec_weights[:16]}, not {name} "
                f"weights {wid[:16]}: use that codec, or distill a predictor from targets made with this one"
            )
    elif cfg.codec and name != cfg.codec:
        raise PredictorError(f"predictor {who} was trained for codec {cfg.codec}, not {name}")
