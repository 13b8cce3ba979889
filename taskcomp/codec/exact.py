"""Device- and thread-independent decoding: the coding path in exact integer arithmetic.

A mean-scale hyperprior codes y with a Gaussian whose scale (through a table index) and mean the hyper-decoder
``h_s`` computes from z_hat. Encoder and decoder must compute bit-identical indexes: a scale that lands on the
other side of a table threshold desynchronises the range coder and corrupts the rest of the image; and a mean
that differs moves the decoded y_hat. Float convolutions are not bit-reproducible across devices, BLAS
libraries or thread counts (summation order), so :class:`ExactHyperDecoder` evaluates ``h_s`` in fixed point
instead:

* the input z_hat becomes ``round(z_hat * 2^F)``, clamped to ``[-CLAMP, CLAMP] * 2^F``;
* each conv / transposed conv has integer weights ``round(w * 2^Fw)`` and biases ``round(b * 2^(F+Fw))``,
  Fw chosen per output channel; it runs in float64 on the CPU, where every product and every partial sum is
  an integer below ``2^52`` (checked per channel from the weights when the decoder is built, worst case over
  all inputs), so any summation order gives the same exact integer: any BLAS, any thread count;
* between layers the result is rescaled to ``2^F`` by rounding division by ``2^Fw`` (``floor((v + 2^(Fw-1))
  / 2^Fw)``, exact), clamped to ``[-CLAMP, CLAMP] * 2^F`` and passed through LeakyReLU with the dyadic slope
  ``round(slope * 2^20) / 2^20`` (0.0100002 for 0.01), rounded the same way;
* the last layer's integers divided by ``2^(F+Fw)`` are the scales and means, exact dyadic float64 values.
  Scales become table indexes by comparisons in float64 (:func:`indexes_from_scales`); means are handed on
  as float32 (a correctly rounded conversion).

With the defaults (F = 18, CLAMP = 256) the shipped sft-small gets Fw = 20-22, 19-21 and 16-24 (per output
channel) for its three layers, and its scales and means differ from the float ``h_s`` by 2e-6 on average and
2.5e-4 at most (kodim01-03; float32 ``h_s`` itself is 6e-5 at most from a float64 one); 2-10 of a Kodak
image's 196,608 scale indexes differ from the float path's, and file sizes were unchanged on all 36 Kodak
points measured. It takes ~0.04 s per Kodak image. z_hat and intermediate activations of real images stay
below ~25 in magnitude, so the clamps never bind on them.

:func:`synthesis_float64` gives a float64 copy of the synthesis transform for the decoder: not exact, but its
rounding errors (~1e-13) are far below what moves a pixel's 8-bit value, so decoded images agree across
thread counts (measured) and, to that precision, across devices.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ExactHyperDecoder",
    "exact_hyper_decoder",
    "indexes_from_scales",
    "synthesis_float64",
    "ACT_BITS",
    "CLAMP",
    "SLOPE_BITS",
    "MAX_WEIGHT_BITS",
    "SUM_BOUND",
]

#: Fractional bits of the fixed-point activations (resolution 2^-18 ~ 3.8e-6).
ACT_BITS = 18
#: Inputs and intermediate activations are clamped to [-CLAMP, CLAMP] (real values; real images stay < ~25).
CLAMP = 256
#: Fractional bits of the LeakyReLU slope.
SLOPE_BITS = 20
#: Most fractional bits a layer's weights get; fewer when the layer's worst-case sum needs them.
MAX_WEIGHT_BITS = 24
#: Every product, partial sum and rescaling offset stays below this in magnitude (2^53 is float64's exact limit).
SUM_BOUND = 2**52


def _version_key(*modules: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``modules`` is replaced, moved or modified in place."""
    return tuple(
        (t.data_ptr(), t._version, t.dtype, str(t.device), tuple(t.shape))
        for m in modules
        for t in list(m.parameters()) + list(m.buffers())
    )


def _round_half_up_shift(v: Tensor, bits: int | Tensor) -> Tensor:
    """``floor((v + 2^(bits-1)) / 2^bits)`` for integer-valued float64 ``v`` and bits >= 1 (an int, or an
    int64 tensor broadcasting against ``v``): exact."""
    if isinstance(bits, Tensor):
        half, inv = torch.pow(2.0, (bits - 1).double()), torch.pow(2.0, (-bits).double())
        return torch.floor((v + half) * inv)
    return torch.floor((v + float(2 ** (bits - 1))) * float(2.0**-bits))


