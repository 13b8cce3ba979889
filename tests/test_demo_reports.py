"""Issue 34, "the first run shows what the tool is for": the demo's help and bundled set, ocr-map's defaults,
--threads on every computing command, and reports on few images (bootstrap intervals, the few-images note).
Fast: nothing here runs a model."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from taskcomp.cli import OCR_MAP_DEFAULTS, build_parser, main
from taskcomp.runner.report import (
    FEW_IMAGES,
    add_bootstrap_intervals,
    bootstrap_interval,
    compare_to_uniform,
    curves,
    few_images_note,
    report,
)


def _synthetic(n: int, seed: int = 1, gain: float = 0.25) -> pd.DataFrame:
    """Per-image records: a uniform curve (top-1 rising with q) and one task-aware setting ``gain`` above it."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        for q in (0.0, 0.2, 0.4, 0.6):
            rows.append(
                {
                    "image": f"img{i:03d}.png",
                    "method": "uniform",
                    "setting": f"q={q:.2f}",
                    "bpp": 0.1 + 0.3 * q + rng.normal(0, 0.01),
                    "psnr": 28 + 5 * q,
                    "top1/lite0": float(rng.random() < 0.3 + q),
                }
            )
        rows.append(
            {
                "image": f"img{i:03d}.png",
                "method": "task_aware",
                "setting": "lambda=1",
                "bpp": 0.2 + rng.normal(0, 0.01),
                "psnr": 29.0,
                "top1/lite0": float(rng.random() < 0.3 + 0.5 * 0.1 / 0.3 * 0.3 + gain),
            }
        )
    return pd.DataFrame(rows)


def _headline(df):
    c = compare_to_uniform(curves(df, ["top1/lite0"]), "top1/lite0", "task_aware", 0.3)
    return add_bootstrap_intervals(c, df, "task_aware")


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_images():
    widths = []
    for n in (12, 60, 300):
        c = _headline(_synthetic(n))
        g, iv = c["mean_curve_best_gain_points_at_or_below_0.3_bpp"], c["mean_curve_best_gain_points_ci95"]
        assert iv["low"] <= g <= iv["high"], (n, g, iv)
        assert iv["n_images"] == n and iv["resamples"] == 1000 and iv["level"] == 0.95
        s, ivs = c["mean_curve_best_bpp_saving_percent"], c["mean_curve_best_bpp_saving_percent_ci95"]
        if ivs is not None and s is not None:
            assert ivs["low"] <= s <= ivs["high"]
        widths.append(iv["high"] - iv["low"])
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_is_reproducible_and_undefined_without_the_metric():
    df = _synthetic(20)
    a = bootstrap_interval(df, "top1/lite0", "task_aware", "lambda=1")
    assert a == bootstrap_interval(df, "top1/lite0", "task_aware", "lambda=1")  # fixed seed
    assert a != bootstrap_interval(df, "top1/lite0", "task_aware", "lambda=1", seed=5)
    assert bootstrap_interval(df, "ap50/person", "task_aware", "lambda=1") is None  # not a per-image column


