"""The text (OCR) objective and the ocr-map command."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from taskcomp.cli import main
from taskcomp.io import image_to_tensor
from taskcomp.objectives import create_objective
from taskcomp.objectives.text import cer, reading_text, word_accuracy


def text_image(w=320, h=128, lines=("TOTAL 12.50", "CASH PAID")):
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=30)
    for i, t in enumerate(lines):
        d.text((10, 10 + 50 * i), t, fill="black", font=font)
    return np.asarray(im)


@pytest.fixture(scope="module")
def text_obj():
    return create_objective("text")


def test_metrics():
    assert cer("abc", "abc") == 0 and cer("abc", "abd") == pytest.approx(1 / 3) and cer("", "") == 0
    assert cer("kitten", "sitting") == pytest.approx(3 / 6)
    assert word_accuracy("a b c", "a c x") == pytest.approx(2 / 3)
    lines = reading_text(
        [
            ([[50, 0], [90, 0], [90, 20], [50, 20]], "b", 1),
            ([[0, 2], [40, 2], [40, 22], [0, 22]], "a", 1),
            ([[0, 40], [40, 40], [40, 60], [0, 60]], "c", 1),
        ]
    )
    assert lines == "a b\nc"


def test_reads_and_loss_tracks_readability(text_obj):
    x = image_to_tensor(text_image())
    ctx = text_obj.prepare(x)
    assert ctx["images"][0]["reference"] == "TOTAL 12.50\nCASH PAID"
    clean = float(text_obj.loss(x, ctx))
    blurred = F.avg_pool2d(x, 9, 1, 4)
    assert float(text_obj.loss(blurred, ctx)) > clean + 0.1
    assert text_obj.evaluate(x, ctx)[0]["cer"] == 0
    assert text_obj.evaluate(blurred, ctx)[0]["cer"] > 0.2
    # A reading the caller already has gives the same scores as reading again.
    assert text_obj.evaluate(blurred, ctx, readings=[text_obj.read(blurred[0])]) == text_obj.evaluate(blurred, ctx)


def test_gradient_reaches_map(codec, text_obj):
    x = image_to_tensor(text_image())
    ctx = text_obj.prepare(x)
    q = torch.full((1, 1, 128, 320), 0.3, requires_grad=True)
    out = codec(x, q, quantize="ste")
    (g,) = torch.autograd.grad(text_obj.loss(out["x_hat"].clamp(0, 1), ctx).sum(), q)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_no_text_tiny_and_grayscale(text_obj):
    blank = torch.full((1, 3, 96, 96), 0.8)
    ctx = text_obj.prepare(blank)
    assert ctx["images"][0]["boxes"] == []
    assert torch.isfinite(text_obj.loss(blank, ctx)).all()
    assert text_obj.evaluate(blank, ctx)[0]["cer"] == 0
    tiny = torch.rand(1, 3, 5, 7)
    ctx = text_obj.prepare(tiny)
    assert torch.isfinite(text_obj.loss(tiny, ctx)).all()
    gray = image_to_tensor(np.repeat(text_image()[..., :1], 3, axis=2))
    assert text_obj.prepare(gray)["images"][0]["boxes"]
    mask = text_obj.box_mask(text_obj.prepare(gray), (128, 320))
    assert 0 < float(mask.mean()) < 1


def test_ocr_map_cli_large_image_at_working_resolution(tmp_path, capsys):
    p = tmp_path / "wide.png"
    Image.fromarray(text_image(2400, 128, ("INVOICE 0042 TOTAL 99.00",))).convert("L").save(p)  # grayscale file
    rc = main(
        [
            "ocr-map",
            str(p),
            "--max-side",
            "800",
            "--steps",
            "1",
            "-o",
            str(tmp_path / "o.tcz"),
            "--save-map",
            str(tmp_path / "m.png"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "working resolution 800x43" in out
    assert (tmp_path / "o.tcz").stat().st_size > 0 and (tmp_path / "m.png").is_file()
    rc = main(["ocr-map", str(p), "--lambda", "-1", "-o", str(tmp_path / "x.tcz")])
    assert rc == 2


def test_sroie_recipe_tiny(tmp_path, data_root):
    from taskcomp.runner import run_recipe
    from taskcomp.runner.report import report

    recipe = {
        "name": "tiny_sroie",
        "task": "text",
        "data": "sroie",
        "preprocess": {"max_side": 256},
        "objective": {"name": "text"},
        "methods": {
            "uniform": {"q": [0.0, 1.0]},
            "box_mask": {"q_in": [1.0]},
            "task_aware": {"lambda": [10], "steps": 1, "downsample": 16},
            "jpeg": {"quality": [50]},
        },
    }
    out = tmp_path / "run"
    assert run_recipe(recipe, out, data_root, limit=1, log=lambda *a: None) == 5
    s = report(out)
    rec = [l for l in (out / "records.shard0of1.jsonl").read_text().splitlines()]
    import json

    r = json.loads(rec[0])
    assert {"cer/gt", "word_acc/gt", "cer/original", "psnr_text", "psnr_background"} <= set(r)
    assert any("cer/gt" in k for k in s["comparisons"])


def test_every_text_box_is_kept_unless_capped(text_obj):
    """No word is dropped by default: 80 given lines all enter the loss and the box mask (a cap of 64 once
    dropped the smallest words of long receipts, which then got q = 0)."""
    x = torch.ones(1, 3, 820, 200)
    lines = [(10, 10 * i, 10 + 20 + i, 10 * i + 8, "AB") for i in range(80)]  # widths differ: distinct areas
    ctx = text_obj.prepare(x, texts=[lines])
    assert text_obj.max_boxes is None and len(ctx["images"][0]["boxes"]) == 80
    mask = text_obj.box_mask(ctx, (820, 200), q_in=1.0, q_out=0.0, margin=0)
    assert all(float(mask[0, 0, b + 1, a + 1]) == 1.0 for a, b, _, _, _ in lines)
    capped = create_objective("text", max_boxes=64, det_weight=0.0)
    boxes = capped.prepare(x, texts=[lines])["images"][0]["boxes"]
    assert len(boxes) == 64 and min(c - a for a, _, c, _, _ in boxes) == 20 + 16  # the 16 smallest are dropped
    for bad in (0, -3, 2.5, True, "all"):
        with pytest.raises(ValueError, match="max_boxes must be None"):
            create_objective("text", max_boxes=bad)
