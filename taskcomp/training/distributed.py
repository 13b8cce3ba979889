"""Data parallelism for every trainer: the process group, DistributedDataParallel and the local launcher.

One code path: a trainer runs inside :func:`process_group`, which joins the group torchrun (or Slurm's ``srun
torchrun``) set up through ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT``
(backend ``nccl`` on CUDA, else ``gloo``), and is a single process otherwise. ``taskcomp train --workers N``
starts N such processes on this machine through :func:`launch_local`, torch's own elastic launcher (the engine of
``torchrun``) running ``python -m taskcomp ...``, exactly what ``torchrun --nproc_per_node N -m taskcomp ...`` runs.

Gradients are averaged by :class:`torch.nn.parallel.DistributedDataParallel` (:meth:`DistGroup.wrap`); the
few scalars a training loop has to agree on (the lead's clock, stop and skip flags, logged means) go through the
small collectives of :class:`DistGroup`. Rank 0 leads: it alone logs, checkpoints and exports.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence

import torch

from ..devices import DeviceError, process_group_env, resolve_device

__all__ = [
    "DistGroup",
    "process_group",
    "launch_local",
    "record_failure",
    "backend_for",
    "exit_with_parent",
    "LAUNCHED_ENV",
]

# Set (to "1") in the environment of the processes :func:`launch_local` starts: they leave the one-line error
# of a failure to the launcher instead of printing their own.
LAUNCHED_ENV = "TASKCOMP_LOCAL_LAUNCH"


def backend_for(device: torch.device) -> str:
    """The collective backend of a device: ``nccl`` for CUDA, ``gloo`` for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


class DistGroup:
    """This process's place in a data-parallel group, and the collectives a training loop needs.

    With ``world == 1`` every collective returns its input and :meth:`wrap` returns the module unchanged, so a
    loop written against this class runs alone or in a group. Collective methods must be called by every rank.

    Args:
        rank: 0 .. world - 1; rank 0 leads (logs, validates, checkpoints, exports).
        world: number of processes.
        local_rank: rank on this node.
        device: this process's device; scalars travel on it (nccl has no CPU tensors).
    """

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, device: torch.device | None = None):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device = device if device is not None else torch.device("cpu")

    @property
    def lead(self) -> bool:
        """True on rank 0."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True with more than one process."""
        return self.world > 1

    @property
    def backend(self) -> str | None:
        """The process group's backend (None when alone)."""
        if not self.distributed:
            return None
        import torch.distributed as dist

        return dist.get_backend()

    def wrap(self, model: torch.nn.Module, ignore: Sequence[str] = ()) -> torch.nn.Module:
        """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (the module itself when alone).

        Backward through the wrapper's forward averages the gradients of every parameter except those named in
        ``ignore`` (fully qualified names); those are left to the caller (:meth:`average_grads`). Buffers are
        synced once here and not before each forward: the trainers' buffers do not change while training.
        """
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        if ignore:
            # DDP's reducer names a top-level parameter ".name" (module name "" + "." + name): list both forms.
            names = list(ignore) + [f".{n}" for n in ignore if "." not in n]
            DDP._set_params_and_buffers_to_ignore_for_model(model, names)
        kw = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DDP).parameters
            else {"broadcast_buffers": False}
        )
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=device_ids, **kw)

    def average_grads(self, params) -> None:
        """Replace each parameter's gradient by its mean over the group (one all-reduce of all of them);
        parameters without a gradient are left alone. For what DDP does not average (:meth:`wrap`'s ``ignore``)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:  # copy_ keeps each gradient's own memory format (channels_last)
            g.copy_(flat[offset : offset + g.numel()].view(g.shape))
            offset += g.numel()

    def _scalars(self, values) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64, device=self.device)

    def from_lead(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (its clock and stop flags decide for all)."""
        if not self.distributed:
            return values
        import torch.distributed as dist

        t = self._scalars(values)
        dist.broadcast(t, 0)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any."""
        if not self.distributed:
            return flag
        import torch.distributed as dist

        t = self._scalars([float(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, values: list[float]) -> list[float]:
        """The mean of ``values`` over the group."""
        if not self.distributed:
            return values
        import torch.distributed as dist

        t = self._scalars(values)
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable), in rank order."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        objs = [None] * self.world
        dist.all_gather_object(objs, obj)
        return objs

    def digests(self, model: torch.nn.Module) -> list[str]:
        """Every rank's SHA-256 of ``model``'s parameters, in rank order: all equal while the ranks are in step
        (DDP and :meth:`average_grads` give every rank the same bits)."""
        import hashlib

        h = hashlib.sha256()
        for p in model.parameters():
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        return self.gather(h.hexdigest()[:16])

    def share_weights(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers."""
        if not self.distributed:
            return
        import torch.distributed as dist

        for t in model.state_dict().values():
            dist.broadcast(t, 0)


