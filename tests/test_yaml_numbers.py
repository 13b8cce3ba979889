"""YAML read one way (issue 34, kind 2) and numeric arguments checked against what float32 carries (kind 3).

Cases 09 (a recipe with a duplicate key) and 10 (lambda 1e30 left the map untouched) of ../shared/cases run
when that folder is there.
"""

import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from taskcomp import yamlio
from taskcomp.runner.recipe import RecipeError, check_config_keys, load_recipe, read_yaml

CASES = Path(os.environ.get("TASKCOMP_CASES", Path(__file__).resolve().parents[2] / "shared" / "cases"))
PKG = Path(__file__).resolve().parents[1] / "taskcomp"
SAMPLE = PKG / "samples" / "parrots_256.png"

RECIPE = """name: t
data: imagenet-sample
methods:
  uniform: {q: [0.1, 0.5]}
  task_aware:
    lambda: [1e-2, 3e-1, 1E1]
    lr: 3e-1
    steps: 1
"""


def _case(*parts) -> Path:
    p = CASES.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"case not available: {p}")
    return p


def _cli(capsys, *args):
    from taskcomp.cli import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------- kind 2: YAML
def test_paper_numbers_are_floats():
    d = yamlio.load("a: 1e-2\nb: 3e-4\nc: 1E5\nd: .5\ne: -1e3\nf: 2.5e+3\ng: 10\nh: 0.1\ni: 1e\nj: e5\nk: '1e-2'\n")
    assert d == {
        "a": 0.01,
        "b": 3e-4,
        "c": 1e5,
        "d": 0.5,
        "e": -1000.0,
        "f": 2500.0,
        "g": 10,
        "h": 0.1,
        "i": "1e",
        "j": "e5",
        "k": "1e-2",
    }
    assert isinstance(d["g"], int) and all(isinstance(d[k], float) for k in "abcdef")


def test_paper_numbers_in_a_recipe_and_a_training_config(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(RECIPE)
    r = load_recipe(p)
    assert r["methods"]["task_aware"]["lambda"] == [0.01, 0.3, 10.0]
    assert r["methods"]["task_aware"]["lr"] == 0.3

    from taskcomp.training.codec import TrainConfig

    c = tmp_path / "c.yaml"
    c.write_text("lr: 3e-4\nfinal_lr: 1e-6\n")
    cfg = TrainConfig.from_yaml(c)
    assert cfg.lr == 3e-4 and cfg.final_lr == 1e-6


@pytest.mark.parametrize(
    "text, key, line",
    [
        (RECIPE + "name: again\n", "name", 9),  # top level
        (RECIPE.replace("    steps: 1\n", "    steps: 1\n    lr: 0.1\n"), "lr", 9),  # nested in a method
        (RECIPE + "  task_aware:\n    lambda: [1.0]\n", "task_aware", 9),  # a whole method twice (case 09)
    ],
)
def test_duplicate_key_in_a_recipe_is_refused_naming_it(tmp_path, text, key, line):
    p = tmp_path / "dup.yaml"
    p.write_text(text)
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert "\n" not in msg and f"duplicate key {key!r}" in msg and f"line {line}," in msg and str(p) in msg


def test_merge_keys_are_not_duplicates():
    d = yamlio.load("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n")
    assert d["c"] == {"x": 3, "y": 2}


def test_duplicate_key_in_training_configs_is_refused(tmp_path):
    from taskcomp.training.codec import TrainConfig
    from taskcomp.training.predictor import ConfigError, PredictorTrainConfig

    c = tmp_path / "c.yaml"
    c.write_text("lr: 1e-4\nsteps: 10\nlr: 2e-4\n")
    with pytest.raises(ValueError, match=r"duplicate key 'lr' \(first at line 1\)"):
        TrainConfig.from_yaml(c)
    with pytest.raises(RecipeError, match="training config .*duplicate key 'lr'"):
        check_config_keys(c, ["lr", "steps"], "training config")
    c.write_text("task: classification\nobjective_args:\n  model: a\n  model: b\n")
    with pytest.raises(ConfigError, match=r"line 4, column 3: duplicate key 'model'"):
        PredictorTrainConfig.from_yaml(c)


def test_every_yaml_read_of_the_package_goes_through_yamlio():
    bad = []
    for f in PKG.rglob("*.py"):
        if f.name == "yamlio.py":
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"\byaml\.(safe_load|load|full_load|unsafe_load|load_all|safe_load_all)\(", line):
                bad.append(f"{f.relative_to(PKG)}:{i}")
    assert not bad, f"YAML read without taskcomp.yamlio: {bad}"
    assert read_yaml.__module__ == "taskcomp.runner.recipe"


