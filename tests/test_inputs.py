"""Bad and awkward inputs (issue 22, ../shared/cases/): EXIF orientation, map bit depth, unchecked tensors
into the codec, searches that assumed rate monotonic in q, oversized .tcz headers, settings written into
the user's home, optimiser and data-root arguments."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CASES = Path(os.environ.get("TASKCOMP_CASES", Path(__file__).resolve().parents[2] / "shared" / "cases"))


def _case(*parts) -> Path:
    p = CASES.joinpath(*parts)
    if not p.is_file():
        pytest.skip(f"case file not available: {p}")
    return p


def _run_cli(*args, env=None):
    from taskcomp.cli import main

    return main([str(a) for a in args])


# ---------------------------------------------------------------------------------------------- 01: EXIF
def _stored_and_upright():
    """A 16x8 stored image with four distinct colour blocks, and what a viewer shows under Orientation=6
    (rotate 90 degrees clockwise)."""
    a = np.zeros((8, 16, 3), np.uint8)
    a[:4, :8] = (255, 0, 0)
    a[:4, 8:] = (0, 255, 0)
    a[4:, :8] = (0, 0, 255)
    a[4:, 8:] = (255, 255, 0)
    return a, np.ascontiguousarray(np.rot90(a, k=-1))


def _with_orientation(arr, path, orientation=6, fmt="PNG"):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, format=fmt, exif=exif.tobytes(), **({"quality": 100} if fmt == "JPEG" else {}))
    return path


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_applied_synthetic(tmp_path, fmt):
    from taskcomp.io import load_image

    stored, shown = _stored_and_upright()
    k = 1 if fmt == "PNG" else 8  # JPEG: blocks large enough for its 8x8 DCT
    big, big_shown = (np.kron(a, np.ones((k, k, 1), np.uint8)) for a in (stored, shown))
    p = _with_orientation(big, tmp_path / f"o6.{fmt.lower()}", 6, fmt)
    got = load_image(p)
    assert got.shape == (16 * k, 8 * k, 3)
    if fmt == "PNG":
        assert np.array_equal(got, shown)
    else:  # lossy, but the stored (unrotated) layout would be off by ~128 on average
        assert np.abs(got.astype(int) - big_shown).mean() < 8
    # Orientation 1 and no tag: as stored.
    assert np.array_equal(load_image(_with_orientation(stored, tmp_path / "o1.png", 1)), stored)
    Image.fromarray(stored).save(tmp_path / "plain.png")
    assert np.array_equal(load_image(tmp_path / "plain.png"), stored)


def test_exif_orientation_all_eight(tmp_path):
    """Every orientation value gives the viewer's picture (Pillow's exif_transpose as the reference)."""
    from PIL import ImageOps

    from taskcomp.io import load_image

    stored, _ = _stored_and_upright()
    for o in range(1, 9):
        p = _with_orientation(stored, tmp_path / f"o{o}.png", o)
        with Image.open(p) as im:
            ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        assert np.array_equal(load_image(p), ref), o


def test_exif_compress_decompress_upright(tmp_path):
    """The CLI codes what the viewer shows: the decoded image is upright."""
    stored, shown = _stored_and_upright()
    big = np.kron(stored, np.ones((4, 4, 1), np.uint8))  # 64x32 stored, 32x64 upright
    p = _with_orientation(big, tmp_path / "o6.png", 6)
    assert _run_cli("compress", p, "-q", "0.5", "-o", tmp_path / "a.tcz", "--device", "cpu") == 0
    assert _run_cli("decompress", tmp_path / "a.tcz", "-o", tmp_path / "a.png", "--device", "cpu") == 0
    with Image.open(tmp_path / "a.png") as im:
        assert im.size == (32, 64)  # (W, H) upright


def test_exif_map_upright(tmp_path):
    from taskcomp.maps import load_map

    m = np.zeros((8, 16), np.uint8)
    m[:, :8] = 255  # left half 1 stored; upright (clockwise) it is the top half
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(m).save(tmp_path / "m.png", exif=exif.tobytes())
    q = load_map(tmp_path / "m.png")[0, 0]
    assert q.shape == (16, 8)
    assert float(q[:8].min()) == 1.0 and float(q[8:].max()) == 0.0


def test_exif_case_files():
    from taskcomp.io import load_image

    a = load_image(_case("01-exif", "exif_orient6.jpg"))
    b = load_image(_case("01-exif", "exif_orient6_viewer.png"))
    assert a.shape == b.shape == (320, 192, 3)
    assert np.abs(a.astype(int) - b).mean() < 2
    r = load_image(_case("01-exif", "receipt_exif6.jpg"))
    with Image.open(_case("01-exif", "receipt_exif6.jpg")) as im:
        assert r.shape[:2] == (im.size[0], im.size[1])  # stored W x H becomes H x W
