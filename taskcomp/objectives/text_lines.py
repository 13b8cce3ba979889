"""Per-line quality search for documents: the lowest quality level at which each text line still reads as on
the original.

A task-aware map made without gradients. The codec reconstructs the page once per candidate level (uniform
maps, rounding quantisation, no entropy coding); easyocr's recogniser reads every text line of each
reconstruction; each line gets the lowest level whose reading stays within ``tolerance`` (CER) of the
original's reading of that line, and the background gets the lowest level. It solves, line by line, the
constrained form of the map objective (least rate such that the text loss stays under a bound), the way
block-level encoders choose a quantiser per block by trial coding; the SFT codec's quality map is local, so a
line's reading under a uniform level predicts its reading under a map that gives it that level.

Cost: one codec forward pass and one recogniser pass over the lines per level, shared by every tolerance.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .text import TextObjective, cer

__all__ = ["LineLevels", "line_levels", "line_map"]

#: Candidate levels (quality map values) tried per line by default.
DEFAULT_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)


class LineLevels(dict):
    """Readings per level: ``levels`` (sorted), ``boxes`` (x0, y0, x1, y1 in the image's pixels), ``original``
    (the original's reading per box) and ``cer`` (n_levels, n_boxes) tensor of each line's CER vs the original."""


@torch.no_grad()
def line_levels(codec, objective: TextObjective, x: Tensor, boxes, levels=DEFAULT_LEVELS) -> LineLevels:
    """Read every box of x under every uniform level.

    Args:
        codec: an SFT codec; x is reconstructed with ``codec(x, q, quantize="round")``.
        objective: the text objective (its easyocr recogniser reads the boxes, :meth:`TextObjective.read_boxes`).
        x: (1, 3, H, W) image in [0, 1] at the resolution it will be coded at.
        boxes: ``[(x0, y0, x1, y1, ...), ...]`` text boxes in x's pixels (e.g. the lines easyocr finds on the
            original; extra fields ignored).
        levels: candidate quality levels in [0, 1].

    Raises:
        ValueError: x is not one image, or a level lies outside [0, 1].
    """
    if x.dim() != 4 or x.size(0) != 1:
        raise ValueError(f"line_levels takes one image (1, 3, H, W), got shape {tuple(x.shape)}")
    levels = sorted(float(v) for v in levels)
    if not levels or levels[0] < 0 or levels[-1] > 1:
        raise ValueError(f"levels must be numbers in [0, 1], got {levels}")
    boxes = [tuple(b[:4]) for b in boxes]
    original = [t for _, t, _ in objective.read_boxes(x[0], boxes)]
    table = torch.zeros(len(levels), len(boxes))
    H, W = x.shape[-2:]
    for i, q in enumerate(levels):
        x_hat = codec(x, torch.full((1, 1, H, W), q, device=x.device), quantize="round")["x_hat"].clamp(0, 1)
        read = [t for _, t, _ in objective.read_boxes(x_hat[0], boxes)]
        table[i] = torch.tensor([cer(o, r) if o else float(bool(r)) for o, r in zip(original, read)])
    return LineLevels(levels=levels, boxes=boxes, original=original, cer=table)


def line_map(found: LineLevels, size: tuple[int, int], tolerance: float, margin: int = 2) -> tuple[Tensor, dict]:
    """The map (1, 1, H, W) in [0, 1]: each box at the lowest level whose reading is within ``tolerance`` CER of
    the original's (the highest level when none is), grown by ``margin`` px; the lowest level elsewhere. Where
    boxes overlap the higher level wins. Returns the map and a summary (mean level of the boxes, share of boxes
    that met the tolerance)."""
    H, W = size
    levels = found["levels"]
    m = torch.full((1, 1, H, W), levels[0])
    ok = found["cer"] <= tolerance + 1e-9  # (levels, boxes)
    chosen = []
    for j, (x0, y0, x1, y1) in enumerate(found["boxes"]):
        hits = ok[:, j].nonzero()
        q = levels[int(hits[0])] if len(hits) else levels[-1]
        chosen.append((q, bool(len(hits))))
        ys, xs = slice(max(0, int(y0) - margin), int(y1) + 1 + margin), slice(max(0, int(x0) - margin), int(x1) + 1 + margin)
        m[..., ys, xs] = m[..., ys, xs].clamp_min(q)
    info = {"line_level_mean": sum(q for q, _ in chosen) / len(chosen) if chosen else None,
            "lines_within_tolerance": sum(k for _, k in chosen) / len(chosen) if chosen else None}
    return m, info
