"""The one-pass map predictor: shapes on odd inputs, lambda conditioning, checkpoints, training resume, use."""

import numpy as np
import pytest
import torch
from PIL import Image

from taskcomp.cli import main
from taskcomp.predictors import (
    FeatureFiLMPredictor,
    PredictorConfig,
    PredictorError,
    check_task_model,
    create_predictor,
    list_predictors,
    save_predictor,
)


def _run(args, capsys):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def untrained_ckpt(tmp_path_factory):
    """A predictor checkpoint whose decoder has random weights (head not zero), so maps vary with the image."""
    torch.manual_seed(0)
    m = FeatureFiLMPredictor(PredictorConfig(channels=8), pretrained=False)
    torch.nn.init.normal_(m.head.weight, std=0.5)
    path = tmp_path_factory.mktemp("pred") / "p.pth"
    save_predictor(m, path, "test-lite0")
    return path


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 1, 37, 21), (2, 3, 8, 130), (1, 3, 65, 64)])
def test_maps_have_the_image_size_for_tiny_grayscale_and_non_square_images(untrained_ckpt, shape):
    pred = create_predictor(str(untrained_ckpt))
    x = torch.rand(*shape)
    m = pred.predict_map(x, 0.1)
    assert m.shape == (shape[0], 1, *shape[-2:])
    assert bool(((m >= 0) & (m <= 1)).all())
    assert pred(x, 0.1).shape[-2:] == pred.grid(*shape[-2:])


def test_an_untrained_predictor_predicts_the_constant_init_map():
    m = FeatureFiLMPredictor(PredictorConfig(channels=8, init_q=0.2), pretrained=False)
    q = m.predict_map(torch.rand(1, 3, 40, 56), 1.0)
    assert torch.allclose(q, torch.full_like(q, 0.2), atol=1e-5)


def test_bad_inputs_raise_value_errors(untrained_ckpt):
    pred = create_predictor(str(untrained_ckpt))
    with pytest.raises(ValueError, match="NaN"):
        pred(torch.full((1, 3, 16, 16), float("nan")), 0.1)
    with pytest.raises(ValueError, match="lambda"):
        pred(torch.rand(1, 3, 16, 16), 0.0)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        pred(torch.rand(3, 16, 16), 0.1)


