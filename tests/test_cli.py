"""The taskcomp command: compress / decompress and one-line errors on bad input."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run
from PIL import Image

from taskcomp.io import load_image


@pytest.fixture
def png(tmp_path, sample_128):
    p = tmp_path / "img.png"
    Image.fromarray(sample_128).save(p)
    return p


def test_compress_decompress_roundtrip(tmp_path, png, capsys):
    tcz, rec = tmp_path / "a.tcz", tmp_path / "rec.png"
    rc, out, _ = run(["compress", png, "--quality", 0.5, "-o", tcz], capsys)
    assert rc == 0 and "bpp" in out
    rc, _, _ = run(["decompress", tcz, "-o", rec], capsys)
    assert rc == 0
    a, b = load_image(png), load_image(rec)
    assert a.shape == b.shape
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 20


def test_compress_with_qmap_files(tmp_path, png, capsys):
    m = np.zeros((128, 128), np.float32)
    m[:, :64] = 1.0
    np.save(tmp_path / "m.npy", m)
    Image.fromarray((m * 255).astype(np.uint8)).save(tmp_path / "m.png")
    for mp in ("m.npy", "m.png"):
        rc, _, err = run(["compress", png, "--qmap", tmp_path / mp, "-o", tmp_path / f"{mp}.tcz"], capsys)
        assert rc == 0, err


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "CMYK", "LA", "1"])
def test_any_mode_compresses(tmp_path, sample_128, mode, capsys):
    im = Image.fromarray(sample_128)
    if mode == "I;16":
        arr = np.asarray(im.convert("L")).astype(np.uint16) * 257
        im = Image.fromarray(arr)
        assert im.mode.startswith("I;16")
        path = tmp_path / "img16.png"
    elif mode == "CMYK":
        im = im.convert("CMYK")
        path = tmp_path / "cmyk.jpg"
    else:
        im = im.convert(mode)
        path = tmp_path / f"img_{mode.replace(';', '')}.png"
    im.save(path)
    loaded = load_image(path)
    assert loaded.shape == (128, 128, 3) and loaded.dtype == np.uint8
    if mode == "I;16":  # 16-bit is scaled to 8-bit, not clipped
        assert (
            abs(
                int(loaded[..., 0].astype(int).mean())
                - int(np.asarray(Image.fromarray(sample_128).convert("L")).mean())
            )
            <= 1
        )
    rc, _, err = run(["compress", path, "-q", 0.3, "-o", tmp_path / "o.tcz"], capsys)
    assert rc == 0, err


def test_one_pixel_image(tmp_path, capsys):
    p = tmp_path / "px.png"
    Image.new("RGB", (1, 1), (200, 10, 30)).save(p)
    rc, _, err = run(["compress", p, "-q", 1.0, "-o", tmp_path / "px.tcz"], capsys)
    assert rc == 0, err
    rc, _, err = run(["decompress", tmp_path / "px.tcz", "-o", tmp_path / "px_rec.png"], capsys)
    assert rc == 0, err
    assert load_image(tmp_path / "px_rec.png").shape == (1, 1, 3)


def test_bad_images(tmp_path, capsys):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all")
    trunc = tmp_path / "trunc.png"
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), (1, 2, 3)).save(buf, format="PNG")
    trunc.write_bytes(buf.getvalue()[:60])
    for path, word in [
        (empty, "empty"),
        (text, "not a readable image"),
        (trunc, "image"),
        (tmp_path / "missing.png", "not found"),
    ]:
        rc, _, err = run(["compress", path, "-q", 0.5, "-o", tmp_path / "x.tcz"], capsys)
        assert_one_line_error(rc, err, word)
        assert not (tmp_path / "x.tcz").exists()


def test_bad_qmaps(tmp_path, png, capsys):
    np.save(tmp_path / "small.npy", np.zeros((10, 10), np.float32))
    nan = np.full((128, 128), 0.5, np.float32)
    nan[3, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "big.npy", np.full((128, 128), 3.0, np.float32))
    for name, word in [("small.npy", "10x10"), ("nan.npy", "NaN"), ("big.npy", "[0, 1]")]:
        rc, _, err = run(["compress", png, "--qmap", tmp_path / name, "-o", tmp_path / "x.tcz"], capsys)
        assert_one_line_error(rc, err, word)
    rc, _, err = run(["compress", png, "--quality", 1.5, "-o", tmp_path / "x.tcz"], capsys)
    assert_one_line_error(rc, err, "--quality")


def test_bad_bitstreams(tmp_path, png, capsys):
    good = tmp_path / "good.tcz"
    assert run(["compress", png, "-q", 0.5, "-o", good], capsys)[0] == 0
    data = good.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    cases = {
        "empty.tcz": (b"", "empty"),
        "trunc.tcz": (data[: len(data) // 2], "truncated"),
        "flip.tcz": (bytes(flipped), "checksum"),
        "foreign.tcz": (png.read_bytes(), "not a taskcomp"),
    }
    for name, (content, word) in cases.items():
        (tmp_path / name).write_bytes(content)
        rc, _, err = run(["decompress", tmp_path / name, "-o", tmp_path / "r.png"], capsys)
        assert_one_line_error(rc, err, word)
        assert not (tmp_path / "r.png").exists()


def test_decompress_takes_the_codec_the_file_names(tmp_path, png, capsys):
    """A file made with --codec sft-small-doc decodes without repeating it; an explicit other --codec is refused
    in one line that names the right one."""
    tcz = tmp_path / "d.tcz"
    assert run(["compress", png, "-q", 0.3, "-o", tcz, "--codec", "sft-small-doc"], capsys)[0] == 0
    rc, _, err = run(["decompress", tcz, "-o", tmp_path / "r.png"], capsys)
    assert rc == 0, err
    assert (tmp_path / "r.png").is_file()
    rc, _, err = run(["decompress", tcz, "-o", tmp_path / "s.png", "--codec", "sft-small"], capsys)
    assert_one_line_error(rc, err, "made with codec sft-small-doc", "--codec sft-small-doc")


def test_file_from_another_checkpoint(tmp_path, png, capsys):
    from taskcomp.codec import create_codec, save_codec

    other = create_codec("sft-small", pretrained=False)
    torch.manual_seed(1)
    ck = tmp_path / "other.pth"
    save_codec(other, ck, "sft-small")
    tcz = tmp_path / "o.tcz"
    assert run(["compress", png, "-q", 0.5, "-o", tcz, "--checkpoint", ck], capsys)[0] == 0
    rc, _, err = run(["decompress", tcz, "-o", tmp_path / "r.png"], capsys)
    assert_one_line_error(rc, err, "made with codec")
    rc, _, err = run(["decompress", tcz, "-o", tmp_path / "r.png", "--checkpoint", ck], capsys)
    assert rc == 0, err


def test_console_script_fresh_process(tmp_path, png):
    """The installed entry point runs in a fresh process and exits non-zero on bad input."""
    r = subprocess.run(
        [sys.executable, "-m", "taskcomp.cli", "decompress", str(png), "-o", str(tmp_path / "r.png")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "not a taskcomp" in r.stderr


def test_optimize_command_and_its_errors(tmp_path, png, capsys):
    rc, out, err = run(
        [
            "optimize",
            png,
            "--label",
            88,
            "--steps",
            2,
            "--downsample",
            16,
            "--compare",
            "-o",
            tmp_path / "o.tcz",
            "--save-map",
            tmp_path / "m.npy",
        ],
        capsys,
    )
    assert rc == 0, err
    assert "task-aware" in out and "uniform" in out and (tmp_path / "m.npy").is_file()
    for args, word in [
        (["--label", 1000], "out of range"),
        (["--model", "no_such_net"], "unknown classifier"),
        (["--lambda", -1], "--lambda"),
        (["--target-bpp", 50], "unreachable"),
    ]:
        rc, _, err = run(["optimize", png, *args, "--steps", 1, "-o", tmp_path / "x.tcz"], capsys)
        assert_one_line_error(rc, err, word)


def test_eval_codec_on_own_images_and_its_errors(tmp_path, png, capsys):
    rc, _, err = run(["eval-codec", "--images", tmp_path / "nowhere", "--out", tmp_path / "ev"], capsys)
    assert_one_line_error(rc, err, "no such image file or folder", "nowhere")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "img.png").write_bytes(png.read_bytes())
    rc, _, err = run(["eval-codec", "--images", png, tmp_path / "sub", "--out", tmp_path / "ev"], capsys)
    assert_one_line_error(rc, err, "distinct file names", "img.png")
    rc, out, err = run(
        ["eval-codec", "--images", tmp_path / "sub", "--methods", "sft,webp", "--out", tmp_path / "ev"], capsys
    )
    assert rc == 0, err
    s = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert s["images"] == f"{tmp_path.name}/sub (1 images)" and s["roundtrip_fresh_process"]["all_equal"]
    assert list(s["bd_rate_psnr_percent"]) == ["sft-small vs webp"]  # the published table is Kodak's only


def test_widen_codec_command(tmp_path, png, capsys):
    wide = tmp_path / "medium.pth"
    rc, out, _ = run(["widen-codec", "--to", "sft-medium", "-o", wide], capsys)
    assert rc == 0 and "sft-medium" in out and wide.is_file()
    sizes = {}
    for name, extra in (("small", []), ("medium", ["--checkpoint", wide])):
        rc, _, _ = run(["compress", png, "-q", "0.7", "-o", tmp_path / f"{name}.tcz", *extra], capsys)
        assert rc == 0
        sizes[name] = (tmp_path / f"{name}.tcz").stat().st_size
    assert abs(sizes["medium"] - sizes["small"]) <= 4  # same function; new latents cost almost nothing
    rc, _, err = run(["decompress", tmp_path / "medium.tcz", "-o", tmp_path / "rec.png"], capsys)
    assert_one_line_error(rc, err, "weights")  # decoding needs the widened weights, not the shipped ones
    rc, _, err = run(["widen-codec", "--to", "sft-paper", "-o", tmp_path / "x.pth"], capsys)
    assert_one_line_error(rc, err, "widening changes only channels and M")
    assert not (tmp_path / "x.pth").exists()