class ExactHyperDecoder:
    """Fixed-point twin of a hyper-decoder ``nn.Sequential`` of Conv2d / ConvTranspose2d / LeakyReLU / ReLU.

    Built from the module's current weights (copied to the CPU); call it on z_hat to get the coding parameters.

    Args:
        h_s: the hyper-decoder; layers must be ``nn.Conv2d`` (zeros or reflect padding) or
            ``nn.ConvTranspose2d`` (zeros padding), with groups = dilation = 1, and ``nn.LeakyReLU`` /
            ``nn.ReLU``; the last layer must be a conv.
        act_bits: fractional bits F of activations.
        clamp: magnitude limit of inputs and intermediate activations (real units).
        max_weight_bits: upper limit of a layer's fractional weight bits Fw.

    Attributes:
        weight_bits: per conv layer, an int64 tensor of Fw per output channel: the largest (<= max_weight_bits)
            that keeps the channel's worst case ``sum |w_int| * clamp * 2^F + |b_int| + 2^(Fw-1)`` under
            :data:`SUM_BOUND`.

    Raises:
        TypeError: a layer of another kind.
        ValueError: weights so large that fewer than 8 weight bits would fit the bound.
    """

    def __init__(
        self, h_s: nn.Sequential, act_bits: int = ACT_BITS, clamp: int = CLAMP, max_weight_bits: int = MAX_WEIGHT_BITS
    ):
        self.act_bits, self.clamp = int(act_bits), int(clamp)
        self.limit = float(self.clamp * 2**self.act_bits)  # fixed-point clamp
        self.ops: list[tuple] = []
        self.weight_bits: list[Tensor] = []
        layers = list(h_s)
        for i, m in enumerate(layers):
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                self.ops.append(self._conv_op(m, max_weight_bits))
            elif isinstance(m, (nn.LeakyReLU, nn.ReLU)):
                if i == len(layers) - 1:
                    raise TypeError("the hyper-decoder must end with a convolution")
                slope = float(m.negative_slope) if isinstance(m, nn.LeakyReLU) else 0.0
                self.ops.append(("act", int(round(slope * 2**SLOPE_BITS))))
            else:
                raise TypeError(f"ExactHyperDecoder: unsupported layer {type(m).__name__}")
        if not self.ops or self.ops[-1][0] == "act":
            raise TypeError("the hyper-decoder must end with a convolution")

    def _conv_op(self, m: nn.Module, max_weight_bits: int) -> tuple:
        transposed = isinstance(m, nn.ConvTranspose2d)
        if m.groups != 1 or tuple(m.dilation) != (1, 1):
            raise TypeError(f"ExactHyperDecoder: groups/dilation other than 1 in {m}")
        if m.padding_mode not in ("zeros", "reflect") or (transposed and m.padding_mode != "zeros"):
            raise TypeError(f"ExactHyperDecoder: padding mode {m.padding_mode!r} in {m}")
        w = m.weight.detach().to("cpu", torch.float64)
        b = (
            m.bias.detach().to("cpu", torch.float64)
            if m.bias is not None
            else torch.zeros(m.out_channels, dtype=torch.float64)
        )
        # Output channel is dim 1 of a transposed conv's weight, dim 0 of a conv's.
        out_dim = 1 if transposed else 0
        n_out = w.shape[out_dim]
        in_limit = self.clamp * 2**self.act_bits
        # Per output channel, the most weight bits whose worst case fits. The sums are of integers: exact in
        # float64 below 2^53 (any order), and where they are larger the channel fails the test by far either
        # way, so every machine picks the same bits.
        w_abs = w.abs().transpose(0, out_dim).reshape(n_out, -1).contiguous()
        bits = torch.full((n_out,), -1, dtype=torch.int64)
        for fw in range(max_weight_bits, 7, -1):
            wsum = torch.round(w_abs * 2.0**fw).sum(1)  # = sum |round(w * 2^fw)| (round is symmetric)
            worst = wsum * float(in_limit) + torch.round(b * 2.0 ** (fw + self.act_bits)).abs() + 2.0 ** (fw - 1)
            bits = torch.where((bits < 0) & (worst < SUM_BOUND), fw, bits)
            if bool((bits >= 0).all()):
                break
        if (bits < 0).any():
            raise ValueError(f"ExactHyperDecoder: weights of {m} too large for exact float64 sums")
        shape = [1] * w.dim()
        shape[out_dim] = n_out
        scale = torch.pow(2.0, bits.to(torch.float64))  # exact powers of two
        w_int = torch.round(w * scale.view(shape))
        b_int = torch.round(b * scale * 2.0**self.act_bits)
        self.weight_bits.append(bits)
        pad = m.padding if isinstance(m.padding, tuple) else (m.padding,) * 2
        geometry = dict(
            stride=tuple(m.stride),
            padding=tuple(pad),
            mode=m.padding_mode,
            output_padding=tuple(m.output_padding) if transposed else (0, 0),
        )
        return ("deconv" if transposed else "conv", w_int, b_int, bits.view(1, -1, 1, 1), geometry)

    # ------------------------------------------------------------------ evaluation
    def to_fixed(self, z_hat: Tensor) -> Tensor:
        """z_hat (any device, float) -> clamped integer-valued float64 on the CPU at scale 2^F."""
        v = torch.round(z_hat.detach().to("cpu", torch.float64) * float(2**self.act_bits))
        return v.clamp_(-self.limit, self.limit)

    @staticmethod
    def _conv_f64(v: Tensor, w: Tensor, b: Tensor, kind: str, g: dict) -> Tensor:
        if kind == "deconv":
            return F.conv_transpose2d(
                v, w, b, stride=g["stride"], padding=g["padding"], output_padding=g["output_padding"]
            )
        ph, pw = g["padding"]
        if g["mode"] == "reflect" and (ph or pw):
            v = F.pad(v, (pw, pw, ph, ph), mode="reflect")
            ph = pw = 0
        return F.conv2d(v, w, b, stride=g["stride"], padding=(ph, pw))

    @staticmethod
    def _conv_int64(v: Tensor, w: Tensor, b: Tensor, kind: str, g: dict) -> Tensor:
        """Reference: the same layer in int64, tap by tap (another algorithm and summation order)."""
        v, w, b = v.to(torch.int64), w.to(torch.int64), b.to(torch.int64)
        (sh, sw), (ph, pw) = g["stride"], g["padding"]
        B, C, H, W = v.shape
        if kind == "deconv":
            k_h, k_w = w.shape[-2:]
            oph, opw = g["output_padding"]
            full = torch.zeros(B, w.shape[1], (H - 1) * sh + k_h + oph, (W - 1) * sw + k_w + opw, dtype=torch.int64)
            for i in range(k_h):
                for j in range(k_w):
                    contrib = torch.einsum("bchw,co->bohw", v, w[:, :, i, j])
                    full[:, :, i : i + (H - 1) * sh + 1 : sh, j : j + (W - 1) * sw + 1 : sw] += contrib
            Ho, Wo = (H - 1) * sh - 2 * ph + k_h + oph, (W - 1) * sw - 2 * pw + k_w + opw
            return full[:, :, ph : ph + Ho, pw : pw + Wo] + b.view(1, -1, 1, 1)
        if ph or pw:
            mode = "reflect" if g["mode"] == "reflect" else "constant"
            v = F.pad(v.double(), (pw, pw, ph, ph), mode=mode).to(torch.int64)  # a copy: exact
        k_h, k_w = w.shape[-2:]
        Ho, Wo = (v.shape[2] - k_h) // sh + 1, (v.shape[3] - k_w) // sw + 1
        out = torch.zeros(B, w.shape[0], Ho, Wo, dtype=torch.int64)
        for i in range(k_h):
            for j in range(k_w):
                patch = v[:, :, i : i + (Ho - 1) * sh + 1 : sh, j : j + (Wo - 1) * sw + 1 : sw]
                out += torch.einsum("bchw,oc->bohw", patch, w[:, :, i, j])
        return out + b.view(1, -1, 1, 1)

    def __call__(self, z_hat: Tensor, reference: bool = False) -> Tensor:
        """The hyper-decoder's output, exactly.

        Args:
            z_hat: (B, Z, h, w) dequantised hyper-latent, any device and float dtype.
            reference: compute every layer in int64 tap by tap instead of float64 convolutions (slow; for
                tests: both must agree bit for bit).

        Returns:
            (B, C_out, 4h, 4w) float64 on the CPU (for the SFT codec: scales then means, 2M channels); every value
            is an integer multiple of 2^-(F+Fw_last).
        """
        conv = self._conv_int64 if reference else self._conv_f64
        v = self.to_fixed(z_hat)
        F_ = self.act_bits
        for k, op in enumerate(self.ops):
            if op[0] == "act":
                num = op[1]
                neg = _round_half_up_shift(v * float(num), SLOPE_BITS)
                v = torch.where(v < 0, neg, v)
                continue
            kind, w, b, fw, g = op
            acc = conv(v, w, b, kind, g)
            if reference:
                acc = acc.to(torch.float64)  # < 2^52: exact
            if k == len(self.ops) - 1:
                return acc * torch.pow(2.0, (-(F_ + fw)).double())
            v = _round_half_up_shift(acc, fw).clamp_(-self.limit, self.limit)
        raise AssertionError("unreachable: the last op is a conv")


