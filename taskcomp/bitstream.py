"""The ``.tcz`` container: one image coded by an SFT codec.

Layout (all integers unsigned; varints are LEB128)::

    magic     4 bytes  b"TCZ\\x89"
    version   1 byte   2 (1: older files, still decoded) in bits 0-6; bit 7 set: the source image was grayscale
    codec     1 byte length + ASCII name (e.g. "sft-small"; never empty)
    weights   8 bytes  first 8 bytes of the codec's state-dict SHA-256 (weights and CDF tables)
    width     varint
    height    varint
    y_len     varint   length of the y stream
    z_len     varint   length of the z stream
    payload   y stream, z stream (rANS, CompressAI)
    crc32     4 bytes  big-endian CRC-32 of everything before it

The z grid follows from the image size (``padded_size`` / 64). The header is about 30 bytes; real bpp
is always the whole file's size in bits over the pixel count.

Grayscale (bit 7 of the version byte, written only for grayscale sources, so colour files are byte-for-byte what
they were and files without the flag decode as before): the codec codes three channels whatever the source, and
spends what it spends on them (the flag does not change the rate); :func:`decode` then returns the luma
(ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B) of the decoded RGB in all three channels, so a gray photo comes back
gray instead of with colour fringes, and ``taskcomp decompress`` writes it as a one-channel (mode L) image.

Claimed size (:func:`min_z_stream_bytes`): every position of the z grid costs each z channel at least
``-log2(p_max)`` bits, p_max being the channel's most probable symbol in the codec's quantized CDF table, so a
legitimate file's z stream has a floor proportional to the image size it claims. :func:`decode` refuses a file
whose z stream is below that floor before any synthesis (a 398-byte file claiming 65536x96 pixels); the decode
time and memory of a file that passes stay proportional to what a file of its size can hold.

Coding parameters (version 2). The z stream codes ``round(z - median)`` per channel with fixed CDF tables;
z_hat = symbol + median is one float32 addition, the same everywhere. The y stream codes
``round(y - mean)`` with a Gaussian CDF chosen by a scale-table index; both the index and the mean come from
the hyper-decoder ``h_s(z_hat)``. If encoder and decoder disagree on an index, the range coder desynchronises
and the rest of the image is garbage; if they disagree on a mean by a float bit, y_hat moves. Float
convolutions differ in their last bits between devices, BLAS libraries and thread counts, so version 2 computes ``h_s`` in exact integer arithmetic
(:mod:`taskcomp.codec.exact`): z_hat to fixed point at 2^-18, clamped to +-256, integer weights at 2^-Fw per
output channel, float64 convolutions on the CPU whose every partial sum is an integer < 2^52 (checked from the
weights), so every summation order, thread count and device gives the same integers; rescaling and LeakyReLU
(slope round(0.01 * 2^20) / 2^20) use exact power-of-two rounding. Indexes come from float64 comparisons of
these exact scales with the scale table; means are the exact values rounded once to float32; the decoder's
y_hat = symbol + mean is one float32 addition. So y_hat and z_hat are bit-identical on every machine.
The scales and means differ from the float ``h_s`` (what ``SFTCodec.forward`` uses) by 2.5e-4 at most; file
sizes were unchanged on all 36 Kodak points measured.

Pixels (version 2). The decoder runs the synthesis transform in float64 (:meth:`SFTCodec.decompress`,
``synthesis="float64"``): not exact, but its rounding (~1e-13) is far below what moves an 8-bit value, so
decoded images are identical across thread counts (tested, separate processes) and, to that precision,
across devices (CPU vs CUDA: ``scripts/gpu_check.sh``). What is guaranteed: identical coding parameters, so
never a corrupted decode; what is measured: identical pixels. ``synthesis="float32"`` is 4-5x faster on the
CPU (0.9 vs 4.3 s per Kodak image on 2 cores) and may move a few values by 1. Decoded images are no longer
bit-identical to ``SFTCodec.forward(quantize="round")`` (float ``h_s``, float32): 0.012% of kodim01's
8-bit values differ, by 1.

Context codecs (``sft-small-ckbd`` etc., :mod:`taskcomp.codec.sft_context`) use the same container: their y
stream holds the symbols ``round(y - mu_h)`` (checkerboard: anchors, then non-anchors; raster scan: position by
position, all channels together), each coded with its own CDF from exact coding parameters
(:mod:`taskcomp.codec.entropy_coding`); the codec name and weights id in the header keep another codec from
decoding it.

Version 1 files (float ``h_s`` on the coding path, float32 synthesis) decode with that path, as before; on
another device or thread count than the encoder's they may decode wrongly (a scale index or mean off by
one float bit). Encoding always writes version 2.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import PurePath

import torch
from torch import Tensor

from .codec.sft import DECODE_TILE, G_S_TAIL_HALO, SFTCodec, default_synthesis, padded_size

__all__ = [
    "BitstreamError",
    "Header",
    "pack",
    "unpack",
    "encode",
    "decode",
    "MAGIC",
    "VERSION",
    "SUPPORTED_VERSIONS",
    "min_z_stream_bytes",
    "is_gray",
    "decoded_array",
    "luma",
]

MAGIC = b"TCZ\x89"
VERSION = 2
#: Versions :func:`decode` reads (1: float coding path, see the module docstring).
SUPPORTED_VERSIONS = (1, 2)
MAX_SIDE = 1 << 16
#: Largest image the codec takes in one piece (its activations at full resolution need ~1 GB per 4 MP).
MAX_PIXELS = 64_000_000
#: Bit 7 of the version byte: the source image was grayscale (decode returns its luma in all three channels).
GRAY_FLAG = 0x80
#: Luma weights of :func:`decode` for grayscale files (ITU-R BT.601, as PIL's ``convert("L")``).
LUMA = (0.299, 0.587, 0.114)


class BitstreamError(ValueError):
    """A .tcz file that cannot be decoded (foreign, truncated, corrupted, or for another codec)."""


@dataclass(frozen=True)
class Header:
    """A .tcz header: codec name, 8-byte weights id, image size, format version (1 or 2), and whether the source
    image was grayscale (``gray``: bit 7 of the version byte)."""

    codec: str
    weights: bytes  # 8 bytes
    width: int
    height: int
    version: int = VERSION
    gray: bool = False


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(buf):
            raise BitstreamError("truncated .tcz file (header)")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7
        if shift > 35:
            raise BitstreamError("corrupted .tcz header (bad integer)")


def pack(header: Header, y_stream: bytes, z_stream: bytes) -> bytes:
    """Serialise a header and the two rANS streams (as ``header.version``, 1 or 2; ``header.gray`` sets bit 7 of
    the version byte). Raises ValueError for an empty or over-long codec name or a weights id that is not 8 bytes."""
    name = header.codec.encode("ascii")
    if not 1 <= len(name) <= 255 or len(header.weights) != 8:
        raise ValueError("codec name must be 1 to 255 ASCII bytes and weights id 8 bytes")
    if header.version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported .tcz version {header.version}")
    body = b"".join(
        [
            MAGIC,
            bytes([header.version | (GRAY_FLAG if header.gray else 0), len(name)]),
            name,
            header.weights,
            _varint(header.width),
            _varint(header.height),
            _varint(len(y_stream)),
            _varint(len(z_stream)),
            y_stream,
            z_stream,
        ]
    )
    return body + struct.pack(">I", zlib.crc32(body))


def unpack(data: bytes) -> tuple[Header, bytes, bytes]:
    """Parse and verify a .tcz byte string: magic, version, lengths, CRC-32, and the encoder's size limits
    (:data:`MAX_SIDE` per side, :data:`MAX_PIXELS` in all), so a header claiming a huge image is refused before
    anything is allocated. Raises BitstreamError with a one-line reason."""
    if len(data) == 0:
        raise BitstreamError("empty file, not a .tcz bitstream")
    if len(data) < 4 or not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise BitstreamError(f"truncated .tcz file ({len(data)} bytes)")
        raise BitstreamError("not a taskcomp .tcz file (bad magic number)")
    if len(data) < 4 + 2 + 8 + 4 + 4:
        raise BitstreamError(f"truncated .tcz file ({len(data)} bytes)")
    version, gray = data[4] & ~GRAY_FLAG, bool(data[4] & GRAY_FLAG)
    if version not in SUPPORTED_VERSIONS:
        raise BitstreamError(
            f"unsupported .tcz version {version} (this taskcomp reads versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    pos = 6 + data[5]
    try:
        name = data[6:pos].decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("corrupted .tcz header (codec name)") from None
    if not name:
        raise BitstreamError("corrupted .tcz header (empty codec name)")
    weights = data[pos : pos + 8]
    pos += 8
    width, pos = _read_varint(data, pos)
    height, pos = _read_varint(data, pos)
    y_len, pos = _read_varint(data, pos)
    z_len, pos = _read_varint(data, pos)
    expected = pos + y_len + z_len + 4
    body, crc = data[:-4], struct.unpack(">I", data[-4:])[0]
    if zlib.crc32(body) != crc or len(data) != expected:
        # The checksum decides; the declared length only tells which failure to report.
        if len(data) < expected:
            raise BitstreamError(f"truncated .tcz file ({len(data)} of {expected} bytes)")
        raise BitstreamError("corrupted .tcz file (checksum mismatch)")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise BitstreamError(f"corrupted .tcz header (image size {width}x{height})")
    if width * height > MAX_PIXELS:  # the encoder's limit, checked before the decoder allocates anything
        raise BitstreamError(
            f".tcz header claims {width}x{height} pixels, above the {MAX_PIXELS // 10**6} MP this "
            "codec codes in one piece (no encoder writes such a file)"
        )
    y_stream, z_stream = body[pos : pos + y_len], body[pos + y_len :]
    return Header(name, weights, width, height, version, gray), y_stream, z_stream


def weights_id(codec: SFTCodec) -> bytes:
    """The 8-byte weights id stored in files, from ``codec.checkpoint_info['hash']``."""
    h = getattr(codec, "checkpoint_info", {}).get("hash")
    if not h:
        from .codec.checkpoint import state_dict_hash

        h = state_dict_hash(codec.state_dict())
        codec.checkpoint_info = {**getattr(codec, "checkpoint_info", {}), "hash": h}
    return bytes.fromhex(h[:16])


def _codec_name(codec) -> str:
    """The codec name a file made by ``codec`` carries (``checkpoint_info['codec']``, else ``sft-custom``)."""
    return getattr(codec, "checkpoint_info", {}).get("codec") or "sft-custom"


def is_gray(x: Tensor) -> bool:
    """Whether an image tensor (B, 3, H, W) is grayscale: its three channels are exactly equal (a mode L image
    loaded as RGB, or an RGB file with R = G = B)."""
    return x.shape[-3] == 3 and bool(
        torch.equal(x[..., 0, :, :], x[..., 1, :, :]) and torch.equal(x[..., 1, :, :], x[..., 2, :, :])
    )


def encode(
    codec: SFTCodec,
    x: Tensor,
    qmap: Tensor,
    return_likelihoods: bool = False,
    version: int = VERSION,
    gray: bool | None = None,
):
    """Code one image x (1, 3, H, W) in [0, 1] under qmap (1, 1, H, W) in [0, 1] into .tcz bytes.

    ``gray``: record in the header that the source is grayscale, so :func:`decode` returns gray pixels (the luma
    of the decoded RGB); None: when x's three channels are equal (:func:`is_gray`). The rate is what the codec
    spends on the three channels either way: the flag costs nothing and saves nothing.

    x and qmap must be on the codec's device; entropy coding runs on the CPU. With ``return_likelihoods``,
    returns ``(bytes, {"y", "z"} likelihoods of the coded latents)``. ``version=1`` writes the old float coding
    path (for compatibility tests only: such files are not portable across devices).

    Raises:
        ValueError: one line for an image or map that is not a finite float tensor of the right shape with
            values in [0, 1] (:func:`taskcomp.checks.check_codec_inputs`; a map of 2.0 or pixels in 0..255 are
            refused, not clamped), or an image above :data:`MAX_SIDE` per side or :data:`MAX_PIXELS` pixels.
    """
    from .checks import check_codec_inputs

    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported .tcz version {version}")
    x, qmap = check_codec_inputs(codec, x, qmap, batch=1)
    H, W = x.shape[-2:]
    if H > MAX_SIDE or W > MAX_SIDE or H * W > MAX_PIXELS:
        raise ValueError(
            f"image {W}x{H} is too large (limits: {MAX_SIDE} px per side, {MAX_PIXELS // 10**6} MP); "
            "downscale or tile it"
        )
    out = codec.compress(x, qmap, exact=version >= 2)
    gray = is_gray(x) if gray is None else bool(gray)
    data = pack(
        Header(_codec_name(codec), weights_id(codec), W, H, version, gray), out["strings"][0][0], out["strings"][1][0]
    )
    return (data, out["likelihoods"]) if return_likelihoods else data


#: Peak memory of a CPU decode, measured with sft-small: the synthesis' last two stages run on tiles
#: (:data:`~taskcomp.codec.sft.DECODE_TILE`), whose peak per tile pixel is this (a whole 1 MP image took 6.5 GB with
#: the float64 synthesis, 1.6 GB with float32) ...
DECODE_BYTES_PER_PIXEL = {"float64": 6.0e3, "float32": 1.1e3}
#: ... plus this per pixel of the image (latents, early stages, output; a tiled 6 MP float64 decode peaked at
#: 3.36 GB, 145 B per pixel above the tile and the process's share) ...
DECODE_BYTES_PER_IMAGE_PIXEL = 150
#: ... plus the process's own share.
DECODE_BASE_BYTES = 0.6e9


def _available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (Linux ``MemAvailable``), or None elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def decode_memory(padded_pixels: int, synthesis: str) -> float:
    """Estimated peak bytes of a CPU decode of an image of ``padded_pixels`` (padded to a multiple of 64) with the
    ``"float64"`` or ``"float32"`` synthesis: a 12 MP photo needs ~4.3 GB in float64 (tiled synthesis)."""
    tile_pixels = (4 * (DECODE_TILE + 2 * G_S_TAIL_HALO)) ** 2
    return (
        DECODE_BASE_BYTES
        + DECODE_BYTES_PER_IMAGE_PIXEL * padded_pixels
        + DECODE_BYTES_PER_PIXEL[synthesis] * min(padded_pixels, tile_pixels)
    )


def check_decode_memory(width: int, height: int, padded_pixels: int, synthesis: str, codec=None) -> None:
    """Refuse, before allocating, a CPU decode that would not fit in the memory available (Linux
    ``MemAvailable``; no check where it is unknown or the codec is on a GPU).

    The estimate is :func:`decode_memory`. Without this check a decode larger than memory (or a small file whose
    header claims a huge image) runs until the process is killed.

    Raises:
        MemoryError: one line with the estimate, the memory available and what to do.
    """
    weight = next(codec.parameters(), None) if codec is not None else None
    if weight is not None and weight.device.type != "cpu":
        return  # a GPU's memory is the device's to report
    avail = _available_memory()
    need = decode_memory(padded_pixels, synthesis)
    if avail is not None and need > avail:
        hint = (
            "use --synthesis float32 (less memory; its pixels are not bit-identical across machines), "
            if synthesis == "float64" and decode_memory(padded_pixels, "float32") < avail
            else ""
        )
        raise MemoryError(
            f"decoding this {width}x{height} image with the {synthesis} synthesis needs about "
            f"{need / 1e9:.1f} GB of memory, {avail / 1e9:.1f} GB are available: {hint}decode on a "
            "machine with more memory"
        )


def luma(x: Tensor) -> Tensor:
    """What :func:`decode` returns for a grayscale file from the decoded RGB ``x`` (B, 3, H, W): its luma
    (:data:`LUMA`, ITU-R BT.601) clamped to [0, 1], in all three channels (a new contiguous tensor). Also for
    comparing another reconstruction of a gray file (the forward pass's) with the decode."""
    r, g, b = LUMA
    y = (r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]).clamp_(0, 1)
    return y.expand(-1, 3, -1, -1).contiguous()


