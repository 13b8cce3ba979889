"""The .tcz container and compress/decompress round trips."""

import numpy as np
import pytest
import torch

from taskcomp.bitstream import BitstreamError, Header, decode, encode, pack, unpack
from taskcomp.codec import create_codec
from taskcomp.io import image_to_tensor, tensor_to_image


def test_pack_unpack_roundtrip():
    h = Header("sft-small", bytes(range(8)), 1000, 3)
    data = pack(h, b"y" * 300, b"zz")
    h2, y, z = unpack(data)
    assert (h2, y, z) == (h, b"y" * 300, b"zz")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"", "empty"),
        (lambda d: b"GIF89a" + d[6:], "bad magic"),
        (lambda d: d[:-10], "truncated"),
        (lambda d: d[:3], "truncated"),
        (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "checksum"),
        (lambda d: d + b"\0", "checksum"),
        (lambda d: d[:4] + b"\x07" + d[5:], "version"),
    ],
)
def test_bad_containers_are_rejected(mutate, message):
    data = pack(Header("sft-small", bytes(8), 64, 64), b"y" * 50, b"z" * 10)
    with pytest.raises(BitstreamError, match=message):
        unpack(mutate(data))


@pytest.mark.parametrize("size", [(1, 1), (5, 9), (64, 64), (70, 130)])
def test_roundtrip_equals_forward_reconstruction(codec, sample_rgb, size):
    h, w = size
    img = np.ascontiguousarray(sample_rgb[:h, :w])
    x = image_to_tensor(img)
    q = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        data, lik = encode(codec, x, q, return_likelihoods=True)
        dec = decode(codec, data)
        fwd = codec(x, q, quantize="round")
    assert dec.shape == (1, 3, h, w)
    assert np.array_equal(tensor_to_image(dec), tensor_to_image(fwd["x_hat"]))
    est_bits = sum(float((-torch.log2(l)).sum()) for l in lik.values())
    assert len(data) * 8 > est_bits * 0.9  # the file can't be much smaller than its entropy


def test_file_from_other_weights_is_rejected(codec, sample_128):
    other = create_codec("sft-small", pretrained=False)
    x = image_to_tensor(sample_128)
    with torch.inference_mode():
        data = encode(other, x, torch.full((1, 1, 128, 128), 0.5))
    with pytest.raises(BitstreamError, match="made with codec"):
        decode(codec, data)


def test_file_from_retired_shipped_weights_says_where_they_are(codec, sample_128, monkeypatch):
    from taskcomp.bitstream import Header, pack, unpack
    from taskcomp.codec import zoo

    with torch.inference_mode():
        data = encode(codec, image_to_tensor(sample_128), torch.full((1, 1, 128, 128), 0.5))
    header, y, z = unpack(data)
    old_id = bytes(8)  # stands for weights the package shipped before
    monkeypatch.setitem(zoo.RETIRED_WEIGHTS, old_id.hex(), "old weights: `git show abc:w.pth`")
    with pytest.raises(BitstreamError, match="git show abc:w.pth"):
        decode(codec, pack(Header(header.codec, old_id, header.width, header.height), y, z))


def test_oversized_image_is_refused_before_coding(codec):
    x = torch.zeros(1, 3, 1, 70_000)  # wider than the container's 65536 px limit
    with pytest.raises(ValueError, match="too large"):
        encode(codec, x, torch.zeros(1, 1, 1, 70_000))
