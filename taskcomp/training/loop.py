"""Training-loop pieces any trainer reuses: progress and learning-rate schedule, batch prefetching, resumable
state (with one random stream per data-parallel rank) and the fresh-run check."""

from __future__ import annotations

import io
import math
import queue
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..io import atomic_write
from .distributed import DistGroup

__all__ = ["progress", "cosine_lr", "Prefetcher", "save_state", "check_fresh", "rng_streams", "restore_rng"]


def progress(step: int, steps: int, elapsed_s: float, budget_minutes: float | None = None) -> float:
    """Training progress in [0, ...): the larger of ``step / steps`` and the spent share of a wall-clock
    budget; training ends at 1."""
    p = step / steps if steps > 0 else 1.0
    if budget_minutes:
        p = max(p, elapsed_s / (budget_minutes * 60))
    return p


def cosine_lr(
    step: int, progress: float, lr: float, warmup_steps: int = 0, decay_start: float = 0.75, final_lr: float = 0.0
) -> float:
    """Linear warm-up over ``warmup_steps``, constant ``lr``, then cosine decay from progress ``decay_start``
    to ``final_lr`` at progress 1."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if progress <= decay_start:
        return lr
    t = min(1.0, (progress - decay_start) / max(1e-9, 1 - decay_start))
    return final_lr + 0.5 * (lr - final_lr) * (1 + math.cos(math.pi * t))


class Prefetcher:
    """Makes batches with ``make()`` in a thread, ``depth`` ahead of the training step.

    An exception raised by ``make()`` stops the thread and is raised again by the :meth:`next` call that would
    have received the batch, so a bad configuration or image fails the training instead of leaving it waiting.

    Args:
        make: returns the next batch; called from the prefetch thread only, in order.
        depth: batches kept ready.
    """

    def __init__(self, make: Callable[[], Any], depth: int = 3):
        self._make_batch = make
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                item = (True, self._make_batch())
            except BaseException as e:  # handed to the consumer: a dead thread would leave next() waiting
                item = (False, e)
            while not self._stop.is_set():
                try:
                    self.q.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if not item[0]:
                return

    def next(self):
        """The next batch (waits for it).

        Raises:
            Exception: whatever ``make()`` raised making this batch.
        """
        ok, item = self.q.get()
        if not ok:
            self._stop.set()
            raise item
        return item

    def close(self):
        """Stop the thread (the batches made ahead are dropped)."""
        self._stop.set()
        self.thread.join(timeout=5)


def save_state(path: Path, state: dict) -> None:
    """``torch.save`` ``state`` to ``path`` atomically (a crash leaves the previous checkpoint)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def check_fresh(out: Path, resume: bool, state_name: str = "last.pth") -> None:
    """Refuse to start a new run over an existing one's state unless resuming.

    Raises:
        FileExistsError: ``out/state_name`` exists and ``resume`` is false.
    """
    if not resume and (out / state_name).is_file():
        raise FileExistsError(f"{out / state_name} exists: pass --resume to continue it, or choose another out folder")


def rng_streams(group: DistGroup, rng: np.random.Generator) -> dict:
    """The random streams of a resumable state: rank 0's as ``rng`` / ``torch_rng`` (what a one-process run
    reads) and, in a group, every rank's as ``rng_workers`` (collective: all ranks must call it)."""
    st = {"rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}
    if group.distributed:
        st["rng_workers"] = group.gather((rng.bit_generator.state, torch.get_rng_state()))
    if not group.lead:  # rank 0's own streams are what the state stores
        st["rng"], st["torch_rng"] = st["rng_workers"][0]
    return st


def restore_rng(state: dict, group: DistGroup, rng: np.random.Generator, seed: int, step: int) -> np.random.Generator:
    """This rank's random streams from a state of :func:`rng_streams`, saved with any number of ranks: a rank
    the state did not have gets fresh streams (seeded by ``seed``, its rank and ``step``). Returns the numpy
    generator to use (``rng`` itself when restored); the torch CPU generator is set in place."""
    streams = state.get("rng_workers") or [(state["rng"], state["torch_rng"])]
    if group.rank < len(streams):
        rng.bit_generator.state = streams[group.rank][0]
        torch.set_rng_state(streams[group.rank][1].cpu())  # map_location may have moved it to the device
        return rng
    torch.manual_seed(seed * 1000 + group.rank + step)
    return np.random.default_rng([seed, group.rank, step])


class CsvLog:
    """A training run's CSV log, appended step by step and cut back to the checkpoint on resume.

    A run killed after its last checkpoint has logged steps that the resumed run trains again; opening the log
    at ``resume_step`` drops those rows so that every step is logged once. Write with :meth:`row`.

    Args:
        path: the CSV file (created with ``columns`` as its header when absent).
        columns: column names; the first must be ``step``.
        resume_step: the step the run continues from (rows after it are dropped); None for a fresh run.
    """

    def __init__(self, path: Path, columns: list[str], resume_step: int | None = None):
        import csv

        path = Path(path)
        header = ",".join(columns)
        if resume_step is not None and path.is_file():
            lines = path.read_text().splitlines(keepends=True)
            n0 = len(lines)
            if lines and lines[0].strip() != header:  # no header (a run killed before its first flush)
                lines = [header + "\n"] + lines
            kept = lines[:1] + [ln for ln in lines[1:] if ln.strip() and _step_of(ln) <= resume_step]
            if len(kept) != n0 or kept[:1] != path.read_text().splitlines(keepends=True)[:1]:
                atomic_write(path, "".join(kept).encode())
        elif path.is_file():  # a fresh run: a log left by a run that never checkpointed is not continued
            path.unlink()
        new = not path.is_file() or path.stat().st_size == 0
        self.f = open(path, "a", newline="")
        self.writer = csv.writer(self.f)
        if new:
            self.writer.writerow(columns)

    def row(self, values: list) -> None:
        self.writer.writerow(values)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.flush()
        self.f.close()


def _step_of(line: str) -> float:
    try:
        return float(line.split(",", 1)[0])
    except ValueError:  # a line cut by a kill
        return math.inf