def decoded_array(x_hat: Tensor, data: bytes):
    """What ``taskcomp decompress`` writes for :func:`decode`'s output ``x_hat`` of the file ``data``: an (H, W)
    uint8 array (a one-channel, mode L image) when the file's header says the source was grayscale, else
    (H, W, 3) uint8 RGB. Raises BitstreamError for bytes :func:`unpack` refuses."""
    from .io import tensor_to_image

    arr = tensor_to_image(x_hat)
    return arr[..., 0].copy() if unpack(bytes(data))[0].gray else arr


#: rANS slack in bits per coded symbol: CompressAI's coder (ryg_rans Rans64: state >= 2^31, 16-bit CDFs) maps a
#: state x to floor(x / f) * 2^16 + ..., at least x * 2^16 / f * (1 - 2^-15), so it may emit up to
#: -log2(1 - 2^-15) = 4.4e-5 bits less than -log2(f / 2^16) per symbol; counted with margin.
RANS_SLACK_BITS = 1e-4


def z_bits_per_position(codec: SFTCodec) -> float:
    """The fewest bits one position of the z grid can cost in ``codec``'s z stream (all Z channels): the sum over
    channels of ``-log2(p_max)`` (p_max: the largest symbol frequency of the channel's quantized CDF over 2^16),
    less :data:`RANS_SLACK_BITS` per symbol. sft-small: 46.2 bits. 0.0 when the codec has no CDF tables."""
    eb = codec.entropy_bottleneck
    cdf, length = eb._quantized_cdf, eb._cdf_length
    if cdf.numel() == 0 or length.numel() != cdf.shape[0]:
        return 0.0
    precision = int(getattr(eb, "entropy_coder_precision", 16))
    freqs = torch.diff(cdf.to(torch.int64), dim=1)
    valid = torch.arange(freqs.shape[1])[None, :] < (length.to(torch.int64)[:, None] - 1)
    top = torch.where(valid, freqs, torch.zeros_like(freqs)).amax(1).clamp(min=1, max=1 << precision)
    bits = precision - torch.log2(top.to(torch.float64)) - RANS_SLACK_BITS
    return float(bits.clamp(min=0).sum())