def exact_hyper_decoder(h_s: nn.Sequential) -> ExactHyperDecoder:
    """The :class:`ExactHyperDecoder` of ``h_s``, cached on the module and rebuilt when its weights change.

    The cache key is each parameter's and buffer's storage pointer, version counter, dtype, device and shape,
    so ``load_state_dict``, optimiser steps, ``.to(...)`` and in-place edits under ``no_grad`` all rebuild it.
    Only writes through ``tensor.data`` (which bypass version counters) go unnoticed.
    """
    key = _version_key(h_s)
    cached = h_s.__dict__.get("_taskcomp_exact")
    if cached is None or cached[0] != key:
        with torch.inference_mode(False), torch.no_grad():
            cached = (key, ExactHyperDecoder(h_s))
        h_s.__dict__["_taskcomp_exact"] = cached
    return cached[1]


def indexes_from_scales(scales: Tensor, scale_table: Tensor, scale_bound: Tensor | float) -> Tensor:
    """Gaussian-conditional table indexes of exact float64 scales, as CompressAI's ``build_indexes``.

    ``index = #{t in scale_table[:-1] : t < max(scale, bound)}``: the comparisons run in float64, where both
    sides are exact (float32 table entries, dyadic scales), so the result is the same everywhere.

    Args:
        scales: float64 (any shape), on the CPU.
        scale_table: the sorted float32 table (``GaussianConditional.scale_table``), any device.
        scale_bound: the lower bound on scales (``lower_bound_scale.bound``), tensor or float.

    Returns:
        int32 indexes of the same shape, on the CPU.
    """
    table = scale_table.detach().to("cpu", torch.float64)[:-1].contiguous()
    bound = (
        float(scale_bound)
        if not isinstance(scale_bound, Tensor)
        else float(scale_bound.detach().cpu().double().flatten()[0])
    )
    s = scales.to(torch.float64).clamp(min=bound).contiguous()
    return torch.searchsorted(table, s.flatten(), right=False).to(torch.int32).reshape(s.shape)


def synthesis_float64(codec: nn.Module, names: tuple[str, ...] = ("qmap_feature_gs", "g_s")) -> nn.Module:
    """A float64 copy of the codec's synthesis modules (children whose names start with ``names``), on the
    codec's device; cached on the codec and rebuilt when those modules' weights change (see
    :func:`exact_hyper_decoder`).

    The copy has the same attribute names, so ``SFTCodec.g_s(copy, y_hat.double(), z_hat.double())`` runs the
    synthesis in float64.
    """
    children = {n: m for n, m in codec.named_children() if n.startswith(names)}
    key = (tuple(children), _version_key(*children.values()))
    cached = codec.__dict__.get("_taskcomp_synthesis64")
    if cached is None or cached[0] != key:
        with torch.inference_mode(False), torch.no_grad():
            twin = nn.Module()
            for n, m in children.items():
                setattr(twin, n, copy.deepcopy(m).to(torch.float64))
            twin.eval()
        cached = (key, twin)
        codec.__dict__["_taskcomp_synthesis64"] = cached
    return cached[1]
