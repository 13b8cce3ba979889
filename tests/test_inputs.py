"""Bad and awkward inputs (issue 22, ../shared/cases/): EXIF orientation, map bit depth, unchecked tensors
into the codec, searches that assumed rate monotonic in q, oversized .tcz headers, settings written into
the user's home, optimiser and data-root arguments."""

import json
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


# ---------------------------------------------------------------------------------------------- 02: map bit depth
def test_map16_low_values_scaled_by_depth(tmp_path):
    """A 16-bit map whose values are all <= 255 is still 16-bit (the fault: it was read as 8-bit)."""
    from taskcomp.maps import load_map

    a = np.zeros((4, 6), np.uint16)
    a[:, 3:] = 197  # q = 0.003
    for suffix in (".png", ".tif", ".pgm"):
        Image.fromarray(a).save(tmp_path / f"m{suffix}")
        q = load_map(tmp_path / f"m{suffix}")
        assert abs(float(q.max()) - 197 / 65535) < 1e-7, suffix
    # An 8-bit map with the same integers is 8-bit.
    Image.fromarray(np.full((4, 6), 197, np.uint8)).save(tmp_path / "m8.png")
    assert abs(float(load_map(tmp_path / "m8.png").max()) - 197 / 255) < 1e-7


@pytest.mark.parametrize(
    "suffix,bits,tol",
    [
        (".npy", 16, 0.0),
        (".png", 16, 0.5 / 65535),
        (".png", 8, 0.5 / 255),
        (".tif", 16, 0.5 / 65535),
        (".pgm", 16, 0.5 / 65535),
        (".bmp", 8, 0.5 / 255),
    ],
)
def test_map_exact_roundtrip(tmp_path, suffix, bits, tol):
    from taskcomp.maps import load_map, save_map, save_map_exact

    g = torch.Generator().manual_seed(0)
    m = torch.rand(1, 1, 17, 23, generator=g)
    m[..., 0, 0], m[..., 0, 1] = 0.0, 1.0
    m[..., 1, :] = 0.003  # low values: the 16-bit integers stay below 256
    p = tmp_path / f"m{suffix}"
    save_map_exact(m, p, bits=bits)
    back = load_map(p)
    assert back.shape == m.shape and back.dtype == torch.float32
    assert float((back - m).abs().max()) <= tol + 1e-7
    if suffix == ".npy":
        assert torch.equal(back, m)
    # Stable: what was read writes the same integers again.
    save_map_exact(back, tmp_path / f"again{suffix}", bits=bits)
    assert torch.equal(load_map(tmp_path / f"again{suffix}"), back)
    if bits == 16 or suffix == ".bmp":
        save_map(m, tmp_path / f"plain{suffix}")  # save_map writes the same exact formats
        assert torch.equal(load_map(tmp_path / f"plain{suffix}"), back)


def test_map_save_refuses_lossy_and_load_refuses_pictures(tmp_path):
    from taskcomp.maps import MapError, load_map, save_map_exact

    m = torch.full((1, 1, 8, 8), 0.5)
    with pytest.raises(MapError, match="lossy"):
        save_map_exact(m, tmp_path / "m.jpg")
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # a colour-mapped picture of a map is not a map
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(MapError, match="colour"):
        load_map(tmp_path / "colour.png")
    grey = np.repeat(np.full((8, 8, 1), 51, np.uint8), 3, axis=2)  # RGB with equal channels: a grey map
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert abs(float(load_map(tmp_path / "grey.png").mean()) - 0.2) < 1e-6
    Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 1000).save(tmp_path / "i32.tif")
    assert abs(float(load_map(tmp_path / "i32.tif").max()) - 63000 / (2**31 - 1)) < 1e-6  # TIFF: its own depth


def test_float_and_16bit_images_scaled_by_depth(tmp_path):
    from taskcomp.io import ImageError, load_image

    a = np.full((4, 4), 200, np.uint16)  # dark 16-bit image: 200/65535, not 200/255
    Image.fromarray(a).save(tmp_path / "dark16.png")
    assert load_image(tmp_path / "dark16.png").max() == 1
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "f.tif")
    assert load_image(tmp_path / "f.tif").max() == 128
    Image.fromarray(np.full((4, 4), 200.0, np.float32)).save(tmp_path / "f255.tif")
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(tmp_path / "f255.tif")


