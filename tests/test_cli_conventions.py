"""Command-line conventions users know from CompressAI / timm (issue 22): --version, defaults in every help,
a light --help, recipes by name, recipe validation, run folders that do not mix image sets, self-consistent
reports and JSON output."""

import argparse
import json
import os
import subprocess
import sys

import pytest

from taskcomp.cli import _HelpFormatter, build_parser, main


def run(args, capsys):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *words):
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]


def _subparsers(p):
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return [("taskcomp", p)] + list(sub.choices.items())


# ------------------------------------------------------------------------------------------------ item 1

def test_version(capsys):
    from importlib.metadata import version

    import taskcomp

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"taskcomp {taskcomp.__version__}"
    assert taskcomp.__version__ == version("taskcomp")  # the installed distribution's (pyproject) version


def test_every_option_has_help_with_its_default():
    p = build_parser()
    missing = []
    for name, sp in _subparsers(p):
        assert sp.formatter_class is _HelpFormatter, name
        fmt = _HelpFormatter(name)
        for a in sp._actions:
            if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            if not a.help:
                missing.append(f"{name} {a.option_strings or a.dest}: no help")
                continue
            flag = isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction))
            if flag or a.required or not a.option_strings:
                continue
            shown = fmt._get_help_string(a) % {"default": a.default, "prog": name}
            if "default" not in shown.lower():
                missing.append(f"{name} {a.option_strings}: default {a.default!r} not shown")
    assert not missing, "\n".join(missing)


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["optimize", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: adam)" in out and "(default: constant)" in out
    with pytest.raises(SystemExit):
        main(["widen-codec", "--help"])
    assert "(default: 0)" in " ".join(capsys.readouterr().out.split())  # a zero default is shown too


def test_limit_means_the_same_everywhere():
    p = build_parser()
    helps = {name: a.help for name, sp in _subparsers(p) for a in sp._actions if "--limit" in a.option_strings}
    assert set(helps) >= {"run", "eval-codec"}
    for name, h in helps.items():
        assert "spread evenly" in h, (name, h)


