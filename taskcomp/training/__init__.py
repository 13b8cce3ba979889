"""Training machinery shared by every trainer, and the trainers.

:mod:`~taskcomp.training.distributed`: the process group (torchrun's environment; ``nccl`` on CUDA, else
``gloo``), DistributedDataParallel wrapping, the scalar collectives a loop needs, and the local launcher behind
``--workers``. :mod:`~taskcomp.training.loop`: schedule, prefetching, resumable state with per-rank random
streams. :mod:`~taskcomp.training.codec`: the codec trainer (``taskcomp train``).
"""

from .distributed import DistGroup, launch_local, process_group
from .loop import Prefetcher, check_fresh, cosine_lr, progress, restore_rng, rng_streams, save_state

__all__ = [
    "DistGroup",
    "process_group",
    "launch_local",
    "Prefetcher",
    "check_fresh",
    "cosine_lr",
    "progress",
    "restore_rng",
    "rng_streams",
    "save_state",
]
