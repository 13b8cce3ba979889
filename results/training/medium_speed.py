"""CPU cost of sft-medium against sft-small: a training step, a map-optimisation step, encode and decode.

    PYTHONPATH=. python results/training/medium_speed.py MEDIUM_CHECKPOINT [--data-root DIR] > results/training/medium_speed.md

Training step: forward (`quantize="mixed"`), loss, backward, Adam step at 8 x 192^2, channels_last, 2 threads.
Map step: forward (`quantize="ste"`) and backward to the map at 256^2 (the codec's share of a task-aware map
step; the task model comes on top), 1 thread as in the recipes' one-process-per-core runs. Encode / decode:
one Kodak image (768 x 512) at q = 0.5 to and from a .tcz, 2 threads, with trained weights (the shipped sft-small,
MEDIUM_CHECKPOINT for sft-medium), since the entropy coder's time depends on the bitstream. Training and map steps
use a random init (their cost does not depend on the weights). Medians of 5 (3 for encode / decode) after one
warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from taskcomp.bitstream import decode, encode
from taskcomp.codec import create_codec
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
    print("| codec | params | train step 8 x 192^2 (s) | map step 256^2, 1 thread (s) | encode / decode Kodak (s) |")
    print("|---|---|---|---|---|")
    for name in ("sft-small", "sft-medium"):
        torch.manual_seed(0)
        net = SFTCodec(CODEC_CONFIGS[name])
        params = sum(p.numel() for p in net.parameters())

        torch.set_num_threads(2)
        net.train().to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(net.parameters(), lr=1e-5)
        x = torch.rand(8, 3, 192, 192).contiguous(memory_format=torch.channels_last)
        m = torch.rand(8, 1, 192, 192).contiguous(memory_format=torch.channels_last)

        def train_step():
            out = net(x, m, quantize="mixed")
            bits = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values()) / x[:, 0].numel()
            loss = bits + 255**2 * 0.01 * torch.mean((out["x_hat"] - x) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()

        t_train = median_time(train_step)

        torch.set_num_threads(1)
        net.eval().to(memory_format=torch.contiguous_format)
        xi = torch.rand(1, 3, 256, 256)

        def map_step():
            qm = torch.full((1, 1, 256, 256), 0.3, requires_grad=True)
            out = net(xi, qm, quantize="ste")
            bits = sum(-torch.log2(lk).sum() for lk in out["likelihoods"].values())
            (bits + torch.mean((out["x_hat"] - xi) ** 2)).backward()

        t_map = median_time(map_step)

        torch.set_num_threads(2)
        net = create_codec(name, checkpoint=a.medium_checkpoint if name == "sft-medium" else None)
        qk = torch.full((1, 1, *kodim.shape[-2:]), 0.5)
        data = encode(net, kodim, qk)
        t_enc = median_time(lambda: encode(net, kodim, qk), 3)
        t_dec = median_time(lambda: decode(net, data), 3)
        print(f"| {name} | {params / 1e6:.2f}M | {t_train:.2f} | {t_map:.3f} | {t_enc:.2f} / {t_dec:.2f} |", flush=True)


if __name__ == "__main__":
    main()
