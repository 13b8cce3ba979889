"""Quality maps: generators (uniform, gradient, blobs, regions, halves) and map file I/O.

A quality map is a float tensor (B, 1, H, W) or array (H, W) with values in [0, 1]: 0 is the lowest
rate, 1 the highest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "uniform_map",
    "map_at_size",
    "gradient_map",
    "blob_map",
    "region_map",
    "half_map",
    "random_training_map",
    "load_map",
    "save_map",
    "save_map_exact",
    "check_map",
    "MapError",
]


class MapError(ValueError):
    """A quality map that cannot be used (wrong size, NaN, unreadable)."""


def uniform_map(h: int, w: int, q: float) -> Tensor:
    """(1, 1, h, w) map of constant level q."""
    return torch.full((1, 1, h, w), float(q))


def map_at_size(qmap: Tensor, size: tuple[int, int]) -> Tensor:
    """A map (B, 1, h, w) in [0, 1] brought to ``size`` (H, W) by bilinear upsampling (or downsampling), clamped to
    [0, 1]; returned unchanged when it already has that size. Maps made at a working resolution are coded this way
    at the image's own size."""
    if tuple(qmap.shape[-2:]) == tuple(size):
        return qmap
    return F.interpolate(qmap, size=tuple(size), mode="bilinear", align_corners=False).clamp(0, 1)


def gradient_map(h: int, w: int, q0: float, q1: float, horizontal: bool = True) -> Tensor:
    """Linear ramp from q0 to q1, left-to-right (``horizontal``) or top-to-bottom."""
    n = w if horizontal else h
    ramp = torch.linspace(q0, q1, n)
    m = ramp.view(1, n).expand(h, w) if horizontal else ramp.view(n, 1).expand(h, w)
    return m.reshape(1, 1, h, w).clone()


def blob_map(h: int, w: int, centers, variances, peak: float) -> Tensor:
    """Sum of isotropic Gaussian blobs, rescaled so its maximum is ``peak``."""
    yy = torch.arange(h, dtype=torch.float32).view(h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, w)
    m = torch.zeros(h, w)
    for (cy, cx), var in zip(centers, variances):
        m += torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * var))
    m = m / m.max().clamp_min(1e-12) * peak
    return m.view(1, 1, h, w)


def region_map(h: int, w: int, seeds, levels) -> Tensor:
    """Piecewise-constant map over the Voronoi cells of ``seeds`` ((y, x) points), one level per cell."""
    yy = torch.arange(h, dtype=torch.float32).view(h, 1, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, w, 1)
    s = torch.as_tensor(seeds, dtype=torch.float32)
    d = (yy - s[:, 0]) ** 2 + (xx - s[:, 1]) ** 2
    idx = d.argmin(-1)
    return torch.as_tensor(levels, dtype=torch.float32)[idx].view(1, 1, h, w)


