"""The codecs by name: each registered codec's configuration, the weights that ship inside the package
(``taskcomp/weights/NAME.pth``) and the weights that once shipped.

Imported by :mod:`taskcomp.codec.checkpoint` (a checkpoint stored over a shipped base codec loads the base's
weights) and :mod:`taskcomp.codec.zoo` (``create_codec``), so neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

from .sft import SFTConfig

__all__ = ["CODEC_CONFIGS", "DEFAULT_CODEC", "RETIRED_WEIGHTS", "list_codecs", "resolve_name", "shipped_checkpoint"]

CODEC_CONFIGS: dict[str, SFTConfig] = {
    # The published configuration (27.6M parameters).
    "sft-paper": SFTConfig(),
    # Designed for a 2-core CPU: narrow full-resolution condition net and SFT layers (those dominate the
    # cost at full resolution), 128 latent and 64 hyper-latent channels. 5.45M parameters; a training step
    # at 8 x 128^2 takes 0.66 s here against 1.32 s for a (32, 64, 96, 128) / cond-32 variant and 2.2 s for
    # (48, 96, 128, 160) (results/codec_speed.md).
    "sft-small": SFTConfig(
        channels=(24, 48, 96, 128), M=128, Z=64, cond=16, cond_hidden=(32, 16), sft_hidden=16, gs0=(32, 16)
    ),
    # sft-small with wider deep stages (/4, /8) and 192 latent channels: the shape `taskcomp widen-codec` grows
    # the trained sft-small into (results/training/README.md, "The top end"), since sft-small's transforms, not
    # its rate, cap it near 34 dB. The full-resolution layers keep sft-small's widths, so a step costs the same
    # order as sft-small's (results/training/medium_speed.md: 1.3-1.45x per training process, a map step
    # 0.97-1.6x). 10.4M parameters. No weights ship with it.
    "sft-medium": SFTConfig(
        channels=(24, 48, 128, 192), M=192, Z=64, cond=16, cond_hidden=(32, 16), sft_hidden=16, gs0=(32, 16)
    ),
}
# sft-small's transforms with stronger entropy models for its latent (sft_context.py): a checkerboard (two-pass)
# or serial raster-scan context, with one Gaussian or a 3-component mixture per latent. Trained over the frozen
# sft-small transforms (recipes/train_sft_small_ckbd.yaml etc.; results/entropy_models/).
for _ctx, _tag in (("checkerboard", "ckbd"), ("raster", "ar")):
    CODEC_CONFIGS[f"sft-small-{_tag}"] = replace(CODEC_CONFIGS["sft-small"], context=_ctx)
    CODEC_CONFIGS[f"sft-small-{_tag}-gmm"] = replace(CODEC_CONFIGS["sft-small"], context=_ctx, mixture=3)
# Cheng et al. 2020's codec on the SFT transforms: attention modules in analysis and synthesis, a checkerboard
# context and a 3-Gaussian mixture. For full training on a GPU (recipes/train_sft_small_attn_gmm_gpu.yaml);
# no weights ship with it.
CODEC_CONFIGS["sft-small-attn-ckbd-gmm"] = replace(
    CODEC_CONFIGS["sft-small"], context="checkerboard", mixture=3, attention=True
)
# sft-small fine-tuned on document images (scanned forms and receipts; recipes/train_sft_small_doc.yaml,
# results/documents/): the same network, weights for pages of text on paper instead of natural photos.
CODEC_CONFIGS["sft-small-doc"] = replace(CODEC_CONFIGS["sft-small"])
# sft-small re-targeted to lower rates (issue 35): the same network fine-tuned from the shipped sft-small with a
# lambda(q) that starts 8x lower at q = 0 (1.25e-4 instead of 1e-3) and ends where sft-small's does at q = 1, so
# q = 0 reaches about half sft-small's lowest rate (recipes/train_sft_small_lowrate.yaml,
# results/codec_range/). Its lambda(q) is part of its config, so its checkpoints and files say which it is.
CODEC_CONFIGS["sft-small-lowrate"] = replace(CODEC_CONFIGS["sft-small"], lambda_min=1.25e-4)
_ALIASES = {"paper": "sft-paper", "small": "sft-small", "medium": "sft-medium"}

# Weights that once shipped with the package, by the 8-byte weights id that .tcz files carry. Files made with
# them still decode with those weights (any taskcomp checkpoint loads); this says where to find them.
RETIRED_WEIGHTS: dict[str, str] = {
    "2e415643951f92c2": "sft-small stage 1 (7,513 CPU steps), shipped up to git commit bc56f91: "
    "`git show bc56f91:taskcomp/weights/sft-small.pth > sft-small-stage1.pth`",
    "0c652b9dee9544ba": "sft-small stage 3 (stage 1 + 16,734 GPU steps), shipped up to git commit d2c3249, on which "
    "the committed ImageNet, SROIE and COCO task results were measured: "
    "`git show d2c3249:taskcomp/weights/sft-small.pth > sft-small-stage3.pth`",
    "511a28c4c2541713": "sft-small stage 4 (stage 3 + 16,787 GPU steps), shipped up to git commit 688c874, on which "
    "results/imagenet_classification/stage4 was measured: "
    "`git show 688c874:taskcomp/weights/sft-small.pth > sft-small-stage4.pth`",
    "fc4d3dfae4429c68": "sft-small stage 5 (stage 4 + 1,718 CPU steps), shipped up to git commit 49736da: "
    "`git show 49736da:taskcomp/weights/sft-small.pth > sft-small-stage5.pth`",
    "126d9766cd4d53be": "sft-small stage 6 (stage 5 + 19,932 GPU steps), shipped up to git commit 36d23ba, on which "
    "results/imagenet_classification/stage6 was measured: "
    "`git show 36d23ba:taskcomp/weights/sft-small.pth > sft-small-stage6.pth`",
}

DEFAULT_CODEC = "sft-small"


def resolve_name(name: str) -> str:
    """The registered name of codec ``name`` (aliases ``paper``, ``small``, ``medium`` resolve to ``sft-*``).

    Raises:
        ValueError: an unknown codec (the message lists the registered ones).
    """
    key = _ALIASES.get(name, name)
    if key not in CODEC_CONFIGS:
        raise ValueError(f"unknown codec {name!r}; available: {', '.join(list_codecs())}")
    return key


def list_codecs() -> list[str]:
    """The registered codec names, sorted (with or without shipped weights)."""
    return sorted(CODEC_CONFIGS)


def shipped_checkpoint(name: str) -> Path | None:
    """Path of the package-shipped weights for ``name`` (``taskcomp/weights/NAME.pth``), or None when none ship.

    Raises:
        ValueError: an unknown codec (:func:`resolve_name`).
    """
    p = Path(str(resources.files("taskcomp") / "weights" / f"{resolve_name(name)}.pth"))
    return p if p.is_file() else None
