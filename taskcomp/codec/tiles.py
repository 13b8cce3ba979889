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


def run_tiled(
    fn: Callable[..., Tensor | tuple[Tensor, ...]],
    inputs: Sequence[Tensor],
    tile: int,
    halo: int,
    scale: int = 1,
    down: int = 1,
) -> Tensor | tuple[Tensor, ...]:
    """``fn(*inputs)`` computed tile by tile.

    Args:
        fn: a translation-equivariant stage: inputs (B, C_i, h, w), all the same h and w, to an output (or a tuple
            of outputs) (B, C, h * scale / down, w * scale / down) whose pixel at input position (i, j) depends only
            on inputs within ``halo`` positions of it.
        inputs: the stage's inputs.
        tile: side of the kept part of a tile, in input positions (>= 1, a multiple of ``down``). An input no
            larger than one tile runs whole, so small images take exactly the untiled path.
        halo: input positions added on each side of a tile (>= 0, a multiple of ``down``); at least the stage's
            receptive-field radius, or tile borders show in the output.
        scale: the stage's upsampling factor (>= 1), e.g. 4 for the synthesis' last two stages.
        down: its downsampling factor (>= 1; h and w multiples of it), e.g. 2 for the analysis' first two stages.

    Returns:
        What ``fn`` returns, assembled: on the inputs' device, in ``fn``'s dtype.

    Raises:
        ValueError: inputs of different sizes, or a bad tile, halo, scale or down.
    """
    if tile < 1 or scale < 1 or down < 1 or halo < 0 or tile % down or halo % down:
        raise ValueError(
            f"need tile, scale, down >= 1, halo >= 0, tile and halo multiples of down; got tile={tile}, "
            f"halo={halo}, scale={scale}, down={down}"
        )
    h, w = inputs[0].shape[-2:]
    if any(t.shape[-2:] != (h, w) for t in inputs):
        raise ValueError(f"tiled inputs must share their size, got {[tuple(t.shape[-2:]) for t in inputs]}")
    if h % down or w % down:
        raise ValueError(f"tiled inputs must be a multiple of {down} in size, got {h}x{w}")
    if h <= tile and w <= tile:
        return fn(*inputs)

    def at(v: int) -> int:  # an input position -> the output's
        return v * scale // down

    outs: list[Tensor] | None = None
    single = False
    for r0 in range(0, h, tile):
        r1 = min(r0 + tile, h)
        a0, a1 = max(r0 - halo, 0), min(r1 + halo, h)
        for c0 in range(0, w, tile):
            c1 = min(c0 + tile, w)
            b0, b1 = max(c0 - halo, 0), min(c1 + halo, w)
            parts = fn(*(t[..., a0:a1, b0:b1] for t in inputs))
            if isinstance(parts, Tensor):
                parts, single = (parts,), True
            if outs is None:
                outs = [torch.empty((*p.shape[:-2], at(h), at(w)), dtype=p.dtype, device=p.device) for p in parts]
            for o, p in zip(outs, parts):
                o[..., at(r0) : at(r1), at(c0) : at(c1)] = p[..., at(r0 - a0) : at(r1 - a0), at(c0 - b0) : at(c1 - b0)]
            del parts  # free the tile before the next one is computed
    return outs[0] if single else tuple(outs)
