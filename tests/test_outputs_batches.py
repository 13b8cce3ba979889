"""Issue 34, kinds 1 and 5: no command writes over its own inputs or two outputs over each other (one line, exit 2,
nothing touched); output extensions say what is written; write errors name the user's file; batches keep finished
work (one bad image does not stop the others, --json kept after failures and Ctrl-C, a rerun skips what is done)."""

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from taskcomp.cli import main
from taskcomp.outputs import BatchError, OutputError, OutputPlan, check_suffix

CASE08 = Path(__file__).resolve().parents[2] / "shared" / "cases" / "08-output-is-input"


def run(args, capsys):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err, *words):
    assert rc == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]


def sha(p) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@pytest.fixture
def small(tmp_path, sample_128):
    """Two 64x64 crops of the sample as PNGs in tmp_path/imgs."""
    d = tmp_path / "imgs"
    d.mkdir()
    for i, name in enumerate(("a.png", "b.png")):
        Image.fromarray(np.ascontiguousarray(sample_128[i * 32 : i * 32 + 64, :64])).save(d / name)
    return d


def test_case_08_compress_never_writes_over_its_input(tmp_path, capsys):
    """../shared/cases/08-output-is-input: -o naming the input photo, by any spelling, link or hard link."""
    if not (CASE08 / "photo.png").is_file():
        pytest.skip("../shared/cases/08-output-is-input not available")
    photo = tmp_path / "photo.png"
    shutil.copyfile(CASE08 / "photo.png", photo)  # a copy: the case's file is never touched
    before = sha(photo)
    (tmp_path / "link.tcz").symlink_to(photo)
    os.link(photo, tmp_path / "hard.tcz")
    files = listing(tmp_path)
    for out in (
        photo,
        tmp_path / "sub" / ".." / "photo.png",
        f"{tmp_path}//./photo.png",
        tmp_path / "link.tcz",
        tmp_path / "hard.tcz",
    ):
        rc, _, err = run(["compress", photo, "-q", 0.5, "-o", out], capsys)
        one_line_error(rc, err, "would overwrite the input image", str(photo), "nothing was written")
        assert sha(photo) == before and listing(tmp_path) == files  # no folder "sub" made either


def test_decompress_never_writes_over_the_file_it_reads(tmp_path, small, capsys):
    tcz = tmp_path / "x.tcz"
    assert run(["compress", small / "a.png", "-q", 0.5, "-o", tcz], capsys)[0] == 0
    before, files = sha(tcz), listing(tmp_path)
    rc, _, err = run(["decompress", tcz, "-o", tcz], capsys)
    one_line_error(rc, err, "would overwrite the input", str(tcz))
    assert sha(tcz) == before and listing(tmp_path) == files


@pytest.mark.parametrize(
    "command, out, words",
    [
        ("compress", "x.png", ["compressed .tcz file", "x.png", "name it .tcz"]),
        ("compress", "x.npy", ["compressed .tcz file", "x.npy"]),
        ("decompress", "x.xyz", [".xyz is not an image format", "x.xyz"]),
        ("decompress", "y.tcz", ["compressed format", "y.tcz"]),
    ],
)
def test_output_extension_that_contradicts_the_content_is_refused(tmp_path, small, capsys, command, out, words):
    src = small / "a.png"
    if command == "decompress":
        src = tmp_path / "a.tcz"
        assert run(["compress", small / "a.png", "-q", 0.5, "-o", src], capsys)[0] == 0
    files = listing(tmp_path)
    args = [command, src, "-o", tmp_path / out] + (["-q", 0.5] if command == "compress" else [])
    rc, _, err = run(args, capsys)
    one_line_error(rc, err, *words)
    assert listing(tmp_path) == files