def test_case_09_recipe_duplicate_key(tmp_path, capsys):
    dup = _case("09-recipe-duplicate-key", "dup.yaml")
    rc, out, err = _cli(capsys, "run", dup, "--limit", "1", "--out", tmp_path / "run")
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "duplicate key 'task_aware'" in err and "line 14" in err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- kind 3: numeric arguments
@pytest.mark.parametrize(
    "kw, words",
    [
        ({"lam": float("nan")}, "lambda must be a finite number"),
        ({"lam": float("inf")}, "lambda must be a finite number"),
        ({"lam": -1.0}, "lambda must be a finite number >= 0"),
        ({"lr": float("nan")}, r"lr must be a finite number in \(0, 1e\+06\]"),
        ({"lr": 1e39}, r"lr must be a finite number in \(0, 1e\+06\]"),
        ({"lr": -0.1}, "lr must be"),
        ({"init_q": 1e-9}, r"init_q must lie in \[0.0001, 0.9999\]"),
        ({"init_q": float("nan")}, "init_q must lie"),
        ({"steps": -1}, "steps must be an integer >= 0"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"scale": float("inf")}, "scale must be"),
    ],
)
def test_optimizer_arguments_are_refused_in_one_line(codec, kw, words):
    from taskcomp.objectives import create_objective
    from taskcomp.optimize import MapOptimizer, check_optimizer_args

    with pytest.raises(ValueError, match=words) as e:
        check_optimizer_args(**kw)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=words):
        MapOptimizer(codec, create_objective("saliency", pretrained=False), **kw)


def test_check_number_and_task_weights():
    from taskcomp.checks import check_number
    from taskcomp.objectives import parse_task_spec

    assert check_number(3, "x", 0, 10) == 3.0 and check_number(3, "n", 1, integer=True) == 3
    for bad in (float("nan"), float("inf"), -1, True, "1", 11):
        with pytest.raises(ValueError, match=r"x must be a finite number in \[0, 10\]"):
            check_number(bad, "x", 0, 10)
    assert parse_task_spec("detection:1e-1,text:2")[0]["weight"] == 0.1
    for spec in ("detection:nan", "detection:inf", "detection:-1", "detection:1e30"):
        with pytest.raises(ValueError, match=r"task detection: weight must be a finite number in \[0, 1e\+06\]"):
            parse_task_spec(spec)


@pytest.mark.parametrize(
    "extra, words",
    [
        ("    lr: 1e30\n", r"methods.task_aware.lr must be a finite number in \(0, 1e\+06\]"),
        ("    alpha: -1\n", "methods.task_aware.alpha must be a finite number > 0"),
        ("    scale: 0\n", "methods.task_aware.scale must be"),
        ("    init_q: 1e-9\n", r"methods.task_aware.init_q must lie in \[0.0001"),
        ("    clip: -1\n", "methods.task_aware.clip must be"),
        ("  predicted: {lambda: [0, 1]}\n", "methods.predicted.lambda must be a non-empty list of numbers > 0"),
    ],
)
def test_recipe_sweeps_and_optimizer_keys_are_checked_up_front(tmp_path, extra, words):
    p = tmp_path / "r.yaml"
    p.write_text(RECIPE.replace("    lr: 3e-1\n", "") + extra)
    with pytest.raises(RecipeError, match=words):
        load_recipe(p)
    p.write_text(RECIPE.replace("[1e-2, 3e-1, 1E1]", "[1e-2, .nan]"))
    with pytest.raises(RecipeError, match="lambda must be a non-empty list of numbers >= 0"):
        load_recipe(p)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--lambda", "nan"], "--lambda must be a finite number >= 0"),
        (["--lambda", "-1"], "--lambda must be a finite number >= 0"),
        (["--lr", "inf"], r"--lr must be a finite number in \(0, 1e\+06\]"),
        (["--lr", "1e39"], r"--lr must be a finite number in \(0, 1e\+06\]"),
        (["--init-q", "1e-9"], r"--init-q must lie in \[0.0001, 0.9999\]"),
        (["--target-bpp", "inf"], "--target-bpp must be a positive number"),
        (["--target-bpp", "0"], "--target-bpp must be a positive number"),
        (["--target-bpp", "-1"], "--target-bpp must be a positive number"),
        (["--steps", "-1"], "--steps must be an integer >= 0"),
    ],
)
def test_cli_numeric_arguments_are_refused_before_any_model_loads(tmp_path, capsys, args, words):
    rc, out, err = _cli(capsys, "optimize", SAMPLE, "-o", tmp_path / "a.tcz", *args)
    assert rc == 2 and re.search(words, err) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a.tcz").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--det-weight", "1e30"], r"--det-weight must be a finite number in \[0, 1e\+06\]"),
        (["--rec-weight", "nan"], r"--rec-weight must be a finite number in \[0, 1e\+06\]"),
        (["--lr", "0"], r"--lr must be a finite number in \(0, 1e\+06\]"),
    ],
)
def test_ocr_map_numeric_arguments(tmp_path, capsys, args, words):
    rc, out, err = _cli(capsys, "ocr-map", SAMPLE, "-o", tmp_path / "a.tcz", *args)
    assert rc == 2 and re.search(words, err) and len(err.strip().splitlines()) == 1, err