def test_bootstrap_interval_holds_its_headline_when_metrics_are_nan():
    """NaN metrics (undefined on an image): the headline averages bpp over every record and the metric over the
    defined ones; the interval computes that same statistic on each resample, so it holds the headline (it used
    to average bpp over the defined images only: an interval about another point, far from the headline)."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        img = f"img{i:03d}.png"
        for q in (0.1, 0.2, 0.3, 0.4, 0.5):
            b = q + rng.normal(0, 0.005)
            rows.append(
                {
                    "image": img,
                    "method": "uniform",
                    "setting": f"q={q:.2f}",
                    "bpp": b,
                    "psnr": 30.0,
                    "top1/lite0": float("nan") if i % 7 == 0 else b + rng.normal(0, 0.02),
                }
            )
        undefined = i % 2 == 0  # half the images: metric undefined, and coded at a higher rate
        rows.append(
            {
                "image": img,
                "method": "task_aware",
                "setting": "lambda=1",
                "psnr": 30.0,
                "bpp": (0.4 if undefined else 0.1) + rng.normal(0, 0.005),
                "top1/lite0": float("nan") if undefined else 0.3 + rng.normal(0, 0.02),
            }
        )
    df = pd.DataFrame(rows)
    c = compare_to_uniform(curves(df, ["top1/lite0"]), "top1/lite0", "task_aware", 0.3)
    add_bootstrap_intervals(c, df, "task_aware")
    g, iv = c["mean_curve_best_gain_points_at_or_below_0.3_bpp"], c["mean_curve_best_gain_points_ci95"]
    assert g is not None and iv is not None
    assert iv["low"] <= g <= iv["high"], (g, iv)
    s, ivs = c["mean_curve_best_bpp_saving_percent"], c["mean_curve_best_bpp_saving_percent_ci95"]
    assert s is not None and ivs is not None and ivs["low"] <= s <= ivs["high"], (s, ivs)


def test_few_images_note():
    assert few_images_note(FEW_IMAGES) is None and few_images_note(200) is None
    note = few_images_note(12)
    assert "only 12 images" in note and "95%" in note


def _run_folder(tmp_path, n):
    run = tmp_path / f"run{n}"
    run.mkdir()
    df = _synthetic(n)
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    return run


@pytest.mark.parametrize("n, noted", [(12, True), (40, False)])
def test_report_carries_intervals_and_the_few_images_note(tmp_path, n, noted):
    s = report(_run_folder(tmp_path, n), tmp_path / f"out{n}")
    c = s["comparisons"]["task_aware vs uniform, top1/lite0"]
    assert c["mean_curve_best_gain_points_ci95"]["n_images"] == n
    assert "mean_curve_best_bpp_saving_percent_ci95" in c
    table = (tmp_path / f"out{n}" / "table.md").read_text()
    assert ("only 12 images" in table) is noted and ("few_images_note" in s) is noted
    assert (tmp_path / f"out{n}" / "table.csv").is_file()  # the existing outputs stay


def test_report_command_prints_the_interval(tmp_path, capsys):
    assert main(["report", str(_run_folder(tmp_path, 12)), "--out", str(tmp_path / "o"), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "95% CI" in out and "only 12 images" in out


def test_printed_interval_follows_the_words_beside_it():
    """A saving worded "X% more bits" carries the interval of the extra bits (the signed saving's bounds negated, in
    ascending order); "X% fewer bits" the saving's own; summary.json keeps the signed saving."""
    from taskcomp.cli.running import bits_text as _bits_text
    from taskcomp.cli.running import interval_text as _interval_text

    iv = {"low": -17.4, "high": -4.1, "n_images": 12}
    assert _bits_text(-11.2) + _interval_text(iv, "+.1f", -11.2 < 0) == (
        "11.2% more bits [95% CI +4.1 to +17.4 over 12 images]"
    )
    iv = {"low": -17.4, "high": 79.2, "n_images": 12}
    assert _bits_text(76.7) + _interval_text(iv, "+.1f", 76.7 < 0) == (
        "76.7% fewer bits [95% CI -17.4 to +79.2 over 12 images]"
    )
    assert _interval_text(None, "+.1f", True) == "" and _bits_text(None) == "n/a"


# --------------------------------------------------------------------------------- --threads everywhere

#: Subcommands that compute nothing with torch (they read logs and plot).
NOT_COMPUTING = {"plot-training"}

#: The smallest arguments each subcommand parses with.
REQUIRED = {
    "compress": ["x.png", "-q", "0.5", "-o", "x.tcz"],
    "decompress": ["x.tcz", "-o", "x.png"],
    "optimize": ["x.png", "-o", "x.tcz"],
    "ocr-map": ["x.png", "-o", "x.tcz"],
    "run": ["r"],
    "report": ["d"],
    "train": ["--config", "c"],
    "train-predictor": ["--config", "c"],
    "export-codec": ["d"],
    "widen-codec": ["--to", "sft-medium", "-o", "w.pth"],
    "make-targets": ["--out", "t"],
    "distill-predictor": ["--targets", "t", "--out", "p.pth"],
}