def test_two_inputs_with_one_stem_into_one_folder_are_refused(tmp_path, small, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copyfile(small / "a.png", tmp_path / "a" / "x.png")
    Image.open(small / "b.png").convert("RGB").save(tmp_path / "b" / "x.jpg")
    rc, _, err = run(
        ["compress", tmp_path / "a" / "x.png", tmp_path / "b" / "x.jpg", "-q", 0.5, "-o", tmp_path / "out"], capsys
    )
    one_line_error(rc, err, "x")
    for d in ("a", "b"):
        tcz = tmp_path / d / "x.tcz"
        assert run(["compress", small / "a.png", "-q", 0.5, "-o", tcz], capsys)[0] == 0
    files = listing(tmp_path)
    rc, _, err = run(["decompress", tmp_path / "a" / "x.tcz", tmp_path / "b" / "x.tcz", "-o", tmp_path / "out"], capsys)
    one_line_error(rc, err, "two outputs", str(tmp_path / "out" / "x.png"))
    assert listing(tmp_path) == files


@pytest.mark.parametrize(
    "extra, words",
    [
        (
            ["--save-overlay", "{d}/o.png", "--save-decoded", "{d}/o.png"],
            ["--save-overlay and --save-decoded", "o.png"],
        ),
        (["--save-map", "{d}/imgs/a.png"], ["--save-map", "would overwrite the input image"]),
        (["--json", "{d}/imgs/a.png"], ["--json", "would overwrite the input image"]),
        (["--save-decoded", "{d}/new/deep/o.tcz"], ["-o and --save-decoded would both write"]),
        (["--save-overlay", "{d}/o.xyz"], ["--save-overlay", ".xyz is not an image format"]),
        (["--json", "{d}/r.png"], ["--json", "the output is JSON"]),
    ],
)
@pytest.mark.parametrize("command", ["optimize", "ocr-map"])
def test_map_command_outputs_colliding_are_refused_before_any_model_loads(
    tmp_path, small, capsys, command, extra, words
):
    files = listing(tmp_path)
    args = [command, small / "a.png", "--steps", 1, "-o", tmp_path / "new" / "deep" / "o.tcz"]
    rc, out, err = run(args + [e.format(d=tmp_path) for e in extra], capsys)
    one_line_error(rc, err, *words)
    assert "device" not in out  # refused before the device line, i.e. before any model
    assert listing(tmp_path) == files  # and no folder made for -o


@pytest.mark.parametrize(
    "name, content",
    [
        ("settings.json", '{"theme": "dark", "images": ["a.png"]}\n'),  # a user's JSON, even with an images list
        ("notes.json", "shopping: milk, eggs\n"),  # not JSON at all
        ("empty.json", ""),
    ],
)
@pytest.mark.parametrize("command", ["optimize", "ocr-map"])
def test_json_never_replaces_a_file_that_is_not_a_taskcomp_results_file(
    tmp_path, small, capsys, command, name, content
):
    """--json FILE over an existing unrelated file is refused in one line naming it, before any work; the file keeps
    its bytes. A taskcomp results file (what --json writes: settings and images) may be replaced."""
    from taskcomp.outputs import check_results_file, is_results_file

    dest = tmp_path / name
    dest.write_text(content)
    files = listing(tmp_path)
    rc, out, err = run([command, small / "a.png", "--steps", 1, "-o", tmp_path / "o.tcz", "--json", dest], capsys)
    one_line_error(rc, err, f"--json {dest} exists and is not a taskcomp results file", "choose another name")
    assert "device" not in out and dest.read_text() == content and listing(tmp_path) == files
    ours = tmp_path / "r.json"
    ours.write_text(
        json.dumps({"command": command, "status": "done", "settings": {"steps": 3}, "images": [], "failed": []})
    )
    assert is_results_file(ours) and not is_results_file(dest)
    check_results_file(ours)  # passes: a results file of other settings is redone and replaced
    check_results_file(tmp_path / "missing.json")


def test_map_command_folders_colliding_for_several_images(tmp_path, small, capsys):
    rc, _, err = run(
        [
            "optimize",
            small,
            "--steps",
            1,
            "-o",
            tmp_path / "out",
            "--save-map",
            tmp_path / "pics",
            "--save-overlay",
            tmp_path / "pics",
        ],
        capsys,
    )
    one_line_error(rc, err, "--save-map and --save-overlay would both write", "a.png")


def test_run_refuses_to_rewrite_the_recipe_it_reads(tmp_path, capsys):
    from taskcomp.runner.recipe import resolve_recipe

    out = tmp_path / "run"
    out.mkdir()
    recipe = out / "recipe.yaml"
    recipe.write_text(resolve_recipe("imagenet_classification").read_text() + "# my notes\n")
    before = sha(recipe)
    rc, _, err = run(["run", recipe, "--out", out, "--limit", 1], capsys)
    one_line_error(rc, err, "would overwrite the recipe", str(recipe))
    assert sha(recipe) == before and listing(out) == ["recipe.yaml"]


def test_report_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "summary.txt"
    f.write_text("mine")
    rc, _, err = run(["report", tmp_path, "--out", f], capsys)
    one_line_error(rc, err, "--out", "is a file")
    assert f.read_text() == "mine"


def test_full_disk_names_the_file_not_a_temp_file(tmp_path, small, capsys, monkeypatch):
    from taskcomp import io as tio
    from taskcomp.io import atomic_write

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tio.os, "fsync", full)
    with pytest.raises(OSError) as e:
        atomic_write(tmp_path / "x.bin", b"123")
    assert (
        e.value.errno == errno.ENOSPC and str(e.value) == f"cannot write {tmp_path / 'x.bin'}: No space left on device"
    )
    rc, _, err = run(["compress", small / "a.png", "-q", 0.5, "-o", tmp_path / "y.tcz"], capsys)
    one_line_error(rc, err, f"cannot write {tmp_path / 'y.tcz'}: No space left on device")
    assert ".tmp" not in err and not list(tmp_path.glob(".*")) and not (tmp_path / "y.tcz").exists()


