"""Quality-map generators (uniform, gradient, blobs, regions, halves, the training mixture), resizing and checks.

A quality map is a float tensor (B, 1, H, W) or array (H, W) with values in [0, 1]: 0 is the lowest
rate, 1 the highest.
"""

from __future__ import annotations

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
