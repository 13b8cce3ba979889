"""Documents at their own resolution (issue 24): ocr-map and the text recipe code the input's own pixels, a blank
page and a sideways (EXIF) page, recogniser readings on given boxes, the document codec's training data."""

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from taskcomp.cli import main
from taskcomp.io import image_to_tensor


def page(w=1600, h=900, lines=("INVOICE 0042", "TOTAL 99.00", "CASH PAID")):
    """A white page with large black text lines (w x h RGB uint8)."""
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=max(12, h // 10))
    for i, t in enumerate(lines):
        d.text((w // 10, h // 10 + i * h // 4), t, fill="black", font=font)
    return im


def _tcz_size(path):
    """(H, W) of what `taskcomp decompress` writes for a .tcz."""
    png = path.with_suffix(".dec.png")
    assert main(["decompress", str(path), "-o", str(png), "--synthesis", "float32"]) == 0
    w, h = Image.open(png).size
    return h, w


def _ocr_map(tmp_path, src, *extra):
    out, js = tmp_path / f"{src.stem}.tcz", tmp_path / f"{src.stem}.json"
    rc = main(["ocr-map", str(src), "--max-side", "320", "--steps", "1", "-o", str(out), "--json", str(js), *extra])
    assert rc == 0
    return out, json.loads(js.read_text())["images"][0]


def test_ocr_map_codes_the_input_size_and_counts_its_pixels(tmp_path, capsys):
    src = tmp_path / "photo.jpg"
    page().save(src, quality=92)
    out, row = _ocr_map(tmp_path, src)
    assert _tcz_size(out) == (900, 1600)
    assert (row["width"], row["height"]) == (1600, 900)
    assert row["bpp"] == pytest.approx(8 * out.stat().st_size / (1600 * 900), rel=1e-6)
    assert "working resolution 320x180 (map upsampled to 1600x900)" in capsys.readouterr().out


def test_blank_page_gets_the_lowest_map(tmp_path, capsys):
    src = tmp_path / "blank.png"
    Image.new("RGB", (1600, 900), "white").save(src)
    out, row = _ocr_map(tmp_path, src, "--save-map", str(tmp_path / "blank.npy"))
    printed = capsys.readouterr().out
    assert "0 text boxes" in printed and "q = 0 everywhere" in printed
    assert _tcz_size(out) == (900, 1600)
    m = np.load(tmp_path / "blank.npy")
    assert m.shape == (900, 1600) and float(m.max()) == 0  # no text: nothing to keep, the lowest map


def test_sideways_page_is_read_upright(tmp_path, capsys):
    upright = page(900, 1600, ("TOTAL 99.00", "CASH PAID"))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways, EXIF says turn it back
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to view
    src = tmp_path / "sideways.jpg"
    stored.save(src, quality=92, exif=exif)
    out, row = _ocr_map(tmp_path, src)
    assert (row["width"], row["height"]) == (900, 1600) and _tcz_size(out) == (1600, 900)
    boxes = int(capsys.readouterr().out.split(" text boxes")[0].rsplit(", ", 1)[-1])
    assert boxes >= 2  # read upright: the lines are found


@pytest.fixture(scope="module")
def text_obj():
    from taskcomp.objectives import create_objective

    return create_objective("text")


def test_read_boxes_keeps_order_and_marks_boxes_outside(text_obj):
    x = image_to_tensor(np.asarray(page(800, 450)))
    boxes = text_obj.prepare(x)["images"][0]["boxes"]
    boxes = sorted(boxes, key=lambda b: b[1])
    got = text_obj.read_boxes(x[0], boxes + [(900, 10, 990, 40, "")])
    assert [t for _, t, _ in got[:-1]] == [b[4] for b in boxes]  # the recogniser on each box, in order
    assert got[-1][1] == ""


def test_recipe_at_working_side_codes_and_reads_full_size(tmp_path, data_root):
    from taskcomp.runner import run_recipe

    recipe = {
        "name": "tiny_full",
        "task": "text",
        "data": "sroie",
        "preprocess": {"working_side": 400},
        "reading": "boxes",
        "synthesis": "float32",
        "objective": {"name": "text", "det_weight": 0.0},
        "methods": {
            "uniform": {"q": [0.0]},
            "box_mask": {"q_in": [0.5]},
            "task_aware": {"lambda": [1], "steps": 1, "downsample": 16, "init": "box_mask", "init_q": 0.3},
        },
    }
    out = tmp_path / "run"
    assert run_recipe(recipe, out, data_root, limit=1, log=lambda *a: None, report=False) == 3
    recs = [json.loads(l) for l in (out / "records.shard0of1.jsonl").read_text().splitlines()]
    for r in recs:
        assert (r["width"], r["height"]) == (r["input_width"], r["input_height"])  # coded at its own size
        assert 0 <= r["cer/gt"] and 0 <= r["cer/original"] and "psnr_text" in r
    by = {r["method"]: r for r in recs}
    assert by["box_mask"]["bpp"] > by["uniform"]["bpp"]  # text boxes at q 0.5 cost more than q = 0 everywhere


@pytest.mark.parametrize(
    "recipe, words",
    [
        ({"preprocess": {"working_side": 500, "max_side": 500}}, "give one"),
        ({"task": "classification", "preprocess": {"working_side": 500}}, "apply to task text"),
        ({"reading": "lines"}, "page or boxes"),
        ({"synthesis": "float16"}, "float64 or float32"),
        ({"task": "classification", "methods": {"task_aware": {"lambda": [1], "init": "box_mask"}}}, "needs task text"),
    ],
)
def test_document_recipe_keys_are_checked(recipe, words):
    from taskcomp.runner.recipe import RecipeError, validate_recipe

    r = {"name": "r", "task": "text", "data": "sroie", "methods": {"uniform": {"q": [0.0]}}, **recipe}
    with pytest.raises(RecipeError, match=words):
        validate_recipe(r)


def test_document_codec_never_trains_on_the_benchmark_receipts(data_root):
    """train_sft_small_doc's exclude list is exactly what `taskcomp run sroie_text_full --limit 50` evaluates."""
    from taskcomp.runner.layouts import list_items
    from taskcomp.runner.recipe import load_recipe, resolve_recipe
    from taskcomp.runner.run import spread
    from taskcomp.training.codec import TrainConfig

    cfg = TrainConfig.from_yaml(resolve_recipe("train_sft_small_doc"))
    for name in ("sroie_text_full", "sroie_text"):
        evaluated = spread(list_items(load_recipe(name), data_root), 50)
        assert sorted(f"sroie/images/{it['path'].name}" for it in evaluated) == sorted(cfg.exclude)
    assert "sroie/images" in cfg.data and cfg.codec == "sft-small-doc"
    from taskcomp.training.predictor import PredictorTrainConfig

    text = PredictorTrainConfig.from_yaml(resolve_recipe("predictor_text"))
    assert sorted(text.exclude) == sorted(cfg.exclude) and "sroie/images" in text.data


def test_training_pool_skips_excluded_files(tmp_path):
    from taskcomp.datasets import DataError, TrainingPool

    for i in range(3):
        Image.new("RGB", (64, 64), (i * 80,) * 3).save(tmp_path / f"{i}.png")
    pool = TrainingPool([tmp_path], 32, exclude_files=[tmp_path / "1.png"])
    assert len(pool) == 2 and pool.excluded == 1
    with pytest.raises(DataError, match="no training images"):
        TrainingPool(tmp_path, 32, exclude_files=[tmp_path / f"{i}.png" for i in range(3)])


def test_ocr_map_box_mask_init_and_recogniser_only(tmp_path, capsys):
    src = tmp_path / "p.png"
    page(800, 450).save(src)
    out, row = _ocr_map(
        tmp_path,
        src,
        "--init",
        "box-mask",
        "--init-q",
        "0.4",
        "--det-weight",
        "0",
        "--save-map",
        str(tmp_path / "p.npy"),
    )
    m = np.load(tmp_path / "p.npy")
    assert float(m.max()) > 0.2 and float(np.median(m)) < 0.1  # text kept, white paper at the floor
    for bad, words in (
        (["--det-weight", "-1"], "--det-weight must be"),
        (["--det-weight", "0", "--rec-weight", "0"], "both 0"),
        (["--init", "box-mask", "--batch-size", "2"], "--batch-size 1"),
        (["--json", str(src) + "/r.json"], "--json"),  # found before the map is made
        (["--save-map", str(src) + "/m.png"], "--save-map"),
    ):
        capsys.readouterr()
        assert main(["ocr-map", str(src), "-o", str(tmp_path / "x.tcz"), *bad]) == 2
        assert words in capsys.readouterr().err
