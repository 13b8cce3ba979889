"""Does more CPU training help? Kodak real bpp of a longer-trained context codec against sft-small.

    python experiments/entropy_models/longer_training.py runs/sft-small-ckbd-gmm/codec.pth sft-small-ckbd-gmm

Encodes the 24 Kodak images at the q levels of kodak/records.shard*.jsonl with the given checkpoint (real file
sizes) and compares with sft-small's points there. The frozen parts are sft-small's, so the decoded pixels, hence
PSNR, are sft-small's (checked on the first image); BD-rate is then over sft-small's PSNR values.
Writes kodak/longer_training.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from taskcomp.bench.metrics import bd_rate, bpp_of_bytes
from taskcomp.bitstream import decode, encode
from taskcomp.codec.zoo import create_codec
from taskcomp.datasets import kodak_paths
from taskcomp.io import image_to_tensor, load_image, tensor_to_image
from taskcomp.maps import uniform_map

HERE = Path(__file__).resolve().parents[2] / "results" / "entropy_models" / "kodak"  # kodak_rd.py's records


def main() -> None:
    ckpt, name = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    recs = [json.loads(l) for f in sorted(HERE.glob("records.shard*.jsonl")) for l in f.read_text().splitlines()]
    base = {(r["image"], r["q"]): r for r in recs if r["method"] == "sft-small"}
    shipped = {(r["image"], r["q"]): r for r in recs if r["method"] == name}
    codec = create_codec(name, checkpoint=ckpt)
    ref_codec = create_codec("sft-small")
    rows = []
    for k, p in enumerate(kodak_paths()):
        img = load_image(p)
        x = image_to_tensor(img)
        for q in sorted({q for (i, q) in base if i == p.name}):
            qmap = uniform_map(*img.shape[:2], q)
            with torch.inference_mode():
                data = encode(codec, x, qmap)
                if k == 0:
                    same = np.array_equal(
                        tensor_to_image(decode(codec, data, synthesis="float32")),
                        tensor_to_image(decode(ref_codec, encode(ref_codec, x, qmap), synthesis="float32")),
                    )
                    assert same, "decoded pixels differ from sft-small's"
            rows.append(
                {
                    "image": p.name,
                    "q": q,
                    "bpp": bpp_of_bytes(len(data), *img.shape[:2]),
                    "bpp_sft_small": base[(p.name, q)]["bpp"],
                    "bpp_shipped": shipped[(p.name, q)]["bpp"],
                    "psnr": base[(p.name, q)]["psnr"],
                }
            )
    qs = sorted({r["q"] for r in rows})
    mean = {
        c: [float(np.mean([r[c] for r in rows if r["q"] == q])) for q in qs]
        for c in ("bpp", "bpp_sft_small", "bpp_shipped", "psnr")
    }
    out = {
        "checkpoint": ckpt,
        "weights": codec.checkpoint_info["hash"][:16],
        "steps": codec.checkpoint_info["meta"].get("steps"),
        "q": qs,
        "mean": mean,
        "bd_rate_vs_sft_small_percent": round(
            bd_rate(mean["bpp_sft_small"], mean["psnr"], mean["bpp"], mean["psnr"]), 2
        ),
        "bd_rate_shipped_vs_sft_small_percent": round(
            bd_rate(mean["bpp_sft_small"], mean["psnr"], mean["bpp_shipped"], mean["psnr"]), 2
        ),
    }
    (HERE / "longer_training.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