def test_output_plan_and_suffix_checks_in_the_library(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    plan = OutputPlan()
    plan.add_input(a, "the input image a.png")
    plan.add_output(tmp_path / "a.tcz", "-o")
    plan.add_output(tmp_path / "m.png", "--save-map")
    plan.check()
    plan.add_output(tmp_path / "." / "m.png", "--save-overlay")
    with pytest.raises(OutputError, match="--save-map and --save-overlay would both write"):
        plan.check()
    check_suffix("x.tcz", "tcz")
    check_suffix("x", "tcz")
    check_suffix("r.json", "json")
    with pytest.raises(OutputError, match="name it .tcz"):
        check_suffix("x.JPG", "tcz")
    e = BatchError([("b.png", "not a readable image: b.png"), ("c.png", "too small")], 3)
    assert e.lines() == ["not a readable image: b.png", "c.png: too small"] and "2 of 3 images failed" in str(e)


def _bad_image(folder: Path, name: str = "bad.png") -> Path:
    p = folder / name
    p.write_bytes(b"not an image at all")
    return p


def test_compress_and_decompress_batches_go_on_past_a_bad_file(tmp_path, small, capsys):
    _bad_image(small)
    rc, out, err = run(["compress", small, "-q", 0.5, "-o", tmp_path / "tcz"], capsys)
    assert rc == 1, err
    assert sorted(p.name for p in (tmp_path / "tcz").iterdir()) == ["a.tcz", "b.tcz"]
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "bad.png" in errors[0] and "not a readable image" in errors[0]
    assert "1 of 3 images failed" in err
    (tmp_path / "tcz" / "c.tcz").write_bytes(b"")
    rc, _, err = run(["decompress", *sorted((tmp_path / "tcz").iterdir()), "-o", tmp_path / "dec"], capsys)
    assert rc == 1 and "1 of 3 files failed" in err and "c.tcz" in err
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["a.png", "b.png"]


def test_optimize_batch_keeps_finished_work_and_a_rerun_skips_it(tmp_path, small, capsys):
    _bad_image(small, "c.png")
    res = tmp_path / "r.json"
    args = [
        "optimize",
        small,
        "--steps",
        1,
        "--downsample",
        16,
        "--device",
        "cpu",
        "-o",
        tmp_path / "out",
        "--json",
        res,
    ]
    rc, out, err = run(args, capsys)
    assert rc == 1, err
    doc = json.loads(res.read_text())
    assert doc["status"] == "failed" and [r["image"] for r in doc["images"]] == [
        str(small / "a.png"),
        str(small / "b.png"),
    ]
    assert [f["image"] for f in doc["failed"]] == [str(small / "c.png")] and "c.png" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.tcz", "b.tcz"]
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}

    rc, out, err = run(args, capsys)  # the same settings: the two done images are skipped, the bad one fails again
    assert rc == 1
    assert out.count("done in an earlier run with the same settings") == 2
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == stamps
    assert len(json.loads(res.read_text())["images"]) == 2


