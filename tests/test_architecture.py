"""The package's imports run one way: `lint-imports` keeps every contract of pyproject.toml's [tool.importlinter]
(layers from the CLI down to io and devices, the codec knowing no objective, objectives knowing no optimiser, no
circles). docs/architecture.md says what each layer holds."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_imports_keep_the_contracts():
    if importlib.util.find_spec("importlinter") is None:
        pytest.skip("import-linter is not installed: pip install -e '.[test]' (the test extra) installs it")
    # A fresh process from the repository root, so that the checkout's taskcomp is the one analysed; --no-cache:
    # nothing is written into the checkout.
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command as c; c()",
            "--no-cache",
            str(ROOT / "pyproject.toml"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, "lint-imports found imports that break a contract:\n" + out[out.find("Contracts") :]
