"""Running a fully convolutional stage on overlapping tiles, to bound its peak memory.

The last two stages of the SFT synthesis run at 1/2 and full resolution. On the CPU in float64 (the default
decoder, see :meth:`SFTCodec.decompress`) PyTorch convolves through im2col buffers of ``C * k * k`` values per
pixel, so decoding needs ~6 KB per pixel if those stages see the whole image at once (70 GB for a 12 MP photo).
Run on tiles whose halo covers the stage's receptive field, each kept output pixel is computed from exactly the
inputs it would see on the whole image, so the result is the same up to floating-point summation order (~1e-13
in float64; a few 8-bit values may move by 1 in float32).

This is the tiled inference common to learned image codecs and super-resolution; CompressAI has no helper for
it, hence this small one.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["run_tiled"]


def run_tiled(fn: Callable[..., Tensor], inputs: Sequence[Tensor], scale: int, tile: int, halo: int) -> Tensor:
    """``fn(*inputs)`` computed tile by tile.

    Args:
        fn: a translation-equivariant stage: inputs (B, C_i, h, w), all the same h and w, to an output
            (B, C, scale * h, scale * w) whose pixel (scale * i + a, scale * j + b) depends only on inputs
            within ``halo`` positions of (i, j).
        inputs: the stage's inputs.
        scale: the stage's upsampling factor (an int >= 1).
        tile: side of the kept part of a tile, in input positions (>= 1). An input no larger than one tile
            runs whole, so small images take exactly the untiled path.
        halo: input positions added on each side of a tile (>= 0); at least the stage's receptive-field radius,
            or tile borders show in the output.

    Returns:
        The output, (B, C, scale * h, scale * w), on the inputs' device and in ``fn``'s dtype.

    Raises:
        ValueError: inputs of different sizes, or a tile < 1, scale < 1 or halo < 0.
    """
    if tile < 1 or scale < 1 or halo < 0:
        raise ValueError(f"tile and scale must be >= 1 and halo >= 0, got tile={tile}, scale={scale}, halo={halo}")
    h, w = inputs[0].shape[-2:]
    if any(t.shape[-2:] != (h, w) for t in inputs):
        raise ValueError(f"tiled inputs must share their size, got {[tuple(t.shape[-2:]) for t in inputs]}")
    if h <= tile and w <= tile:
        return fn(*inputs)
    out = None
    for r0 in range(0, h, tile):
        r1 = min(r0 + tile, h)
        a0, a1 = max(r0 - halo, 0), min(r1 + halo, h)
        for c0 in range(0, w, tile):
            c1 = min(c0 + tile, w)
            b0, b1 = max(c0 - halo, 0), min(c1 + halo, w)
            part = fn(*(t[..., a0:a1, b0:b1] for t in inputs))
            if out is None:
                out = torch.empty((*part.shape[:-2], scale * h, scale * w), dtype=part.dtype, device=part.device)
            out[..., scale * r0:scale * r1, scale * c0:scale * c1] = part[
                ..., scale * (r0 - a0):scale * (r1 - a0), scale * (c0 - b0):scale * (c1 - b0)]
            del part  # free the tile before the next one is computed
    return out
