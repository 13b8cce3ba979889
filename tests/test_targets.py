"""Per-image map targets for distilling a predictor (taskcomp.training.targets): made on training photos only,
resumable to the same set under any sharding, refused when their meaning or codec weights differ."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from taskcomp.training.targets import TargetsError, TargetSpec, load_targets, make_targets, target_images


def _photos(root, n=5, size=(40, 52)):
    d = root / "train" / "photos"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    for i in range(n):
        base = 128 + 90 * np.sin(xx / (3.0 + i)) * np.cos(yy / 5.0)
        img = np.clip(np.stack([base, base[::-1], base[:, ::-1]], 2) + rng.normal(0, 6, (*size, 3)), 0, 255)
        Image.fromarray(img.astype(np.uint8)).save(d / f"p{i}.png")
    (root / "imagenet-sample" / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "imagenet-sample" / "images" / "e.png")
    return root


@pytest.fixture(scope="module")
def parts():
    from taskcomp.bitstream import weights_id
    from taskcomp.codec import create_codec
    from taskcomp.objectives import create_objective

    codec = create_codec("sft-small")
    objective = create_objective("classification", model="tf_efficientnet_lite0")
    spec = TargetSpec(
        codec="sft-small",
        weights=weights_id(codec).hex(),
        task="classification",
        task_model="tf_efficientnet_lite0",
        objective={"name": "classification", "model": "tf_efficientnet_lite0"},
        lambdas=[0.01, 10.0],
        optimizer={"steps": 2, "lr": 0.5, "init_q": 0.3, "downsample": 8},
        resize=36,
        crop=32,
    )
    return codec, objective, spec


def test_evaluation_sets_are_refused_and_order_is_fixed(tmp_path):
    root = _photos(tmp_path)
    with pytest.raises(TargetsError, match="evaluation set"):
        target_images(root, ["imagenet-sample"])
    with pytest.raises(TargetsError, match="no such folder"):
        target_images(root, ["nope"])
    full = target_images(root, ["train"])
    assert len(full) == 5 and target_images(root, ["train"], limit=2) == full[:2]


def test_a_training_photo_identical_to_an_evaluation_image_is_left_out(tmp_path):
    import shutil

    root = _photos(tmp_path)
    # a byte copy under another name (as three shared train/coco files are coco-val images) and a same-size
    # file with other bytes, which stays
    shutil.copy(root / "imagenet-sample" / "images" / "e.png", root / "train" / "photos" / "copy.png")
    data = bytearray((root / "imagenet-sample" / "images" / "e.png").read_bytes())
    data[-13] ^= 1
    (root / "train" / "photos" / "other.png").write_bytes(bytes(data))
    said = []
    names = {Path(rel).name for rel, _ in target_images(root, ["train"], log=said.append)}
    assert "copy.png" not in names and {"other.png", "p0.png"} <= names and len(names) == 6
    assert said == ["targets: 1 image(s) of train left out: byte copies of evaluation images"]
    with pytest.raises(TargetsError, match="not under the data root"):
        target_images(root / "train", [str(root)])  # an absolute folder above the data root


def test_targets_resume_to_the_same_set_under_other_sharding(tmp_path, parts):
    codec, objective, spec = parts
    root = _photos(tmp_path)
    images = target_images(root, ["train"])
    a, b = tmp_path / "a", tmp_path / "b"
    assert make_targets(images, a, codec, objective, spec, batch_size=2, log=lambda *x: None) == 5
    assert make_targets(images, a, codec, objective, spec, log=lambda *x: None) == 0  # all done: nothing redone
    # the same set made as shard 0/2, then resumed as one process
    assert make_targets(images, b, codec, objective, spec, shard=(0, 2), log=lambda *x: None) == 3
    assert make_targets(images, b, codec, objective, spec, log=lambda *x: None) == 2
    sa, ea = load_targets(a, weights=spec.weights, task_model="tf_efficientnet_lite0")
    sb, eb = load_targets(b)
    assert [e["image"] for e in ea] == [e["image"] for e in eb] == [i[0] for i in images]
    z = np.load(a / ea[0]["file"])
    assert z["logits"].dtype == np.float16 and z["logits"].shape == (2, 1, 4, 4)
    # the map's mean rises with lambda (more weight on the task: more bits)
    for e in ea:
        assert e["map_mean"][1] > e["map_mean"][0]
    assert sa["lambdas"] == [0.01, 10.0]


def test_other_meaning_or_weights_are_refused(tmp_path, parts):
    codec, objective, spec = parts
    root = _photos(tmp_path, n=1)
    images = target_images(root, ["train"])
    out = tmp_path / "t"
    make_targets(images, out, codec, objective, spec, log=lambda *x: None)
    other = TargetSpec(**{**spec.__dict__, "lambdas": [1.0]})
    with pytest.raises(TargetsError, match="lambdas"):
        make_targets(images, out, codec, objective, other, log=lambda *x: None)
    other = TargetSpec(**{**spec.__dict__, "optimizer": {**spec.optimizer, "optimizer": "ngd"}})
    with pytest.raises(TargetsError, match=r"optimizer\.optimizer = '\(default\)'; this run has 'ngd'"):
        make_targets(images, out, codec, objective, other, log=lambda *x: None)
    with pytest.raises(TargetsError, match="codec weights"):
        load_targets(out, weights="0" * 16)
    with pytest.raises(TargetsError, match="task model"):
        load_targets(out, task_model="tf_efficientnet_lite2")
    (out / "targets.json").write_text("{")
    with pytest.raises(TargetsError, match="damaged"):
        load_targets(out)
    with pytest.raises(TargetsError, match="no targets"):
        load_targets(tmp_path / "empty")
    # a cut index line is skipped and its image redone
    idx = next(out.glob("index*.jsonl"))
    assert json.loads(idx.read_text().splitlines()[0])["image"] == images[0][0]


def test_a_predictor_distilled_from_targets_fits_them_and_knows_its_codec(tmp_path, parts, capsys):
    from types import SimpleNamespace

    import torch
    from conftest import assert_one_line_error, run

    from taskcomp.predictors import PredictorError, check_codec, create_predictor
    from taskcomp.training.distill import distill_predictor

    codec, objective, spec = parts
    root = _photos(tmp_path, n=8)
    out = tmp_path / "t"
    make_targets(target_images(root, ["train"]), out, codec, objective, spec, batch_size=4, log=lambda *x: None)
    with pytest.raises(TargetsError, match="codec weights"):  # targets of other weights are refused when training
        distill_predictor(out, tmp_path / "p.pth", root, codec_weights="0" * 16, log=lambda *x: None)
    s = distill_predictor(
        out, tmp_path / "p.pth", root, steps=40, batch_size=4, eval_every=10, holdout_every=3, log=lambda *x: None
    )
    assert s["n_train_images"] + s["n_held_out_images"] == 8 and s["held_out_kl"] <= s["held_out_kl_start"]
    rows = (tmp_path / "p.pth.log.csv").read_text().splitlines()
    first, last = float(rows[2].split(",")[2]), float(rows[-1].split(",")[2])
    assert last < first  # the decoder learns its training targets
    pred = create_predictor(str(tmp_path / "p.pth"))
    assert pred.config.training == "distilled" and pred.config.codec_weights == spec.weights
    assert (pred.config.lambda_min, pred.config.lambda_max) == (0.01, 10.0)
    for shape in [(1, 1, 9, 13), (1, 3, 1, 1), (2, 3, 20, 50)]:  # grayscale, tiny, non-square: maps of their size
        m = pred.predict_map(torch.rand(shape), 0.1)
        assert m.shape == (shape[0], 1, *shape[2:]) and float(m.min()) >= 0 and float(m.max()) <= 1
    check_codec(pred, codec)
    other = SimpleNamespace(checkpoint_info={"codec": "sft-small", "hash": "ab" * 32})
    with pytest.raises(PredictorError, match="made for codec sft-small weights"):
        check_codec(pred, other)
    capsys.readouterr()
    rc, _, err = run(["distill-predictor", "--targets", tmp_path / "none", "--out", tmp_path / "q.pth"], capsys)
    assert_one_line_error(rc, err, "no targets")
    rc, _, err = run(["distill-predictor", "--targets", out, "--out", tmp_path / "q.txt"], capsys)
    assert_one_line_error(rc, err, ".pth")
    (tmp_path / "d.pth").mkdir()
    rc, _, err = run(["distill-predictor", "--targets", out, "--out", tmp_path / "d.pth"], capsys)
    assert_one_line_error(rc, err, "is a folder")
    rc, _, err = run(["distill-predictor", "--targets", out, "--out", out / "features" / "x.pt"], capsys)
    assert_one_line_error(rc, err, "inside the targets folder")
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(out, cut)
    next((cut / "maps").glob("*.npz")).write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(TargetsError, match="damaged.*make-targets"):
        distill_predictor(cut, tmp_path / "c.pth", root, steps=2, holdout_every=3, log=lambda *x: None)