def test_threads_on_every_computing_command():
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for name in sub.choices:
        if name in NOT_COMPUTING:
            continue
        a = p.parse_args([name, *REQUIRED.get(name, []), "--threads", "1"])
        assert a.threads == 1, name


def test_threads_zero_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


# --------------------------------------------------------------------------------- demo and ocr-map


def test_demo_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("uniform", "task-aware", "same real bpp", "gallery", "bundled", "Kodak", "chosen"):
        assert words in text, words


def test_demo_images_are_bundled():
    from PIL import Image

    from taskcomp.demo import DEMO_IMAGES, SELECTION, bundled_images

    paths = bundled_images()
    assert len(paths) == len(DEMO_IMAGES) >= 3
    for p in paths:
        assert p.is_file(), p
        w, h = Image.open(p).size
        assert max(w, h) <= 320
    assert "of the 24" in SELECTION.lower()


def test_demo_selection_statement_matches_the_candidate_run():
    """The bundled set and the averages printed beside it are those of results/demo/candidates.jsonl."""
    from pathlib import Path

    from taskcomp.cli import DEMO_SELECTION_HELP
    from taskcomp.demo import DEMO_IMAGES, DEMO_LAMBDA, SELECTION

    f = Path(__file__).resolve().parents[1] / "results" / "demo" / "candidates.jsonl"
    rows = [json.loads(line) for line in f.read_text().splitlines()]
    rows = [r for r in rows if r["lambda"] == DEMO_LAMBDA]
    assert len(rows) == 24
    chosen = sorted(
        r["image"].replace(".png", "_256.png") for r in rows if r["task-aware"]["keeps"] and not r["uniform"]["keeps"]
    )
    assert chosen == sorted(DEMO_IMAGES)
    ku, kt = (sum(r[k]["keeps"] for r in rows) for k in ("uniform", "task-aware"))
    for text in (SELECTION, DEMO_SELECTION_HELP):
        assert f"uniform maps {ku}/24" in text and f"task-aware maps {kt}/24" in text


def test_demo_gallery_says_the_images_were_picked_and_what_kept_means(tmp_path, monkeypatch):
    """The gallery's picture carries the selection (4 of 24 picked; the rates over all 24, from SELECTION_COUNTS,
    which match candidates.jsonl) and says decoded classes are compared with the original's top-1."""
    from pathlib import Path

    import torch

    import taskcomp.io
    from taskcomp.demo import (
        DEMO_IMAGES,
        DEMO_LAMBDA,
        SELECTION,
        SELECTION_COUNTS,
        DemoResult,
        demo_gallery,
        selection_note,
    )

    f = Path(__file__).resolve().parents[1] / "results" / "demo" / "candidates.jsonl"
    rows = [r for r in map(json.loads, f.read_text().splitlines()) if r["lambda"] == DEMO_LAMBDA]
    ku, kt = (sum(r[k]["keeps"] for r in rows) for k in ("uniform", "task-aware"))
    assert SELECTION_COUNTS == {"candidates": len(rows), "uniform_kept": ku, "task_aware_kept": kt}
    n = len(rows)
    note = selection_note()
    for words in (
        f"{len(DEMO_IMAGES)} of {n}",
        f"uniform maps {ku}/{n}",
        f"task-aware maps {kt}/{n}",
        "the original's top-1",
    ):
        assert words in note, words
    assert f"uniform maps {ku}/{n}" in SELECTION  # the printed text and the picture share the figures
    img = np.zeros((8, 8, 3), np.uint8)
    r = DemoResult("kodim03_256", img, 1, torch.full((1, 1, 8, 8), 0.3), 0.2)
    for key, keeps in (("uniform", False), ("task-aware", True)):
        r.rows[key] = {"bpp": 0.2, "psnr": 30.0, "pred": 1 if keeps else 2, "keeps": keeps, "decoded": img}
    texts = []

    def capture(fig, path, **kw):
        texts.append(fig._suptitle.get_text() if fig._suptitle else "")
        texts.extend(ax.get_xlabel() for ax in fig.axes)

    monkeypatch.setattr(taskcomp.io, "save_figure", capture)
    demo_gallery([r], tmp_path / "g.png", title="T", note=note)
    assert texts[0] == "T\n" + note
    assert any("kept the original's top-1" in t for t in texts) and any("LOST the original's top-1" in t for t in texts)


