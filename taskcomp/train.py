"""Codec training: ``taskcomp train``. The trainer lives in :mod:`taskcomp.training.codec` and the machinery it
shares with other trainers (torchrun / DistributedDataParallel, the loop pieces) in :mod:`taskcomp.training`;
this module keeps the names scripts import from ``taskcomp.train``."""

# Private names the test suite (tests/test_maps_train_eval.py) still imports from here; the package's own code
# uses the public ones (taskcomp.training.distributed.free_port / worker_group).
from .training.codec import (  # noqa: F401  # noqa: F401
    AUX_PARAM_SUFFIX,
    NewChannelBoost,
    TrainConfig,
    _Prefetcher,
    _read_logs,
    _read_val,
    export,
    lr_at,
    optimizer_step,
    plot_training,
    rd_loss,
    split_params,
    train,
    validate,
)
from .training.distributed import free_port as _free_port  # noqa: F401
from .training.distributed import worker_group as _worker_group  # noqa: F401

__all__ = [
    "TrainConfig",
    "train",
    "rd_loss",
    "optimizer_step",
    "split_params",
    "NewChannelBoost",
    "validate",
    "export",
    "plot_training",
    "lr_at",
    "AUX_PARAM_SUFFIX",
]