def test_cli_import_and_help_stay_light():
    """`taskcomp --help` must not import torch, timm, ... (it took ~11 s on a loaded 2-core machine)."""
    code = ("import sys, contextlib, io\n"
            "import taskcomp, taskcomp.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    for argv in (['--help'], ['run', '--help'], ['optimize', '--help'], ['--version']):\n"
            "        try:\n"
            "            taskcomp.cli.main(argv)\n"
            "        except SystemExit:\n"
            "            pass\n"
            "heavy = sorted(m for m in ('torch', 'timm', 'numpy', 'compressai', 'ultralytics', 'easyocr', 'cv2', "
            "'pandas', 'matplotlib', 'yaml') if m in sys.modules)\n"
            "assert not heavy, heavy\n"
            "print(taskcomp.__version__)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_package_names_load_on_use():
    code = ("import sys, taskcomp\n"
            "assert 'torch' not in sys.modules\n"
            "f = taskcomp.create_codec\n"
            "assert 'torch' in sys.modules and callable(f)\n"
            "assert 'create_codec' in dir(taskcomp)\n"
            "try:\n"
            "    taskcomp.nope\n"
            "except AttributeError:\n"
            "    pass\n"
            "else:\n"
            "    raise SystemExit('no AttributeError')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------------ item 2

def test_recipes_ship_in_the_package_and_resolve_by_name(tmp_path, monkeypatch):
    import tomllib
    from pathlib import Path

    import taskcomp
    from taskcomp.runner.recipe import list_recipes, load_recipe, resolve_recipe

    pkg = Path(taskcomp.__file__).parent
    names = list_recipes()
    assert {"imagenet_classification", "coco_detection", "sroie_text", "predictor_classification",
            "train_sft_small"} <= set(names)
    meta = tomllib.loads((pkg.parent / "pyproject.toml").read_text()) if (pkg.parent / "pyproject.toml").is_file() \
        else None
    if meta is not None:  # a source checkout: the wheel's package data takes the recipes
        assert "recipes/*.yaml" in meta["tool"]["setuptools"]["package-data"]["taskcomp"]
    monkeypatch.chdir(tmp_path)  # from any folder
    for name in ("imagenet_classification", "imagenet_classification.yaml", "recipes/imagenet_classification.yaml"):
        assert resolve_recipe(name) == pkg / "recipes" / "imagenet_classification.yaml"
        assert load_recipe(name)["name"] == "imagenet_classification"
    own = tmp_path / "imagenet_classification.yaml"  # a path wins over a shipped name
    own.write_text((pkg / "recipes" / "imagenet_classification.yaml").read_text().replace(
        "name: imagenet_classification", "name: mine"))
    assert load_recipe("imagenet_classification.yaml")["name"] == "mine"
    assert load_recipe(str(own))["name"] == "mine"
    with pytest.raises(FileNotFoundError, match="shipped recipe"):
        resolve_recipe("imagenet_clasification")
    with pytest.raises(FileNotFoundError):
        resolve_recipe("elsewhere/imagenet_classification.yaml")  # only the old recipes/ folder falls back


def test_training_configs_resolve_by_name(tmp_path, monkeypatch):
    from taskcomp.runner.recipe import resolve_recipe
    from taskcomp.training.codec import TrainConfig

    monkeypatch.chdir(tmp_path)
    assert TrainConfig.from_yaml(resolve_recipe("train_sft_small_gpu")).out == "runs/sft-small-gpu"
    assert resolve_recipe("recipes/predictor_classification.yaml").name == "predictor_classification.yaml"


def test_run_unknown_recipe_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(["run", "no_such_recipe"], capsys)
    assert_one_line_error(rc, err, "no_such_recipe", "imagenet_classification")


# ------------------------------------------------------------------------------------------------ item 3

GOOD = """name: t
task: classification
data: imagenet-sample
methods:
  uniform: {q: [0.1, 0.5]}
  task_aware:
    lambda: [0.1]
    steps: 2
"""


def _recipe(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, words", [
    (GOOD.replace("task: classification", "task: classification\npreprocss: {resize: 280}"),
     ["'preprocss'", "allowed:", "preprocess", "methods"]),
    (GOOD.replace("steps: 2", "stepz: 2"), ["methods.task_aware", "'stepz'", "allowed:", "steps", "lr"]),
    (GOOD.replace("steps: 2", "steps: two"), ["methods.task_aware.steps", "integer", "'two'"]),
    (GOOD.replace("steps: 2", "steps: '2'"), ["methods.task_aware.steps", "integer"]),
    (GOOD.replace("steps: 2", "steps: yes"), ["methods.task_aware.steps", "integer"]),
    (GOOD.replace("lambda: [0.1]", "lambda: ['0.1', high]"), ["methods.task_aware.lambda", "list of numbers"]),
    (GOOD.replace("lambda: [0.1]", "lambda: 0.1"), ["methods.task_aware.lambda", "list of numbers"]),
    (GOOD.replace("lambda: [0.1]", "steps: 3"), ["methods.task_aware needs lambda"]),
    (GOOD.replace("uniform: {q: [0.1, 0.5]}", "uniform: {q: [0.1, 5]}"), ["methods.uniform.q", "[0, 1]"]),
    (GOOD.replace("uniform: {q: [0.1, 0.5]}", "unifrom: {q: [0.1]}"), ["unknown method 'unifrom'", "uniform"]),
    (GOOD.replace("task: classification", "task: clasification"), ["unknown task", "classification"]),
    (GOOD + "  task_aware_free: {lambda: [1], use_label: maybe}\n", ["task_aware_free.use_label", "true or false"]),
    (GOOD + "  predicted_r: {lambda: [1], refine: -1}\n", ["predicted_r.refine", ">= 0"]),
    (GOOD + "  predicted: {lambda: [1], predictor: lite0-classification, steps: 2, lr: 0.1, optimizer: sgd}\n",
     ["predicted.optimizer", "adam or lbfgs"]),
    (GOOD + "batch_size: 0\n", ["batch_size", ">= 1"]),
    ("name: t\ndata: x\nmethods: {uniform: {q: [0.1]}\n", ["malformed YAML", "line"]),
    ("name: t\n  data: x\n", ["malformed YAML", "line 2"]),
    ("- a\n- b\n", ["mapping"]),
    ("", ["mapping"]),
    (GOOD.replace("name: t\n", ""), ["lacks 'name'"]),
])
def test_bad_recipe_is_one_line_error_before_work(tmp_path, capsys, text, words):
    from taskcomp.runner.recipe import load_recipe

    p = _recipe(tmp_path, text)
    with pytest.raises(ValueError):
        load_recipe(p)
    rc, out, err = run(["run", p, "--out", tmp_path / "out", "--data-root", tmp_path / "nodata"], capsys)
    assert_one_line_error(rc, err, *words)
    assert not (tmp_path / "out").exists()  # refused before any work


def test_shipped_and_committed_recipes_validate():
    from pathlib import Path

    import yaml

    from taskcomp.runner.recipe import check_objective, list_recipes, load_recipe

    n = 0
    for name in list_recipes():
        r = yaml.safe_load(load_recipe.__globals__["resolve_recipe"](name).read_text())
        if "methods" in r:  # recipes, not training configs
            check_objective(load_recipe(name))
            n += 1
    assert n >= 4
    root = Path(__file__).resolve().parents[1] / "results"
    for p in root.rglob("*.yaml"):
        r = yaml.safe_load(p.read_text())
        if isinstance(r, dict) and "methods" in r:
            load_recipe(p)


def test_unknown_objective_argument(tmp_path):
    from taskcomp.runner.recipe import RecipeError, check_objective, load_recipe

    r = load_recipe(_recipe(tmp_path, GOOD + "objective: {name: classification, modle: resnet18}\n"))
    with pytest.raises(RecipeError, match="'modle'.*allowed: name, model"):
        check_objective(r)
    with pytest.raises(RecipeError, match="unknown objective 'clasification'"):
        check_objective({**r, "objective": {"name": "clasification"}})


def test_optimizer_keys_match_map_optimizer():
    import inspect

    from taskcomp.optimize import MapOptimizer
    from taskcomp.runner.recipe import OPTIMIZER_KEYS

    params = set(inspect.signature(MapOptimizer.__init__).parameters) - {"self", "codec", "objective", "lam"}
    assert params == set(OPTIMIZER_KEYS)


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "0"], ["--batch-size must be >= 1, got 0"]),
    (["--threads", "-1"], ["--threads must be >= 1, got -1"]),
    (["--limit", "0"], ["--limit must be >= 1, got 0"]),
])
def test_run_bad_numbers_are_one_line_errors(tmp_path, capsys, args, words):
    p = _recipe(tmp_path, GOOD)
    rc, _, err = run(["run", p, "--out", tmp_path / "out", "--data-root", tmp_path, *args], capsys)
    assert_one_line_error(rc, err, *words)


def test_run_recipe_api_refuses_batch_size_zero(tmp_path):
    from taskcomp.runner import load_recipe, run_recipe

    with pytest.raises(ValueError, match="batch size must be an integer >= 1, got 0"):
        run_recipe(load_recipe(_recipe(tmp_path, GOOD)), tmp_path / "out", tmp_path, batch_size=0)
