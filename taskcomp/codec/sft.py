"""The variable-rate SFT codec (Song, Choi & Han, ICCV 2021) on CompressAI's entropy models.

A mean-scale hyperprior autoencoder whose encoder and hyper-encoder features are modulated per pixel by a
quality map ``qmap`` in [0, 1] through spatial feature transforms (SFT). The decoder never sees the map; it
derives its own condition from the hyper-latent and the latent.

Layer names follow the published model so that its state_dict loads by key (see ``checkpoint.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models import CompressionModel
from torch import Tensor, nn

from .layers import SFT, SFTResblk, SimplifiedGDN, condition_down, condition_net, condition_up, conv, deconv
from .tiles import run_tiled

__all__ = [
    "SFTConfig",
    "SFTCodec",
    "QUANTIZE_MODES",
    "pad_to_multiple",
    "padded_size",
    "lambda_of_q",
    "default_synthesis",
    "LAMBDA_MIN",
    "LAMBDA_MAX",
    "ste_round",
]

#: Quantisation modes of :meth:`SFTCodec.forward`.
#:  - ``noise``: additive uniform noise for rate and reconstruction (CompressAI training).
#:  - ``mixed``: noise for the rate, straight-through rounding for the decoder input (default in training mode).
#:  - ``ste``: straight-through rounding for both: values equal ``round``, but rate and reconstruction
#:    keep a non-zero gradient with respect to the input and the quality map (map optimisation).
#:  - ``round``: hard rounding as in the bitstream (default in eval mode, as CompressAI's); zero gradient
#:    through rounding.
QUANTIZE_MODES = ("noise", "mixed", "ste", "round")

#: Total stride of the encoder + hyper-encoder: inputs are padded to a multiple of this.
PAD_MULTIPLE = 64
#: Smallest padded side: below it the hyper-encoder's reflect-padded 5x5 convs see a 1x1 or 2x2 input.
MIN_PADDED = 128
#: Receptive-field radius of the synthesis' last two stages, in positions at 1/4 resolution, rounded up with a
#: margin: measured as the support of the gradient of a 4x4 block of outputs (tests/test_tiles.py re-measures it).
G_S_TAIL_HALO = 6
#: Receptive-field radius of the analysis' first two stages, in pixels, rounded up with a margin to a multiple of 2
#: (measured like G_S_TAIL_HALO; tests/test_tiles.py re-measures it).
G_A_HEAD_HALO = 16
#: Tile side in pixels of the encoder's first two stages (:meth:`SFTCodec.compress`): a 4 MP encode peaked at
#: 1.8 GB with it, 3.0 GB untiled, and took 22 s instead of 36 s (one thread), the same file size.
ENCODE_TILE = 512
#: Tile side (positions at 1/4 resolution: 512 px) of the decoder's last two stages: a float64 decode of 4 MP peaked
#: at 3.0 GB with it (2.7 GB with 96, 3.9 GB with 160; 25 GB whole), as fast as untiled.
DECODE_TILE = 128


#: lambda(q) of every codec trained before issue 35: ``1e-3 * exp(4.382 q)`` (the published SFT model's).
LAMBDA_MIN = 1e-3
LAMBDA_MAX = 1e-3 * math.exp(4.382)


def lambda_of_q(q: Tensor | float, lambda_min: float = LAMBDA_MIN, lambda_max: float = LAMBDA_MAX) -> Tensor | float:
    """Rate-distortion trade-off of quality level ``q``, log-linear from ``lambda_min`` (q = 0) to ``lambda_max``
    (q = 1): ``lambda(q) = lambda_min * (lambda_max / lambda_min) ** q``.

    The defaults are the published SFT model's ``1e-3 * exp(4.382 q)`` (q = 0 gives 0.001, q = 1 about 0.080).
    A codec's own range is part of its config (:attr:`SFTConfig.lambda_min` / ``lambda_max``; use
    :meth:`SFTConfig.lambda_of_q`). The training loss is ``bpp + 255^2 * mean(lambda(m) * (x_hat - x)^2)`` with
    ``m`` the per-pixel quality map.
    """
    slope = math.log(lambda_max / lambda_min)
    if isinstance(q, Tensor):
        return lambda_min * torch.exp(slope * q)
    return lambda_min * math.exp(slope * q)


@dataclass(frozen=True)
class SFTConfig:
    """Widths of the SFT codec. The defaults are the published (``paper``) configuration.

    Attributes:
        channels: encoder widths after each of the four first stages (full res, /2, /4, /8).
        M: latent channels (at /16).
        Z: hyper-latent channels (at /64); also the hyper-encoder width.
        cond: width of every condition feature map fed to SFT layers.
        cond_hidden: hidden widths of the three-conv condition nets (g1, h1, gs1).
        sft_hidden: width of the shared conv inside each SFT layer.
        sft_kernel: kernel size of the SFT convs.
        gs0: widths of the decoder's z-to-condition upsampler (``qmap_feature_gs0``).
        context: entropy model of the latent y: None (the mean-scale hyperprior of the paper), ``"checkerboard"``
            (He et al. 2021) or ``"raster"`` (Minnen et al. 2018's serial context); see
            :class:`taskcomp.codec.sft_context.SFTContextCodec`.
        mixture: Gaussian components per latent with a context (1: one Gaussian; K > 1: a mixture as in Cheng
            et al. 2020).
        attention: add CompressAI's ``AttentionBlock`` (Cheng et al. 2020's simplified attention module) to the
            analysis (at /4 and on y) and the synthesis (on y_hat and at /4). New modules only: with False the
            layer names and weights are the paper's.
        lambda_min, lambda_max: the rate-distortion trade-off the codec was trained with at q = 0 and q = 1
            (:func:`lambda_of_q`, log-linear in between). It fixes the codec's rate range, so it is part of what
            the codec is and travels with its checkpoint; checkpoints written before it existed load with the
            published defaults, which they were trained with.
    """

    channels: tuple[int, int, int, int] = (48, 96, 192, 192)
    M: int = 192
    Z: int = 192
    cond: int = 64
    cond_hidden: tuple[int, int] = (256, 128)
    sft_hidden: int = 128
    sft_kernel: int = 3
    gs0: tuple[int, int] = (96, 48)
    context: str | None = None
    mixture: int = 1
    attention: bool = False
    lambda_min: float = LAMBDA_MIN
    lambda_max: float = LAMBDA_MAX

    def __post_init__(self):
        if not (0 < self.lambda_min < self.lambda_max and math.isfinite(self.lambda_max)):
            raise ValueError(
                f"SFTConfig needs 0 < lambda_min < lambda_max < inf, got {self.lambda_min}, {self.lambda_max}"
            )

    def lambda_of_q(self, q: Tensor | float) -> Tensor | float:
        """This codec's lambda(q) (:func:`lambda_of_q` over ``lambda_min`` .. ``lambda_max``)."""
        return lambda_of_q(q, self.lambda_min, self.lambda_max)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; the lambda range only where it is not the published one, so that checkpoints of
        codecs trained with it still load in taskcomp versions from before the field existed."""
        d = asdict(self)
        if (self.lambda_min, self.lambda_max) == (LAMBDA_MIN, LAMBDA_MAX):
            del d["lambda_min"], d["lambda_max"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SFTConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def padded_size(h: int, w: int) -> tuple[int, int]:
    """Size the codec works at: each side rounded up to a multiple of 64, and at least 128."""
    return (
        max(MIN_PADDED, -(-h // PAD_MULTIPLE) * PAD_MULTIPLE),
        max(MIN_PADDED, -(-w // PAD_MULTIPLE) * PAD_MULTIPLE),
    )


def pad_to_multiple(x: Tensor) -> Tensor:
    """Replicate-pad the bottom and right of (B, C, H, W) to :func:`padded_size`.

    Replicate (not reflect) so that any size down to 1x1 pads.
    """
    H, W = x.shape[-2:]
    Hp, Wp = padded_size(H, W)
    if (Hp, Wp) == (H, W):
        return x
    return F.pad(x, (0, Wp - W, 0, Hp - H), mode="replicate")


def ste_round(x: Tensor, offset: Tensor | None = None) -> Tensor:
    """Round ``x - offset`` to integers and add ``offset`` back; the gradient passes as identity."""
    if offset is None:
        return x + (torch.round(x) - x).detach()
    return x + (torch.round(x - offset) + offset - x).detach()


_ste_round = ste_round  # the name the codec modules use inside


def default_synthesis(exact: bool) -> str:
    """The synthesis :meth:`SFTCodec.decompress` uses when none is given: ``"float64"`` for the exact coding path
    (.tcz version 2), ``"float32"`` otherwise (version 1)."""
    return "float64" if exact else "float32"


class SFTCodec(CompressionModel):
    """Variable-rate SFT codec with CompressAI's model API.

    Args:
        config: widths (:class:`SFTConfig`); the default is the published layout.

    Shapes:
        x: (B, 3, H, W) in [0, 1]; qmap: (B, 1, H, W) in [0, 1]. Any H, W >= 1: inputs are padded to a
        multiple of 64 (at least 128) internally and outputs are cropped back.
    """

    def __init__(self, config: SFTConfig | None = None):
        super().__init__()
        cfg = config or SFTConfig()
        self.config = cfg
        c0, c1, c2, c3 = cfg.channels
        M, Z, C = cfg.M, cfg.Z, cfg.cond
        sft = dict(cond_ch=C, hidden=cfg.sft_hidden, kernel_size=cfg.sft_kernel)

        # Encoder: conditions g1 (full res) .. g5 (/16).
        self.qmap_feature_g1 = condition_net(4, cfg.cond_hidden, C)
        self.qmap_feature_g2 = condition_down(C)
        self.qmap_feature_g3 = condition_down(C)
        self.qmap_feature_g4 = condition_down(C)
        self.qmap_feature_g5 = condition_down(C)
        self.g_a0, self.g_a1, self.g_a2 = conv(3, c0, 5, 1), SimplifiedGDN(c0), SFT(c0, **sft)
        self.g_a3, self.g_a4, self.g_a5 = conv(c0, c1), SimplifiedGDN(c1), SFT(c1, **sft)
        self.g_a6, self.g_a7, self.g_a8 = conv(c1, c2), SimplifiedGDN(c2), SFT(c2, **sft)
        self.g_a9, self.g_a10, self.g_a11 = conv(c2, c3), SimplifiedGDN(c3), SFT(c3, **sft)
        self.g_a12, self.g_a13, self.g_a14 = conv(c3, M), SFTResblk(M, **sft), SFTResblk(M, **sft)
        if cfg.attention:
            from compressai.layers import AttentionBlock

            self.g_a_attn1, self.g_a_attn2 = AttentionBlock(c2), AttentionBlock(M)
            self.g_s_attn1, self.g_s_attn2 = AttentionBlock(M), AttentionBlock(c2)
            # Start each block near the identity (out = x + a * sigmoid(b) with sigmoid(b) ~ 0.018), so that
            # pretrained transforms keep working while the blocks learn.
            for blk in (self.g_a_attn1, self.g_a_attn2, self.g_s_attn1, self.g_s_attn2):
                nn.init.zeros_(blk.conv_b[-1].weight)
                nn.init.constant_(blk.conv_b[-1].bias, -4.0)

        # Hyper-encoder: conditions h1 (/16) .. h3 (/64).
        self.qmap_feature_h1 = condition_net(M + 1, cfg.cond_hidden, C)
        self.qmap_feature_h2 = condition_down(C)
        self.qmap_feature_h3 = condition_down(C)
        self.h_a0, self.h_a1, self.h_a2 = conv(M, Z, 3, 1), SFT(Z, **sft), nn.LeakyReLU(inplace=True)
        self.h_a3, self.h_a4, self.h_a5 = conv(Z, Z), SFT(Z, **sft), nn.LeakyReLU(inplace=True)
        self.h_a6, self.h_a7, self.h_a8 = conv(Z, Z), SFTResblk(Z, **sft), SFTResblk(Z, **sft)

        # Hyper-decoder (mean-scale): scales and means of y.
        self.h_s = nn.Sequential(
            deconv(Z, M),
            nn.LeakyReLU(inplace=True),
            deconv(M, M * 3 // 2),
            nn.LeakyReLU(inplace=True),
            conv(M * 3 // 2, M * 2, 3, 1),
        )

        # Decoder: condition derived from z_hat (gs0, /64 -> /16), then gs1 (/16) .. gs5 (full res).
        self.qmap_feature_gs0 = nn.Sequential(
            deconv(Z, cfg.gs0[0], 3),
            nn.LeakyReLU(0.1, inplace=True),
            deconv(cfg.gs0[0], cfg.gs0[1], 5),
            nn.LeakyReLU(0.1, inplace=True),
            conv(cfg.gs0[1], cfg.gs0[1], 3, 1),
        )
        self.qmap_feature_gs1 = condition_net(M + cfg.gs0[1], cfg.cond_hidden, C)
        self.qmap_feature_gs2 = condition_up(C)
        self.qmap_feature_gs3 = condition_up(C)
        self.qmap_feature_gs4 = condition_up(C)
        self.qmap_feature_gs5 = condition_up(C)
        self.g_s0, self.g_s1 = SFTResblk(M, **sft), SFTResblk(M, **sft)
        self.g_s2, self.g_s3, self.g_s4 = deconv(M, c3), SimplifiedGDN(c3, inverse=True), SFT(c3, **sft)
        self.g_s5, self.g_s6, self.g_s7 = deconv(c3, c2), SimplifiedGDN(c2, inverse=True), SFT(c2, **sft)
        self.g_s8, self.g_s9, self.g_s10 = deconv(c2, c1), SimplifiedGDN(c1, inverse=True), SFT(c1, **sft)
        self.g_s11, self.g_s12, self.g_s13 = deconv(c1, c0), SimplifiedGDN(c0, inverse=True), SFT(c0, **sft)
        self.g_s14 = conv(c0, 3, 5, 1)

        self.entropy_bottleneck = EntropyBottleneck(Z)
        self.gaussian_conditional = GaussianConditional(None)

    # ------------------------------------------------------------------ transforms
    def g_a(self, x: Tensor, qmap: Tensor, tile: int | None = None) -> Tensor:
        """Analysis transform: (B,3,H,W), (B,1,H,W) -> y (B,M,H/16,W/16).

        ``tile``: run the first two stages (full -> 1/2 resolution, most of the memory) on tiles of ``tile`` x
        ``tile`` pixels with a :data:`G_A_HEAD_HALO` halo (:func:`~.tiles.run_tiled`): the same y up to float
        summation order. None: the whole image at once.
        """
        if tile is None:
            x, c = self._g_a_head(x, qmap)
        else:
            x, c = run_tiled(self._g_a_head, (x, qmap), tile=tile, halo=G_A_HEAD_HALO, down=2)
        c = self.qmap_feature_g3(c)
        x = self.g_a8(self.g_a7(self.g_a6(x)), c)
        if self.config.attention:
            x = self.g_a_attn1(x)
        c = self.qmap_feature_g4(c)
        x = self.g_a11(self.g_a10(self.g_a9(x)), c)
        c = self.qmap_feature_g5(c)
        x = self.g_a12(x)
        y = self.g_a14(self.g_a13(x, c), c)
        return self.g_a_attn2(y) if self.config.attention else y

    def _g_a_head(self, x: Tensor, qmap: Tensor) -> tuple[Tensor, Tensor]:
        """The analysis' first two stages: image and map at full resolution -> features and condition at 1/2."""
        c = self.qmap_feature_g1(torch.cat([qmap, x], dim=1))
        x = self.g_a2(self.g_a1(self.g_a0(x)), c)
        c = self.qmap_feature_g2(c)
        return self.g_a5(self.g_a4(self.g_a3(x)), c), c

    def h_a(self, y: Tensor, qmap: Tensor) -> Tensor:
        """Hyper-analysis: y and the map pooled to y's size -> z (B,Z,H/64,W/64)."""
        q = F.adaptive_avg_pool2d(qmap, y.shape[-2:])
        c = self.qmap_feature_h1(torch.cat([q, y], dim=1))
        x = self.h_a2(self.h_a1(self.h_a0(y), c))
        c = self.qmap_feature_h2(c)
        x = self.h_a5(self.h_a4(self.h_a3(x), c))
        c = self.qmap_feature_h3(c)
        x = self.h_a6(x)
        return self.h_a8(self.h_a7(x, c), c)

    def g_s(self, y_hat: Tensor, z_hat: Tensor, tile: int | None = None) -> Tensor:
        """Synthesis: y_hat (B,M,h,w) and z_hat (B,Z,h/4,w/4) -> x_hat (B,3,16h,16w), not clamped.

        ``tile``: run the last two stages (1/4 -> full resolution, most of the memory) on tiles of ``tile`` x
        ``tile`` positions at 1/4 resolution with a :data:`G_S_TAIL_HALO` halo (:func:`~.tiles.run_tiled`): the
        same pixels up to summation order, far less memory for large images. None: the whole image at once.
        """
        w = self.qmap_feature_gs0(z_hat)
        w = self.qmap_feature_gs1(torch.cat([w, y_hat], dim=1))
        x = self.g_s_attn1(y_hat) if hasattr(self, "g_s_attn1") else y_hat  # (the float64 twin has no config)
        x = self.g_s1(self.g_s0(x, w), w)
        w = self.qmap_feature_gs2(w)
        x = self.g_s4(self.g_s3(self.g_s2(x)), w)
        w = self.qmap_feature_gs3(w)
        x = self.g_s7(self.g_s6(self.g_s5(x)), w)
        if hasattr(self, "g_s_attn2"):
            x = self.g_s_attn2(x)
        # SFTCodec._g_s_tail, not self._g_s_tail: ``self`` may be the float64 twin (a plain nn.Module).
        if tile is None:
            return SFTCodec._g_s_tail(self, x, w)
        return run_tiled(lambda x, w: SFTCodec._g_s_tail(self, x, w), (x, w), tile=tile, halo=G_S_TAIL_HALO, scale=4)

    def _g_s_tail(self, x: Tensor, w: Tensor) -> Tensor:
        """The synthesis' last two stages: features x and condition w at 1/4 resolution -> the image."""
        w = self.qmap_feature_gs4(w)
        x = self.g_s10(self.g_s9(self.g_s8(x)), w)
        w = self.qmap_feature_gs5(w)
        x = self.g_s13(self.g_s12(self.g_s11(x)), w)
        return self.g_s14(x)

    # ------------------------------------------------------------------ entropy model helpers
    def z_likelihood(self, z_hat: Tensor) -> Tensor:
        """Per-element likelihoods of a hyper-latent ``z_hat`` under the factorised prior (lower-bounded as in
        :meth:`forward`); ``-log2`` of them are its bits."""
        eb = self.entropy_bottleneck
        perm = (1, 0, 2, 3)
        v = z_hat.permute(*perm).reshape(z_hat.size(1), 1, -1)
        lik, _, _ = eb._likelihood(v)
        if eb.use_likelihood_bound:
            lik = eb.likelihood_lower_bound(lik)
        return lik.reshape(z_hat.size(1), z_hat.size(0), *z_hat.shape[-2:]).permute(*perm)

    def y_likelihood(self, y_hat: Tensor, scales: Tensor, means: Tensor) -> Tensor:
        """Per-element likelihoods of a latent ``y_hat`` under the mean-scale Gaussian (lower-bounded as in
        :meth:`forward`); ``-log2`` of them are its bits."""
        gc = self.gaussian_conditional
        lik = gc._likelihood(y_hat, scales, means)
        if gc.use_likelihood_bound:
            lik = gc.likelihood_lower_bound(lik)
        return lik

    def z_medians(self) -> Tensor:
        """The factorised prior's per-channel medians, shaped ``(1, Z, 1, 1)``: the offsets ``z`` is rounded
        around."""
        return self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)

    # the names the codec modules use inside
    _z_likelihood, _y_likelihood, _z_medians = z_likelihood, y_likelihood, z_medians

    # ------------------------------------------------------------------ forward
    def _quantize_mode(self, quantize: str | None) -> str:
        """``quantize`` checked against :data:`QUANTIZE_MODES`; None: ``mixed`` in training, ``round`` in eval."""
        if quantize is None:
            quantize = "mixed" if self.training else "round"
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
        return quantize

    def forward(self, x: Tensor, qmap: Tensor, quantize: str | None = None) -> dict[str, Any]:
        """Differentiable pass.

        Args:
            x: (B, 3, H, W) in [0, 1].
            qmap: (B, 1, H, W) in [0, 1].
            quantize: one of :data:`QUANTIZE_MODES`; default (None) as CompressAI's models: ``"mixed"`` (noise)
                in training mode, ``"round"`` in eval mode, so an eval-mode forward is deterministic and equals
                the bitstream's quantisation.

        Returns:
            ``{"x_hat": (B,3,H,W) unclamped, "likelihoods": {"y", "z"}}``; the likelihoods cover the
            padded size, so the rate in bits per pixel is ``sum(-log2 l) / (H * W)`` for the real H, W.
        """
        quantize = self._quantize_mode(quantize)
        H, W = x.shape[-2:]
        x, qmap = pad_to_multiple(x), pad_to_multiple(qmap)
        # Under an autocast (bf16 training, taskcomp.training.codec), only the analysis and synthesis run in low
        # precision: everything from y to the likelihoods runs in float32, so the rate the loss sees is exact.
        amp = self._autocast_dtype(x)
        y = self.g_a(x, qmap)
        with torch.autocast(x.device.type, enabled=False):
            return self._forward_latent(y.float() if amp is not None else y, qmap, quantize, H, W, amp)

    @staticmethod
    def _autocast_dtype(x: Tensor) -> torch.dtype | None:
        """The low-precision dtype of an autocast active on ``x``'s device, or None."""
        dev = x.device.type
        return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None

    def _g_s_under(self, y_hat: Tensor, z_hat: Tensor, amp: torch.dtype | None) -> Tensor:
        """g_s, back under the caller's autocast (``amp``) when :meth:`forward` ran the rate model without it."""
        if amp is None:
            return self.g_s(y_hat, z_hat)
        with torch.autocast(y_hat.device.type, dtype=amp):
            return self.g_s(y_hat, z_hat).float()

    def _forward_latent(
        self, y: Tensor, qmap: Tensor, quantize: str, H: int, W: int, amp: torch.dtype | None
    ) -> dict[str, Any]:
        """:meth:`forward` from the latent y on: hyperprior, quantisation, likelihoods, synthesis."""
        z = self.h_a(y, qmap)

        if quantize in ("noise", "mixed"):
            z_hat = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        elif quantize == "ste":
            z_hat = _ste_round(z, self._z_medians())
        else:
            z_hat = torch.round(z - self._z_medians()) + self._z_medians()
        z_lik = self._z_likelihood(z_hat)

        scales, means = self.h_s(z_hat).chunk(2, 1)
        if quantize in ("noise", "mixed"):
            y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            y_lik = self._y_likelihood(y_noisy, scales, means)
            y_hat = y_noisy if quantize == "noise" else _ste_round(y, means)
        elif quantize == "ste":
            y_hat = _ste_round(y, means)
            y_lik = self._y_likelihood(y_hat, scales, means)
        else:
            y_hat = torch.round(y - means) + means
            y_lik = self._y_likelihood(y_hat, scales, means)

        x_hat = self._g_s_under(y_hat, z_hat, amp)[..., :H, :W]
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    # ------------------------------------------------------------------ bitstream
    def _coding_params(self, z_hat: Tensor, exact: bool) -> tuple[Tensor, Tensor, Tensor]:
        """What the range coder sees for y: (indexes int32 on the CPU, means and scales on z_hat's device).

        ``exact``: :class:`~taskcomp.codec.exact.ExactHyperDecoder` (the same bits on every device and thread
        count; .tcz version 2); otherwise the float ``h_s`` and CompressAI's ``build_indexes`` (version 1).
        """
        if not exact:
            scales, means = self.h_s(z_hat).chunk(2, 1)
            return self.gaussian_conditional.build_indexes(scales).cpu(), means, scales
        from .exact import exact_hyper_decoder, indexes_from_scales

        gc = self.gaussian_conditional
        scales64, means64 = exact_hyper_decoder(self.h_s)(z_hat).chunk(2, 1)
        indexes = indexes_from_scales(scales64, gc.scale_table, gc.lower_bound_scale.bound)
        # float64 -> float32 is one correctly rounded conversion: the same on every machine.
        to = dict(device=z_hat.device, dtype=z_hat.dtype)
        return indexes, means64.to(**to), scales64.to(**to)

    @torch.no_grad()
    def compress(self, x: Tensor, qmap: Tensor, exact: bool = True) -> dict[str, Any]:
        """Entropy-code ``x`` under ``qmap`` with rANS.

        Args:
            x: (B, 3, H, W) in [0, 1]; qmap: (B, 1, H, W) in [0, 1] (or one map for all); on the codec's device
                (entropy coding itself runs on the CPU). Checked first (:func:`taskcomp.checks.check_codec_inputs`:
                finite, in range, matching shapes, float): a bad tensor raises a one-line ValueError.
            exact: compute the coding parameters (y's scale indexes and means) in exact integer arithmetic
                (:mod:`taskcomp.codec.exact`), so any device or thread count decodes the file the same way
                (.tcz version 2); False: the float hyper-decoder (version 1 files).

        The analysis' full-resolution stages run on 512-px tiles (:data:`ENCODE_TILE`) to bound memory.

        Returns:
            ``{"strings": [y_strings, z_strings], "shape": (h, w) of z, "likelihoods": {"y", "z"}}``, one byte
            string per image; the likelihoods are those of the coded (rounded) latents, i.e. the estimated rate.
        """
        from ..checks import check_latents

        y, z_hat, z_strings = self._analyse_and_code_z(x, qmap)
        indexes, means, scales = self._coding_params(z_hat, exact)
        check_latents(y=y - means)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means)
        y_hat = torch.round(y - means) + means
        likelihoods = {"y": self._y_likelihood(y_hat, scales, means), "z": self._z_likelihood(z_hat)}
        return {"strings": [y_strings, z_strings], "shape": tuple(z_hat.shape[-2:]), "likelihoods": likelihoods}

    def _analyse_and_code_z(self, x: Tensor, qmap: Tensor) -> tuple[Tensor, Tensor, list[bytes]]:
        """The encoder up to y: inputs checked (:func:`taskcomp.checks.check_codec_inputs`: nothing unchecked
        reaches the range coder) and padded, y = g_a, z = h_a coded. Returns (y, z_hat, z_strings)."""
        from ..checks import check_codec_inputs, check_latents

        x, qmap = check_codec_inputs(self, x, qmap)
        x, qmap = pad_to_multiple(x), pad_to_multiple(qmap)
        y = self.g_a(x, qmap, tile=ENCODE_TILE)
        z = self.h_a(y, qmap)
        check_latents(z=z - self._z_medians())
        z_strings = self.entropy_bottleneck.compress(z)
        return y, self.entropy_bottleneck.decompress(z_strings, z.shape[-2:]), z_strings

    @torch.no_grad()
    def decompress(
        self,
        strings: list[list[bytes]],
        shape: tuple[int, int],
        size: tuple[int, int] | None = None,
        exact: bool = True,
        synthesis: str | None = None,
    ):
        """Decode the output of :meth:`compress`.

        Args:
            strings: ``[y_strings, z_strings]``.
            shape: (h, w) of z.
            size: (H, W) of the original image, to crop the padding; defaults to the padded size.
            exact: as given to :meth:`compress` (True for .tcz version 2, False for version 1).
            synthesis: ``"float64"`` (default when ``exact``): the synthesis transform runs in float64, so the
                decoded pixels do not depend on the thread count (measured) nor, to ~1e-13, on the device;
                ``"float32"`` (default otherwise): 4-5x faster on the CPU, :meth:`forward`'s arithmetic (up to
                summation order beyond one tile), but a few 8-bit values may differ by 1 between thread counts
                or devices.
                Either way the last two stages run on 512-px tiles (:data:`DECODE_TILE`), so a decode's memory
                stops growing with ~6 KB (float64) per pixel: a 4 MP float64 decode peaks at 3.0 GB, not 25 GB.

        Returns:
            ``{"x_hat": (B, 3, H, W) clamped to [0, 1]}``, float32 on the codec's device.
        """
        synthesis = synthesis or default_synthesis(exact)
        if synthesis not in ("float64", "float32"):
            raise ValueError(f"synthesis must be 'float64' or 'float32', got {synthesis!r}")
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        indexes, means, _ = self._coding_params(z_hat, exact)
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype, means=means)
        return {"x_hat": self._synthesize(y_hat, z_hat, size, synthesis)}

    def _synthesize(self, y_hat: Tensor, z_hat: Tensor, size: tuple[int, int] | None, synthesis: str) -> Tensor:
        """The decoder's image from decoded latents: ``synthesis`` ``"float64"`` or ``"float32"`` arithmetic (see
        :meth:`decompress`), clamped to [0, 1], cropped to ``size``."""
        if synthesis == "float64":
            from .exact import synthesis_float64

            x_hat = SFTCodec.g_s(synthesis_float64(self), y_hat.double(), z_hat.double(), tile=DECODE_TILE)
            x_hat = x_hat.to(z_hat.dtype)
        else:
            x_hat = self.g_s(y_hat, z_hat, tile=DECODE_TILE)
        x_hat = x_hat.clamp_(0, 1)
        return x_hat[..., : size[0], : size[1]] if size is not None else x_hat


def bits_from_likelihoods(likelihoods: dict[str, Tensor]) -> Tensor:
    """Total bits per image, (B,), from a likelihood dict as returned by :meth:`SFTCodec.forward`."""
    return sum((-torch.log2(l)).flatten(1).sum(1) for l in likelihoods.values())