def half_map(h: int, w: int, left: float = 1.0, right: float = 0.0) -> Tensor:
    """Left half at ``left``, right half at ``right`` (the steering check's map)."""
    m = torch.full((1, 1, h, w), float(right))
    m[..., : w // 2] = float(left)
    return m


def random_training_map(h: int, w: int, rng: np.random.Generator) -> Tensor:
    """One random map from the reference's training mixture, scaled to an h x w crop.

    20% uniform U(0, 1.01) (clipped), 20% per-region levels, 20% linear gradient between two U(0, 1) levels,
    40% sum of 1-20 Gaussian blobs with variances U(1000, 3000) px^2 (given for 256 px crops and scaled
    with the crop area) rescaled to a maximum of U(0.5, 1).

    The reference draws its regions from COCO instance masks; our training photos have no masks, so regions
    are random Voronoi cells (2-8 cells) with a U(0, 1) level each.
    """
    u = rng.random()
    if u < 0.2:
        m = uniform_map(h, w, min(rng.uniform(0, 1.01), 1.0))
    elif u < 0.4:
        k = int(rng.integers(2, 9))
        seeds = np.stack([rng.uniform(0, h, k), rng.uniform(0, w, k)], 1)
        m = region_map(h, w, seeds, rng.uniform(0, 1, k))
    elif u < 0.6:
        m = gradient_map(h, w, rng.uniform(), rng.uniform(), horizontal=bool(rng.integers(2)))
    else:
        k = int(rng.integers(1, 21))
        scale = (h * w) / (256 * 256)
        centers = np.stack([rng.uniform(0, h, k), rng.uniform(0, w, k)], 1)
        m = blob_map(h, w, centers, rng.uniform(1000, 3000, k) * scale, rng.uniform(0.5, 1.0))
    return m.clamp_(0, 1)


def check_map(qmap: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Validate a map: finite, values in [0, 1] (clamped within 1e-6), and of ``size`` (H, W) if given.

    Raises:
        MapError: with a one-line message naming the problem.
    """
    if qmap.dim() == 2:
        qmap = qmap[None, None]
    elif qmap.dim() == 3:
        qmap = qmap[None]
    if qmap.dim() != 4 or qmap.size(1) != 1:
        raise MapError(f"quality map must have one channel, got shape {tuple(qmap.shape)}")
    if not torch.isfinite(qmap).all():
        raise MapError("quality map contains NaN or infinite values")
    if size is not None and tuple(qmap.shape[-2:]) != tuple(size):
        raise MapError(f"quality map is {qmap.shape[-1]}x{qmap.shape[-2]} but the image is {size[1]}x{size[0]}")
    lo, hi = float(qmap.min()), float(qmap.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise MapError(f"quality map values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]")
    return qmap.float().clamp(0, 1)


def load_map(path: str | Path) -> Tensor:
    """Read a quality map: ``.npy`` (float in [0, 1]) or an image, scaled by its bit depth, never its content.

    Images: 8-bit grey (L, P, 1-bit, or RGB with equal channels): /255; 16-bit (``I;16*``, 16-bit PNG, TIFF,
    PGM): /65535; other integer depths from the file (:func:`taskcomp.io.full_scale`); float TIFF (mode F):
    values as stored. The EXIF orientation is applied, as for images (:func:`taskcomp.io.upright`). A map
    written by :func:`save_map_exact` loads back equal (``.npy`` bit for bit; images to their quantisation).

    Returns (1, 1, H, W) float32 in [0, 1].

    Raises:
        MapError: one line for a missing or unreadable file, a colour picture (e.g. a colour-mapped map made
            for viewing), an integer image of unknown depth, values outside [0, 1] or non-finite.
    """
    path = Path(path)
    if not path.is_file():
        raise MapError(f"quality map not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:  # numpy raises several types for corrupt files
            raise MapError(f"cannot read quality map {path}: {e}") from None
        if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
            arr = arr.squeeze()
        if arr.ndim != 2:
            raise MapError(f"quality map {path} must be 2-D, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise MapError(f"quality map {path} is not real-valued ({arr.dtype})")
        return check_map(torch.from_numpy(arr.astype(np.float32)))
    from PIL import Image, UnidentifiedImageError

    from .io import full_scale, upright

    try:
        with Image.open(path) as im:
            im.load()
            scale = full_scale(im)
            im = upright(im)
            if im.mode == "F":
                arr = np.asarray(im, dtype=np.float32)
            elif im.mode.startswith("I"):
                if scale is None:
                    raise MapError(f"quality map {path} is a {im.mode} integer image of unknown bit depth; "
                                   "save it as .npy, a 16-bit PNG or an 8-bit grey image")
                arr = (np.asarray(im, dtype=np.float64) / scale).astype(np.float32)
            elif im.mode in ("1", "L", "LA", "La"):
                arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            else:  # P, RGB, RGBA, CMYK, ...: a grey map stored in colour, or a picture of a map
                rgb = np.asarray(im.convert("RGB"))
                if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                    raise MapError(f"quality map {path} is a colour image (a picture of a map?); give the "
                                   "exact map: .npy, a 16-bit PNG or an 8-bit grey image")
                arr = rgb[..., 0].astype(np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, MapError):
            raise
        raise MapError(f"cannot read quality map {path}: {e}") from None
    return check_map(torch.from_numpy(arr))


#: Suffixes :func:`save_map_exact` writes as images (lossless formats only).
EXACT_MAP_SUFFIXES = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".pgm": "PPM", ".bmp": "BMP"}


def save_map_exact(qmap: Tensor, path: str | Path, bits: int = 16) -> None:
    """Write the map itself, atomically, so that :func:`load_map` reads it back equal.

    ``.npy``: float32, exact. ``.png``, ``.tif``/``.tiff``, ``.pgm``: grey integers ``round(q * (2^bits - 1))``
    with ``bits`` 16 (default; within 7.7e-6 of q) or 8 (within 0.002); ``.bmp``: 8 bits only. Reading back
    gives ``round(q * (2^bits - 1)) / (2^bits - 1)`` exactly, and writing that again gives the same file.

    Args:
        qmap: (1, 1, H, W), (1, H, W) or (H, W) in [0, 1] (checked by :func:`check_map`).
        bits: 16 or 8, for image formats.

    Raises:
        MapError: a bad map, an unknown or lossy suffix (JPEG, WebP: they would not load back equal), or a
            bit depth the format cannot hold.
    """
    from .io import atomic_write

    m = check_map(torch.as_tensor(qmap).detach().cpu())
    if m.size(0) != 1:
        raise MapError(f"save one map at a time, got a batch of {m.size(0)}")
    m = m[0, 0].numpy()
    path = Path(path)
    suffix = path.suffix.lower()
    import io as _io

    buf = _io.BytesIO()
    if suffix == ".npy":
        np.save(buf, m.astype(np.float32))
        atomic_write(path, buf.getvalue())
        return
    if suffix not in EXACT_MAP_SUFFIXES:
        raise MapError(f"cannot write an exact quality map as {suffix or 'a file without suffix'}: use .npy, "
                       f"{', '.join(sorted(EXACT_MAP_SUFFIXES))} (lossy formats would not load back equal)")
    if bits not in (8, 16) or (bits == 16 and suffix == ".bmp"):
        raise MapError(f"a {suffix} quality map takes 8" + (" or 16" if suffix != ".bmp" else "") + f" bits, not {bits}")
    from PIL import Image

    if bits == 16:
        im = Image.fromarray(np.round(m.astype(np.float64) * 65535).astype(np.uint16))
    else:
        im = Image.fromarray(np.round(m.astype(np.float64) * 255).astype(np.uint8))
    im.save(buf, format=EXACT_MAP_SUFFIXES[suffix])
    atomic_write(path, buf.getvalue())


def save_map(qmap: Tensor, path: str | Path) -> None:
    """Write a map atomically: ``.npy`` (exact float32) or a 16-bit image (``.png``, ``.tif``, ``.pgm``;
    ``.bmp``: 8-bit); see :func:`save_map_exact`, which this calls, for what loads back and the errors."""
    save_map_exact(qmap, path, bits=8 if Path(path).suffix.lower() == ".bmp" else 16)
