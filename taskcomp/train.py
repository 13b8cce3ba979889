"""Codec training: ``taskcomp train``. The trainer lives in :mod:`taskcomp.training.codec` and the machinery it
shares with other trainers (torchrun / DistributedDataParallel, the loop pieces) in :mod:`taskcomp.training`;
this module keeps the public names scripts import from ``taskcomp.train``."""

from .training.codec import (
    AUX_PARAM_SUFFIX,
    NewChannelBoost,
    TrainConfig,
    export,
    lr_at,
    optimizer_step,
    plot_training,
    rd_loss,
    split_params,
    train,
    validate,
)

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
