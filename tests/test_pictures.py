"""Pictures people look at (issue 22): map pictures with a colour bar, overlays, decoded images, the gallery."""

import numpy as np
import pytest
import torch
from PIL import Image


def _ends():
    import matplotlib

    from taskcomp.pictures import CMAP

    cm = matplotlib.colormaps[CMAP]
    return [tuple(np.round(np.asarray(cm(v)[:3]) * 255).astype(int)) for v in (0.0, 1.0)]


def test_map_picture_is_8bit_rgb_with_colour_bar_on_the_fixed_scale(tmp_path):
    from taskcomp.maps import MapError, half_map, load_map
    from taskcomp.pictures import map_picture, save_map_output

    H, W = 200, 120
    m = half_map(H, W, left=0.0, right=1.0)
    p = tmp_path / "m.png"
    assert save_map_output(m, p) == [p]
    im = Image.open(p)
    assert im.mode == "RGB" and im.size[1] == H and im.size[0] > W + 30  # the map, then the colour bar
    a = np.asarray(im).astype(int)
    lo, hi = _ends()
    assert tuple(a[H // 2, 0]) == lo and tuple(a[H // 2, W - 1]) == hi  # q=0 and q=1: the colormap's ends
    bar = a[:, W:]
    assert (np.abs(bar - lo).sum(-1) <= 15).any() and (np.abs(bar - hi).sum(-1) <= 15).any()  # the bar spans 0..1
    assert (bar.sum(-1) < 100).any()  # tick labels / text in dark ink
    # A dim map (values 0.06-0.17, black as a 16-bit grey image) is drawn on the same fixed scale, not stretched.
    dim = torch.linspace(0.06, 0.17, W).view(1, 1, 1, W).expand(1, 1, H, W)
    d = map_picture(dim)[:H, :W].astype(int)
    assert (
        np.abs(d[0, 0] - np.array(lo)).sum()
        < np.abs(d[0, -1] - np.array(lo)).sum()
        < np.abs(d[0, -1] - np.array(hi)).sum()
    )
    # The picture is no map: reading it back is refused; the exact map is another suffix.
    with pytest.raises(MapError, match="colour"):
        load_map(p)
    save_map_output(m, tmp_path / "m.npy")
    assert torch.equal(load_map(tmp_path / "m.npy"), m)
    with pytest.raises(ValueError, match=r"\.png for a picture"):
        save_map_output(m, tmp_path / "m.jpg")
    # A short map still gets a readable bar: the canvas is taller, the map at the top left.
    small = map_picture(half_map(40, 50, 0.0, 1.0))
    assert small.shape[0] >= 160 and tuple(small[0, 0]) == lo


def test_overlay_has_the_image_size_and_follows_pytorch_grad_cam():
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from taskcomp.maps import gradient_map
    from taskcomp.pictures import overlay

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    m = gradient_map(70, 90, 0.0, 1.0)
    ov = overlay(img, m)
    assert ov.shape == img.shape and ov.dtype == np.uint8
    ref = show_cam_on_image(img.astype(np.float32) / 255, m[0, 0].numpy(), use_rgb=True, colormap=cv2.COLORMAP_INFERNO)
    assert np.array_equal(ov, ref)
    assert overlay(img, gradient_map(35, 45, 0.0, 1.0)).shape == img.shape  # a coarser map is resized
    with pytest.raises(ValueError):
        overlay(img, m * 2)


def test_optimize_saves_map_picture_overlay_and_decoded(tmp_path, sample_128, capsys):
    from taskcomp.cli import main

    src = tmp_path / "img.png"
    Image.fromarray(sample_128).save(src)
    files = {k: tmp_path / f"{k}.png" for k in ("map", "overlay", "decoded")}
    rc = main(
        [
            "optimize",
            str(src),
            "--steps",
            "1",
            "--downsample",
            "16",
            "--device",
            "cpu",
            "-o",
            str(tmp_path / "o.tcz"),
            "--save-map",
            str(files["map"]),
            "--save-overlay",
            str(files["overlay"]),
            "--save-decoded",
            str(files["decoded"]),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert Image.open(files["map"]).mode == "RGB" and Image.open(files["map"]).size[0] > 128
    assert Image.open(files["overlay"]).size == (128, 128)
    # --save-decoded equals decompressing the written .tcz
    assert main(["decompress", str(tmp_path / "o.tcz"), "-o", str(tmp_path / "d.png"), "--device", "cpu"]) == 0
    assert np.array_equal(np.asarray(Image.open(files["decoded"])), np.asarray(Image.open(tmp_path / "d.png")))
    capsys.readouterr()
    rc = main(
        ["optimize", str(src), "--steps", "1", "-o", str(tmp_path / "x.tcz"), "--save-map", str(tmp_path / "m.jpg")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "--save-map" in err and len(err.strip().splitlines()) == 1


def test_side_outputs_are_folders_for_several_images(tmp_path):
    from pathlib import Path

    from taskcomp.cli.common import side_outputs as _side_outputs

    imgs = [Path("a/x.png"), Path("b/y.jpg")]
    assert _side_outputs(imgs, None, "--save-overlay") == [None, None]
    assert _side_outputs(imgs, str(tmp_path / "ov"), "--save-overlay") == [
        tmp_path / "ov" / "x.png",
        tmp_path / "ov" / "y.png",
    ]
    with pytest.raises(ValueError, match="--save-decoded must be a folder"):
        _side_outputs(imgs, str(tmp_path / "d.png"), "--save-decoded")
    assert _side_outputs(imgs[:1], str(tmp_path / "d.png"), "--save-decoded") == [tmp_path / "d.png"]


def test_recipe_keeps_examples_and_report_writes_the_gallery(tmp_path, data_root):
    """A tiny run: the first `examples` images keep decoded images, maps and overlays; report draws gallery.png."""
    from taskcomp.runner import run_recipe
    from taskcomp.runner.report import report

    recipe = {
        "name": "tiny",
        "data": "imagenet-sample",
        "preprocess": {"resize": 73, "crop": 64},
        "objective": {"name": "classification"},
        "eval_models": ["tf_efficientnet_lite0"],
        "examples": 1,
        "methods": {
            "original": {},
            "uniform": {"q": [0.0, 0.5]},
            "task_aware": {"lambda": [1.0], "steps": 1, "downsample": 16},
        },
    }
    out = tmp_path / "run"
    assert run_recipe(recipe, out, data_root, limit=2, log=lambda *a: None) == 8
    (ex,) = sorted((out / "examples").iterdir())  # examples: 1 -> the run's first image only
    assert Image.open(ex / "original.png").size == (64, 64)
    assert sorted(p.name for p in (ex / "uniform").iterdir()) == ["q=0.00.png", "q=0.50.png"]
    ta = ex / "task_aware"
    assert {p.name for p in ta.iterdir()} == {
        "lambda=1.png",
        "lambda=1.map.npy",
        "lambda=1.map.png",
        "lambda=1.overlay.png",
    }
    assert Image.open(ta / "lambda=1.overlay.png").size == (64, 64)
    s = report(out)
    assert s["gallery"] == "gallery.png"
    g = Image.open(out / "gallery.png")
    assert g.size[0] > 4 * 64 and g.size[1] > 64