def test_map16_case_codes_like_npy(codec):
    """The case: the 16-bit PNG map and the .npy map are the same map, so they code to the same bytes."""
    from taskcomp.bitstream import encode
    from taskcomp.io import image_to_tensor, load_image
    from taskcomp.maps import load_map

    m16, mnpy = load_map(_case("02-map16", "lowq_map16.png")), load_map(_case("02-map16", "lowq_map.npy"))
    assert float((m16 - mnpy).abs().max()) <= 0.5 / 65535 + 1e-7
    assert float(m16.max()) < 0.01
    x = image_to_tensor(load_image(_case("02-map16", "photo05.png")))[..., :128, :192]
    with torch.inference_mode():
        a, b = encode(codec, x, m16[..., :128, :192]), encode(codec, x, mnpy[..., :128, :192])
    assert abs(len(a) - len(b)) <= 0.01 * len(b)


# ---------------------------------------------------------------------------------------------- 03: tensors into the codec
def _case_image():
    from taskcomp.io import image_to_tensor, load_image

    p = CASES / "03-api-nonfinite" / "size_129x65.png"
    if p.is_file():
        return image_to_tensor(load_image(p))
    from conftest import SAMPLE

    return image_to_tensor(load_image(SAMPLE))[..., :65, :129].contiguous()


def _bad_inputs(x):
    H, W = x.shape[-2:]
    m = torch.full((1, 1, H, W), 0.5)
    nan_map = m.clone()
    nan_map[..., 10:20, 10:20] = float("nan")
    nan_x, inf_x = x.clone(), x.clone()
    nan_x[0, 0, 5, 5] = float("nan")
    inf_x[0, 1, 5, 5] = float("inf")
    return {
        "NaN map": (x, nan_map, "NaN"),
        "NaN pixel": (nan_x, m, "NaN"),
        "inf pixel": (inf_x, m, "infinite"),
        "0..255 image": (x * 255, m, "divide by 255"),
        "uint8 image": ((x * 255).round().byte(), m, "dtype"),
        "map of 2.0": (x, torch.full_like(m, 2.0), r"\[0, 1\]"),
        "negative map": (x, torch.full_like(m, -0.5), r"\[0, 1\]"),
        "map of another size": (x, m[..., :-1], "129x65|but the image"),
        "two channels": (x[:, :2], m, "shape"),
        "ndarray": (x.numpy(), m, "torch.Tensor"),
    }


def test_encode_refuses_bad_tensors_quickly(codec):
    """Each used to spin inside the range coder (NaN, inf, 0..255) or code silently (map 2.0)."""
    import time

    from taskcomp.bitstream import encode

    x = _case_image()
    for name, (xx, m, msg) in _bad_inputs(x).items():
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=msg) as e:
            encode(codec, xx, m)
        assert "\n" not in str(e.value), name
        assert time.perf_counter() - t0 < 5, name
    with pytest.raises(ValueError, match="1 image"):
        encode(codec, torch.cat([x, x]), torch.full((2, 1, *x.shape[-2:]), 0.5))
    # The codec's own compress checks too (it feeds the range coder).
    with pytest.raises(ValueError, match="NaN"):
        codec.compress(_bad_inputs(x)["NaN pixel"][0], torch.full((1, 1, *x.shape[-2:]), 0.5))
    # Good input still codes; a (H, W) map is one map for the image; values within 1e-6 of [0, 1] are clamped.
    assert len(encode(codec, x, torch.full(x.shape[-2:], 0.5))) == len(
        encode(codec, x, torch.full((1, 1, *x.shape[-2:]), 0.5))
    )
    encode(codec, x, torch.full((1, 1, *x.shape[-2:]), 1 + 1e-7))


def test_latents_checked_before_range_coder():
    from taskcomp.checks import MAX_LATENT, check_latents

    check_latents(y=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="non-finite latents y"):
        check_latents(y=torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="magnitude"):
        check_latents(z=torch.tensor([MAX_LATENT * 2]))


