import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(int(os.environ.get("TASKCOMP_THREADS", "2")))
# ultralytics must not reach for the network or write settings outside a temp folder.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(__import__("tempfile").gettempdir(), "taskcomp-ultralytics"))
torch.set_flush_denormal(True)

SAMPLE = Path(str(resources.files("taskcomp") / "samples" / "parrots_256.png"))


@pytest.fixture(scope="session")
def codec():
    """The shipped default codec (sft-small with its packaged weights)."""
    from taskcomp.codec import create_codec

    return create_codec("sft-small")


@pytest.fixture(scope="session")
def sample_rgb():
    from taskcomp.io import load_image

    return load_image(SAMPLE)


@pytest.fixture(scope="session")
def sample_128(sample_rgb):
    """A 128x128 crop of the sample, as uint8 (H, W, 3)."""
    return np.ascontiguousarray(sample_rgb[64:192, 96:224])


@pytest.fixture(scope="session")
def data_root():
    from taskcomp.datasets import DataError
    from taskcomp.datasets import data_root as _root

    try:
        return _root(os.environ.get("TASKCOMP_DATA"))
    except DataError:
        pytest.skip("data root not available (set TASKCOMP_DATA)")


# ----------------------------------------------------------------------------- CLI test helpers (imported by tests)


def run(args, capsys):
    """Run ``taskcomp ARGS`` in-process: (exit status, stdout, stderr)."""
    from taskcomp.cli import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *words):
    """A bad input's contract: exit 2, no traceback, one line on stderr holding every one of ``words``."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
