"""Standard bitstreams steered by quality maps: one HEVC (or H.264) intra frame through FFmpeg's libx265
(libx264), with the map turned into per-block QP offsets.

A ``.tcz`` file needs taskcomp's decoder; an HEVC or H.264 stream is read by FFmpeg, browsers, phones and
hardware decoders. The map is pooled to the encoder's quantisation blocks (16x16 px: x265 with
``qg-size=16``, x264's macroblocks) and each block gets the QP offset

    dQP(block) = -qp_per_q * (mean of the map over the block - mean of the map)

on top of the rate factor (CRF) ``crf - qp_per_q * (mean of the map - 0.5)``; a uniform map is plain CRF.
``qp_per_q`` (:data:`QP_PER_Q`) matches the two codecs' Lagrangians: the SFT codec trades rate for
distortion with ``lambda(q) = 1e-3 exp(4.382 q)``, HEVC's mode decision with ``lambda ~ 2^(QP / 3)`` (the HM
and x265 rate-distortion optimisation), so one unit of q is ``3 * 4.382 / ln 2 = 18.97`` QP. The offsets
reach the encoder as FFmpeg's region-of-interest side data (the ``addroi`` filter, one region per run of
blocks with one offset; the wrappers scale ``qoffset`` by 51 for 8-bit video). The encoders honour them only
in CRF mode with adaptive quantisation on: we use ``aq-mode=1:aq-strength=0``, which codes a uniform map
exactly as ``aq-mode=0`` (x265's ``tune psnr``) does, byte for byte, and still applies the offsets; a fixed QP
(``qp=``) would silently drop them and is refused.

Chroma: 4:2:0 (the profile every decoder reads: HEVC Main, H.264 High) when both sides are even, 4:4:4
(HEVC Main 4:4:4, H.264 High 4:4:4 Predictive) otherwise, since 4:2:0 cannot code an odd side; ``chroma``
forces one. The streams are tagged BT.601 (``smpte170m`` primaries, transfer and matrix, limited range: what
FFmpeg's RGB to YCbCr conversion does), so players do not guess BT.709. The streams carry no encoder banner: x265's informational SEI (its version and options, 2.3 kB) is
switched off (``info=0``) and x264's is removed by FFmpeg's ``filter_units`` bitstream filter, as BPG and the
field's HEVC anchors leave it out; otherwise it would be counted as image bits (0.29 bpp on a 256-px crop). Grayscale images are coded as RGB with equal channels. x265 codes images of at least 16 px per
side; H.264 any size.

Needs PyAV (``pip install "taskcomp[hevc]"``), whose wheels bundle FFmpeg with libx265 and libx264 (GPL; HEVC
and H.264 are covered by patent pools). Sources: FFmpeg's ``libavcodec/libx265.c`` / ``libx264.c`` (region
of interest -> quant offsets), ``libavfilter/vf_addroi.c``; x265 docs (``qg-size``, ``aq-mode``).
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = [
    "STANDARD_FORMATS",
    "QP_PER_Q",
    "DEFAULT_CRF",
    "MissingExtraError",
    "StandardCodecError",
    "require_pyav",
    "format_of_path",
    "block_qp_offsets",
    "base_crf",
    "encode_standard",
    "decode_standard",
    "standard_roundtrip",
]

#: QP per unit of quality-map value: ``3 * 4.382 / ln 2`` (sft-small's lambda(q) against HEVC's
#: ``lambda ~ 2^(QP/3)``; module docstring).
QP_PER_Q = 3.0 * 4.382 / math.log(2.0)
#: CRF of a map whose mean is 0.5 (q = 0.5 uniform) when none is given.
DEFAULT_CRF = 32.0
_MAX_QP = 51  # 8-bit video; FFmpeg's wrappers scale AVRegionOfInterest.qoffset in [-1, 1] by this


@dataclass(frozen=True)
class StandardFormat:
    """One standard bitstream: FFmpeg encoder, raw (Annex B) muxer and decoder, block size of its QP offsets,
    file suffixes, the smallest side it codes."""

    name: str
    encoder: str
    container: str
    block: int
    suffixes: tuple[str, ...]
    min_side: int
    params_option: str


#: Formats by name: ``hevc`` (x265) and ``h264`` (x264).
STANDARD_FORMATS = {
    "hevc": StandardFormat("hevc", "libx265", "hevc", 16, (".hevc", ".h265", ".265"), 16, "x265-params"),
    "h264": StandardFormat("h264", "libx264", "h264", 16, (".h264", ".264", ".avc"), 1, "x264-params"),
}


class MissingExtraError(ImportError):
    """PyAV (the ``hevc`` extra) is not installed."""


class StandardCodecError(ValueError):
    """An image, map or setting the standard encoder cannot code (one line)."""


def require_pyav():
    """The ``av`` module (PyAV).

    Raises:
        MissingExtraError: PyAV is missing (one line naming the extra to install).
    """
    try:
        import av
    except ImportError:
        raise MissingExtraError(
            'HEVC/H.264 coding needs PyAV: pip install "taskcomp[hevc]" (FFmpeg with libx265/libx264 inside, GPL)'
        ) from None
    return av


def _format(fmt: str) -> StandardFormat:
    if fmt not in STANDARD_FORMATS:
        raise StandardCodecError(f"unknown standard format {fmt!r}; formats: {', '.join(STANDARD_FORMATS)}")
    return STANDARD_FORMATS[fmt]


def format_of_path(path: str | Path) -> str | None:
    """The standard format a file name's suffix names (``.hevc``/``.h265``/``.265``, ``.h264``/``.264``/``.avc``),
    or None."""
    suffix = Path(path).suffix.lower()
    return next((f.name for f in STANDARD_FORMATS.values() if suffix in f.suffixes), None)


def _as_map(qmap, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A quality map as a float64 (H, W) array in [0, 1] (of the image's size ``shape`` when given); a tensor or
    array, (1, 1, H, W) ok."""
    m = qmap.detach().cpu().numpy() if hasattr(qmap, "detach") else np.asarray(qmap)
    m = np.asarray(m, dtype=np.float64)
    while m.ndim > 2 and m.shape[0] == 1:  # (1, 1, H, W) -> (H, W); a 1-px side stays (H or W = 1 is an image)
        m = m[0]
    if m.ndim != 2:
        raise StandardCodecError(f"quality map must be 2-D (H, W), got shape {tuple(np.shape(qmap))}")
    if shape is not None and m.shape != tuple(shape):
        raise StandardCodecError(f"quality map is {m.shape[1]}x{m.shape[0]}, the image {shape[1]}x{shape[0]}")
    if not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise StandardCodecError("quality map values must be finite and in [0, 1]")
    return m