def test_decode_refuses_a_path(codec, tmp_path):
    from taskcomp.bitstream import decode

    with pytest.raises(ValueError, match="read_bytes"):
        decode(codec, str(tmp_path / "a.tcz"))


def test_optimizer_refuses_bad_tensors(codec):
    from taskcomp.objectives.base import Objective
    from taskcomp.optimize import MapOptimizer

    class Null(Objective):
        def prepare(self, x, **kw):
            return None

        def loss(self, x_hat, ctx):
            return x_hat.mean().reshape(1) * 0

        def evaluate(self, x_dec, ctx):
            return [{}]

    x = _case_image()
    for name, (xx, m, msg) in _bad_inputs(x).items():
        if "map" in name:  # the initial map is checked against the image
            with pytest.raises(ValueError, match=msg):
                MapOptimizer(codec, Null(), steps=1, init=m).run(x)
        else:
            with pytest.raises(ValueError, match=msg):
                MapOptimizer(codec, Null(), steps=1).run(xx)


def test_cli_refuses_bad_maps(tmp_path, capsys):
    from taskcomp.io import save_image

    x = _case_image()
    save_image(x, tmp_path / "x.png")
    H, W = x.shape[-2:]
    for name, value in (("two", 2.0), ("nan", float("nan"))):
        np.save(tmp_path / f"{name}.npy", np.full((H, W), value, np.float32))
        rc = _run_cli(
            "compress",
            tmp_path / "x.png",
            "--qmap",
            tmp_path / f"{name}.npy",
            "-o",
            tmp_path / "a.tcz",
            "--device",
            "cpu",
        )
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "\n" not in err and "quality map" in err, (name, err)
        assert not (tmp_path / "a.tcz").exists()


# ---------------------------------------------------------------------------------------------- optimiser arguments
@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"init_q": 2.0}, "init_q"),
        ({"init_q": 0.0}, "init_q"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"steps": -1}, "steps"),
        ({"steps": 1.5}, "steps"),
        ({"lam": -1.0}, "lambda"),
        ({"downsample": 0}, "downsample"),
        ({"clip": 0.0}, "clip"),
        ({"init": "zeros"}, "init"),
        ({"optimizer": "sgd"}, "optimizer"),
    ],
)
def test_optimizer_arguments_validated(codec, kw, msg):
    from taskcomp.objectives.base import Objective
    from taskcomp.optimize import MapOptimizer, check_optimizer_args

    with pytest.raises(ValueError, match=msg):
        check_optimizer_args(**kw)
    with pytest.raises(ValueError, match=msg):
        MapOptimizer(codec, Objective.__new__(Objective), **kw)


def test_cli_optimize_init_q_refused_before_models_load(tmp_path, capsys):
    from taskcomp.io import save_image

    save_image(_case_image(), tmp_path / "x.png")
    for extra in (["--init-q", "2"], ["--lr", "0"], ["--steps", "-3"], ["--target-bpp", "-1"]):
        rc = _run_cli(
            "optimize",
            tmp_path / "x.png",
            "-o",
            tmp_path / "a.tcz",
            "--device",
            "cpu",
            "--model",
            "no-such-model-anywhere",
            *extra,
        )
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "\n" not in err and "no-such-model" not in err, (extra, err)


# ---------------------------------------------------------------------------------------------- 07: target bpp
def test_search_bpp_needs_no_monotonicity():
    from taskcomp.optimize import search_bpp

    # A rate curve like a blank page's: high at both ends, a dip in the middle.
    f = lambda s: 0.03 - 0.02 * np.sin(np.pi * s) ** 2 + 0.01 * s  # noqa: E731
    calls = []

    def measure(s):
        calls.append(s)
        return float(f(s)), f"data{s}"

    r = search_bpp(measure, 0.015, tol=0.01)
    assert r.met and abs(r.bpp / 0.015 - 1) <= 0.01 and r.data == f"data{r.s}"
    assert 0 < r.s < 1  # below both ends: a bisection between the ends would call it unreachable
    r = search_bpp(measure, 0.001, tol=0.01)
    assert not r.met and "bpp over q in [0, 1]" in r.measured("q")
    assert abs(r.bpp - min(b for _, b in r.samples)) < 1e-12  # the closest measured
    # prefer: the met setting nearest to it (two crossings of 0.025 at s ~ 0.16 and ~ 0.9)
    r = search_bpp(measure, 0.025, tol=0.005, prefer=1.0)
    assert r.met and r.s > 0.5
    r = search_bpp(measure, 0.025, tol=0.005, prefer=0.0)
    assert r.met and r.s < 0.5


