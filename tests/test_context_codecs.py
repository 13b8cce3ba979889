"""Context and mixture entropy models (codec/sft_context.py, codec/entropy_coding.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taskcomp.bitstream import BitstreamError, decode, encode
from taskcomp.codec.entropy_coding import MixtureStreamDecoder, encode_mixture, mixture_tables
from taskcomp.codec.sft_context import SFTContextCodec, build_codec_model
from taskcomp.codec.zoo import CODEC_CONFIGS, create_codec
from taskcomp.training.codec import freeze_params, init_shared

VARIANTS = ["sft-small-ckbd", "sft-small-ckbd-gmm", "sft-small-ar", "sft-small-ar-gmm"]


def _codec(name: str, seed: int = 0) -> SFTContextCodec:
    """A random-init variant whose context and mixture actually matter (its last layer is not zero)."""
    torch.manual_seed(seed)
    m = build_codec_model(CODEC_CONFIGS[name])
    with torch.no_grad():
        m.entropy_parameters[-1].weight.normal_(0, 0.02)
        m.entropy_parameters[-1].bias.normal_(0, 0.1)
    m.eval()
    m.update(force=True)
    m.checkpoint_info = {"codec": name, "hash": None, "meta": {}}
    return m


def _decode_rank(name: str, h: int, w: int) -> torch.Tensor:
    """(h, w) order in which positions are decoded (equal ranks decode together)."""
    if "ckbd" in name:
        i, j = np.indices((h, w))
        return torch.from_numpy(((i + j) % 2).astype(np.int64))
    return torch.arange(h * w).reshape(h, w)


@pytest.mark.parametrize("name", VARIANTS)
def test_context_is_causal(name):
    m = _codec(name)
    M = m.config.M
    h, w = 6, 7
    g = torch.Generator().manual_seed(1)
    y_hat = torch.randint(-3, 4, (1, M, h, w), generator=g).float()
    hyper = torch.randn(1, 2 * M, h, w, generator=g)
    rank = _decode_rank(name, h, w)
    with torch.no_grad():
        base = m.y_likelihoods(y_hat, hyper)
        for c, i, j in [(0, 2, 3), (5, 3, 3), (M - 1, 0, 0), (7, 5, 6)]:
            moved = y_hat.clone()
            moved[0, c, i, j] += 5
            lik = m.y_likelihoods(moved, hyper)
            changed = (lik != base)[0]  # (M, h, w)
            changed[c, i, j] = False  # its own likelihood moves, of course
            earlier_or_same = (rank <= rank[i, j]).expand(M, h, w)
            assert not changed[earlier_or_same].any(), f"{name}: latent {(c, i, j)} moved one decoded before it"
    # And the context is used: a change at an anchor (or early position) moves later likelihoods.
    moved = y_hat.clone()
    moved[0, :, 2, 2] += 5
    with torch.no_grad():
        assert (m.y_likelihoods(moved, hyper) != base).any()


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_round_trips_a_small_odd_image(name):
    m = _codec(name)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 37, 53, generator=g)
    q = torch.rand(1, 1, 37, 53, generator=g)
    data = encode(m, x, q)
    out = decode(m, data, synthesis="float32")
    assert out.shape == x.shape
    with torch.no_grad():
        ref = m(x, q, quantize="round")["x_hat"].clamp(0, 1)
    # round(y) on both sides: the decoded latent is the forward pass's, so the pixels are too.
    assert torch.equal(out, ref)


def test_a_file_of_one_variant_is_refused_by_another():
    a, b = _codec("sft-small-ckbd", seed=0), _codec("sft-small-ar", seed=1)
    x = torch.rand(1, 3, 40, 40)
    data = encode(a, x, torch.full((1, 1, 40, 40), 0.5))
    with pytest.raises(BitstreamError, match="sft-small-ckbd") as e:
        decode(b, data)
    assert "\n" not in str(e.value)


def test_batch_compress_matches_single_images():
    m = _codec("sft-small-ckbd-gmm")
    x = torch.rand(2, 3, 64, 64)
    q = torch.rand(2, 1, 64, 64)
    both = m.compress(x, q)
    for b in range(2):
        one = m.compress(x[b : b + 1], q[b : b + 1])
        assert one["strings"][0][0] == both["strings"][0][b]
    out = m.decompress(both["strings"], both["shape"], size=(64, 64), synthesis="float32")["x_hat"]
    with torch.no_grad():
        assert torch.equal(out, m(x, q, quantize="round")["x_hat"].clamp(0, 1))


def test_mixture_tables_round_trip_with_escapes_and_match_the_estimate():
    g = torch.Generator().manual_seed(3)
    n, K = 5000, 3
    mu = torch.randn(n, K, generator=g) * 4
    s = torch.rand(n, K, generator=g) * 3 + 0.05
    wts = torch.softmax(torch.randn(n, K, generator=g), 1)
    comp = torch.multinomial(wts, 1, generator=g).squeeze(1)
    idx = torch.arange(n)
    y = torch.round(mu[idx, comp] + s[idx, comp].clamp(min=0.11) * torch.randn(n, generator=g))
    y[:3] = torch.tensor([500.0, -700.0, 40000.0])  # far outside every support: escape symbols
    half = n // 2
    data = encode_mixture(y, mixture_tables(mu, s, wts))
    dec = MixtureStreamDecoder(data)
    out = torch.cat(
        [
            dec.decode(mixture_tables(mu[:half], s[:half], wts[:half])),
            dec.decode(mixture_tables(mu[half:], s[half:], wts[half:])),
        ]
    )
    assert torch.equal(out, y.long())
    sc = s.clamp(min=0.11)
    normal = torch.distributions.Normal(mu[3:], sc[3:])
    p = (wts[3:] * (normal.cdf(y[3:, None] + 0.5) - normal.cdf(y[3:, None] - 0.5))).sum(1)
    est_bytes = float(-torch.log2(p.clamp(min=1e-9)).sum()) / 8
    assert abs(len(data) - est_bytes) / est_bytes < 0.02


def test_mixture_tables_refuse_bad_parameters():
    with pytest.raises(ValueError, match="not finite"):
        mixture_tables(torch.tensor([[float("nan")]]), torch.ones(1, 1))
    with pytest.raises(ValueError, match="one shape"):
        mixture_tables(torch.zeros(3, 2), torch.ones(3, 1))


def test_init_from_the_hyperprior_codes_like_it():
    base = create_codec("sft-small")
    m = build_codec_model(CODEC_CONFIGS["sft-small-ckbd"])
    init_shared(m, base)
    m.eval()
    sd, bsd = m.state_dict(), base.state_dict()
    assert all(torch.equal(sd[k], bsd[k]) for k in bsd if k.startswith(("g_a", "g_s", "h_s", "h_a")))
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    q = torch.full((1, 1, 128, 128), 0.5)
    with torch.no_grad():
        rate = {
            k: sum(float(-torch.log2(v).sum()) for v in c(x, q)["likelihoods"].values())
            for k, c in (("ckbd", m), ("base", base))
        }
    # Zero corrections: the hyperprior's Gaussian, only with y_hat = round(y) instead of round(y - mean) + mean.
    assert abs(rate["ckbd"] - rate["base"]) / rate["base"] < 0.05


def test_freeze_refuses_a_prefix_that_names_nothing():
    m = build_codec_model(CODEC_CONFIGS["sft-small-ckbd"])
    with pytest.raises(ValueError, match="names no parameter"):
        freeze_params(m, ["g_x"])
    n = freeze_params(m, ["g_a", "g_s"])
    assert n > 0 and not m.g_a0.weight.requires_grad and m.entropy_parameters[0].weight.requires_grad


def test_map_optimisation_runs_through_the_context_model():
    """Straight-through rate through the context: with a zero task loss the map can only lower the rate."""
    from taskcomp.objectives.base import Objective
    from taskcomp.optimize import MapOptimizer

    class RateOnly(Objective):
        def prepare(self, x, **kw):
            return None

        def loss(self, x_hat, ctx):
            return x_hat.sum(dim=(1, 2, 3)) * 0

    # The trained sft-small transforms (a random analysis barely reacts to the map), a random context model.
    m = _codec("sft-small-ckbd-gmm")
    init_shared(m, create_codec("sft-small"))
    m.update(force=True)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(5))
    res = MapOptimizer(m, RateOnly(), lam=1.0, steps=3, lr=0.3, init="constant", init_q=0.6, downsample=8).run(x)
    assert res.qmap.shape == (1, 1, 64, 96)
    assert float(res.qmap.mean()) < 0.6
    bpps = [r["bpp"] for r in res.log]
    assert bpps[-1] < bpps[0]


def test_attention_config_round_trips_and_starts_near_its_parent():
    """The GPU config (item 4): attention blocks start near the identity, so sft-small's transforms still work."""
    base = create_codec("sft-small")
    m = build_codec_model(CODEC_CONFIGS["sft-small-attn-ckbd-gmm"])
    init_shared(m, base)
    m.eval()
    m.update(force=True)
    m.checkpoint_info = {"codec": "sft-small-attn-ckbd-gmm", "hash": None, "meta": {}}
    x = torch.rand(1, 3, 45, 61, generator=torch.Generator().manual_seed(6))
    q = torch.full((1, 1, 45, 61), 0.5)
    with torch.no_grad():
        mse_attn = float((m(x, q)["x_hat"] - x).pow(2).mean())
        mse_base = float((base(x, q)["x_hat"] - x).pow(2).mean())
    assert mse_attn < 2 * mse_base
    out = decode(m, encode(m, x, q), synthesis="float32")
    assert out.shape == x.shape


def test_shipped_variants_decode_to_sft_small_pixels_and_refuse_another_codec_name():
    from taskcomp.codec.checkpoint import CheckpointError
    from taskcomp.codec.zoo import shipped_checkpoint

    x = torch.rand(1, 3, 48, 80, generator=torch.Generator().manual_seed(7))
    q = torch.full((1, 1, 48, 80), 0.4)
    base = create_codec("sft-small")
    ref = decode(base, encode(base, x, q))
    m = create_codec("sft-small-ckbd-gmm")
    data = encode(m, x, q)
    assert torch.equal(decode(m, data), ref)  # same y_hat and z_hat: only the rate differs
    with pytest.raises(CheckpointError, match="pass --codec sft-small-ckbd"):
        create_codec("sft-small", checkpoint=shipped_checkpoint("sft-small-ckbd"))