def test_optimize_keeps_the_json_of_finished_images_after_ctrl_c(tmp_path, small, capsys, monkeypatch):
    from taskcomp import mapmaker as making

    real, calls = making.make_working_map, []

    def interrupted_on_second(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(making, "make_working_map", interrupted_on_second)
    res = tmp_path / "r.json"
    rc, _, err = run(
        ["optimize", small, "--steps", 1, "--downsample", 16, "--device", "cpu", "-o", tmp_path / "out", "--json", res],
        capsys,
    )
    assert rc == 130 and "interrupted" in err
    doc = json.loads(res.read_text())
    assert doc["status"] == "interrupted" and [r["image"] for r in doc["images"]] == [str(small / "a.png")]
    assert (tmp_path / "out" / "a.tcz").is_file() and not (tmp_path / "out" / "b.tcz").exists()
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_json_records_the_settings_as_given_and_a_rerun_finds_its_records(tmp_path, capsys):
    """The settings a rerun compares are the command line's, not defaults the command fills in as it runs (ocr-map
    sets its document codec); other settings redo every image, and say so."""
    import argparse

    from taskcomp.batch import json_row as _json_row
    from taskcomp.batch import with_json_results as _with_json

    dest, seen = tmp_path / "r.json", []

    def fake(a):
        a.codec = a.codec or "sft-small-doc"
        if a.json_previous:
            seen.append(sorted(a.json_previous))
        else:
            _json_row(a, "x.png", "x.tcz", None, 4, 2, 1, 0.5, 1, 0.1)

    def args(steps):
        return argparse.Namespace(json=str(dest), command="ocr-map", codec=None, steps=steps, device="cpu")

    _with_json(fake)(args(1))
    doc = json.loads(dest.read_text())
    assert doc["status"] == "done" and doc["settings"] == {"codec": None, "steps": 1}
    _with_json(fake)(args(1))
    assert seen == [["x.png"]]
    capsys.readouterr()
    _with_json(fake)(args(2))
    assert seen == [["x.png"]] and "other settings" in capsys.readouterr().out


def test_rerun_with_other_codec_weights_redoes_the_images(tmp_path, small, capsys):
    """The --json settings hold the codec's weights id and the taskcomp version: a rerun whose --checkpoint file now
    holds other weights (the same path) redoes every image and says which setting differs."""
    import torch

    import taskcomp
    from taskcomp.codec import create_codec, save_codec

    ck = tmp_path / "ck.pth"

    def save(seed):
        torch.manual_seed(seed)
        return save_codec(create_codec("sft-small", pretrained=False), ck, "sft-small")

    h1 = save(1)
    img = tmp_path / "t.png"
    Image.fromarray(np.ascontiguousarray(np.asarray(Image.open(small / "a.png"))[:32, :32])).save(img)
    res = tmp_path / "r.json"
    args = [
        "optimize",
        img,
        "--steps",
        1,
        "--downsample",
        16,
        "--device",
        "cpu",
        "--checkpoint",
        ck,
        "-o",
        tmp_path / "t.tcz",
        "--json",
        res,
    ]
    rc, out, err = run(args, capsys)
    assert rc == 0, err
    settings = json.loads(res.read_text())["settings"]
    assert settings["codec_weights"] == h1[:16] and settings["taskcomp_version"] == taskcomp.__version__
    rc, out, err = run(args, capsys)
    assert rc == 0 and "done in an earlier run with the same settings" in out
    h2 = save(2)
    assert h2 != h1
    rc, out, err = run(args, capsys)
    assert rc == 0 and "done in an earlier run" not in out, out
    assert f"codec_weights {h1[:16]} -> {h2[:16]}" in out
    assert json.loads(res.read_text())["settings"]["codec_weights"] == h2[:16]


@pytest.mark.parametrize("name, extra", [("task_aware.png", []), ("q050.png", ["--no-task"]), ("demo_gallery.png", [])])
def test_demo_never_writes_over_its_image(tmp_path, small, capsys, name, extra):
    out = tmp_path / "taskcomp-demo"
    out.mkdir()
    img = out / name
    shutil.copyfile(small / "a.png", img)
    before = sha(img)
    rc, _, err = run(["demo", "--image", img, "--out", out, "--device", "cpu", *extra], capsys)
    one_line_error(rc, err, "--out", str(img), "would overwrite the --image file")
    assert sha(img) == before and listing(out) == [name]


def test_widen_and_export_never_write_over_their_input(tmp_path, capsys):
    ck = tmp_path / "ck.pth"
    ck.write_bytes(b"weights")
    rc, _, err = run(["widen-codec", "--to", "sft-medium", "--checkpoint", ck, "-o", tmp_path / "." / "ck.pth"], capsys)
    one_line_error(rc, err, "-o", "would overwrite the --checkpoint file")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.pth").write_bytes(b"state")
    rc, _, err = run(["export-codec", run_dir, "-o", run_dir / "last.pth"], capsys)
    one_line_error(rc, err, "-o", "would overwrite the run's last.pth")
    assert ck.read_bytes() == b"weights" and (run_dir / "last.pth").read_bytes() == b"state"


def test_write_errors_keep_their_class_for_library_callers(tmp_path, monkeypatch):
    """atomic_write re-raises the cause's class (PermissionError, IsADirectoryError, ...) with its errno, the user's
    path as ``filename`` and a message naming that path, never the temporary file."""
    import pickle

    from taskcomp import io as tio
    from taskcomp.io import atomic_write

    (tmp_path / "d.bin").mkdir()
    with pytest.raises(IsADirectoryError) as e:
        atomic_write(tmp_path / "d.bin", b"x")
    assert e.value.errno == errno.EISDIR and e.value.filename == str(tmp_path / "d.bin")
    assert str(e.value) == f"cannot write {tmp_path / 'd.bin'}: it is a folder"

    def denied(*_, **__):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / ".x.bin.abc.tmp"))

    monkeypatch.setattr(tio.tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as e:
        atomic_write(tmp_path / "x.bin", b"x")
    err = e.value
    assert type(err).__name__ == "PermissionError" and err.errno == errno.EACCES
    assert err.filename == str(tmp_path / "x.bin")
    assert str(err) == f"cannot write {tmp_path / 'x.bin'}: Permission denied"
    assert ".tmp" not in str(err) and isinstance(pickle.loads(pickle.dumps(err)), PermissionError)


def test_batch_failures_helper(monkeypatch):
    """One helper for the per-image failures of compress, decompress and the map commands (taskcomp.outputs)."""
    from taskcomp.outputs import BatchFailures

    monkeypatch.delenv("TASKCOMP_DEBUG", raising=False)
    said, kept = [], []
    f = BatchFailures(3, log=said.append, on_note=lambda p, m: kept.append((p, m)))
    f.raise_if_any()  # nothing noted: nothing raised
    assert f.note("b.png", ValueError("not a readable image: b.png")) == "not a readable image: b.png"
    f.note("c.png", RuntimeError("boom\nsecond line"))
    assert said == [
        "b.png: failed (not a readable image: b.png); going on with the other images",
        "c.png: failed (RuntimeError: boom second line); going on with the other images",
    ]
    assert kept == f.failures == [("b.png", "not a readable image: b.png"), ("c.png", "RuntimeError: boom second line")]
    with pytest.raises(BatchError) as e:
        f.raise_if_any()
    assert e.value.failures == f.failures and "2 of 3 images failed" in str(e.value)
    one = BatchFailures(1, what="file", single=True, log=said.append)
    with pytest.raises(ValueError, match="alone"):
        one.note("a.tcz", ValueError("alone"))
    assert not one.failures