def test_ocr_map_defaults_are_the_documented_setting():
    a = build_parser().parse_args(["ocr-map", "r.jpg", "-o", "r.tcz"])
    assert (a.max_side, a.init, a.init_q, a.det_weight, a.rec_weight, a.steps) == (2600, "box-mask", 0.25, 0.0, 1.0, 3)
    assert a.lam is None and OCR_MAP_DEFAULTS["lambda"] == 1.0  # --lambda's default, applied by the command
    assert a.codec is None and OCR_MAP_DEFAULTS["codec"] == "sft-small-doc"  # without --checkpoint
    assert a.max_side == OCR_MAP_DEFAULTS["max_side"] and a.init_q == OCR_MAP_DEFAULTS["init_q"]


def test_ocr_map_default_working_size_is_bounded_with_a_note(capsys):
    """Inputs up to 2600 px on the long side are worked on at their own size (the measured setting), larger ones at
    2600 px with a one-line note naming --max-side 0; --max-side 0 keeps any size, an explicit size says nothing."""
    from taskcomp.cli.mapping import ocr_working_image as _ocr_working_image

    small, big = np.zeros((2594, 1080, 3), np.uint8), np.zeros((3000, 4000, 3), np.uint8)
    assert _ocr_working_image(small, 2600, "s.jpg").shape == small.shape
    assert capsys.readouterr().out == ""
    assert _ocr_working_image(big, 2600, "b.jpg").shape == (1950, 2600, 3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "b.jpg" in lines[0] and "4000x3000" in lines[0] and "--max-side 0" in lines[0]
    assert _ocr_working_image(big, 0, "b.jpg").shape == big.shape
    assert _ocr_working_image(big, 768, "b.jpg").shape == (576, 768, 3)
    assert capsys.readouterr().out == ""
    a = build_parser().parse_args(["ocr-map", "r.jpg", "-o", "r.tcz", "--max-side", "-1"])
    assert main(["ocr-map", "r.jpg", "-o", "r.tcz", "--max-side", "-1"]) == 2 and a.max_side == -1
    assert "--max-side must be >= 0" in capsys.readouterr().err


def test_demo_task_on_one_small_image(tmp_path, codec, sample_128):
    """The demo's task part end to end on one 64-px image: table, means, example files and the gallery."""
    from PIL import Image

    from taskcomp.demo import demo_task

    src = tmp_path / "small.png"
    Image.fromarray(np.ascontiguousarray(sample_128[::2, ::2])).save(src)
    lines = []
    s = demo_task(codec, tmp_path / "out", image=src, log=lines.append)
    text = "\n".join(lines)
    assert "same real bpp" in text and "mean over the image" in text and "gallery" in text
    assert s["n_images"] == 1 and abs(s["uniform"]["bpp"] / s["task-aware"]["bpp"] - 1) < 0.05
    for name in (
        "task_aware.tcz",
        "task_aware.png",
        "task_aware_map.png",
        "task_aware_map.npy",
        "task_aware_overlay.png",
        "uniform_same_bpp.png",
        "demo_gallery.png",
    ):
        assert (tmp_path / "out" / name).is_file(), name
    assert Image.open(tmp_path / "out" / "demo_gallery.png").size[0] > 400
