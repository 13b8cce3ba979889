"""Checks on the tensors that enter the codec, the range coder and the map optimiser.

Every public entry point that takes an image or a quality map as a tensor (:func:`taskcomp.bitstream.encode`,
:meth:`taskcomp.codec.sft.SFTCodec.compress`, :class:`taskcomp.optimize.MapOptimizer`, the target-bpp searches)
calls these first, so a bad tensor gets a one-line :class:`ValueError` naming the problem instead of a hang in
the range coder (a NaN latent, or pixels in 0..255, made CompressAI's rANS coder spin), a traceback deep in a
convolution, or a silently clamped result. The checks cost one reduction per tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_image_tensor",
    "check_map_tensor",
    "check_codec_inputs",
    "check_latents",
    "check_number",
    "TOLERANCE",
    "MAX_LATENT",
    "MAX_WEIGHT",
]

#: Values this far outside [0, 1] (float rounding) are clamped; anything further is refused.
TOLERANCE = 1e-6


#: Largest relative weight of a task term (``--det-weight``, ``--rec-weight``, ``detection:W`` in a task list): the
#: optimiser's objective carries any lambda (it rescales), but weights inside the task loss reach float32's range
#: in the backward pass; 1e6 is the largest lambda measured to work unscaled (taskcomp.optimize).
MAX_WEIGHT = 1e6


def check_number(
    value,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float | int:
    """A finite real number (an integer with ``integer``) in [low, high] (open ends with ``low_open`` /
    ``high_open``; None: unbounded); bools and strings are refused.

    Returns:
        ``value`` as a float (an int with ``integer``).

    Raises:
        ValueError: one line, ``"{name} must be a finite number in (0, 1e+06], got nan"``.
    """
    import math
    import numbers

    kind = "an integer" if integer else "a finite number"
    rng = ""
    if low is not None or high is not None:
        rng = (
            f" in {'(' if low_open or low is None else '['}{'-inf' if low is None else f'{low:g}'}, "
            f"{'inf' if high is None else f'{high:g}'}{')' if high_open or high is None else ']'}"
        )
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = isinstance(value, numbers.Integral)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(f"{name} must be {kind}{rng}, got {value!r}")
    return int(value) if integer else float(value)


def _range(t: Tensor) -> tuple[float, float]:
    return float(t.min()), float(t.max())


def check_image_tensor(x, name: str = "image", batch: int | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Check a batch of RGB images for the codec: a float tensor (B, 3, H, W), finite, values in [0, 1].

    Args:
        x: the images.
        name: what to call them in messages.
        batch: the batch size required (None: any).
        dtype: cast to this float type after the checks (None: keep).

    Returns:
        ``x`` clamped to [0, 1] (values within :data:`TOLERANCE` outside it), cast to ``dtype``.

    Raises:
        ValueError: one line: not a tensor, integer or complex dtype (e.g. uint8 0..255), wrong shape, empty,
            NaN or infinite values, values outside [0, 1] (0..255 data gets the hint to divide by 255).
    """
    if not isinstance(x, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor (B, 3, H, W) in [0, 1], got {type(x).__name__}"
            + (
                " (taskcomp.io.image_to_tensor converts an (H, W, 3) uint8 array)"
                if type(x).__name__ == "ndarray"
                else ""
            )
        )
    if not x.is_floating_point():
        hint = " (divide by 255: x.float() / 255)" if x.dtype == torch.uint8 else ""
        raise ValueError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}{hint}")
    if x.dim() != 4 or x.size(1) != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(x.shape)}")
    if batch is not None and x.size(0) != batch:
        raise ValueError(
            f"{name} must hold {batch} image{'s' if batch != 1 else ''} (shape ({batch}, 3, H, W)), "
            f"got {tuple(x.shape)}"
        )
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        n = int((~finite).sum())
        raise ValueError(f"{name} has {n} NaN or infinite value{'s' if n != 1 else ''}")
    lo, hi = _range(x)
    if lo < -TOLERANCE or hi > 1 + TOLERANCE:
        hint = " (looks like 0..255: divide by 255)" if hi > 1.5 and lo >= 0 else ""
        raise ValueError(f"{name} values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]{hint}")
    if lo < 0 or hi > 1:
        x = x.clamp(0, 1)
    return x if dtype is None else x.to(dtype)


