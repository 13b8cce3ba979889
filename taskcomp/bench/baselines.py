"""JPEG and WebP baselines through Pillow quality sweeps."""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

__all__ = ["PILLOW_CODECS", "pillow_roundtrip"]

#: name -> (Pillow format, quality sweep). Quality 1-100 in Pillow for both.
PILLOW_CODECS = {
    "jpeg": ("JPEG", [5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    "webp": ("WEBP", [5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
}


def pillow_roundtrip(img: np.ndarray, codec: str, quality: int) -> tuple[np.ndarray, int, float, float]:
    """Encode and decode (H, W, 3) uint8 with Pillow.

    Returns:
        (decoded uint8 image, file size in bytes, encode seconds, decode seconds).
    """
    fmt, _ = PILLOW_CODECS[codec]
    im = Image.fromarray(img)
    buf = io.BytesIO()
    t0 = time.perf_counter()
    # JPEG with Pillow's default 4:2:0 subsampling; WebP lossy with its default method 4.
    im.save(buf, format=fmt, quality=int(quality))
    t1 = time.perf_counter()
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as d:
        dec = np.asarray(d.convert("RGB"))
    t2 = time.perf_counter()
    return dec, len(data), t1 - t0, t2 - t1
