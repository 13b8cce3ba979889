"""Recipe methods hevc / h264 (plain CRF) and hevc_* / h264_* (optimised maps as per-block QP offsets): parsed,
validated, run end to end on tiny images with one map per image and lambda shared by the methods that code it,
and reported against their own plain-CRF curve."""

import json

import numpy as np
import pytest
from PIL import Image

from taskcomp.runner.recipe import (
    RecipeError,
    is_map_method,
    method_kind,
    settings,
    standard_format,
    uniform_method,
    validate_recipe,
)


@pytest.mark.parametrize(
    "name, kind, fmt, base",
    [
        ("hevc", "standard", "hevc", "uniform"),
        ("h264", "standard", "h264", "uniform"),
        ("hevc_task_aware", "standard_map", "hevc", "hevc"),
        ("hevc_label_free_qp2", "standard_map", "hevc", "hevc"),
        ("h264_label_free", "standard_map", "h264", "h264"),
        ("hevcx", None, None, "uniform"),
        ("task_aware_hevc", "optimized", None, "uniform"),
    ],
)
def test_names_decode_to_kinds_formats_and_their_uniform_curve(name, kind, fmt, base):
    assert method_kind(name) == kind
    assert standard_format(name) == fmt
    assert uniform_method(name) == base
    assert is_map_method(name) == (kind in ("optimized", "standard_map"))


def _recipe(methods):
    return {"name": "r", "data": "d", "methods": methods}


def test_hevc_map_points_are_lambda_times_crf():
    r = validate_recipe(
        _recipe({"hevc": {"crf": [30, 40]}, "hevc_x": {"crf": [30, 51], "lambda": [0.1, 1], "chroma": 444}})
    )
    pts = settings(r["methods"])
    assert [p[1] for p in pts] == ["crf=30", "crf=40"] + [
        f"lambda={lam},crf={c}" for lam in ("0.1", "1") for c in ("30", "51")
    ]
    assert pts[-1][2] == {"lam": 1.0, "crf": 51.0}


@pytest.mark.parametrize(
    "methods, words",
    [
        ({"hevc": {}}, "needs crf"),
        ({"hevc": {"crf": [60]}}, r"\[0, 51\]"),
        ({"hevc": {"crf": [30], "chroma": "422"}}, "auto, 420 or 444"),
        ({"hevc_x": {"crf": [30]}}, "needs lambda"),
        ({"hevc_x": {"crf": [30], "lambda": [1], "qp_per_q": 0}}, "qp_per_q"),
        ({"h264": {"crf": [30], "lambda": [1]}}, "unknown key 'lambda'"),
        ({"hevc_x": {"crf": [30], "lambda": [1], "steps": -1}}, "steps"),
        ({"hevc": {"crf": [30], "preset": "bogus"}}, "x265/x264 preset"),
    ],
)
def test_bad_hevc_methods_are_one_line_errors(methods, words):
    with pytest.raises(RecipeError, match=words):
        validate_recipe(_recipe(methods))


def _images(folder, n=2, size=(48, 64)):
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    for i in range(n):
        base = 128 + 80 * np.sin(xx / (4.0 + i)) * np.cos(yy / 6.0)
        img = np.clip(np.stack([base, base[::-1], base[:, ::-1]], 2) + rng.normal(0, 8, (*size, 3)), 0, 255)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"im{i}.png")


def test_run_codes_hevc_points_shares_maps_and_reports_against_plain_crf(tmp_path):
    pytest.importorskip("av")
    from taskcomp.runner import run_recipe
    from taskcomp.runner.report import report

    _images(tmp_path / "imgs")
    opt = {"steps": 1, "lr": 0.3, "init_q": 0.1, "downsample": 8, "use_label": False}
    recipe = {
        "name": "hevc_mini",
        "task": "classification",
        "data": {"path": str(tmp_path / "imgs"), "layout": "folder"},
        "preprocess": {"resize": 48, "crop": 48},
        "examples": 0,
        "methods": {
            "task_aware_label_free": {"lambda": [1.0], **opt},
            "hevc": {"crf": [30, 40, 51]},
            "hevc_label_free": {"crf": [26, 36, 46], "lambda": [1.0], **opt},
            "h264_label_free": {"crf": [30], "lambda": [1.0], "chroma": 444, **opt},
        },
    }
    out = tmp_path / "run"
    assert run_recipe(recipe, out, tmp_path, log=lambda *a: None, report=False) == 2 * 8
    recs = [json.loads(line) for f in out.glob("records*.jsonl") for line in f.read_text().splitlines()]
    by = {(r["image"], r["method"], r["setting"]): r for r in recs}
    for img in ("im0.png", "im1.png"):
        plain = [by[(img, "hevc", f"crf={c}")] for c in (30, 40, 51)]
        assert plain[0]["bpp"] > plain[1]["bpp"] > plain[2]["bpp"]  # CRF sets the rate
        assert all(p["chroma"] == "420" and p["crf_used"] == c for p, c in zip(plain, (30, 40, 51)))
        # one map per image and lambda: the SFT point and every HEVC / H.264 point of it share its making
        made = {by[(img, m, s)]["map_seconds"] for (i, m, s) in by if i == img and "map_seconds" in by[(i, m, s)]}
        assert len(made) == 1
        assert by[(img, "h264_label_free", "lambda=1,crf=30")]["chroma"] == "444"
        # the map's mean moved the rate factor (mean below 0.5: a higher CRF than asked)
        r = by[(img, "hevc_label_free", "lambda=1,crf=36")]
        assert r["crf_used"] == pytest.approx(36 - 18.97 * (r["map_mean"] - 0.5), abs=0.01)
    summary = report(out)
    keys = [k for k in summary["comparisons"] if k.startswith("hevc_label_free")]
    assert keys and all(" vs hevc, " in k for k in keys)