def test_objective_is_as_written_up_to_the_weight_limit(codec, sample_128):
    from taskcomp.io import image_to_tensor
    from taskcomp.objectives import create_objective
    from taskcomp.optimize import OBJECTIVE_WEIGHT_MAX, MapOptimizer

    x = image_to_tensor(sample_128[:64, :64])
    sal = create_objective("saliency", pretrained=False)
    ctx = sal.prepare(x)
    q = torch.full((1, 1, 64, 64), 0.3)
    for lam in (0.0, 0.3, OBJECTIVE_WEIGHT_MAX):
        obj, bpp, task = MapOptimizer(codec, sal, lam=lam).objective_terms(x, q, ctx)
        assert torch.equal(obj, 1.0 * (bpp + lam * task))
    obj, bpp, task = MapOptimizer(codec, sal, lam=1e30).objective_terms(x, q, ctx)
    assert torch.isfinite(obj).all()
    assert torch.allclose(obj, bpp * (OBJECTIVE_WEIGHT_MAX / 1e30) + OBJECTIVE_WEIGHT_MAX * task)


def test_huge_scale_times_lambda_does_not_overflow(codec, sample_128):
    """scale * lambda beyond float64 (a recipe's scale 1e300 with lambda 1e300): math.exp(k) raised OverflowError;
    now the descended weights stay finite and the logged objective is inf, never a traceback."""
    from taskcomp.io import image_to_tensor
    from taskcomp.objectives import create_objective
    from taskcomp.optimize import OBJECTIVE_WEIGHT_MAX, MapOptimizer

    x = image_to_tensor(sample_128[:32, :32])
    sal = create_objective("saliency", pretrained=False)
    ctx = sal.prepare(x)
    for scale, lam in ((1e300, 1e300), (sys.float_info.max, sys.float_info.max), (1e300, 0.0)):
        opt = MapOptimizer(codec, sal, lam=lam, scale=scale, steps=1, downsample=8)
        obj, bpp, task = opt.objective_terms(x, torch.full((1, 1, 32, 32), 0.3), ctx)
        assert torch.isfinite(obj).all(), (scale, lam)
        if lam:
            assert torch.allclose(obj, OBJECTIVE_WEIGHT_MAX * task, rtol=1e-4)
        r = opt.run(x, ctx)
        assert torch.isfinite(r.qmap).all() and not math.isnan(r.log[-1]["objective"])


@pytest.fixture(scope="module")
def clf():
    from taskcomp.objectives import create_objective

    return create_objective("classification")


def test_large_lambda_is_carried(codec, clf, sample_128):
    """Lambda 1e6 .. 1e300 all move the map and lower the task loss (before the fix 1e30 returned the starting
    map: the squared gradient norm of the clipping overflowed float32; 1e39 made lambda itself inf)."""
    from taskcomp.io import image_to_tensor
    from taskcomp.optimize import MapOptimizer

    x = image_to_tensor(sample_128[32:96, 32:96])
    ctx = clf.prepare(x)
    maps = {}
    for lam in (1e6, 1e10, 1e20, 1e30, 1e40, 1e300):
        r = MapOptimizer(codec, clf, lam=lam, steps=2, lr=0.3, init_q=0.1, downsample=8).run(x, ctx)
        first, last = r.log[0], r.log[-1]
        assert float((r.qmap - 0.1).abs().max()) > 0.05, lam
        assert last["task_loss"] < first["task_loss"], lam
        assert math.isfinite(last["objective"]) and math.isclose(
            last["objective"] / lam, last["task_loss"], rel_tol=1e-3
        )
        maps[lam] = r.qmap
    assert torch.allclose(maps[1e20], maps[1e30], atol=1e-6) and torch.allclose(maps[1e30], maps[1e300], atol=1e-6)


def test_case_10_lambda_overflow(tmp_path, capsys):
    gf = _case("10-lambda-overflow", "gf.png")
    rc, out, err = _cli(
        capsys,
        "optimize",
        gf,
        "--lambda",
        "1e30",
        "--steps",
        "2",
        "-o",
        tmp_path / "a.tcz",
        "--save-map",
        tmp_path / "a.npy",
    )
    assert rc == 0, err
    m = np.load(tmp_path / "a.npy")
    assert np.isfinite(m).all() and np.abs(m - 0.1).max() > 0.02  # not the untouched starting map (0.1)


def test_predictor_lambda_outside_its_trained_range_is_refused(tmp_path, capsys):
    """The predictor's FiLM input is clamped to its trained lambda range: 1e30 would silently give the map for 3."""
    rc, out, err = _cli(capsys, "optimize", SAMPLE, "--predictor", "auto", "--lambda", "1e30", "-o", tmp_path / "a.tcz")
    assert rc == 2 and "outside the range predictor" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a.tcz").exists()


def test_written_yaml_reads_back_equal(tmp_path):
    """What the package writes (run folders' recipe.yaml, training config.yaml) reads back equal, also strings
    that look like numbers to the paper-number reader."""
    from taskcomp.training.codec import TrainConfig, _config_yaml

    d = {"name": "1e-2", "x": 0.01, "y": 1e-30, "z": "10", "w": ".5"}
    assert yamlio.load(yamlio.dump(d)) == d
    cfg = TrainConfig(out="3e4", lr=3e-4)
    (tmp_path / "c.yaml").write_text(_config_yaml(cfg))
    assert TrainConfig.from_yaml(tmp_path / "c.yaml") == cfg
