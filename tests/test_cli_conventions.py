"""Command-line conventions users know from CompressAI / timm (issue 22): --version, defaults in every help,
a light --help, recipes by name, recipe validation, run folders that do not mix image sets, self-consistent
reports and JSON output."""

import argparse
import json
import subprocess
import sys

import pytest
from conftest import assert_one_line_error, run

from taskcomp.cli import _HelpFormatter, build_parser, main


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
    code = (
        "import sys, contextlib, io\n"
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
        "print(taskcomp.__version__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_package_names_load_on_use():
    code = (
        "import sys, taskcomp\n"
        "assert 'torch' not in sys.modules\n"
        "f = taskcomp.create_codec\n"
        "assert 'torch' in sys.modules and callable(f)\n"
        "assert 'create_codec' in dir(taskcomp)\n"
        "try:\n"
        "    taskcomp.nope\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
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
    assert {
        "imagenet_classification",
        "coco_detection",
        "sroie_text",
        "predictor_classification",
        "train_sft_small",
    } <= set(names)
    # an installed wheel holds them in taskcomp/recipes/; an editable install or a checkout reads the repository's
    # top-level recipes/, which the wheel installs as taskcomp/recipes/
    shipped = pkg / "recipes" if (pkg / "recipes").is_dir() else pkg.parent / "recipes"
    meta = (
        tomllib.loads((pkg.parent / "pyproject.toml").read_text())
        if (pkg.parent / "pyproject.toml").is_file()
        else None
    )
    if meta is not None:  # a source checkout: the wheel takes recipes/ as the package taskcomp.recipes
        st = meta["tool"]["setuptools"]
        assert st["package-dir"]["taskcomp.recipes"] == "recipes" and "*.yaml" in st["package-data"]["taskcomp.recipes"]
        assert '"taskcomp.recipes"' in (pkg.parent / "setup.py").read_text()  # added to the packages found
    monkeypatch.chdir(tmp_path)  # from any folder
    for name in ("imagenet_classification", "imagenet_classification.yaml", "recipes/imagenet_classification.yaml"):
        assert resolve_recipe(name) == shipped / "imagenet_classification.yaml"
        assert load_recipe(name)["name"] == "imagenet_classification"
    own = tmp_path / "imagenet_classification.yaml"  # a path wins over a shipped name
    own.write_text(
        (shipped / "imagenet_classification.yaml").read_text().replace("name: imagenet_classification", "name: mine")
    )
    assert load_recipe("imagenet_classification.yaml")["name"] == "mine"
    assert load_recipe(str(own))["name"] == "mine"
    with pytest.raises(FileNotFoundError, match="shipped recipe"):
        resolve_recipe("imagenet_clasification")
    with pytest.raises(FileNotFoundError):
        resolve_recipe("elsewhere/imagenet_classification.yaml")  # only the recipes/ folder falls back


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


@pytest.mark.parametrize(
    "text, words",
    [
        (
            GOOD.replace("task: classification", "task: classification\npreprocss: {resize: 280}"),
            ["'preprocss'", "allowed:", "preprocess", "methods"],
        ),
        (GOOD.replace("steps: 2", "stepz: 2"), ["methods.task_aware", "'stepz'", "allowed:", "steps", "lr"]),
        (GOOD.replace("steps: 2", "steps: two"), ["methods.task_aware.steps", "integer", "'two'"]),
        (GOOD.replace("steps: 2", "steps: '2'"), ["methods.task_aware.steps", "integer"]),
        (GOOD.replace("steps: 2", "steps: yes"), ["methods.task_aware.steps", "integer"]),
        (GOOD.replace("lambda: [0.1]", "lambda: ['0.1', high]"), ["methods.task_aware.lambda", "list of numbers"]),
        (GOOD.replace("lambda: [0.1]", "lambda: 0.1"), ["methods.task_aware.lambda", "list of numbers"]),
        (GOOD.replace("lambda: [0.1]", "lr: 0.3"), ["methods.task_aware needs lambda"]),
        (GOOD.replace("lambda: [0.1]", "steps: 3"), ["duplicate key 'steps'", "line 8"]),  # YAML would keep one
        (GOOD.replace("uniform: {q: [0.1, 0.5]}", "uniform: {q: [0.1, 5]}"), ["methods.uniform.q", "[0, 1]"]),
        (GOOD.replace("uniform: {q: [0.1, 0.5]}", "unifrom: {q: [0.1]}"), ["unknown method 'unifrom'", "uniform"]),
        (GOOD.replace("task: classification", "task: clasification"), ["unknown task", "classification"]),
        (GOOD + "  task_aware_free: {lambda: [1], use_label: maybe}\n", ["task_aware_free.use_label", "true or false"]),
        (GOOD + "  predicted_r: {lambda: [1], refine: -1}\n", ["predicted_r.refine", ">= 0"]),
        (
            GOOD + "  predicted: {lambda: [1], predictor: lite0-classification, steps: 2, lr: 0.1, optimizer: sgd}\n",
            ["predicted.optimizer", "adam, lbfgs or ngd"],
        ),
        (GOOD + "batch_size: 0\n", ["batch_size", ">= 1"]),
        ("name: t\ndata: x\nmethods: {uniform: {q: [0.1]}\n", ["malformed YAML", "line"]),
        ("name: t\n  data: x\n", ["malformed YAML", "line 2"]),
        ("- a\n- b\n", ["mapping"]),
        ("", ["mapping"]),
        (GOOD.replace("name: t\n", ""), ["lacks 'name'"]),
    ],
)
def test_bad_recipe_is_one_line_error_before_work(tmp_path, capsys, text, words):
    from taskcomp.runner.recipe import load_recipe

    p = _recipe(tmp_path, text)
    with pytest.raises(ValueError):
        load_recipe(p)
    rc, out, err = run(["run", p, "--out", tmp_path / "out", "--data-root", tmp_path / "nodata"], capsys)
    assert_one_line_error(rc, err, *words)
    assert not (tmp_path / "out").exists()  # refused before any work


def test_objective_given_as_a_bare_name():
    """`objective: classification` means that objective with its defaults; a number is still refused."""
    import yaml

    from taskcomp.runner.recipe import RecipeError, validate_recipe

    raw = yaml.safe_load(GOOD + "objective: classification\n")
    assert validate_recipe(raw)["objective"] == {"name": "classification"}
    assert raw["objective"] == "classification"  # the caller's dict is not changed
    with pytest.raises(RecipeError, match="objective must be a mapping"):
        validate_recipe(yaml.safe_load(GOOD + "objective: 3\n"))


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


@pytest.mark.parametrize(
    "args, words",
    [
        (["--batch-size", "0"], ["--batch-size must be >= 1, got 0"]),
        (["--threads", "-1"], ["--threads must be >= 1, got -1"]),
        (["--limit", "0"], ["--limit must be >= 1, got 0"]),
    ],
)
def test_run_bad_numbers_are_one_line_errors(tmp_path, capsys, args, words):
    p = _recipe(tmp_path, GOOD)
    rc, _, err = run(["run", p, "--out", tmp_path / "out", "--data-root", tmp_path, *args], capsys)
    assert_one_line_error(rc, err, *words)


def test_run_recipe_api_refuses_batch_size_zero(tmp_path):
    from taskcomp.runner import load_recipe, run_recipe

    with pytest.raises(ValueError, match="batch size must be an integer >= 1, got 0"):
        run_recipe(load_recipe(_recipe(tmp_path, GOOD)), tmp_path / "out", tmp_path, batch_size=0)


# ------------------------------------------------------------------------------------------------ item 4


def _items(*ids):
    return [{"id": i} for i in ids]


def test_run_folder_keeps_its_image_set(tmp_path):
    from taskcomp.runner.run import RUN_FILE, _check_run_folder

    out, recipe, logged = tmp_path / "run", {"name": "t", "methods": {}}, []
    out.mkdir()
    _check_run_folder(out, recipe, _items("a", "c"), 2, set(), logged.append)  # first run: writes run.json
    saved = json.loads((out / RUN_FILE).read_text())
    assert saved["items"] == ["a", "c"] and saved["limit"] == 2
    _check_run_folder(out, recipe, _items("a", "c"), 2, {"a"}, logged.append)  # same set (another shard): fine
    with pytest.raises(ValueError, match=r"2 images \(--limit 2\).*--limit 3.*leave out 1.*rerun with --limit 2"):
        _check_run_folder(out, recipe, _items("a", "b", "d"), 3, set(), logged.append)
    assert json.loads((out / RUN_FILE).read_text())["items"] == ["a", "c"]  # a refused run changes nothing
    _check_run_folder(out, recipe, _items("a", "b", "c", "d"), None, set(), logged.append)  # all: extends
    assert json.loads((out / RUN_FILE).read_text())["items"] == ["a", "b", "c", "d"]
    assert any("extending" in m for m in logged)


def test_run_folder_from_before_run_json_is_checked_against_its_records(tmp_path):
    from taskcomp.runner.run import _check_run_folder

    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(ValueError, match="never mixes image sets"):
        _check_run_folder(out, {"name": "t"}, _items("a", "b"), 2, {"a", "x"})
    _check_run_folder(out, {"name": "t"}, _items("a", "b"), 2, {"a"})
    assert (out / "run.json").is_file()


def test_run_folder_keeps_its_settings(tmp_path):
    import yaml

    from taskcomp.runner.run import _check_run_folder

    out = tmp_path / "run"
    out.mkdir()
    old = {
        "name": "t",
        "preprocess": {"resize": 280, "crop": 256},
        "methods": {"uniform": {"q": [0.1]}, "task_aware": {"lambda": [0.1], "steps": 10}},
    }
    (out / "recipe.yaml").write_text(yaml.safe_dump(old))
    grown = {
        **old,
        "methods": {
            "uniform": {"q": [0.1, 0.2]},
            "task_aware": {"lambda": [0.1, 1], "steps": 10},
            "jpeg": {"quality": [5]},
        },
    }
    _check_run_folder(out, grown, _items("a"), None, set())  # sweeps may grow, methods may be added
    with pytest.raises(ValueError, match=r"methods.task_aware.steps: 10; this recipe has 20"):
        _check_run_folder(
            out, {**old, "methods": {"task_aware": {"lambda": [0.1], "steps": 20}}}, _items("a"), None, set()
        )
    with pytest.raises(ValueError, match="preprocess"):
        _check_run_folder(out, {**old, "preprocess": {"resize": 146, "crop": 128}}, _items("a"), None, set())
    # another codec (e.g. run --codec X into a folder of sft-small points) is refused even when nothing is left to do
    with pytest.raises(ValueError, match="codec: 'sft-small'; this recipe has codec: 'sft-small-doc'"):
        _check_run_folder(out, {**old, "codec": "sft-small-doc"}, _items("a"), None, set())
    _check_run_folder(out, {**old, "codec": "sft-small"}, _items("a"), None, set())  # the default, written out
    with pytest.raises(ValueError, match="reading"):
        _check_run_folder(out, {**old, "reading": "boxes"}, _items("a"), None, set())


def test_run_folder_records_objective_with_defaults(tmp_path):
    """run.json keeps the objective's resolved arguments: a default written out is the same setting, a default
    that changed since the folder was made (max_boxes was 64) is refused rather than mixed."""
    from taskcomp.runner.run import RUN_FILE, _check_run_folder

    out = tmp_path / "run"
    out.mkdir()
    implicit = {"name": "t", "task": "text", "objective": {"name": "text"}, "methods": {}}
    _check_run_folder(out, implicit, _items("a"), None, set())
    rec = json.loads((out / RUN_FILE).read_text())["objective"]
    assert rec["name"] == "text" and rec["max_boxes"] is None and "det_weight" in rec
    (out / "recipe.yaml").write_text(json.dumps(implicit))
    explicit = {**implicit, "objective": {"name": "text", "max_boxes": None}}
    _check_run_folder(out, explicit, _items("a"), None, set())  # the default written out: same setting
    with pytest.raises(ValueError, match=r"objective max_boxes: None; this recipe means 64"):
        _check_run_folder(out, {**implicit, "objective": {"name": "text", "max_boxes": 64}}, _items("a"), None, set())
    # a folder whose run.json says the old default (64) is refused by a recipe that now means all boxes
    saved = json.loads((out / RUN_FILE).read_text())
    saved["objective"]["max_boxes"] = 64
    (out / RUN_FILE).write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"objective max_boxes: 64; this recipe means None"):
        _check_run_folder(out, implicit, _items("a"), None, set())
    # an argument the record lacks (added to the objective later) is accepted at its default, with a note
    saved["objective"]["max_boxes"] = None
    del saved["objective"]["group_size"]
    (out / RUN_FILE).write_text(json.dumps(saved))
    notes = []
    _check_run_folder(out, implicit, _items("a"), None, set(), notes.append)
    assert any("group_size did not exist" in n for n in notes)
    with pytest.raises(ValueError, match=r"objective group_size: \(absent\); this recipe means 4"):
        _check_run_folder(out, {**implicit, "objective": {"name": "text", "group_size": 4}}, _items("a"), None, set())
    with pytest.raises(ValueError, match=r"was run with objective 'text'; this recipe has 'classification'"):
        _check_run_folder(out, {**implicit, "objective": {"name": "classification"}}, _items("a"), None, set())
    saved["objective"] = [1]
    (out / RUN_FILE).write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="is damaged"):
        _check_run_folder(out, implicit, _items("a"), None, set())
    # a folder with records from before the record existed is not stamped with today's defaults
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / RUN_FILE).write_text(json.dumps({"recipe": "t", "limit": None, "n_items": 1, "items": ["a"]}))
    _check_run_folder(legacy, implicit, _items("a"), None, {"a"})
    assert "objective" not in json.loads((legacy / RUN_FILE).read_text())
    # a weighted objective's parts are resolved too: a part's default written out is the same setting
    from taskcomp.runner.run import objective_record

    w = {"objective": {"name": "weighted", "objectives": [{"name": "detection"}]}}
    assert objective_record(w) == objective_record(
        {"objective": {"name": "weighted", "objectives": [{"name": "detection", "weight": 1.0, "conf": 0.25}]}}
    )
    # no objective key: the task's default objective, resolved
    cls = {"name": "t", "task": "classification", "methods": {}}
    (tmp_path / "c").mkdir()
    _check_run_folder(tmp_path / "c", cls, _items("a"), None, set())
    assert json.loads((tmp_path / "c" / RUN_FILE).read_text())["objective"]["model"] == "tf_efficientnet_lite0"


