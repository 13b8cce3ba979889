"""Tiled stages: the decoder's last two and the encoder's first two stages run on tiles with a halo (bounded
memory), same pixels."""

import pytest
import torch

from taskcomp.codec import create_codec
from taskcomp.codec.sft import G_A_HEAD_HALO, G_S_TAIL_HALO, SFTCodec
from taskcomp.codec.tiles import run_tiled


def _tail_inputs(codec, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, codec.g_s8.in_channels, n, n + 7, generator=g, dtype=torch.float64)
    w = torch.randn(1, codec.qmap_feature_gs4[0].in_channels, n, n + 7, generator=g, dtype=torch.float64)
    return x, w


def _reach(t, first, last):
    """How far beyond positions first..last (both axes) the gradient of t is non-zero: the receptive-field radius."""
    g = t.grad.abs().sum((0, 1))
    rows, cols = torch.nonzero(g.sum(1)).flatten(), torch.nonzero(g.sum(0)).flatten()
    return max(first - rows.min().item(), rows.max().item() - last, first - cols.min().item(), cols.max().item() - last)


@pytest.mark.parametrize("name", ["sft-small", "sft-small-attn-ckbd-gmm", "sft-paper"])
def test_tail_receptive_field_fits_in_the_halo(name):
    """The support of the gradient of a 4x4-position output block reaches at most G_S_TAIL_HALO positions out."""
    codec = create_codec(name, pretrained=False).eval()
    x, w = (t.float().requires_grad_() for t in _tail_inputs(codec, 32))
    SFTCodec._g_s_tail(codec, x, w)[..., 64:80, 64:80].sum().backward()  # positions 16..19
    assert 1 <= max(_reach(t, 16, 19) for t in (x, w)) <= G_S_TAIL_HALO


def test_tiled_tail_equals_the_whole_and_a_short_halo_shows():
    codec = create_codec("sft-small", pretrained=False).eval().double()
    x, w = _tail_inputs(codec, 30)
    with torch.no_grad():
        whole = SFTCodec._g_s_tail(codec, x, w)
        tiled = run_tiled(lambda a, b: SFTCodec._g_s_tail(codec, a, b), (x, w), tile=8, halo=G_S_TAIL_HALO, scale=4)
        short = run_tiled(lambda a, b: SFTCodec._g_s_tail(codec, a, b), (x, w), tile=8, halo=1, scale=4)
    assert tiled.shape == whole.shape == (1, 3, 120, 148)
    assert (tiled - whole).abs().max() < 1e-10
    assert (short - whole).abs().max() > 1e-3  # the test can fail: tile borders show with too small a halo


def test_tiled_decode_gives_the_same_pixels(codec, sample_rgb, monkeypatch):
    """A 256x256 decode on 3 x 3 tiles of 96 px equals the whole-image decode: 8-bit values identical with the
    float64 synthesis, at most a few moved by 1 with float32."""
    import taskcomp.codec.sft as sft
    from taskcomp import bitstream

    x = torch.from_numpy(sample_rgb).permute(2, 0, 1)[None].float() / 255
    q = torch.linspace(0, 1, x.shape[-1]).expand(1, 1, *x.shape[-2:]).contiguous()
    data = bitstream.encode(codec, x, q)
    for synthesis in ("float64", "float32"):
        monkeypatch.setattr(sft, "DECODE_TILE", 10_000)
        whole = bitstream.decode(codec, data, synthesis=synthesis)
        monkeypatch.setattr(sft, "DECODE_TILE", 24)  # 96-px tiles: 3 x 3 of them
        tiled = bitstream.decode(codec, data, synthesis=synthesis)
        diff = ((whole * 255).round() - (tiled * 255).round()).abs()
        assert diff.max() <= (0 if synthesis == "float64" else 1) and (diff > 0).float().mean() < 1e-3


@pytest.mark.parametrize("name", ["sft-small", "sft-small-attn-ckbd-gmm", "sft-paper"])
def test_head_receptive_field_fits_in_the_halo(name):
    codec = create_codec(name, pretrained=False).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 96, 96, generator=g).requires_grad_()
    q = torch.rand(1, 1, 96, 96, generator=g).requires_grad_()
    feats, cond = codec._g_a_head(x, q)
    (feats[..., 24:26, 24:26].sum() + cond[..., 24:26, 24:26].sum()).backward()  # pixels 48..51
    assert 1 <= max(_reach(t, 48, 51) for t in (x, q)) <= G_A_HEAD_HALO


def test_tiled_head_equals_the_whole_and_a_short_halo_shows():
    codec = create_codec("sft-small", pretrained=False).eval().double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 100, 138, generator=g, dtype=torch.float64)
    q = torch.rand(1, 1, 100, 138, generator=g, dtype=torch.float64)
    with torch.no_grad():
        whole = codec._g_a_head(x, q)
        tiled = run_tiled(codec._g_a_head, (x, q), tile=32, halo=G_A_HEAD_HALO, down=2)
        short = run_tiled(codec._g_a_head, (x, q), tile=32, halo=2, down=2)
    for w, t, s in zip(whole, tiled, short):
        assert t.shape == w.shape and w.shape[-2:] == (50, 69)
        assert (t - w).abs().max() < 1e-10 and (s - w).abs().max() > 1e-4


def test_tiled_encode_codes_the_same_latents(codec, sample_rgb, monkeypatch):
    """Encoding the 256x256 sample on 64-px tiles gives y within float32 rounding of the whole-image encode, and a
    file that decodes to the same picture (8-bit values within 1)."""
    import taskcomp.codec.sft as sft
    from taskcomp import bitstream

    x = torch.from_numpy(sample_rgb).permute(2, 0, 1)[None].float() / 255
    q = torch.linspace(0, 1, x.shape[-1]).expand(1, 1, *x.shape[-2:]).contiguous()
    with torch.no_grad():
        y_whole, y_tiled = codec.g_a(x, q), codec.g_a(x, q, tile=64)
    assert (y_whole - y_tiled).abs().max() < 1e-3
    monkeypatch.setattr(sft, "ENCODE_TILE", 10_000)
    whole = bitstream.decode(codec, bitstream.encode(codec, x, q))
    monkeypatch.setattr(sft, "ENCODE_TILE", 64)
    tiled = bitstream.decode(codec, bitstream.encode(codec, x, q))
    assert ((whole - tiled) * 255).abs().max() <= 1.5


def test_run_tiled_refuses_bad_arguments():
    t = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="need tile"):
        run_tiled(lambda a: a, (t,), tile=0, halo=0)
    with pytest.raises(ValueError, match="multiples of down"):
        run_tiled(lambda a: a, (t,), tile=3, halo=0, down=2)
    with pytest.raises(ValueError, match="share their size"):
        run_tiled(lambda a, b: a, (t, torch.zeros(1, 1, 4, 5)), tile=2, halo=0)
    with pytest.raises(ValueError, match="multiple of 2"):
        run_tiled(lambda a: a, (torch.zeros(1, 1, 5, 4),), tile=2, halo=0, down=2)
