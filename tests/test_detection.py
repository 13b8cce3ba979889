"""The detection objective (ultralytics loss on the offline person detector)."""

import pytest
import torch
import torch.nn.functional as F

from taskcomp.io import image_to_tensor, load_image
from taskcomp.objectives import create_objective
from taskcomp.task_models import ModelError


@pytest.fixture(scope="module")
def det():
    return create_objective("detection")


@pytest.fixture(scope="module")
def people(data_root):
    return image_to_tensor(load_image(data_root / "coco-val" / "images" / "000000184324.jpg"))


def test_pseudo_labels_and_loss(det, people):
    ctx = det.prepare(people)
    assert len(ctx["targets"][0]) >= 3
    clean = float(det.loss(people, ctx))
    blurred = F.avg_pool2d(people, 15, 1, 7)
    assert float(det.loss(blurred, ctx)) > clean
    assert det.evaluate(people, ctx)[0]["recall_vs_original"] == 1.0


def test_low_threshold_detections_for_ap(det, people):
    strict, loose = det.detect(people)[0], det.detect(people, conf=0.001, max_det=100, agnostic=True)[0]
    assert len(strict) <= len(loose) <= 100 and float(loose[:, 4].min()) < det.conf
    # Class-agnostic NMS also suppresses a Normal box lying on a Fall box of the same person.
    assert len(loose) <= len(det.detect(people, conf=0.001, max_det=100)[0])


def test_gradient_reaches_map(codec, det, people):
    x = people[..., :256, :256]
    ctx = det.prepare(x)
    q = torch.full((1, 1, 256, 256), 0.3, requires_grad=True)
    out = codec(x, q, quantize="ste")
    (g,) = torch.autograd.grad(det.loss(out["x_hat"].clamp(0, 1), ctx).sum(), q)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_no_person_and_grayscale(det, people):
    empty_ctx = {"targets": [torch.zeros(0, 5)], "original": [torch.zeros(0, 6)]}
    assert torch.isfinite(det.loss(people, empty_ctx)).all()  # no labels: the loss only penalises detections
    gray = people.mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    ctx = det.prepare(gray)
    assert torch.isfinite(det.loss(gray, ctx)).all()
    m = det.evaluate(gray, ctx)[0]
    assert m["recall_vs_original"] == 1.0


def test_not_a_detector(tmp_path):
    from ultralytics import YOLO

    from taskcomp.objectives.detection import load_detector

    cls_path = tmp_path / "cls.pt"
    YOLO("yolov8n-cls.yaml").save(str(cls_path))  # built from its yaml: no download
    with pytest.raises(ModelError, match="not a detector"):
        load_detector(cls_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not an ultralytics checkpoint"):
        load_detector(junk)


def test_eigencam_and_weighted(det, people):
    from taskcomp.objectives import create_objective, parse_task_spec
    from taskcomp.objectives.detection import detector_eigencam

    m = detector_eigencam(det, people)
    assert m.shape == (1, 1, *people.shape[-2:]) and 0 <= float(m.min()) <= float(m.max()) <= 1
    assert parse_task_spec("detection:1,text:0.5") == [
        {"name": "detection", "weight": 1.0},
        {"name": "text", "weight": 0.5},
    ]
    with pytest.raises(ValueError):
        parse_task_spec("detection:-1")
    w = create_objective(
        "weighted", objectives=[{"name": "detection", "weight": 1.0}, {"name": "saliency", "weight": 2.0}]
    )
    x = people[..., :192, :256]
    ctx = w.prepare(x)
    loss = w.loss(x, ctx)
    assert loss.shape == (1,) and torch.isfinite(loss).all()
    assert {"detection/f1_vs_original", "saliency/top1"} <= set(w.evaluate(x, ctx)[0])


def test_coco_recipe_tiny_with_ap(tmp_path, data_root):
    from taskcomp.runner import run_recipe
    from taskcomp.runner.report import report

    recipe = {
        "name": "tiny_coco",
        "task": "detection",
        "data": "coco-val",
        "coco_category": 1,
        "preprocess": {"max_side": 256},
        "objective": {"name": "detection", "imgsz": 256},
        "methods": {
            "uniform": {"q": [0.0, 1.0]},
            "saliency": {"alpha": [1.0]},
            "task_aware": {"lambda": [1.0], "steps": 1, "downsample": 16},
            "webp": {"quality": [50]},
        },
    }
    out = tmp_path / "run"
    assert run_recipe(recipe, out, data_root, limit=2, log=lambda *a: None) == 10
    s = report(out, data_root=data_root)
    table = (out / "table.csv").read_text()
    assert "ap50/person" in table and "ap/person" in table
    assert any("f1/original" in k for k in s["comparisons"])
