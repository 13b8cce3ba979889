"""Devices and the process group a command runs in.

``resolve_device("auto")`` gives ``cuda:LOCAL_RANK`` when CUDA is available (``LOCAL_RANK`` is set by torchrun,
0 otherwise), else the CPU. :func:`process_group_env` reads the rank and world size a job was started with:
torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, else a Slurm job array's ``SLURM_ARRAY_TASK_ID`` /
``SLURM_ARRAY_TASK_COUNT``, else a single process. Entropy coding always runs on the CPU.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

__all__ = [
    "DeviceError",
    "resolve_device",
    "ProcessGroupEnv",
    "process_group_env",
    "describe_device",
    "MEMORY_FORMATS",
    "resolve_memory_format",
    "use_memory_format",
]


class DeviceError(ValueError):
    """A device the user asked for that does not exist or cannot be used."""


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (or a :class:`torch.device`) into a usable device.

    ``auto`` (and None) is ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``; ``cuda`` alone also takes
    ``LOCAL_RANK`` under torchrun, so each rank of a node uses its own GPU.

    Raises:
        DeviceError: an unknown spec, CUDA asked for but not available, or a GPU index out of range.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", local % torch.cuda.device_count())
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} asked for, but CUDA is not available here (use --device cpu or auto)")
        n = torch.cuda.device_count()
        if spec == "cuda":
            return torch.device("cuda", local % n)
        try:
            idx = int(spec.split(":", 1)[1])
        except ValueError:
            raise DeviceError(f"bad device {spec!r}: expected auto, cpu, cuda or cuda:N") from None
        if not 0 <= idx < n:
            raise DeviceError(f"device {spec!r} does not exist: this machine has {n} GPU(s) (cuda:0..cuda:{n - 1})")
        return torch.device("cuda", idx)
    raise DeviceError(f"bad device {spec!r}: expected auto, cpu, cuda or cuda:N")


def describe_device(device: torch.device) -> str:
    """One-line name of a device for the first line a command prints, e.g. ``cuda:0 (NVIDIA H200)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    n = torch.get_num_threads()
    return f"cpu ({n} thread{'s' if n != 1 else ''})"


@dataclass(frozen=True)
class ProcessGroupEnv:
    """Where this process sits in a multi-process job.

    Attributes:
        rank: 0 .. world - 1.
        world: number of processes (shards) in the job.
        local_rank: rank on this node (selects ``cuda:local_rank``).
        source: ``torchrun``, ``slurm-array`` or ``single``.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    source: str = "single"

    @property
    def is_torchrun(self) -> bool:
        return "torchrun" in self.source


def process_group_env(environ: dict[str, str] | None = None, slurm_array: bool = True) -> ProcessGroupEnv:
    """Read the rank and world size from torchrun's variables, else a Slurm job array's, else one process.

    A Slurm array's shards are independent jobs (no process group): each writes its own records. An array task
    that is itself a torchrun job splits its share among its ranks (rank = task position x WORLD_SIZE + RANK).
    ``slurm_array=False`` ignores arrays (training: one job is one process group).

    Raises:
        ValueError: inconsistent variables (rank outside 0 .. world - 1, or not integers).
    """
    env = os.environ if environ is None else environ
    try:
        rank, world, local, source = 0, 1, 0, "single"
        if "WORLD_SIZE" in env and "RANK" in env:
            rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
            local = int(env.get("LOCAL_RANK", rank))
            source = "torchrun"
            if not (world >= 1 and 0 <= rank < world):
                raise ValueError(f"rank {rank} is outside 0..{world - 1} (torchrun)")
        if slurm_array and "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            # Arrays may start at any index and step (--array=1-15:2): shard by position in the array. Each
            # array task may itself be a torchrun job: its ranks split that task's share.
            first, step = int(env.get("SLURM_ARRAY_TASK_MIN", "0")), int(env.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
            pos, count = (int(env["SLURM_ARRAY_TASK_ID"]) - first), int(env["SLURM_ARRAY_TASK_COUNT"])
            if pos % step or not 0 <= pos // step < count:
                raise ValueError(
                    f"Slurm array task {env['SLURM_ARRAY_TASK_ID']} is not in a regular array of "
                    f"{count} tasks from {first} by {step}: use --array=A-B[:S], or --shard i/n"
                )
            rank, world = (pos // step) * world + rank, count * world
            source = "slurm-array" if source == "single" else "slurm-array+torchrun"
    except ValueError as e:
        if "must be integers" in str(e) or "invalid literal" in str(e):
            raise ValueError("RANK / WORLD_SIZE / LOCAL_RANK (or SLURM_ARRAY_TASK_*) must be integers") from None
        raise
    return ProcessGroupEnv(rank, world, local, source)


#: Accepted ``memory_format`` settings of map optimisation (:class:`taskcomp.optimize.MapOptimizer`).
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def resolve_memory_format(spec: str, device: torch.device | str) -> torch.memory_format:
    """The memory format of a setting in :data:`MEMORY_FORMATS` on ``device``.

    ``auto`` is channels_last (NHWC) on the CPU, where oneDNN's convolutions run faster in it (measured by
    ``python -m taskcomp.bench.map_speed``: results/map_speed/), and contiguous (NCHW) elsewhere, where it was
    not measured.

    Raises:
        ValueError: one line for an unknown setting.
    """
    if spec not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {spec!r}")
    if spec == "auto":
        spec = "channels_last" if torch.device(device).type == "cpu" else "contiguous"
    return torch.channels_last if spec == "channels_last" else torch.contiguous_format


@contextmanager
def use_memory_format(modules: Iterable[torch.nn.Module], memory_format: torch.memory_format) -> Iterator[None]:
    """Within the block, every 4-D parameter and buffer of ``modules`` (and their submodules) is laid out in
    ``memory_format``; on leaving, each gets back its very own tensor (same storage, same version counter), so
    nothing outside the block sees a change, and caches keyed on storage (e.g. the codec's exact hyper-decoder,
    :mod:`taskcomp.codec.exact`) stay valid. Values are never changed; only the layout within the block.

    This is ``nn.Module.to(memory_format=...)`` made temporary (PyTorch's channels_last tutorial), for models
    shared with code that must not change: the codec's encoder and decoder run outside such a block. Weights
    are meant to be read, not written, inside it: an in-place write to a re-laid tensor is not carried back
    (map optimisation only reads the frozen models).
    """
    if memory_format is torch.contiguous_format:
        yield
        return
    saved: list[tuple[dict, str, torch.Tensor]] = []
    seen: set[int] = set()
    copies: dict[int, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for root in modules:
                for mod in root.modules():
                    if id(mod) in seen:
                        continue
                    seen.add(id(mod))
                    for table in (mod._parameters, mod._buffers):
                        for name, t in table.items():
                            if t is None or t.dim() != 4 or t.is_contiguous(memory_format=memory_format):
                                continue
                            if isinstance(t, torch.nn.Parameter):
                                saved.append((table, name, t.data))
                                t.data = t.data.contiguous(memory_format=memory_format)
                            else:  # a buffer shared by two modules gets one copy, shared alike
                                saved.append((table, name, t))
                                if id(t) not in copies:
                                    copies[id(t)] = t.contiguous(memory_format=memory_format)
                                table[name] = copies[id(t)]
        yield
    finally:
        with torch.no_grad():
            for table, name, original in reversed(saved):
                t = table[name]
                if isinstance(t, torch.nn.Parameter):
                    t.data = original
                else:
                    table[name] = original
