"""CPU cost of sft-medium against sft-small: a training step, a map-optimisation step, encode and decode.

    PYTHONPATH=. python experiments/training/medium_speed.py MEDIUM_CHECKPOINT [--data-root DIR] > results/training/medium_speed.md

Training step: `taskcomp.bench.train_speed.time_setting` (the real loss and optimiser step on random crops and
training maps, channels_last, median of 5 after 2 warm-ups) at 8 x 192^2, as one process with 2 threads and as
the CPU recipes run it, 2 data-parallel workers x 1 thread (each worker 8 crops). Map step: forward
(`quantize="ste"`) and backward to the map at 256^2 (the codec's share of a task-aware map step; the task model
comes on top), 1 thread as in the recipes' one-process-per-core runs, random init. Encode / decode: one Kodak
image (768 x 512) at q = 0.5 to and from a .tcz, 2 threads, with trained weights (the shipped sft-small,
MEDIUM_CHECKPOINT for sft-medium), since the entropy coder's time depends on the bitstream. Medians of 5 (3 for
encode / decode) after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from taskcomp.bench.train_speed import time_setting
from taskcomp.bitstream import decode, encode
from taskcomp.codec import bits_from_likelihoods, create_codec
from taskcomp.codec.sft import SFTCodec
from taskcomp.codec.zoo import CODEC_CONFIGS
from taskcomp.datasets import data_root
from taskcomp.io import image_to_tensor, load_image


def median_time(fn, n: int = 5) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("medium_checkpoint", help="an sft-medium codec file (e.g. from taskcomp widen-codec)")
    ap.add_argument("--data-root")
    a = ap.parse_args()
    torch.set_flush_denormal(True)
    kodim = image_to_tensor(load_image(data_root(a.data_root) / "kodak" / "kodim01.png"))
    print(
        "| codec | params | train step 8 x 192^2, 1 process x 2 threads (s) | train step, 2 workers x 1 thread "
        "(s) | map step 256^2, 1 thread (s) | encode / decode Kodak (s) |"
    )
    print("|---|---|---|---|---|---|")
    for name in ("sft-small", "sft-medium"):
        steps = [time_setting(name, workers, threads, 192, 8, True)["step_s"] for workers, threads in ((1, 2), (2, 1))]

        torch.set_num_threads(1)
        torch.manual_seed(0)
        net = SFTCodec(CODEC_CONFIGS[name]).eval()
        params = sum(p.numel() for p in net.parameters())
        xi = torch.rand(1, 3, 256, 256)

        def map_step():
            qm = torch.full((1, 1, 256, 256), 0.3, requires_grad=True)
            out = net(xi, qm, quantize="ste")
            (bits_from_likelihoods(out["likelihoods"]).sum() + torch.mean((out["x_hat"] - xi) ** 2)).backward()

        t_map = median_time(map_step)

        torch.set_num_threads(2)
        net = create_codec(name, checkpoint=a.medium_checkpoint if name == "sft-medium" else None)
        qk = torch.full((1, 1, *kodim.shape[-2:]), 0.5)
        data = encode(net, kodim, qk)
        t_enc = median_time(lambda: encode(net, kodim, qk), 3)
        t_dec = median_time(lambda: decode(net, data), 3)
        print(
            f"| {name} | {params / 1e6:.2f}M | {steps[0]:.2f} | {steps[1]:.2f} | {t_map:.3f} | "
            f"{t_enc:.2f} / {t_dec:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
