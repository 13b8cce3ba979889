"""Quality-map files: :func:`load_map` reads ``.npy`` and images, :func:`save_map_exact` / :func:`save_map` write
them so that they load back equal."""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..io import atomic_write, full_scale, upright
from .generators import MapError, check_map

__all__ = ["load_map", "save_map", "save_map_exact", "EXACT_MAP_SUFFIXES"]


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
    try:
        with Image.open(path) as im:
            im.load()
            scale = full_scale(im)
            im = upright(im)
            if im.mode == "F":
                arr = np.asarray(im, dtype=np.float32)
            elif im.mode.startswith("I"):
                if scale is None:
                    raise MapError(
                        f"quality map {path} is a {im.mode} integer image of unknown bit depth; "
                        "save it as .npy, a 16-bit PNG or an 8-bit grey image"
                    )
                arr = (np.asarray(im, dtype=np.float64) / scale).astype(np.float32)
            elif im.mode in ("1", "L", "LA", "La"):
                arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            else:  # P, RGB, RGBA, CMYK, ...: a grey map stored in colour, or a picture of a map
                rgb = np.asarray(im.convert("RGB"))
                if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                    raise MapError(
                        f"quality map {path} is a colour image (a picture of a map?); give the "
                        "exact map: .npy, a 16-bit PNG or an 8-bit grey image"
                    )
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
    m = check_map(torch.as_tensor(qmap).detach().cpu())
    if m.size(0) != 1:
        raise MapError(f"save one map at a time, got a batch of {m.size(0)}")
    m = m[0, 0].numpy()
    path = Path(path)
    suffix = path.suffix.lower()
    buf = _io.BytesIO()
    if suffix == ".npy":
        np.save(buf, m.astype(np.float32))
        atomic_write(path, buf.getvalue())
        return
    if suffix not in EXACT_MAP_SUFFIXES:
        raise MapError(
            f"cannot write an exact quality map as {suffix or 'a file without suffix'}: use .npy, "
            f"{', '.join(sorted(EXACT_MAP_SUFFIXES))} (lossy formats would not load back equal)"
        )
    if bits not in (8, 16) or (bits == 16 and suffix == ".bmp"):
        raise MapError(
            f"a {suffix} quality map takes 8" + (" or 16" if suffix != ".bmp" else "") + f" bits, not {bits}"
        )
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
