"""Image and file I/O: reading any image mode as RGB, atomic writes."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "ImageError",
    "atomic_write",
    "save_csv",
    "save_figure",
    "load_image",
    "upright",
    "full_scale",
    "image_to_tensor",
    "tensor_to_image",
    "save_image",
]


class ImageError(ValueError):
    """An input image that cannot be used (missing, empty, not an image, truncated)."""


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    A reader never sees a half-written file, and an interrupted write leaves any old file intact. Missing
    folders are made.

    Raises:
        OSError: the cause's class (PermissionError, IsADirectoryError, ...; the same ``errno`` and ``strerror``)
            with ``filename`` = ``path``, whose message is one line naming ``path`` (never the temporary file)
            and the cause, e.g. "cannot write x.tcz: No space left on device".
    """
    path = Path(path)
    try:
        _atomic_write(path, data)
    except OSError as e:
        if getattr(e, "taskcomp_named", False):
            raise
        raise _named_error(e, path, f"cannot write {path}: {e.strerror or e}") from e


#: Per OSError class, its subclass whose str() is the one-line message alone (:func:`_named_error`).
_NAMED_ERRORS: dict = {}


def _named_error(e: OSError, path, message: str) -> OSError:
    """An error of ``e``'s class (``except PermissionError`` still catches it) with ``e``'s errno and strerror,
    ``filename`` = ``path`` and str() = ``message`` (OSError's own str() would put the errno and the file name
    around the strerror). Pickles as the plain class."""
    base = type(e)
    cls = _NAMED_ERRORS.get(base)
    if cls is None:

        def __str__(self):
            return str(self.args[0]) if self.args else ""

        def __reduce__(self):
            return (base, (self.errno, self.strerror, self.filename))

        cls = type(
            base.__name__,
            (base,),
            {
                "__str__": __str__,
                "__reduce__": __reduce__,
                "taskcomp_named": True,
                "__module__": base.__module__,
                "__qualname__": base.__qualname__,
            },
        )
        _NAMED_ERRORS[base] = cls
    try:
        err = cls(message)
    except Exception:  # an OSError subclass with its own constructor: a plain OSError with the same errno
        err = _named_error(OSError(e.errno, e.strerror), path, message)
        return err
    err.errno, err.strerror, err.filename = e.errno, e.strerror, os.fspath(path)
    return err


def _atomic_write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, f"a file stands where its folder {path.parent} should be") from None
    if path.is_dir():
        raise IsADirectoryError(21, "it is a folder")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_csv(df, path: str | Path) -> None:
    """Write a pandas DataFrame as CSV (no index), atomically."""
    atomic_write(path, df.to_csv(index=False).encode())


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Save a matplotlib figure (format from the suffix), atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    atomic_write(path, buf.getvalue())


def full_scale(im: Image.Image) -> float | None:
    """The value of full intensity in a single-channel integer image, from its bit depth, never its content.

    16-bit modes (``I;16*``): 65535. Mode ``I`` (32-bit integer in Pillow): PNG and PGM/PPM files hold at
    most 16 bits there (Pillow rescales PGM to the 16-bit range by its maxval): 65535; TIFF: 2^BitsPerSample - 1
    (2^(bits-1) - 1 for signed samples). Other files in mode ``I``: None (unknown depth). 8-bit modes: 255;
    ``F`` (float): None (no depth: values are intensities as they are). Call it on the image as opened (before
    any transpose, which drops the file's tags).
    """
    mode = im.mode
    if mode.startswith("I;16"):
        return 65535.0
    if mode == "I":
        fmt = getattr(im, "format", None)
        if fmt in ("PNG", "PPM"):
            return 65535.0
        tags = getattr(im, "tag_v2", None)
        if fmt == "TIFF" and tags is not None and tags.get(258):
            bits, fmt_code = tags[258], tags.get(339, 1)  # BitsPerSample, SampleFormat (2: signed)
            bits = int(bits[0] if isinstance(bits, tuple) else bits)
            signed = (fmt_code[0] if isinstance(fmt_code, tuple) else fmt_code) == 2
            return float(2 ** (bits - 1) - 1 if signed else 2**bits - 1)
        return None
    if mode == "F":
        return None
    return 255.0


def _to_rgb(im: Image.Image, scale: float | None = None) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8. Integer modes above 8 bits are scaled by their bit depth (``scale``, from
    :func:`full_scale` of the file as opened), not clipped and never by their content; float images (mode ``F``)
    must hold intensities in [0, 1]."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        scale = scale if scale is not None else (65535.0 if im.mode.startswith("I;16") else None)
        if scale is None:
            raise ValueError("32-bit integer image of unknown bit depth; save it as 8 or 16 bits per sample")
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(np.round(arr / scale * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ValueError("float image holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"float image values lie in [{lo:.4g}, {hi:.4g}]; a float image must hold intensities in [0, 1]"
            )
        arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Composite onto white: a transparent pixel's colour channels are undefined.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))


def upright(im: Image.Image) -> Image.Image:
    """``im`` turned as viewers show it: its EXIF Orientation tag (1-8) applied by Pillow's
    ``ImageOps.exif_transpose`` (the tag is then dropped). An image without the tag comes back as it is; one
    whose EXIF block cannot be parsed is kept as stored (what viewers do with it too)."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # a malformed EXIF block: Pillow raises several types
        return im
    if orientation in (None, 1):
        return im
    try:
        return ImageOps.exif_transpose(im)
    except Exception:
        return im


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file of any mode as (H, W, 3) uint8 RGB, upright.

    The EXIF Orientation tag is applied (:func:`upright`), so a phone photo stored sideways with
    Orientation=6 loads as viewers show it (W and H swapped against the stored pixels). Every image the
    package reads goes through here (CLI, recipes and their data layouts, training pools, benchmarks);
    quality-map images too (:func:`taskcomp.maps.load_map`).

    Raises:
        ImageError: one-line message for a missing, empty, non-image or truncated file.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image not found: {path}")
    if path.is_dir():
        raise ImageError(f"expected an image file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise ImageError(f"image file is empty: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            arr = _to_rgb(upright(im), full_scale(im))
    except UnidentifiedImageError:
        raise ImageError(f"not a readable image: {path}") from None
    except ImportError:  # an opener patched in by a dependency (ultralytics adds HEIF via pi-heif) lacks its plugin
        raise ImageError(f"not a readable image: {path} (no installed decoder identifies it)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large to decode safely: {path} ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot decode image {path}: {e}") from None
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"image has no pixels: {path}")
    return np.ascontiguousarray(arr)


def image_to_tensor(arr: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    a = np.ascontiguousarray(arr)
    if not a.flags.writeable:  # e.g. np.asarray of a PIL image; torch warns on read-only memory
        a = a.copy()
    return torch.from_numpy(a).permute(2, 0, 1)[None].float().div_(255.0)


def tensor_to_image(x: Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] -> (H, W, 3) uint8 (rounded, clamped)."""
    if x.dim() == 4:
        x = x[0]
    return x.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def save_image(arr_or_tensor, path: str | Path) -> None:
    """Save an RGB image atomically; the format follows the suffix (PNG if unknown)."""
    import io

    arr = arr_or_tensor if isinstance(arr_or_tensor, np.ndarray) else tensor_to_image(arr_or_tensor)
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    atomic_write(path, buf.getvalue())
