"""The code keeps its style: `ruff check` (pycodestyle, pyflakes, import order) and `ruff format --check` pass over
the package, the tests and the experiment programs, as pyproject.toml's [tool.ruff] configures them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["taskcomp", "tests", "experiments", "scripts", "setup.py"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(exe).exists():
        pytest.skip("ruff is not installed: pip install -e '.[test]' (the test extra) installs it")
    # --no-cache: nothing is written into the checkout
    return subprocess.run([exe, *args, "--no-cache", *TARGETS], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check_passes():
    res = _ruff("check")
    assert res.returncode == 0, "ruff check found problems (ruff check --fix mends many):\n" + res.stdout + res.stderr


def test_ruff_format_check_passes():
    res = _ruff("format", "--check")
    assert res.returncode == 0, (
        "files not formatted (run: ruff format taskcomp tests experiments scripts):\n" + res.stdout
    )
