"""Where does the shipped codec's top end stop? Quantisation against the transforms' own ceiling.

    PYTHONPATH=. python experiments/training/top_end.py [--checkpoint FILE] [--data-root DIR] [--images N]

Per Kodak image and level q (uniform map), three decodes of the same encoder output:
  - ``rounded``: y rounded around the hyper-prior means (what the bitstream decodes to; estimated bpp beside it);
  - ``continuous``: y not quantised at all (z still rounded). Its PSNR is the ceiling of the analysis and
    synthesis transforms at that q: no amount of rate spent on y can beat it without changing the transforms;
  - the published table's PSNR at that q, for scale.
Plus how many of the M latent channels carry 99% of y's estimated bits at that q (capacity in use).
With ``--fit-y STEPS``, also the synthesis transform's own ceiling at q = 1: on a 256-px centre crop of each
image, y is optimised directly (Adam, continuous, z as encoded) to minimise the decoder's MSE. If the fitted y
decodes far better than the encoder's y, the analysis transform is the limit; if not, the synthesis is.
A diagnostic for planning the next training stage, not a benchmark.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from taskcomp.bench.metrics import psnr
from taskcomp.bitstream import weights_id
from taskcomp.codec import create_codec
from taskcomp.codec.sft import pad_to_multiple
from taskcomp.datasets import data_root
from taskcomp.io import image_to_tensor, load_image, tensor_to_image

PUBLISHED_PSNR = {0.0: 27.11, 0.5: 32.11, 1.0: 37.47}


def psnr8(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """RGB PSNR of the 8-bit output, as `taskcomp eval-codec` measures it."""
    return psnr(tensor_to_image(x), tensor_to_image(x_hat))


@torch.no_grad()
def measure(codec, x: torch.Tensor, q: float) -> dict[str, float]:
    H, W = x.shape[-2:]
    qmap = torch.full((1, 1, H, W), q)
    xp, mp = pad_to_multiple(x), pad_to_multiple(qmap)
    y = codec.g_a(xp, mp)
    z = codec.h_a(y, mp)
    med = codec.z_medians()
    z_hat = torch.round(z - med) + med
    scales, means = codec.h_s(z_hat).chunk(2, 1)
    y_hat = torch.round(y - means) + means
    y_bits = -torch.log2(codec.y_likelihood(y_hat, scales, means))
    z_bits = -torch.log2(codec.z_likelihood(z_hat)).sum()
    per_channel = y_bits.sum(dim=(0, 2, 3)).sort(descending=True).values
    share = per_channel.cumsum(0) / per_channel.sum()
    return {
        "bpp": float((y_bits.sum() + z_bits) / (H * W)),
        "psnr_rounded": psnr8(x, codec.g_s(y_hat, z_hat)[..., :H, :W]),
        "psnr_continuous": psnr8(x, codec.g_s(y, z_hat)[..., :H, :W]),
        "channels_99pct": int((share < 0.99).sum().item()) + 1,
    }


def fit_y(codec, x: torch.Tensor, q: float, steps: int, lr: float = 0.05) -> tuple[float, float]:
    """PSNR of g_s(encoder's y) and of g_s(y fitted by gradient descent), both unquantised, z as encoded."""
    qmap = torch.full((1, 1, *x.shape[-2:]), q)
    with torch.no_grad():
        y0 = codec.g_a(x, qmap)
        z = codec.h_a(y0, qmap)
        med = codec.z_medians()
        z_hat = torch.round(z - med) + med
        start = psnr8(x, codec.g_s(y0, z_hat))
    for p in codec.parameters():
        p.requires_grad_(False)
    y = y0.clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((codec.g_s(y, z_hat) - x) ** 2)
        loss.backward()
        opt.step()
    with torch.no_grad():
        fitted = psnr8(x, codec.g_s(y, z_hat))
    return start, fitted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="codec file (default: the shipped sft-small weights)")
    ap.add_argument("--data-root")
    ap.add_argument("--images", type=int, default=8, help="every (24 // N)-th Kodak image")
    ap.add_argument("--fit-y", type=int, default=0, metavar="STEPS", help="also fit y to the decoder (q = 1)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    codec = create_codec("sft-small", checkpoint=a.checkpoint).eval()
    print(
        f"codec {codec.checkpoint_info['codec']}, weights {weights_id(codec).hex()}, M = {codec.config.M} latent channels"
    )
    names = [f"kodim{i:02d}" for i in range(1, 25)][:: max(1, 24 // a.images)][: a.images]
    rows = []
    for name in names:
        x = image_to_tensor(load_image(data_root(a.data_root) / "kodak" / f"{name}.png"))
        for q in PUBLISHED_PSNR:
            rows.append({"image": name, "q": q, **measure(codec, x, q)})
    print(f"\n{len(names)} Kodak images ({', '.join(names)}), uniform maps; estimated bpp of rounded latents\n")
    print(
        "| q | bpp | PSNR rounded y (bitstream) | PSNR continuous y (transform ceiling) | published PSNR "
        "| channels with 99% of y bits |"
    )
    print("|---|---|---|---|---|---|")
    for q, pub in PUBLISHED_PSNR.items():
        r = [row for row in rows if row["q"] == q]
        mean = lambda k: float(np.mean([row[k] for row in r]))  # noqa: E731
        print(
            f"| {q:g} | {mean('bpp'):.3f} | {mean('psnr_rounded'):.2f} | {mean('psnr_continuous'):.2f} | "
            f"{pub:.2f} | {mean('channels_99pct'):.0f} of {codec.config.M} |"
        )
    if a.fit_y:
        print(f"\nq = 1, 256-px centre crops, y unquantised; y fitted to the decoder with {a.fit_y} Adam steps\n")
        print("| image | PSNR g_s(encoder's y) | PSNR g_s(fitted y) |")
        print("|---|---|---|")
        fits = []
        for name in names:
            x = image_to_tensor(load_image(data_root(a.data_root) / "kodak" / f"{name}.png"))
            H, W = x.shape[-2:]
            crop = x[..., (H - 256) // 2 : (H - 256) // 2 + 256, (W - 256) // 2 : (W - 256) // 2 + 256]
            fits.append(fit_y(codec, crop, 1.0, a.fit_y))
            print(f"| {name} | {fits[-1][0]:.2f} | {fits[-1][1]:.2f} |")
        print(f"| mean | {np.mean([f[0] for f in fits]):.2f} | {np.mean([f[1] for f in fits]):.2f} |")


if __name__ == "__main__":
    main()
