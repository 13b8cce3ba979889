"""Image-quality metrics and the Bjontegaard delta rate."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["psnr", "ms_ssim", "MS_SSIM_MIN_SIDE", "bd_rate", "bpp_of_bytes"]


def bpp_of_bytes(n_bytes: int, height: int, width: int) -> float:
    """Real bits per pixel of a file of ``n_bytes`` for an image of height x width."""
    return 8.0 * n_bytes / (height * width)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (peak 255); inf for identical images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


#: pytorch-msssim's MS-SSIM needs more than (win_size - 1) * 2**4 = 160 px per side (5 scales, 11-px window).
MS_SSIM_MIN_SIDE = 161


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (Wang, Simoncelli & Bovik 2003; pytorch-msssim, 5 scales, 11-px Gaussian window, data range 255)
    between two (H, W, 3) uint8 images, in [0, 1] (1: identical).

    Returns NaN (missing) for images under :data:`MS_SSIM_MIN_SIDE` px on a side, where the five-scale
    measure is not defined: no single-scale SSIM is reported under this name.
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return float("nan")
    ta = torch.from_numpy(a).permute(2, 0, 1)[None].float()
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].float()
    return float(_ms_ssim(ta, tb, data_range=255.0))


def bd_rate(rate_ref, dist_ref, rate_test, dist_test) -> float:
    """Bjontegaard delta rate (%) of ``test`` against ``ref`` over their common distortion range.

    Piecewise-cubic (PCHIP) interpolation of log-rate as a function of distortion, integrated over the
    overlap of the two distortion ranges (the variant used by current codec benchmarks; the 2001 original
    fits a cubic polynomial). Negative means ``test`` needs fewer bits for the same quality.

    Raises:
        ValueError: fewer than two points per curve or no overlap in distortion.
    """
    from scipy.interpolate import PchipInterpolator

    def prep(r, d):
        r, d = np.asarray(r, float), np.asarray(d, float)
        keep = np.isfinite(r) & np.isfinite(d) & (r > 0)
        r, d = r[keep], d[keep]
        order = np.argsort(d)
        d, lr = d[order], np.log(r[order])
        # PCHIP needs strictly increasing x: merge equal distortions.
        d_u, idx = np.unique(d, return_index=True)
        return d_u, lr[idx]

    d1, lr1 = prep(rate_ref, dist_ref)
    d2, lr2 = prep(rate_test, dist_test)
    if len(d1) < 2 or len(d2) < 2:
        raise ValueError("BD-rate needs at least two points per curve")
    lo, hi = max(d1.min(), d2.min()), min(d1.max(), d2.max())
    if hi <= lo:
        raise ValueError("BD-rate: the curves share no distortion range")
    grid = np.linspace(lo, hi, 1000)
    f1 = PchipInterpolator(d1, lr1)(grid)
    f2 = PchipInterpolator(d2, lr2)(grid)
    avg_diff = (
        np.trapezoid(f2 - f1, grid) / (hi - lo) if hasattr(np, "trapezoid") else np.trapz(f2 - f1, grid) / (hi - lo)
    )
    return float((math.exp(avg_diff) - 1) * 100)