def _flat_page():
    from taskcomp.io import image_to_tensor, load_image

    p = CASES / "07-target-bpp" / "doc_blank.png"
    if p.is_file():
        return image_to_tensor(load_image(p)), True
    return torch.ones(1, 3, 224, 448), False


def test_target_bpp_below_both_ends_is_reachable(codec):
    """The case: 0.0315 bpp at q=0, 0.0455 at q=1, yet q=0.4 gives 0.0257; a target of 0.025 is reachable."""
    from taskcomp.optimize import TargetBppError, check_target_reachable, real_bpp, uniform_bpp_search

    x, is_case = _flat_page()
    H, W = x.shape[-2:]
    ends = [real_bpp(codec, x, torch.full((1, 1, H, W), q))[0] for q in (0.0, 1.0)]
    if is_case:
        target = 0.025
    else:
        inner = [real_bpp(codec, x, torch.full((1, 1, H, W), q))[0] for q in (0.1, 0.2, 0.3, 0.4, 0.5)]
        target = min(inner)
        if target >= min(ends) * 0.97:
            pytest.skip("the synthetic page's rate happens to be monotonic here")
    assert target < min(ends) * 0.97
    check_target_reachable(codec, x, target, tol=0.03)
    found = uniform_bpp_search(codec, x, target, tol=0.03)
    assert found.met and abs(found.bpp / target - 1) <= 0.03
    assert abs(real_bpp(codec, x, torch.full((1, 1, H, W), found.s))[0] - found.bpp) < 1e-12
    with pytest.raises(TargetBppError, match=r"below the lowest.*measured \d\.\d+\.\.\d\.\d+ bpp over q in \[0, 1\]"):
        check_target_reachable(codec, x, target / 3, tol=0.03)


def test_target_reachable_messages(monkeypatch):
    """What the error states is what was measured (a fake rate curve with a dip: fast, no codec)."""
    import taskcomp.optimize as o

    f = lambda q: 0.03 - 0.02 * np.sin(np.pi * q) ** 2 + 0.01 * q  # noqa: E731
    monkeypatch.setattr(o, "real_bpp", lambda codec, x, m: (float(f(float(m.mean()))), b""))
    x = torch.rand(1, 3, 8, 8)
    o.check_target_reachable(None, x, 0.015, tol=0.03)  # below both ends (0.03, 0.04), reached inside
    with pytest.raises(
        o.TargetBppError,
        match=r"target 0.001 bpp is unreachable, below the lowest this image reaches: "
        r"measured 0.01\d+\.\.0.04\d* bpp over q in \[0, 1\] \(11 points\)",
    ):
        o.check_target_reachable(None, x, 0.001, tol=0.03)
    with pytest.raises(o.TargetBppError, match="above the highest"):
        o.check_target_reachable(None, x, 5.0, tol=0.03)


def test_optimize_to_target_bpp_meets_a_dip_target(codec):
    """optimize_to_target_bpp meets a target below both ends (offset search, else the blend to uniform)."""
    from taskcomp.mapmaker import optimize_to_target_bpp
    from taskcomp.objectives.base import Objective

    class Null(Objective):
        def prepare(self, x, **kw):
            return None

        def loss(self, x_hat, ctx):
            return x_hat.sum(dim=(1, 2, 3)) * 0

    x, is_case = _flat_page()
    if not is_case:
        pytest.skip("needs the case's blank page")
    logged = []
    out = optimize_to_target_bpp(codec, Null(), x, 0.025, steps=1, max_lambda_iters=2, downsample=8, log=logged.append)
    assert abs(out["bpp"] / 0.025 - 1) <= 0.03
    assert 8 * len(out["data"]) / (x.shape[-2] * x.shape[-1]) == out["bpp"]
    assert out["qmap"].shape == (1, 1, *x.shape[-2:])