def test_run_with_another_limit_is_refused_before_work(tmp_path, data_root, capsys):
    from taskcomp.runner.layouts import list_items
    from taskcomp.runner.run import spread

    recipe = _recipe(tmp_path, GOOD)
    out = tmp_path / "run"
    out.mkdir()
    ids = [it["id"] for it in spread(list_items({"name": "t", "data": "imagenet-sample", "methods": {}}, data_root), 3)]
    (out / "run.json").write_text(json.dumps({"limit": 3, "items": ids}))
    rc, _, err = run(["run", recipe, "--out", out, "--data-root", data_root, "--limit", "4"], capsys)
    assert_one_line_error(rc, err, "--limit 3", "--limit 4", "never mixes image sets")
    assert not list(out.glob("records*"))


def _write_records(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _fake_run(tmp_path, items, images, metric="top1/m", values=None):
    """Records of uniform q=0/0.5/1 and task_aware lambda=1 for ``images``; run.json naming ``items``."""
    out = tmp_path / "run"
    out.mkdir()
    rows = []
    for k, img in enumerate(images):
        for q, bpp, m in ((0.0, 0.1, 0.2), (0.5, 0.3, 0.6), (1.0, 0.9, 0.9)):
            rows.append(
                {"image": img, "method": "uniform", "setting": f"q={q:.2f}", "bpp": bpp, "psnr": 30.0, metric: m}
            )
        v = values[k] if values else 0.6
        rows.append({"image": img, "method": "task_aware", "setting": "lambda=1", "bpp": 0.2, "psnr": 29.0, metric: v})
    _write_records(out / "records.shard0of1.jsonl", rows)
    if items is not None:
        (out / "run.json").write_text(json.dumps({"limit": len(items), "items": items}))
    return out


def test_report_reports_only_the_runs_items(tmp_path):
    from taskcomp.runner.report import report

    out = _fake_run(tmp_path, ["a", "b"], ["a", "b", "stray"], values=[0.6, 0.6, 0.0])
    s = report(out)
    assert s["n_images"] == 2 and s["n_images_planned"] == 2 and s["records_outside_run"] == 4
    c = s["comparisons"]["task_aware vs uniform, top1/m"]
    assert c["points"][0]["top1/m"] == pytest.approx(0.6)  # the stray image's 0.0 is not in the mean


# ------------------------------------------------------------------------------------------------ item 5


def test_report_headline_is_one_settings_figure(tmp_path, capsys):
    from taskcomp.runner.report import report

    out = _fake_run(tmp_path, None, ["a", "b", "c"], values=[0.6, 0.3, 0.3])
    s = report(out)
    c = s["comparisons"]["task_aware vs uniform, top1/m"]
    assert "max_bpp_saving_percent" not in c  # the old, ambiguous name
    best = c["mean_curve_best_bpp_saving_percent"]
    p = next(p for p in c["points"] if p["setting"] == c["mean_curve_best_bpp_saving_setting"])
    assert best == p["bpp_saving_percent"]
    assert c["mean_curve_best_gain_points_at_or_below_0.3_bpp"] == p["gain_points"]
    assert "bpp_saving_median_percent" in c["per_image"]["lambda=1"] and "definitions" in s
    rc, stdout, _ = run(["report", out], capsys)
    assert rc == 0
    head = next(l for l in stdout.splitlines() if l.startswith("task_aware vs uniform"))
    row = next(l for l in stdout.splitlines() if l.strip().startswith("lambda=1:"))
    shown = f"{best:.1f}% fewer bits" if best >= 0 else f"{-best:.1f}% more bits"
    assert "mean curve" in head and shown in head and shown in row  # the headline is the row's figure
    assert "per image" in row and "median" in row


def test_undefined_agreement_f1_is_nan_and_left_out(tmp_path):
    import math

    import torch

    from taskcomp.objectives.detection import DetectionObjective
    from taskcomp.runner.report import report

    none, one = torch.zeros(0, 6), torch.tensor([[10.0, 10, 50, 50, 0.9, 0]])
    ev = (
        DetectionObjective.evaluate.__wrapped__
        if hasattr(DetectionObjective.evaluate, "__wrapped__")
        else DetectionObjective.evaluate
    )
    m = ev(None, None, {"original": [none]}, detections=[none])[0]
    assert all(math.isnan(m[k]) for k in ("f1_vs_original", "recall_vs_original", "precision_vs_original"))
    m = ev(None, None, {"original": [one]}, detections=[none])[0]
    assert m["f1_vs_original"] == 0.0 and m["recall_vs_original"] == 0.0
    m = ev(None, None, {"original": [none]}, detections=[one])[0]
    assert m["f1_vs_original"] == 0.0 and math.isnan(m["recall_vs_original"])
    m = ev(None, None, {"original": [one]}, detections=[one.clone()])[0]
    assert m["f1_vs_original"] == 1.0

    # an image with no detection on either side is left out of the means, not counted as agreement 1
    out = _fake_run(tmp_path, None, ["a", "b"], metric="f1/original", values=[0.5, float("nan")])
    s = report(out)
    c = s["comparisons"]["task_aware vs uniform, f1/original"]
    assert c["points"][0]["f1/original"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------ item 6


def test_optimize_json_to_stdout(tmp_path, sample_128, capsys):
    from PIL import Image

    img = tmp_path / "img.png"
    Image.fromarray(sample_128).save(img)
    rc, out, err = run(
        [
            "optimize",
            img,
            "--lambda",
            "1",
            "--steps",
            "1",
            "--downsample",
            "16",
            "--compare",
            "--device",
            "cpu",
            "-o",
            tmp_path / "o.tcz",
            "--save-map",
            tmp_path / "m.npy",
            "--json",
            "-",
        ],
        capsys,
    )
    assert rc == 0, err
    res = json.loads(out)  # stdout holds the JSON alone; the progress lines went to stderr
    assert "device" in err and res["command"] == "optimize"
    (r,) = res["images"]
    assert r["image"] == str(img) and r["output"] == str(tmp_path / "o.tcz") and r["map"] == str(tmp_path / "m.npy")
    assert (r["width"], r["height"], r["lambda"], r["task"]) == (128, 128, 1.0, "classification")
    assert r["bytes"] == (tmp_path / "o.tcz").stat().st_size
    assert r["bpp"] == pytest.approx(8 * r["bytes"] / (128 * 128))
    assert [c["map"] for c in r["compare"]] == ["task-aware", "uniform"]
    assert (
        r["compare"][0]["bpp"] == pytest.approx(r["bpp"]) and "top1" in r["compare"][0] and r["compare"][0]["psnr"] > 10
    )


def test_json_file_is_written_atomically_and_is_strict_json(tmp_path):
    import argparse as ap

    from taskcomp.batch import json_row as _json_row
    from taskcomp.batch import with_json_results as _with_json

    def fake(a):
        print("progress")
        _json_row(a, "x.png", "x.tcz", None, 4, 2, 1, 0.5, 1, 0.1)["compare"] = [{"f1": float("nan")}]

    dest = tmp_path / "r.json"
    _with_json(fake)(ap.Namespace(json=str(dest), command="ocr-map"))
    r = json.loads(dest.read_text())  # strict: NaN written as null
    assert r["images"][0]["compare"][0]["f1"] is None and r["images"][0]["task"] == "text"
    assert "NaN" not in dest.read_text()


@pytest.mark.parametrize(
    "text, words",
    [
        ("stpes: 5\n", ["training config", "'stpes'", "allowed:", "steps"]),
        ("steps: [\n", ["training config", "malformed YAML", "line 2"]),
        ("- 1\n", ["must be a mapping"]),
    ],
)
def test_train_config_typo_and_malformed_yaml_are_one_line(tmp_path, capsys, text, words):
    p = _recipe(tmp_path, text, "train.yaml")
    rc, _, err = run(["train", "--config", p, "--out", tmp_path / "out"], capsys)
    assert_one_line_error(rc, err, *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["optimize", "ocr-map"])
def test_map_commands_refuse_bad_threads_before_loading_models(tmp_path, capsys, command):
    from PIL import Image

    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32), "white").save(img)
    rc, _, err = run([command, img, "--threads", "0", "-o", tmp_path / "a.tcz"], capsys)
    assert_one_line_error(rc, err, "--threads must be >= 1, got 0")
    assert not (tmp_path / "a.tcz").exists()