def test_checkpoints_refuse_foreign_files_and_other_task_models(tmp_path, untrained_ckpt):
    with pytest.raises(PredictorError, match="not found"):
        create_predictor(str(tmp_path / "none.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PredictorError, match="not a readable checkpoint"):
        create_predictor(str(junk))
    other = tmp_path / "other.pth"
    torch.save({"format": "taskcomp-codec"}, other)
    with pytest.raises(PredictorError, match="not a taskcomp predictor"):
        create_predictor(str(other))
    with pytest.raises(PredictorError, match="unknown predictor"):
        create_predictor("no-such-predictor")
    pred = create_predictor(str(untrained_ckpt))
    check_task_model(pred, "classification", "lite0")  # an alias of its task model
    with pytest.raises(PredictorError, match="tf_efficientnet_lite0 maps, not tf_efficientnet_lite1"):
        check_task_model(pred, "classification", "tf_efficientnet_lite1")
    with pytest.raises(PredictorError, match="classification maps, not detection"):
        check_task_model(pred, "detection", None)


def test_shipped_predictor_map_mean_rises_with_lambda(sample_rgb):
    """The registered Lite0 predictor spends more rate (a higher mean q) on the same image as lambda grows."""
    assert "lite0-classification" in list_predictors()
    pred = create_predictor("lite0-classification")
    x = torch.from_numpy(sample_rgb).permute(2, 0, 1)[None].float() / 255
    means = [float(pred.predict_map(x, lam).mean()) for lam in (0.003, 0.03, 0.3, 3.0)]
    assert all(b > a for a, b in zip(means, means[1:])), means


def test_cli_predictor_errors_are_one_line(tmp_path, capsys, sample_128, untrained_ckpt):
    png = tmp_path / "img.png"
    Image.fromarray(sample_128).save(png)
    rc, _, err = _run(
        ["optimize", png, "-o", tmp_path / "o.tcz", "--model", "lite1", "--predictor", untrained_ckpt], capsys
    )
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "trained for tf_efficientnet_lite0 maps, not tf_efficientnet_lite1" in err
    rc, _, err = _run(["optimize", png, "-o", tmp_path / "o.tcz", "--refine", "2"], capsys)
    assert rc == 2 and "--predictor" in err
    rc, _, err = _run(["optimize", png, "-o", tmp_path / "o.tcz", "--predictor", tmp_path / "none.pth"], capsys)
    assert rc == 2 and "nor a checkpoint file" in err


def test_cli_predicted_and_refined_maps_and_target_bpp(tmp_path, capsys, sample_128, untrained_ckpt):
    png = tmp_path / "img.png"
    Image.fromarray(sample_128).save(png)
    rc, out, err = _run(
        [
            "optimize",
            png,
            "-o",
            tmp_path / "p.tcz",
            "--predictor",
            untrained_ckpt,
            "--lambda",
            "0.1",
            "--refine",
            "1",
            "--save-map",
            tmp_path / "p.npy",
        ],
        capsys,
    )
    assert rc == 0, err
    assert (tmp_path / "p.tcz").stat().st_size > 0
    assert np.load(tmp_path / "p.npy").shape[-2:] == (128, 128)
    rc, out, err = _run(
        ["optimize", png, "-o", tmp_path / "t.tcz", "--predictor", untrained_ckpt, "--target-bpp", "0.4"], capsys
    )
    assert rc == 0, err
    bpp = 8 * (tmp_path / "t.tcz").stat().st_size / (128 * 128)
    assert abs(bpp / 0.4 - 1) <= 0.03


@pytest.mark.parametrize(
    "text, words",
    [
        ("stepz: 2\n", "unknown key 'stepz'; allowed: name, task"),
        ("steps: two\n", "steps must be int"),
        ("lambda_min: 2\nlambda_max: 1\n", "lambda_min < lambda_max"),
        ("steps: [1\n", "malformed YAML at line 2"),
        ("task: text\nobjective_args: {det_wieght: 0}\n", "objective_args: objective 'text'.*det_wieght"),
        ("task: text\nobjective_args: {model: x}\n", "give the task model as task_model"),
        ("objective_args: [1]\n", "objective_args must be dict"),
    ],
)
def test_train_predictor_config_is_checked(tmp_path, text, words):
    from taskcomp.training.predictor import ConfigError, PredictorTrainConfig

    bad = tmp_path / "c.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=words):
        PredictorTrainConfig.from_yaml(bad)


def _train_cfg(tmp_path, folder, **kw):
    from taskcomp.training.predictor import PredictorTrainConfig

    base = dict(
        data=[str(folder)],
        out=str(tmp_path / "run"),
        crop=64,
        batch_size=2,
        channels=8,
        steps=2,
        threads=1,
        checkpoint_every=1,
        warmup_steps=0,
    )
    return PredictorTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, sample_rgb):
    d = tmp_path_factory.mktemp("photos")
    for i in range(3):
        Image.fromarray(np.ascontiguousarray(sample_rgb[i * 40 : i * 40 + 96, i * 50 : i * 50 + 96])).save(
            d / f"{i}.png"
        )
    return d


def test_training_resumes_to_the_same_state(tmp_path, photo_folder):
    """Two steps in one go, and one step, a stop, then a resumed second step: the same weights and log."""
    from taskcomp.training.predictor import train_predictor

    quiet = lambda *a, **k: None  # noqa: E731
    a = train_predictor(_train_cfg(tmp_path / "a", photo_folder), log=quiet, device="cpu")
    b_cfg = _train_cfg(tmp_path / "b", photo_folder, steps=1)
    train_predictor(b_cfg, log=quiet, device="cpu")
    with pytest.raises(FileExistsError):
        train_predictor(b_cfg, log=quiet, device="cpu")
    b = train_predictor(_train_cfg(tmp_path / "b", photo_folder), resume=True, log=quiet, device="cpu")
    wa, wb = create_predictor(str(a)).decoder_state_dict(), create_predictor(str(b)).decoder_state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    la = (tmp_path / "a" / "run" / "log.csv").read_text().splitlines()
    lb = (tmp_path / "b" / "run" / "log.csv").read_text().splitlines()
    assert len(la) == len(lb) == 3
    assert [l.split(",")[3] for l in la[1:]] == [l.split(",")[3] for l in lb[1:]]  # the same losses


def test_training_fails_with_an_error_on_bad_data(tmp_path, photo_folder):
    from taskcomp.datasets import DataError
    from taskcomp.training.predictor import train_predictor

    with pytest.raises(DataError, match="at least 512"):
        train_predictor(_train_cfg(tmp_path, photo_folder, crop=512), log=lambda *a, **k: None, device="cpu")
    assert not (tmp_path / "run").exists()  # refused before the run folder is made
    from taskcomp.training.predictor import ConfigError

    with pytest.raises(ConfigError, match="objective_args .*max_boxes must be None"):
        train_predictor(
            _train_cfg(tmp_path, photo_folder, task="text", task_model="default", objective_args={"max_boxes": -3}),
            log=lambda *a, **k: None,
            device="cpu",
        )
    assert not (tmp_path / "run").exists()


def test_training_never_reads_excluded_images_and_refuses_a_wrong_list(tmp_path, photo_folder):
    from taskcomp.datasets import DataError, open_training_pool

    pool = open_training_pool([str(photo_folder)], 64, exclude_files=[str(photo_folder / "1.png")], each_folder=True)
    assert len(pool) == 2 and pool.excluded == 1
    with pytest.raises(DataError, match="exclude: 1 listed file\\(s\\) not found, e.g. .*9.png"):
        open_training_pool([str(photo_folder)], 64, exclude_files=[str(photo_folder / "9.png")])
    other = tmp_path / "elsewhere.png"
    Image.new("RGB", (80, 80)).save(other)
    with pytest.raises(DataError, match="1 of the 1 listed files are not among the training images"):
        open_training_pool([str(photo_folder)], 64, exclude_files=[str(other)])
    small = tmp_path / "small"
    small.mkdir()
    Image.new("RGB", (40, 40)).save(small / "a.png")
    with pytest.raises(DataError, match=f"training data {small}: no training images"):
        open_training_pool([str(photo_folder), str(small)], 64, each_folder=True)
    assert len(open_training_pool([str(photo_folder), str(small)], 64)) == 3  # the pool as a whole suffices
    # one file listed twice, or under two nested folders, is one exclusion
    twice = [str(photo_folder / "1.png"), str(photo_folder / "." / "1.png")]
    assert open_training_pool([str(photo_folder)], 64, exclude_files=twice).excluded == 1
    nested = open_training_pool([str(photo_folder), str(photo_folder)], 64, exclude_files=twice[:1], each_folder=True)
    assert nested.excluded == 1


def test_recipe_methods_predicted_and_refined(tmp_path, data_root, untrained_ckpt):
    from taskcomp.runner import run_recipe
    from taskcomp.runner.report import report

    recipe = {
        "name": "tiny",
        "data": "imagenet-sample",
        "preprocess": {"resize": 146, "crop": 128},
        "objective": {"name": "classification"},
        "eval_models": ["tf_efficientnet_lite0"],
        "methods": {
            "uniform": {"q": [0.0, 0.5, 1.0]},
            "task_aware_label_free": {"lambda": [1.0], "steps": 1, "use_label": False},
            "predicted": {"lambda": [0.1, 1.0], "predictor": str(untrained_ckpt)},
            "predicted_refine": {"lambda": [1.0], "predictor": str(untrained_ckpt), "refine": 1, "use_label": False},
        },
    }
    out = tmp_path / "run"
    assert run_recipe(recipe, out, data_root, limit=1, log=lambda *a: None) == 7
    s = report(out)
    for m in ("predicted", "predicted_refine", "task_aware_label_free"):
        assert f"{m} vs uniform, top1/tf_efficientnet_lite0" in s["comparisons"]
    bad = {**recipe, "objective": {"name": "classification", "model": "lite1"}}
    with pytest.raises(PredictorError, match="not tf_efficientnet_lite1"):
        run_recipe(bad, tmp_path / "run2", data_root, limit=1, log=lambda *a: None)


def test_predictor_refuses_images_outside_0_1_and_empty_images(untrained_ckpt):
    pred = create_predictor(str(untrained_ckpt))
    with pytest.raises(ValueError, match=r"\[0, 1\]|255"):
        pred(torch.rand(1, 3, 16, 16) * 255, 0.1)
    with pytest.raises(ValueError):
        pred(torch.rand(1, 3, 0, 5), 0.1)


def test_resume_with_a_config_that_changes_the_model_is_refused(tmp_path, photo_folder):
    from taskcomp.training.predictor import ConfigError, train_predictor

    quiet = lambda *a, **k: None  # noqa: E731
    train_predictor(_train_cfg(tmp_path, photo_folder, steps=1), log=quiet, device="cpu")
    with pytest.raises(ConfigError, match="lambda_max: 3.0; this config has 30.0"):
        train_predictor(
            _train_cfg(tmp_path, photo_folder, steps=2, lambda_max=30.0), resume=True, log=quiet, device="cpu"
        )