# ---------------------------------------------------------------------------------------------- huge .tcz header
def test_decoder_applies_encoder_size_limits(codec, tmp_path, capsys):
    """A well-formed file (valid CRC) whose header claims 60000x60000 is refused at once, before allocating."""
    import time

    from taskcomp.bitstream import MAX_PIXELS, BitstreamError, Header, decode, pack, unpack, weights_id

    data = pack(Header("sft-small", weights_id(codec), 60000, 60000), b"\x00" * 8, b"\x00" * 8)
    t0 = time.perf_counter()
    with pytest.raises(BitstreamError, match="60000x60000"):
        decode(codec, data)
    assert time.perf_counter() - t0 < 2
    (tmp_path / "huge.tcz").write_bytes(data)
    assert _run_cli("decompress", tmp_path / "huge.tcz", "-o", tmp_path / "h.png", "--device", "cpu") == 2
    err = capsys.readouterr().err.strip()
    assert "60000x60000" in err and "\n" not in err
    side = int(MAX_PIXELS**0.5)  # at the limit: the header is accepted
    assert unpack(pack(Header("sft-small", weights_id(codec), side, side), b"", b""))[0].width == side


# ---------------------------------------------------------------------------------------------- ultralytics settings
def _python(code: str, env: dict) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("YOLO_CONFIG_DIR", "XDG_CONFIG_HOME", "HOME")}
    return subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, timeout=300
    )


