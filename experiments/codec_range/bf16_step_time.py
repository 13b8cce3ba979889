"""Seconds per training step of sft-small (8 x 192^2 crops, one thread) in float32 and under bf16 autocast, with
and without channels_last, on the same batch.

    python experiments/codec_range/bf16_step_time.py fp32-cl bf16-cl fp32
"""

import sys
import time

import numpy as np
import torch

from taskcomp.codec import create_codec
from taskcomp.maps import random_training_map
from taskcomp.training.codec import rd_loss, split_params


def main(modes: list[str]) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.rand(8, 3, 192, 192)
    q = torch.cat([random_training_map(192, 192, rng) for _ in range(8)])
    for mode in modes:
        model = create_codec("sft-small").train()
        xx, qq = x, q
        if "cl" in mode:
            model = model.to(memory_format=torch.channels_last)
            xx, qq = (t.contiguous(memory_format=torch.channels_last) for t in (x, q))
        opt = torch.optim.Adam(split_params(model)[0], lr=1e-5)
        times = []
        for _ in range(6):
            t = time.time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in mode):
                loss, _, _ = rd_loss(model, xx, qq)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.time() - t)
        print(f"{mode}: {sorted(times[1:])[2]:.2f} s per step (median of 5 after one warm-up)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["fp32-cl", "bf16-cl", "fp32"])
