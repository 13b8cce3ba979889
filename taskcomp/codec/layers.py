"""Building blocks of the SFT codec.

The layer names and parameter layouts follow the published SFT codec (Song, Choi & Han, ICCV 2021) so that
its checkpoints load by key; only the widths are configurable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from torch import Tensor, nn

__all__ = ["conv", "deconv", "SimplifiedGDN", "SFT", "SFTResblk", "condition_net", "condition_down", "condition_up"]


def conv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """Convolution with reflect padding ("down" in the reference when stride is 2)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, padding_mode="reflect")


def deconv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that upsamples exactly by ``stride`` ("up" in the reference)."""
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, output_padding=stride - 1
    )


class SimplifiedGDN(GDN):
    """The reference's GDN1: ``x / (beta + gamma |x| + 1e-4)``; inverse ``x * (beta + gamma |x|)``.

    Differs from CompressAI's ``GDN1`` by the 1e-4 in the forward direction (kept for checkpoint fidelity).
    Parameters and buffers (``beta``, ``gamma``, ``*_reparam.*``) are CompressAI's, so keys match.
    """

    def forward(self, x: Tensor) -> Tensor:
        C = x.size(1)
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma).reshape(C, C, 1, 1)
        norm = F.conv2d(torch.abs(x), gamma, beta)
        if self.inverse:
            return x * norm
        return x / (norm + 1e-4)


class SFT(nn.Module):
    """Spatial feature transform: ``x * (1 + gamma(c)) + beta(c)``.

    The condition ``c`` (B, cond_ch, h, w) is average-pooled to the feature size (B, C, H, W) first.

    Args:
        channels: feature channels C.
        cond_ch: condition channels.
        hidden: width of the shared conv (128 in the reference).
        kernel_size: kernel of all three convs (3 in the reference).
    """

    def __init__(self, channels: int, cond_ch: int, hidden: int = 128, kernel_size: int = 3):
        super().__init__()
        pad = kernel_size // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(cond_ch, hidden, kernel_size, padding=pad), nn.ReLU(inplace=True))
        self.mlp_gamma = nn.Conv2d(hidden, channels, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden, channels, kernel_size, padding=pad)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        if cond.shape[-2:] != x.shape[-2:]:
            cond = F.adaptive_avg_pool2d(cond, x.shape[-2:])
        h = self.mlp_shared(cond)
        return x * (1 + self.mlp_gamma(h)) + self.mlp_beta(h)


class SFTResblk(nn.Module):
    """Residual block ``x + conv_1(lrelu(norm_1(conv_0(lrelu(norm_0(x, c))), c)))`` with SFT norms."""

    def __init__(self, channels: int, cond_ch: int, hidden: int = 128, kernel_size: int = 3):
        super().__init__()
        self.conv_0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm_0 = SFT(channels, cond_ch, hidden, kernel_size)
        self.norm_1 = SFT(channels, cond_ch, hidden, kernel_size)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, cond), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, cond), 0.2))
        return x + dx


def condition_net(in_ch: int, hidden: tuple[int, int], out_ch: int) -> nn.Sequential:
    """Three 3x3 convs ``in -> hidden[0] -> hidden[1] -> out`` with LeakyReLU(0.1) (keys .0, .2, .4)."""
    return nn.Sequential(
        conv(in_ch, hidden[0], 3, 1),
        nn.LeakyReLU(0.1, inplace=True),
        conv(hidden[0], hidden[1], 3, 1),
        nn.LeakyReLU(0.1, inplace=True),
        conv(hidden[1], out_ch, 3, 1),
    )


def condition_down(ch: int) -> nn.Sequential:
    """Halve a condition's resolution: 3x3 stride-2 conv, LeakyReLU, 1x1 conv (keys .0, .2)."""
    return nn.Sequential(conv(ch, ch, 3, 2), nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(ch, ch, 1))


def condition_up(ch: int) -> nn.Sequential:
    """Double a condition's resolution: 3x3 stride-2 transposed conv, LeakyReLU, 1x1 conv (keys .0, .2)."""
    return nn.Sequential(deconv(ch, ch, 3, 2), nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(ch, ch, 1))
