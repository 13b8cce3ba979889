"""HEVC / H.264 intra frames steered by quality maps (taskcomp.codec.standard): decodable by FFmpeg's decoders,
the map moves quality where it says, plain CRF for uniform maps, one-line errors for what cannot be coded."""

import builtins

import numpy as np
import pytest

pytest.importorskip("av")

from taskcomp.bench.metrics import psnr  # noqa: E402
from taskcomp.codec.standard import (  # noqa: E402
    QP_PER_Q,
    MissingExtraError,
    StandardCodecError,
    base_crf,
    block_qp_offsets,
    decode_standard,
    encode_standard,
    format_of_path,
    require_pyav,
)


def _image(h=64, w=96, seed=0):
    """A smooth image with texture (random noise would make every block equally hard)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 60 * np.sin(xx / 7.0 + c) * np.cos(yy / 5.0) for c in range(3)], axis=2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["hevc", "h264"])
def test_stream_decodes_with_ffmpeg_and_has_the_image_size(fmt):
    img = _image()
    data, info = encode_standard(img, None, crf=28, fmt=fmt)
    # an Annex B stream: starts with a start code
    assert data[:4] == b"\x00\x00\x00\x01" or data[:3] == b"\x00\x00\x01"
    dec = decode_standard(data, fmt)
    assert dec.shape == img.shape and dec.dtype == np.uint8
    assert psnr(img, dec) > 25
    assert info["chroma"] == "420"


@pytest.mark.parametrize("fmt", ["hevc", "h264"])
def test_map_favouring_left_half_gives_it_the_higher_psnr(fmt):
    img = _image(64, 128)
    # the same content on both halves, so only the map tells them apart
    img[:, 64:] = img[:, :64]
    m = np.zeros(img.shape[:2])
    m[:, :64] = 1.0
    plain = decode_standard(encode_standard(img, None, crf=30, fmt=fmt)[0], fmt)
    steered = decode_standard(encode_standard(img, m, crf=30, fmt=fmt)[0], fmt)
    assert abs(psnr(img[:, :64], plain[:, :64]) - psnr(img[:, 64:], plain[:, 64:])) < 1.0
    assert psnr(img[:, :64], steered[:, :64]) > psnr(img[:, 64:], steered[:, 64:]) + 2.0
    flipped = decode_standard(encode_standard(img, 1 - m, crf=30, fmt=fmt)[0], fmt)
    assert psnr(img[:, 64:], flipped[:, 64:]) > psnr(img[:, :64], flipped[:, :64]) + 2.0


def test_uniform_map_is_plain_crf_and_its_level_sets_the_rate():
    img = _image()
    plain, _ = encode_standard(img, None, crf=30)
    assert encode_standard(img, np.full(img.shape[:2], 0.5), crf=30)[0] == plain
    sizes = [len(encode_standard(img, np.full(img.shape[:2], q), crf=30)[0]) for q in (0.0, 0.5, 1.0)]
    assert sizes[0] < sizes[1] < sizes[2]
    assert base_crf(30, 1.0) == pytest.approx(30 - QP_PER_Q / 2)


def test_block_offsets_follow_the_map():
    m = np.zeros((40, 40))
    m[:16, :16] = 1.0  # one block high, the rest low; edge blocks are 8 px
    off, mean = block_qp_offsets(m)
    assert off.shape == (3, 3) and mean == pytest.approx(256 / 1600)
    assert off[0, 0] < 0 and (off.flatten()[1:] > 0).all()
    assert block_qp_offsets(np.full((20, 20), 0.3))[0].tolist() == [[0, 0], [0, 0]]


@pytest.mark.parametrize("fmt", ["hevc", "h264"])
def test_fixed_qp_and_other_aq_settings_are_refused(fmt):
    for params in ("qp=30", "aq-mode=0", "aq-strength=1"):
        with pytest.raises(StandardCodecError, match="ignores the map"):
            encode_standard(_image(), None, fmt=fmt, params=params)


def test_odd_sizes_grayscale_and_small_images():
    img = _image(33, 47)
    data, info = encode_standard(img, np.random.default_rng(0).random((33, 47)), crf=30)
    assert info["chroma"] == "444" and decode_standard(data).shape == (33, 47, 3)
    with pytest.raises(StandardCodecError, match="even sides"):
        encode_standard(img, None, chroma="420")
    gray = _image(32, 32)[:, :, 0]
    dec = decode_standard(encode_standard(gray, None, crf=20)[0])
    assert dec.shape == (32, 32, 3) and psnr(np.repeat(gray[:, :, None], 3, 2), dec) > 30
    with pytest.raises(StandardCodecError, match="at least 16 px"):
        encode_standard(_image(1, 64), None)
    strip = _image(1, 64)  # H.264 codes any size (4:4:4 for odd sides)
    assert decode_standard(encode_standard(strip, None, fmt="h264")[0], "h264").shape == (1, 64, 3)


def test_bad_maps_and_settings_get_one_line_errors():
    img = _image()
    for bad, words in [
        (np.full((10, 10), 0.5), "the image"),
        (np.full(img.shape[:2], 1.5), r"\[0, 1\]"),
        (np.full(img.shape[:2], np.nan), "finite"),
        (np.zeros((2, *img.shape[:2])), "2-D"),
    ]:
        with pytest.raises(StandardCodecError, match=words):
            encode_standard(img, bad)
    with pytest.raises(StandardCodecError, match="crf"):
        encode_standard(img, None, crf=60)
    with pytest.raises(StandardCodecError, match="unknown standard format"):
        encode_standard(img, None, fmt="av1")
    with pytest.raises(StandardCodecError, match="not a decodable hevc"):
        decode_standard(b"not a stream at all", "hevc")


def test_missing_pyav_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_av(name, *args, **kw):
        if name == "av" or name.startswith("av."):
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(MissingExtraError, match=r"taskcomp\[hevc\]"):
        require_pyav()


def test_format_of_path():
    assert format_of_path("a/b.HEVC") == "hevc" and format_of_path("x.265") == "hevc"
    assert format_of_path("x.h264") == "h264" and format_of_path("x.tcz") is None


@pytest.mark.parametrize("fmt", ["hevc", "h264"])
def test_stream_carries_no_encoder_banner(fmt):
    # x265's info SEI and x264's options SEI would be counted as image bits (2.3 kB / 0.7 kB)
    data, _ = encode_standard(_image(), None, crf=51, fmt=fmt)
    assert b"x265" not in data and b"x264" not in data and b"options" not in data
    assert len(data) < 600


def test_maps_of_one_pixel_strips_keep_their_shape():
    strip = _image(1, 64)
    m = np.zeros((1, 1, 1, 64))
    m[..., :32] = 1.0
    data, info = encode_standard(strip, m, crf=30, fmt="h264")
    assert decode_standard(data, "h264").shape == (1, 64, 3) and info["regions"] >= 1
    off, _ = block_qp_offsets(np.zeros((64, 1)))
    assert off.shape == (4, 1)


def test_cut_or_empty_hevc_streams_are_errors_not_concealed_frames():
    # a stream cut mid-slice: FFmpeg's HEVC decoder with err_detect=explode refuses it (a cut that ends cleanly
    # between coding units can still decode concealed: Annex B has no length or checksum; see decode_standard)
    data, _ = encode_standard(_image(256, 256), None, crf=20)
    for bad, words in [(data[: len(data) // 2], "not a decodable hevc"), (b"", "empty")]:
        with pytest.raises(StandardCodecError, match=words):
            decode_standard(bad, "hevc")


def test_streams_are_tagged_bt601():
    import io

    import av

    data, _ = encode_standard(_image(), None, crf=30)
    with av.open(io.BytesIO(data), format="hevc") as c:
        cc = c.streams.video[0].codec_context
        assert (cc.color_primaries, cc.color_trc, cc.colorspace) == (6, 6, 6)  # smpte170m (BT.601)
