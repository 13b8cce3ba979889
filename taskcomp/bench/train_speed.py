"""CPU training throughput of a codec config under different step settings.

    python -m taskcomp.bench.train_speed --out results/train_speed.md [--codec sft-small] [--repeats 5]

Each setting times the real training step (:func:`taskcomp.training.codec.rd_loss` +
:func:`taskcomp.training.codec.optimizer_step`, random crops and random training maps) after two warm-up steps and
reports the median step time and the throughput in training pixels per second, which is what decides how far a fixed wall-clock budget gets
(at equal pixels per step, more steps per hour are better only if the batch stays informative).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ..codec.registry import CODEC_CONFIGS, resolve_name
from ..codec.sft import SFTCodec
from ..io import atomic_write
from ..maps import random_training_map
from ..training.codec import optimizer_step, rd_loss, split_params
from ..training.distributed import free_port, worker_group

# (workers, threads, crop, batch, channels_last): the baseline is the first CPU recipe (1, 2, 128, 8, True); each
# group varies one knob around it. The last rows are the 256-px settings of the CPU fine-tuning recipe
# (results/training/configs/train_sft_small_cpu5.yaml): threads against data-parallel worker processes on the same 2 cores.
DEFAULT_SETTINGS = [
    (1, 2, 128, 8, True),
    (1, 2, 128, 8, False),
    (1, 1, 128, 8, True),
    (2, 1, 128, 8, True),
    (1, 2, 64, 32, True),
    (1, 2, 256, 2, True),
    (1, 2, 128, 4, True),
    (1, 2, 128, 16, True),
    (1, 2, 256, 4, True),
    (1, 1, 256, 4, True),
    (2, 1, 256, 4, True),
]


def time_setting(
    codec: str, workers: int, threads: int, crop: int, batch: int, channels_last: bool, repeats: int = 5, seed: int = 0
) -> dict:
    """Median seconds of one training step for one setting (after 2 warm-up steps). With ``workers > 1`` the
    step runs in that many processes that average gradients (as ``taskcomp train`` with ``workers``), each on
    its own ``batch`` crops, and the throughput counts all of them."""
    if workers == 1:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            times = _timed_steps(codec, threads, crop, batch, channels_last, repeats, seed)
        finally:
            torch.set_num_threads(before)
    else:
        import torch.multiprocessing as mp

        with mp.Manager() as manager:
            out = manager.dict()
            mp.spawn(
                _bench_worker,
                nprocs=workers,
                join=True,
                args=(workers, free_port(), out, codec, threads, crop, batch, channels_last, repeats, seed),
            )
            times = out[0]
    step = statistics.median(times)
    return {
        "workers": workers,
        "threads": threads,
        "crop": crop,
        "batch": batch,
        "channels_last": channels_last,
        "step_s": step,
        "steps_per_hour": 3600 / step,
        "mpx_per_s": workers * batch * crop * crop / step / 1e6,
    }


def _bench_worker(rank, world, port, out, codec, threads, crop, batch, channels_last, repeats, seed):
    with worker_group(rank, world, port) as w:
        torch.set_num_threads(threads)
        times = _timed_steps(codec, threads, crop, batch, channels_last, repeats, seed + rank, w)
        if w.lead:
            out[0] = times


def _timed_steps(codec, threads, crop, batch, channels_last, repeats, seed, workers=None) -> list[float]:
    torch.set_flush_denormal(True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SFTCodec(CODEC_CONFIGS[resolve_name(codec)]).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    main, aux = split_params(model)
    opt, aux_opt = torch.optim.Adam(main, lr=1e-4), torch.optim.Adam(aux, lr=1e-3)
    sync = workers.average_grads if workers is not None and workers.world > 1 else None
    times = []
    for i in range(repeats + 2):
        x = torch.rand(batch, 3, crop, crop)
        qmap = torch.cat([random_training_map(crop, crop, rng) for _ in range(batch)])
        if channels_last:
            x, qmap = (t.contiguous(memory_format=torch.channels_last) for t in (x, qmap))
        t0 = time.perf_counter()
        loss, _, _ = rd_loss(model, x, qmap, "mixed")
        optimizer_step(model, loss, opt, aux_opt, main, 1.0, sync)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/train_speed.md")
    ap.add_argument("--codec", default="sft-small")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    import pandas as pd
    from tqdm import tqdm

    rows = [time_setting(args.codec, *s, repeats=args.repeats) for s in tqdm(DEFAULT_SETTINGS, desc="settings")]
    df = pd.DataFrame(rows)
    base = df.iloc[0]["mpx_per_s"]
    df["vs_recipe"] = df["mpx_per_s"] / base
    text = (
        f"# Training throughput of `{args.codec}` on this CPU\n\n"
        f"Command: `python -m taskcomp.bench.train_speed --out {args.out} --codec {args.codec} "
        f"--repeats {args.repeats}`\n\n"
        f"Median of {args.repeats} real training steps (forward `mixed`, RD loss, backward, clip, Adam, aux "
        "step) after 2 warm-up steps; first row = the shipped training recipe. `mpx_per_s`: training pixels "
        "per second (all workers together); `vs_recipe`: throughput relative to the first row. `workers` > 1: "
        "that many processes (`threads` each) averaging gradients every step, as `taskcomp train` does with "
        "`workers`.\n\n" + df.to_markdown(index=False, floatfmt=".3f") + "\n"
    )
    atomic_write(Path(args.out), text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