def min_z_stream_bytes(codec: SFTCodec, width: int, height: int) -> int:
    """A true lower bound, in bytes, on the z stream of any .tcz file ``codec`` writes for a ``width`` x ``height``
    image: positions of the z grid (``padded_size`` / 64) times :func:`z_bits_per_position`, over 8, rounded down
    (the coder's 8-byte final state is not counted, for margin). A blank page meets it with room: its z stream
    is the part of the file that cannot shrink. sft-small: 23 bytes at 128x96, 11.8 KB at 65536x96."""
    hp, wp = padded_size(height, width)
    return int((hp // 64) * (wp // 64) * z_bits_per_position(codec) // 8)


def check_claimed_size(codec: SFTCodec, header: Header, z_stream: bytes) -> None:
    """Refuse a file whose z stream is shorter than any file ``codec`` writes for the image size its header
    claims (:func:`min_z_stream_bytes`): checked before any synthesis, so a small file cannot make the decoder
    work for a huge image.

    Raises:
        BitstreamError: one line with both sizes in bytes.
    """
    need = min_z_stream_bytes(codec, header.width, header.height)
    if len(z_stream) < need:
        raise BitstreamError(
            f"corrupted .tcz file: its header claims {header.width}x{header.height} pixels, whose "
            f"hyper-latent stream takes at least {need} bytes with {header.codec}, but the file holds "
            f"{len(z_stream)}"
        )


def decode(codec: SFTCodec, data: bytes, synthesis: str | None = None) -> Tensor:
    """Decode .tcz bytes with ``codec``; returns x_hat (1, 3, H, W) in [0, 1], float32 on the codec's device.

    Version 2 decodes with the exact coding path and a float64 synthesis (the same pixels on any thread count
    and, to ~1e-13, any device); version 1 with the float path it was made with. ``synthesis="float32"``
    trades that pixel identity for 4-5x faster CPU decoding (see :meth:`SFTCodec.decompress`). A file whose
    header says the source was grayscale comes back gray: the luma (:data:`LUMA`) of the decoded RGB in all three
    channels.

    Raises:
        BitstreamError: bad file; a file made with other weights than ``codec``'s, or whose header names another
            codec than ``codec`` (unknown, empty, or another registered one); a file whose z stream is too short
            for the image size its header claims (:func:`check_claimed_size`, before any synthesis).
        MemoryError: the image would not fit in the memory available (:func:`check_decode_memory`), before any
            allocation.
    """
    if synthesis not in (None, "float64", "float32"):
        raise ValueError(f"synthesis must be 'float64' or 'float32', got {synthesis!r}")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(
            f"decode takes the .tcz file's bytes, got {type(data).__name__}"
            + (" (read it first: Path(p).read_bytes())" if isinstance(data, (str, PurePath)) else "")
        )
    header, y_stream, z_stream = unpack(bytes(data))
    wid = weights_id(codec)
    if header.weights != wid:
        from .codec.zoo import CODEC_CONFIGS, RETIRED_WEIGHTS

        mine = getattr(codec, "checkpoint_info", {}).get("codec", "?")
        hint = RETIRED_WEIGHTS.get(header.weights.hex())
        fix = (
            f"decode with --codec {header.codec}"
            if header.codec != mine and header.codec in CODEC_CONFIGS
            else "pass the matching --checkpoint"
        )
        raise BitstreamError(
            f"file was made with codec {header.codec} weights {header.weights.hex()}, but the loaded codec is "
            f"{mine} weights {wid.hex()}; {fix}" + (f" ({hint})" if hint else "")
        )
    mine = _codec_name(codec)
    if header.codec != mine:  # same weights id, another name: a corrupted or edited header
        from .codec.zoo import CODEC_CONFIGS

        what = "another registered codec" if header.codec in CODEC_CONFIGS else "a codec unknown to this taskcomp"
        raise BitstreamError(
            f"corrupted .tcz header: it names codec {header.codec!r} ({what}), but its weights id "
            f"is that of {mine}, which is decoding it"
        )
    check_claimed_size(codec, header, z_stream)
    hp, wp = padded_size(header.height, header.width)
    zh, zw = hp // 64, wp // 64
    check_decode_memory(
        header.width, header.height, hp * wp, synthesis or default_synthesis(header.version >= 2), codec
    )
    try:
        out = codec.decompress(
            [[y_stream], [z_stream]],
            (zh, zw),
            size=(header.height, header.width),
            exact=header.version >= 2,
            synthesis=synthesis,
        )
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise  # not the file's fault
    except (RuntimeError, ValueError, IndexError, OverflowError) as e:  # what the rANS decoder and the
        # transforms raise on malformed streams; a TypeError or AttributeError is a bug and stays one
        if isinstance(e, RuntimeError) and "can't allocate memory" in str(e):  # PyTorch's CPU allocator: not
            # the file's fault either
            raise MemoryError(
                f"decoding this {header.width}x{header.height} image ran out of memory (PyTorch's "
                "CPU allocator could not allocate)"
            ) from None
        raise BitstreamError(f"corrupted .tcz payload ({type(e).__name__})") from None
    x_hat = out["x_hat"]
    if not torch.isfinite(x_hat).all():
        raise BitstreamError("corrupted .tcz payload (non-finite output)")
    if header.gray:
        x_hat = luma(x_hat)
    return x_hat
