"""rANS coding of integer latents, each under its own discretised Gaussian or mixture of Gaussians.

CompressAI's ``GaussianConditional`` codes ``round(y - mean)`` with one of a few dozen zero-mean CDF tables
chosen by scale; that needs the mean before quantising, which a context model only has after decoding the
neighbours. Its ``GaussianMixtureConditional`` builds one CDF per latent over the image's whole value range
(batch 1, tens of millions of list entries on a Kodak image). This module is the small missing piece: one CDF
per latent over a support that fits that latent's distribution, coded with CompressAI's rANS
(``compressai.ans``), whose escape symbol carries values outside the support (Elias-gamma bypass bits).

For latent i with K components (weights w_k summing to 1, means mu_k, scales s_k >= :data:`SCALE_BOUND`):

* support: the integers ``lo .. lo + L - 1`` with ``lo = floor(min_k mu_k - T s_k)``, ``L`` the smallest power of
  two (>= 2) covering ``ceil(max_k mu_k + T s_k)``, at most :data:`MAX_SUPPORT` (then centred on the weighted
  mean); ``T`` = :data:`TAIL_SIGMAS`;
* probabilities: ``p(v) = sum_k w_k (Phi((v + 1/2 - mu_k) / s_k) - Phi((v - 1/2 - mu_k) / s_k))`` on the support,
  the rest of the mass on the escape symbol, in float64;
* frequencies: ``1 + floor(p * (2^16 - (L + 1)))`` per symbol, the shortfall to 2^16 added to the most probable
  one, so every symbol stays codable and the table sums to 2^16 exactly.

Every step is elementwise float64 arithmetic on the CPU followed by integer operations, so the same
parameters give the same tables on any thread count. Callers hand in parameters that are themselves exact
(:mod:`taskcomp.codec.exact`); where two machines' ``erf`` or ``exp`` differ in a last bit, a table could change
only if a product lands exactly on an integer boundary.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "PRECISION",
    "SCALE_BOUND",
    "TAIL_SIGMAS",
    "MAX_SUPPORT",
    "MixtureTables",
    "mixture_tables",
    "encode_mixture",
    "MixtureStreamDecoder",
]

#: Bits of the rANS frequency tables (CompressAI's coder is built for 16).
PRECISION = 16
#: Scales are clamped from below to this (CompressAI's ``GaussianConditional`` default bound).
SCALE_BOUND = 0.11
#: The support covers this many scales either side of every component's mean.
TAIL_SIGMAS = 8.0
#: Widest support per latent; values beyond it take the escape symbol.
MAX_SUPPORT = 1024


class MixtureTables:
    """Quantised CDF tables of N latents, grouped by support width.

    Attributes:
        cdfs: list of int lists, one per table, each ``L + 2`` entries from 0 to 2^16.
        sizes: ``L + 2`` per table.
        offsets: ``lo`` per table (the value of the first symbol).
        index: (N,) int64: the table of each latent, in the caller's order.
    """

    def __init__(self, cdfs: list[list[int]], sizes: list[int], offsets: list[int], index: Tensor):
        self.cdfs, self.sizes, self.offsets, self.index = cdfs, sizes, offsets, index


def _phi(t: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-t * (1.0 / math.sqrt(2.0)))


def mixture_tables(means: Tensor, scales: Tensor, weights: Tensor | None = None) -> MixtureTables:
    """Build one quantised CDF per latent.

    Args:
        means, scales: (N, K) float (converted to float64 on the CPU); scales are clamped to >= SCALE_BOUND.
        weights: (N, K) mixture weights summing to 1 per row; None for K = 1.

    Returns:
        :class:`MixtureTables` for the N latents.

    Raises:
        ValueError: shapes that differ or parameters that are not finite.
    """
    means = means.detach().to("cpu", torch.float64)
    scales = scales.detach().to("cpu", torch.float64).clamp(min=SCALE_BOUND)
    if means.dim() == 1:
        means, scales = means[:, None], scales[:, None]
    if weights is None:
        weights = torch.ones_like(means)
    weights = weights.detach().to("cpu", torch.float64)
    if weights.dim() == 1:
        weights = weights[:, None]
    if not (means.shape == scales.shape == weights.shape):
        raise ValueError(
            f"means {tuple(means.shape)}, scales {tuple(scales.shape)} and weights "
            f"{tuple(weights.shape)} must have one shape (N, K)"
        )
    if not (torch.isfinite(means).all() and torch.isfinite(scales).all() and torch.isfinite(weights).all()):
        raise ValueError("entropy parameters are not finite")
    n = means.shape[0]
    lo = torch.floor((means - TAIL_SIGMAS * scales).amin(1))
    hi = torch.ceil((means + TAIL_SIGMAS * scales).amax(1))
    need = (hi - lo + 1).clamp(min=2, max=MAX_SUPPORT)
    width = torch.pow(2.0, torch.ceil(torch.log2(need))).clamp(max=MAX_SUPPORT).to(torch.int64)
    too_wide = (hi - lo + 1) > MAX_SUPPORT
    if too_wide.any():
        centre = torch.round((weights * means).sum(1))
        lo = torch.where(too_wide, centre - MAX_SUPPORT // 2, lo)
    lo = lo.to(torch.int64)

    cdfs: list[list[int]] = []
    sizes: list[int] = []
    offsets: list[int] = []
    index = torch.empty(n, dtype=torch.int64)
    total = 1 << PRECISION
    for L in torch.unique(width).tolist():
        sel = torch.nonzero(width == L).flatten()
        if sel.numel() == 0:
            continue
        # The L + 1 bin edges v - 1/2 of the support, once: each bin's mass is a difference of neighbours.
        edges = (lo[sel, None] + torch.arange(L + 1)[None, :]).to(torch.float64) - 0.5  # (n_b, L + 1)
        mu, s, w = means[sel, None, :], scales[sel, None, :], weights[sel, None, :]
        cdf_k = _phi((edges[..., None] - mu) / s)  # (n_b, L + 1, K)
        pmf = ((cdf_k[:, 1:] - cdf_k[:, :-1]) * w).sum(-1)  # (n_b, L)
        tail = (1.0 - pmf.sum(1, keepdim=True)).clamp(min=0.0)
        p = torch.cat([pmf, tail], 1)
        p = p / p.sum(1, keepdim=True)
        n_sym = L + 1
        freq = 1 + torch.floor(p * float(total - n_sym)).to(torch.int64)
        short = total - freq.sum(1)
        top = freq.argmax(1)
        freq[torch.arange(len(sel)), top] += short
        cdf = torch.cat([torch.zeros(len(sel), 1, dtype=torch.int64), freq.cumsum(1)], 1)
        index[sel] = torch.arange(len(cdfs), len(cdfs) + len(sel))
        cdfs.extend(cdf.tolist())
        sizes.extend([L + 2] * len(sel))
        offsets.extend(lo[sel].tolist())
    return MixtureTables(cdfs, sizes, offsets, index)


def encode_mixture(symbols: Tensor, tables: MixtureTables) -> bytes:
    """rANS-code integer ``symbols`` (N,), latent i under ``tables`` entry i (:func:`mixture_tables`)."""
    from compressai.ans import RansEncoder

    sym = symbols.detach().to("cpu").flatten()
    if sym.numel() != tables.index.numel():
        raise ValueError(f"{sym.numel()} symbols for {tables.index.numel()} tables")
    return RansEncoder().encode_with_indexes(
        sym.round().to(torch.int32).tolist(), tables.index.tolist(), tables.cdfs, tables.sizes, tables.offsets
    )


class MixtureStreamDecoder:
    """Decodes a stream written by one :func:`encode_mixture` call in pieces, in the order they were written.

    Args:
        string: the coded bytes.
    """

    def __init__(self, string: bytes):
        from compressai.ans import RansDecoder

        self._dec = RansDecoder()
        self._dec.set_stream(string)

    def decode(self, tables: MixtureTables) -> Tensor:
        """The next ``len(tables.index)`` values, as an int64 tensor."""
        out = self._dec.decode_stream(tables.index.tolist(), tables.cdfs, tables.sizes, tables.offsets)
        return torch.tensor(out, dtype=torch.int64)