def exit_with_parent() -> None:
    """End this process as soon as the one that started it is gone (a launcher or torchrun killed, say):
    orphaned ranks would go on training and writing the same run folder beside a resumed run."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


@contextlib.contextmanager
def process_group(device: str | torch.device | None = "auto") -> Iterator[DistGroup]:
    """The group this process trains in, for the duration of the block.

    Under torchrun with more than one process: join the default process group from torchrun's environment
    (``nccl`` when the device is CUDA, else ``gloo``), end with the launcher, and leave the group on exit.
    Otherwise a group of one. ``device`` is resolved by :func:`taskcomp.devices.resolve_device`: ``auto`` and
    ``cuda`` give each rank ``cuda:LOCAL_RANK``.

    Raises:
        DeviceError: a device that does not exist, or one fixed GPU (``cuda:N``) for several processes.
    """
    env = process_group_env(slurm_array=False)
    dev = resolve_device(device)
    if not (env.is_torchrun and env.world > 1):
        yield DistGroup(device=dev)
        return
    if dev.type == "cuda":
        spec = str(device).strip().lower()
        if ":" in spec and int(os.environ.get("LOCAL_WORLD_SIZE", env.world)) > 1:
            raise DeviceError(
                f"--device {spec} would put every process of this node on one GPU: use --device "
                "cuda or auto (each process takes cuda:LOCAL_RANK)"
            )
        torch.cuda.set_device(dev)
    import torch.distributed as dist

    exit_with_parent()
    dist.init_process_group(backend_for(dev))
    try:
        yield DistGroup(env.rank, env.world, env.local_rank, dev)
    finally:
        dist.destroy_process_group()


def record_failure(e: BaseException) -> None:
    """Write ``e`` to the error file torch's launcher gave this process (``TORCHELASTIC_ERROR_FILE``), where the
    launcher (:func:`launch_local`, torchrun) reads why the process failed. A no-op outside such a launcher."""
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    ErrorHandler().record_exception(e)


def _failure_message(err) -> str:
    """``MESSAGE (rank R, ErrorType)`` of the first failed rank of a ChildFailedError."""
    rank, failure = err.get_first_failure()
    msg = failure.message
    if isinstance(msg, dict):
        msg = msg.get("message", "")
    msg = str(msg or "").strip()
    if not msg or msg.startswith("To enable traceback"):
        how = f"exit code {failure.exitcode}" if failure.exitcode >= 0 else f"signal {-failure.exitcode}"
        return f"{how} (rank {rank})"
    kind, sep, text = msg.partition(": ")
    if sep and kind.isidentifier():  # "DataError: image folder not found: ..."
        return f"{text} (rank {rank}, {kind})"
    return f"{msg} (rank {rank})"


def launch_local(nprocs: int, argv: Sequence[str], what: str = "training") -> None:
    """Run ``python -m taskcomp ARGV`` in ``nprocs`` processes on this machine, as ``torchrun --standalone
    --nproc_per_node NPROCS -m taskcomp ARGV`` does (torch's elastic launcher, a c10d rendezvous on a free local
    port, no restarts), and wait for them.

    Raises:
        ValueError: a process failed: one line naming the first failed rank and its error.
        KeyboardInterrupt: the launcher was interrupted (the processes are stopped).
    """
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nprocs,
        run_id=f"taskcomp-{uuid.uuid4().hex}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )
    # The launcher logs each start and, for a failure, a report per rank: the failure is reported once, below.
    quiet = [logging.getLogger(n) for n in ("torch.distributed.elastic", "torch.distributed.launcher")]
    levels = [lg.level for lg in quiet]
    before = os.environ.get(LAUNCHED_ENV)
    os.environ[LAUNCHED_ENV] = "1"
    try:
        for lg in quiet:
            lg.setLevel(logging.CRITICAL)
        elastic_launch(config, sys.executable)("-m", "taskcomp", *argv)
    except ChildFailedError as e:
        raise ValueError(f"a {what} worker failed: {_failure_message(e)}") from None
    except SignalException:
        raise KeyboardInterrupt from None
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
        if before is None:
            os.environ.pop(LAUNCHED_ENV, None)
        else:
            os.environ[LAUNCHED_ENV] = before


# ---------------------------------------------------------------- processes started by their caller
def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for :func:`worker_group`)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def worker_group(rank: int, world: int, port: int) -> Iterator[DistGroup]:
    """Inside a process its caller started itself (``torch.multiprocessing.spawn``, e.g. the training-speed
    bench): join the gloo group of ``world`` processes on ``port`` (ending with the parent); yields this
    process's :class:`DistGroup` on the CPU. Trainers use :func:`process_group` instead."""
    import torch.distributed as dist

    exit_with_parent()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        yield DistGroup(rank, world)
    finally:
        dist.destroy_process_group()