def test_detection_writes_nothing_under_home(tmp_path):
    """ultralytics writes its settings file when first imported; ours is set before, so HOME stays empty."""
    import importlib.util

    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics not installed")
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import importlib.util, os\n"
        "from taskcomp.objectives import create_objective\n"
        "if importlib.util.find_spec('fall_detection'):\n"
        "    create_objective('detection')\n"
        "else:\n"
        "    import taskcomp.objectives.detection, ultralytics\n"
        "print(os.environ['YOLO_CONFIG_DIR'])\n"
    )
    r = _python(code, {"HOME": str(home), "TASKCOMP_THREADS": "1", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert list(home.rglob("*")) == [], [str(p) for p in home.rglob("*")]
    assert not r.stdout.strip().startswith(str(home))
    # A user's own setting is kept.
    mine = tmp_path / "mine"
    r = _python(
        "import taskcomp.objectives.detection, ultralytics, os; print(os.environ['YOLO_CONFIG_DIR'])",
        {"HOME": str(home), "YOLO_CONFIG_DIR": str(mine), "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == str(mine)
    assert (mine / "Ultralytics" / "settings.json").is_file() or (mine / "settings.json").is_file()
    assert list(home.rglob("*")) == []


# ---------------------------------------------------------------------------------------------- data root
def test_explicit_data_root_must_exist(tmp_path, monkeypatch, capsys):
    from taskcomp.datasets import DataError, data_root

    real = tmp_path / "data"
    real.mkdir()
    monkeypatch.setenv("TASKCOMP_DATA", str(real))
    assert data_root() == real
    assert data_root(real) == real
    with pytest.raises(DataError, match=r"nope.*--data-root"):
        data_root(tmp_path / "nope")  # used to fall back to $TASKCOMP_DATA silently
    monkeypatch.setenv("TASKCOMP_DATA", str(tmp_path / "gone"))
    with pytest.raises(DataError, match=r"gone.*TASKCOMP_DATA"):
        data_root()
    monkeypatch.setenv("TASKCOMP_DATA", str(real))
    rc = _run_cli("eval-codec", "--data-root", tmp_path / "nope", "--out", tmp_path / "o", "--device", "cpu")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "nope" in err and "\n" not in err.split("error:")[-1]


def test_decode_refuses_what_memory_cannot_hold(codec, tmp_path, capsys, monkeypatch):
    """A legal header whose image the float64 synthesis cannot fit in the memory available is refused before any
    allocation, in one line naming the estimate and --synthesis float32; a decode that fits is unaffected."""
    import time

    import taskcomp.bitstream as bs

    x = torch.rand(1, 3, 64, 64)
    data = bs.encode(codec, x, torch.full((1, 1, 64, 64), 0.3))
    h, ys, zs = bs.unpack(data)
    # under the size limits, z stream as long as a legitimate file's of that size (bitstream.min_z_stream_bytes)
    wide = bs.pack(
        bs.Header(h.codec, h.weights, 20000, 64, h.version), ys, zs + bytes(bs.min_z_stream_bytes(codec, 20000, 64))
    )
    monkeypatch.setattr(bs, "_available_memory", lambda: int(2e9))
    t0 = time.perf_counter()
    with pytest.raises(
        MemoryError,
        match=r"20000x64 image with the float64 synthesis needs about 2.9 GB.*2.0 GB are "
        r"available: use --synthesis float32",
    ):
        bs.decode(codec, wide)
    assert time.perf_counter() - t0 < 2
    assert bs.decode(codec, data).shape == (1, 3, 64, 64)
    (tmp_path / "wide.tcz").write_bytes(wide)
    assert _run_cli("decompress", tmp_path / "wide.tcz", "-o", tmp_path / "w.png", "--device", "cpu") == 2
    err = capsys.readouterr().err.strip()
    assert "needs about 2.9 GB" in err and "\n" not in err and not (tmp_path / "w.png").exists()


def test_decode_out_of_memory_is_not_a_corrupted_file(codec, monkeypatch):
    """PyTorch's CPU allocator failing mid-decode is a MemoryError naming the image, not 'corrupted payload'; other
    RuntimeErrors from a malformed stream still are."""
    import taskcomp.bitstream as bs

    data = bs.encode(codec, torch.rand(1, 3, 64, 64), torch.full((1, 1, 64, 64), 0.3))

    def fail(message):
        def decompress(*a, **k):
            raise RuntimeError(message)

        return decompress

    monkeypatch.setattr(
        codec,
        "decompress",
        fail(
            "DefaultCPUAllocator: can't allocate memory: you tried to "
            "allocate 123 bytes. Error code 12 (Cannot allocate memory)"
        ),
    )
    with pytest.raises(
        MemoryError,
        match=r"^decoding this 64x64 image ran out of memory \(PyTorch's CPU allocator could not allocate\)$",
    ):
        bs.decode(codec, data)
    monkeypatch.setattr(codec, "decompress", fail("shape mismatch"))
    with pytest.raises(bs.BitstreamError, match="corrupted"):
        bs.decode(codec, data)


def test_target_bpp_result_names_what_met_it(tmp_path, capsys):
    """On the flat page no lambda meets 0.025 bpp (rate is not monotonic there): the map that does is lambda's
    with a logit offset or a blend, and the printed line and --json say so, so the result can be reproduced."""
    p = CASES / "07-target-bpp" / "doc_blank.png"
    if not p.is_file():
        pytest.skip("needs ../shared/cases")
    out = tmp_path / "j.json"
    assert (
        _run_cli(
            "optimize",
            p,
            "--target-bpp",
            "0.025",
            "--steps",
            "1",
            "-o",
            tmp_path / "b.tcz",
            "--json",
            out,
            "--device",
            "cpu",
        )
        == 0
    )
    row = json.loads(out.read_text())["images"][0]
    adjust = {k: v for k, v in row.items() if k in ("logit_offset", "blend")}
    assert adjust and abs(row["bpp"] / 0.025 - 1) <= 0.03
    line = [l for l in capsys.readouterr().out.splitlines() if "-> " in l][0]
    assert all(f"{k.replace('_', ' ')} {v:+.3f}" in line for k, v in adjust.items())


def test_non_image_is_one_line_after_a_dependency_patches_image_open(tmp_path, monkeypatch):
    """ultralytics replaces PIL.Image.open with one that, for a file Pillow cannot identify, imports pi-heif
    (not installed here): after any detection run a non-image must still be a one-line ImageError."""
    from PIL import Image, UnidentifiedImageError

    from taskcomp.io import ImageError, load_image

    original = Image.open

    def patched(fp, *a, **k):  # what ultralytics.utils.patches.image_open does without pi-heif
        try:
            return original(fp, *a, **k)
        except UnidentifiedImageError:
            raise ModuleNotFoundError("No module named 'pi_heif'") from None

    monkeypatch.setattr(Image, "open", patched)
    p = tmp_path / "notes.png"
    p.write_bytes(b"this is not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(p)