def check_map_tensor(qmap, like: Tensor, name: str = "quality map", dtype: torch.dtype | None = None) -> Tensor:
    """Check a quality map against the images ``like`` (B, 3, H, W) it goes with.

    Accepts (B, 1, H, W), or (1, 1, H, W) / (1, H, W) / (H, W) for every image of the batch (expanded to B).

    Returns:
        (B, 1, H, W) map clamped to [0, 1] (values within :data:`TOLERANCE` outside it), on ``like``'s device,
        cast to ``dtype`` (default: ``like``'s).

    Raises:
        taskcomp.maps.MapError (a ValueError): not a float tensor, wrong shape or size, NaN or infinite values,
            values outside [0, 1] (a map of 2.0 is refused, not clamped).
    """
    from .maps import MapError

    if not isinstance(qmap, Tensor):
        raise MapError(f"{name} must be a torch.Tensor (B, 1, H, W) in [0, 1], got {type(qmap).__name__}")
    if not qmap.is_floating_point():
        raise MapError(f"{name} must be a float tensor in [0, 1], got dtype {qmap.dtype}")
    B, _, H, W = like.shape
    m = qmap
    if m.dim() == 2:
        m = m[None, None]
    elif m.dim() == 3:
        m = m[None]
    if m.dim() != 4 or m.size(1) != 1:
        raise MapError(f"{name} must have shape (B, 1, H, W), got {tuple(qmap.shape)}")
    if tuple(m.shape[-2:]) != (H, W):
        raise MapError(f"{name} is {m.shape[-1]}x{m.shape[-2]} but the image is {W}x{H}")
    if m.size(0) not in (1, B):
        raise MapError(f"{name} holds {m.size(0)} maps for {B} images")
    finite = torch.isfinite(m)
    if not bool(finite.all()):
        n = int((~finite).sum())
        raise MapError(f"{name} has {n} NaN or infinite value{'s' if n != 1 else ''}")
    lo, hi = _range(m)
    if lo < -TOLERANCE or hi > 1 + TOLERANCE:
        raise MapError(f"{name} values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    if lo < 0 or hi > 1:
        m = m.clamp(0, 1)
    if m.device != like.device:
        raise MapError(f"{name} is on {m.device} but the image on {like.device}")
    return m.expand(B, 1, H, W).to(dtype or like.dtype)


def check_codec_inputs(codec, x, qmap, batch: int | None = None) -> tuple[Tensor, Tensor]:
    """Check an image batch and its quality map before they enter ``codec`` (its device and float type).

    Returns ``(x, qmap)`` as the codec takes them: (B, 3, H, W) and (B, 1, H, W) in [0, 1], the codec's dtype.

    Raises:
        ValueError: as :func:`check_image_tensor` and :func:`check_map_tensor`, or tensors on another device
            than the codec's.
    """
    p = next(codec.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else None
    x = check_image_tensor(x, "image", batch=batch, dtype=dtype)
    qmap = check_map_tensor(qmap, x)
    if p is not None and x.device != p.device:
        raise ValueError(
            f"image and map are on {x.device} but the codec on {p.device}; move them with .to({str(p.device)!r})"
        )
    return x, qmap


#: Largest |latent - mean| handed to the range coder. sft-small's latents stay within ~40 on photos (measured:
#: 36 for y, 21 for z on the 129x65 case image at q=1); the rANS coder takes symbols as int32 and codes values
#: beyond its tables with bypass symbols. A NaN (pixels in 0..255 make the analysis overflow to NaN) made it
#: spin without end; far-out values mean broken weights.
MAX_LATENT = 2.0**20


def check_latents(**tensors: Tensor) -> None:
    """Check what goes to the range coder (keyword: the latent's name): finite and within ``MAX_LATENT``.

    Raises:
        ValueError: one line naming the latent; input checks make this unreachable with sound weights, so it
            points at the codec (non-finite or exploding weights).
    """
    for name, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"the codec produced non-finite latents {name} (are its weights intact?)")
        peak = float(t.abs().max()) if t.numel() else 0.0
        if peak > MAX_LATENT:
            raise ValueError(
                f"the codec produced latents {name} of magnitude {peak:.3g} (> {MAX_LATENT:g}); "
                "refusing to entropy-code them (are its weights intact?)"
            )
