"""Function-preserving widening of a trained SFT codec (Net2Net-style), to continue training with more capacity.

The shipped ``sft-small`` saturates near 34 dB at q = 1 even with unquantised latents (``results/training/
top_end.py``): its transforms, not its rate, limit the top of the curve. Training a wider codec from scratch
would throw away every stage of training so far; widening keeps them.

Rule: every new channel starts at exactly zero. Each layer that *outputs* a new channel gets zero weights and
bias for it (an SFT layer's ``beta`` conv too, since ``x * (1 + gamma) + beta`` must stay 0), while the
layers that *read* new channels keep a fresh random init for them, which multiplies zeros. So the widened
codec computes the same function as the original (up to float summation order), and the gradient still
reaches the new channels' producers through their readers' random weights: training can grow them.

Supported: wider main-path stages (``channels``) and more latent channels (``M``). For new latent channels the
hyper-decoder predicts mean 0 and the smallest scale, so a zero latent costs almost no bits (< 1e-4 bit per
element). Other widths (``Z``, condition nets, SFT hidden widths) must stay as they are.
"""

from __future__ import annotations

from dataclasses import fields

import torch
from torch import Tensor, nn

from .sft import SFTCodec, SFTConfig

__all__ = ["widen_codec", "new_channel_masks"]


def _old_blocks(key: str, old_shape: torch.Size, M0: int, M1: int) -> list[tuple[tuple, tuple]]:
    """Where the old elements of a widened tensor sit: ``(index into the wide tensor, index into the old one)``
    per block. Old elements keep their leading positions, except in the last hyper-decoder conv (``h_s.4``),
    whose output [scales (M), means (M)] is split by chunk(2): there the old means move to rows ``M1:M1 + M0``."""
    rest = tuple(slice(0, n) for n in old_shape[1:])
    if key.startswith("h_s.4."):
        return [((slice(0, M0), *rest), (slice(0, M0),)), ((slice(M1, M1 + M0), *rest), (slice(M0, 2 * M0),))]
    return [((slice(0, old_shape[0]), *rest), ())]


def _zero_new_outputs(module: nn.Conv2d | nn.ConvTranspose2d, old_out: int) -> None:
    """Zero the weights and bias of output channels ``old_out:`` of a conv or transposed conv (under no_grad)."""
    if isinstance(module, nn.ConvTranspose2d):
        module.weight[:, old_out:] = 0  # (in, out, k, k)
    else:
        module.weight[old_out:] = 0  # (out, in, k, k)
    if module.bias is not None:
        module.bias[old_out:] = 0


@torch.no_grad()
def widen_codec(codec: SFTCodec, config: SFTConfig, seed: int = 0) -> SFTCodec:
    """A wider copy of ``codec`` that computes the same function.

    Args:
        codec: a trained codec (left unchanged).
        config: the target widths; ``channels`` and ``M`` may grow, every other field must equal ``codec``'s.
        seed: seed of the random init of the weights that read new channels.

    Returns:
        A new :class:`SFTCodec` with ``config``, in eval mode, entropy-coder tables updated.

    Raises:
        ValueError: a width that shrinks, or a field other than ``channels`` / ``M`` that differs.
    """
    old = codec.config
    fixed = [
        f.name
        for f in fields(SFTConfig)
        if f.name not in ("channels", "M") and getattr(old, f.name) != getattr(config, f.name)
    ]
    if fixed:
        raise ValueError(f"widening changes only channels and M; these differ: {', '.join(fixed)}")
    if any(n < o for n, o in zip(config.channels, old.channels)) or config.M < old.M:
        raise ValueError(
            f"widths must not shrink: channels {old.channels} -> {config.channels}, M {old.M} -> {config.M}"
        )

    torch.manual_seed(seed)
    wide = SFTCodec(config)
    new_sd = wide.state_dict()
    M0, M1 = old.M, config.M
    merged = {}
    for key, src in codec.state_dict().items():
        dst = new_sd[key].clone()
        if dst.shape == src.shape or key.startswith(("entropy_bottleneck.", "gaussian_conditional.")):
            merged[key] = src.clone()  # entropy models do not widen (Z and the scale table are unchanged)
            continue
        if dst.dim() != src.dim() or any(d < s for d, s in zip(dst.shape, src.shape)):
            raise ValueError(f"cannot widen {key}: {tuple(src.shape)} -> {tuple(dst.shape)}")
        for dst_index, src_index in _old_blocks(key, src.shape, M0, M1):  # h_s.4's new scales / means: below
            dst[dst_index] = src[src_index]
        merged[key] = dst
    wide.load_state_dict(merged)  # CompressAI resizes the entropy coders' CDF buffers to the loaded ones

    # New channels start at zero: zero every new output row of the layers that produce them. SFT gamma rows
    # may stay random (they multiply a zero feature); SFT beta rows add to it, so they are zeroed like a conv's.
    old_modules = dict(codec.named_modules())
    for name, module in wide.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) or name == "h_s.4" or name.endswith("mlp_gamma"):
            continue
        n_old = old_modules[name].out_channels
        if module.out_channels > n_old:
            _zero_new_outputs(module, n_old)
    if M1 > M0:
        last = wide.h_s[4]
        # Scale and mean of a new latent: mean 0, scale at the lower bound, so y = 0 is almost free.
        lower = float(codec.gaussian_conditional.scale_table[0])
        for rows, value in ((slice(M0, M1), lower), (slice(M1 + M0, 2 * M1), 0.0)):
            last.weight[rows] = 0
            last.bias[rows] = value
    wide.update(force=True)
    return wide.eval()


def new_channel_masks(model: SFTCodec, old_config: SFTConfig) -> dict[str, Tensor]:
    """Which elements of ``model``'s parameters :func:`widen_codec` added when it grew ``old_config``.

    Args:
        model: a codec of a config that ``old_config`` widens into.
        old_config: the narrower config it was grown from.

    Returns:
        ``{parameter name: bool mask of its shape}``, True where the element is new, for every parameter that
        has new elements (training can give those a larger step: new channels start from zero).
    """
    M0, M1 = old_config.M, model.config.M
    old_shapes = {k: v.shape for k, v in SFTCodec(old_config).named_parameters()}
    masks = {}
    for key, p in model.named_parameters():
        shape = old_shapes[key]
        if shape == p.shape:
            continue
        mask = torch.ones_like(p, dtype=torch.bool)
        for wide_index, _ in _old_blocks(key, shape, M0, M1):
            mask[wide_index] = False
        masks[key] = mask
    return masks