def block_qp_offsets(qmap, block: int = 16, qp_per_q: float = QP_PER_Q) -> tuple[np.ndarray, float]:
    """Per-block QP offsets of a quality map, and the map's mean.

    Args:
        qmap: (H, W) values in [0, 1] (array or tensor).
        block: the encoder's quantisation block in px (16 for x265 ``qg-size=16`` and x264).
        qp_per_q: QP per unit of map value (:data:`QP_PER_Q`).

    Returns:
        (offsets, mean): int (ceil(H / block), ceil(W / block)) offsets in [-51, 51], negative where the map is
        above its mean (finer quantisation), ``round(-qp_per_q * (block mean - map mean))``; edge blocks average
        the pixels they hold. ``mean`` is the map's mean over pixels.

    Raises:
        StandardCodecError: a map that is not 2-D or has values outside [0, 1].
    """
    m = _as_map(qmap)
    H, W = m.shape
    bh, bw = -(-H // block), -(-W // block)
    padded = np.full((bh * block, bw * block), np.nan)
    padded[:H, :W] = m
    means = np.nanmean(padded.reshape(bh, block, bw, block), axis=(1, 3))
    mean = float(m.mean())
    off = np.clip(np.round(-qp_per_q * (means - mean)), -_MAX_QP, _MAX_QP).astype(np.int64)
    return off, mean


def base_crf(crf: float, map_mean: float, qp_per_q: float = QP_PER_Q) -> float:
    """The rate factor a map with mean ``map_mean`` is coded at: ``crf - qp_per_q * (map_mean - 0.5)``, clipped
    to x265/x264's [0, 51]."""
    return float(min(max(crf - qp_per_q * (map_mean - 0.5), 0.0), float(_MAX_QP)))


def _regions(off: np.ndarray, block: int, H: int, W: int) -> list[tuple[int, int, int, int, int]]:
    """(x, y, w, h, offset) rectangles covering the non-zero offsets: one per horizontal run of equal offsets in a
    block row, clipped to the image."""
    out = []
    for by in range(off.shape[0]):
        row = off[by]
        bx = 0
        while bx < len(row):
            end = bx
            while end + 1 < len(row) and row[end + 1] == row[bx]:
                end += 1
            if row[bx] != 0:
                x, y = bx * block, by * block
                out.append((x, y, min((end + 1) * block, W) - x, min(block, H - y), int(row[bx])))
            bx = end + 1
    return out


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise StandardCodecError(f"image must be uint8, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise StandardCodecError(f"image must be (H, W, 3) RGB or (H, W) gray, got shape {img.shape}")
    return np.ascontiguousarray(img)


def _chroma(chroma: str, H: int, W: int) -> str:
    if chroma == "auto":
        return "420" if H % 2 == 0 and W % 2 == 0 else "444"
    if chroma not in ("420", "444"):
        raise StandardCodecError(f"chroma must be auto, 420 or 444, got {chroma!r}")
    if chroma == "420" and (H % 2 or W % 2):
        raise StandardCodecError(
            f"4:2:0 needs even sides, the image is {W}x{H}: use --chroma 444 or auto (chroma: 444 in a recipe)"
        )
    return chroma


def encode_standard(
    img: np.ndarray,
    qmap=None,
    crf: float = DEFAULT_CRF,
    fmt: str = "hevc",
    chroma: str = "auto",
    preset: str = "slow",
    qp_per_q: float = QP_PER_Q,
    params: str = "",
) -> tuple[bytes, dict]:
    """Code one image as a single intra frame of a standard bitstream, steered by a quality map.

    Args:
        img: (H, W, 3) RGB or (H, W) gray uint8.
        qmap: (H, W) quality map in [0, 1] (array or tensor), or None for plain CRF (a uniform map).
        crf: the rate factor of a map whose mean is 0.5 (:func:`base_crf`), in [0, 51]; lower is better quality.
        fmt: ``hevc`` (x265) or ``h264`` (x264).
        chroma: ``auto`` (4:2:0 for even sides, else 4:4:4), ``420`` or ``444``.
        preset: the encoder's speed preset (``slow`` as in the Kodak benchmark).
        qp_per_q: QP per unit of map value (:data:`QP_PER_Q`).
        params: extra ``key=value:...`` encoder parameters; ``qp``, ``aq-mode`` and ``aq-strength`` are ours.

    Returns:
        (data, info): the raw Annex B stream (FFmpeg reads it as ``-f hevc`` / ``-f h264``, a ``.hevc`` /
        ``.h264`` file), and a dict with ``crf`` (the rate factor used), ``chroma``, ``regions`` (ROI rectangles
        sent), ``map_mean``.

    Raises:
        MissingExtraError: PyAV missing.
        StandardCodecError: bad image, map, chroma, crf or parameters, or an image x265 cannot code (under 16 px).
    """
    av = require_pyav()
    f = _format(fmt)
    img = _rgb(img)
    H, W = img.shape[:2]
    if min(H, W) < f.min_side:
        raise StandardCodecError(
            f"{fmt} (x265) codes images of at least {f.min_side} px per side, got {W}x{H}: use --format h264 or tcz"
        )
    if not (isinstance(crf, (int, float)) and math.isfinite(crf) and 0 <= crf <= _MAX_QP):
        raise StandardCodecError(f"crf must be a number in [0, 51], got {crf!r}")
    for key in ("qp", "aq-mode", "aq-strength"):
        if any(p.split("=")[0].strip() == key for p in params.split(":") if p):
            raise StandardCodecError(
                f"encoder parameter {key} is set by taskcomp (a fixed QP or another AQ setting ignores the map)"
            )
    pix = "yuv420p" if _chroma(chroma, H, W) == "420" else "yuv444p"
    if qmap is not None:
        off, mean = block_qp_offsets(_as_map(qmap, (H, W)), f.block, qp_per_q)
        rate = base_crf(crf, mean, qp_per_q)
        regions = _regions(off, f.block, H, W)
    else:
        mean, rate, regions = None, float(crf), []

    # aq-mode=1 with strength 0: no perceptual AQ (as tune psnr), yet the encoder applies the ROI offsets. The colour
    # tags say what swscale did (BT.601 matrix, limited range): untagged streams are often shown as BT.709.
    tags = "colorprim=smpte170m:transfer=smpte170m:colormatrix=smpte170m"
    extra = f"aq-mode=1:aq-strength=0:{tags}" + (f":{params}" if params else "")
    if fmt == "hevc":  # info=0: no SEI with the encoder's version and options (2.3 kB, 0.29 bpp on a 256-px crop)
        extra = f"log-level=error:info=0:qg-size={f.block}:" + extra
    buf = io.BytesIO()
    out = av.open(buf, "w", format=f.container)
    try:
        stream = out.add_stream(f.encoder, rate=1)
        stream.width, stream.height, stream.pix_fmt = W, H, pix
        stream.options = {"crf": f"{rate:.2f}", "preset": preset, f.params_option: extra}
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=pix)
        if regions:
            frame = _with_regions(av, frame, regions, W, H, pix)
        frame.pts = 0
        packets = [*stream.encode(frame), *stream.encode()]
        if fmt == "h264":  # x264 has no info=0: drop its SEI (NAL type 6: version and options, ~0.7 kB)
            bsf = av.BitStreamFilterContext("filter_units=remove_types=6", stream)
            packets = [q for p in [*packets, None] for q in bsf.filter(p)]
        for packet in packets:
            out.mux(packet)
    except (av.error.FFmpegError, ValueError) as e:
        raise StandardCodecError(f"{f.encoder} refused the image ({W}x{H}, {pix}, preset {preset}): {e}") from None
    finally:
        out.close()
    info = {"crf": rate, "chroma": pix[3:6], "regions": len(regions), "map_mean": mean}
    return buf.getvalue(), info


def _with_regions(av, frame, regions, W: int, H: int, pix: str):
    """The frame with one ``addroi`` region per rectangle (region-of-interest side data; qoffset = dQP / 51)."""
    graph = av.filter.Graph()
    last = graph.add_buffer(width=W, height=H, format=pix, time_base=Fraction(1, 1))
    for x, y, w, h, dqp in regions:
        node = graph.add("addroi", f"x={x}:y={y}:w={w}:h={h}:qoffset={dqp}/{_MAX_QP}")
        last.link_to(node)
        last = node
    sink = graph.add("buffersink")
    last.link_to(sink)
    graph.configure()
    color_range = frame.color_range
    graph.push(frame)
    out = graph.pull()
    out.color_range = color_range  # the graph may mark the range; the encoder must see the frame's own
    return out


def decode_standard(data: bytes, fmt: str = "hevc") -> np.ndarray:
    """Decode the first frame of a raw HEVC / H.264 stream with FFmpeg's decoder.

    Args:
        data: the stream's bytes (as :func:`encode_standard` writes them).
        fmt: ``hevc`` or ``h264``.

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        MissingExtraError: PyAV missing.
        StandardCodecError: not a decodable stream of that format (one line). Damage the decoder notices is an
            error (``err_detect=explode``), but a raw Annex B stream has no length or checksum: a stream cut short
            can still decode to a concealed frame (H.264 always did in our tests, HEVC when cut between coding units).
    """
    av = require_pyav()
    f = _format(fmt)
    if not data:
        raise StandardCodecError(f"not a decodable {fmt} stream: the file is empty")
    try:
        with av.open(io.BytesIO(data), format=f.container) as c:
            # explode: a damaged or cut stream is an error, not a frame patched up by error concealment
            c.streams.video[0].codec_context.options = {"err_detect": "explode"}
            frame = next(c.decode(video=0))
            if frame.is_corrupt:
                raise StandardCodecError(f"not a decodable {fmt} stream: the frame is damaged")
            return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration, ValueError, IndexError) as e:
        if isinstance(e, StandardCodecError):
            raise
        reason = "no frame" if isinstance(e, (StopIteration, IndexError)) else str(e).split(": '")[0] or "no frame"
        raise StandardCodecError(f"not a decodable {fmt} stream: {reason}") from None


def standard_roundtrip(
    img: np.ndarray, fmt: str, crf: float, qmap=None, **kw
) -> tuple[np.ndarray, int, float, float, dict]:
    """Encode with :func:`encode_standard` and decode back.

    Returns:
        (decoded (H, W, 3) uint8, file size in bytes, encode seconds, decode seconds, the encoder's info dict).
    """
    t0 = time.perf_counter()
    data, info = encode_standard(img, qmap, crf=crf, fmt=fmt, **kw)
    t1 = time.perf_counter()
    dec = decode_standard(data, fmt)
    return dec, len(data), t1 - t0, time.perf_counter() - t1, info
