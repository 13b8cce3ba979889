"""Kodak RD of the context / mixture entropy models beside sft-small, JPEG, WebP and the published SFT table.

    python experiments/entropy_models/kodak_rd.py --threads 1 --shard 0/2 &
    python experiments/entropy_models/kodak_rd.py --threads 1 --shard 1/2; wait
    python experiments/entropy_models/kodak_rd.py --summarize-only

Every point is a real .tcz file (bpp = file size). The context codecs share sft-small's frozen transforms,
quantisation and hyper-decoder, so their decoded image must be bit-identical to sft-small's decode of its own
file: each point records that (``same_pixels_as_sft_small``), and PSNR comes from each codec's own decode.
Images are interleaved (each image: every codec in turn) so that load changes on this shared CPU hit all
codecs alike. Decoding in the sweep uses the float32 synthesis (the fast CPU path; the entropy decoding,
which is what differs between codecs, is the same either way); the serial raster-scan codecs decode only the
q = 0.5 files (their decode takes ~10 s an image) and take PSNR from the equality with sft-small's pixels,
which those points check. Then every codec's q = 0.5 files are decoded in a fresh process, one thread,
float32 synthesis, and compared with the encoding process's forward pass (round mode).

Records: results/entropy_models/kodak/records.shard*.jsonl (resumable); summary.json, rd_table.md, rd_psnr.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from taskcomp.bench.baselines import PILLOW_CODECS, pillow_roundtrip
from taskcomp.bench.metrics import bd_rate, bpp_of_bytes, psnr
from taskcomp.bench.published import PUBLISHED_SFT_KODAK
from taskcomp.bitstream import decode, encode
from taskcomp.codec.zoo import create_codec
from taskcomp.datasets import kodak_paths
from taskcomp.io import image_to_tensor, load_image, save_image, tensor_to_image
from taskcomp.maps import uniform_map

OUT = Path(__file__).resolve().parents[2] / "results" / "entropy_models" / "kodak"
CODECS = ["sft-small", "sft-small-ckbd", "sft-small-ckbd-gmm", "sft-small-ar", "sft-small-ar-gmm"]
SERIAL = {"sft-small-ar", "sft-small-ar-gmm"}
ROUNDTRIP_Q = 0.5


def _checkpoint(name: str) -> str | None:
    """Shipped weights, else the training run's export (runs/NAME/codec.pth)."""
    from taskcomp.codec.zoo import shipped_checkpoint

    if shipped_checkpoint(name):
        return None
    p = Path("runs") / name / "codec.pth"
    if not p.is_file():
        raise SystemExit(f"no weights for {name}: neither shipped nor {p}")
    return str(p)


def sweep(qualities: list[float], data_root: str | None, limit: int | None = None, shard: str = "0/1") -> None:
    from tqdm import tqdm

    OUT.mkdir(parents=True, exist_ok=True)
    i, n = (int(v) for v in shard.split("/"))
    rec_path = OUT / f"records.shard{i}of{n}.jsonl"
    done = set()
    if rec_path.is_file():
        for line in rec_path.read_text().splitlines():
            r = json.loads(line)
            done.add((r["image"], r["method"], r["setting"]))
    codecs = {n: create_codec(n, checkpoint=_checkpoint(n)) for n in CODECS}
    weights = {n: c.checkpoint_info["hash"][:16] for n, c in codecs.items()}
    images = kodak_paths(data_root)[:limit][i::n]
    rt = OUT / "roundtrip"
    rt.mkdir(exist_ok=True)
    with open(rec_path, "a") as f, tqdm(total=len(images), desc="kodak images") as bar:
        for p in images:
            img = load_image(p)
            H, W = img.shape[:2]
            x = image_to_tensor(img)
            for b in PILLOW_CODECS:
                for qq in PILLOW_CODECS[b][1]:
                    key = (p.name, b, f"quality={qq}")
                    if key in done:
                        continue
                    dec, n, te, td = pillow_roundtrip(img, b, qq)
                    f.write(
                        json.dumps(
                            {
                                "image": p.name,
                                "method": b,
                                "setting": key[2],
                                "bpp": bpp_of_bytes(n, H, W),
                                "psnr": psnr(img, dec),
                                "enc_s": te,
                                "dec_s": td,
                            }
                        )
                        + "\n"
                    )
            for q in qualities:
                if all((p.name, n, f"q={q:g}") in done for n in CODECS):
                    continue
                qmap = uniform_map(H, W, q)
                ref = None  # sft-small's decoded pixels at this q
                for name, codec in codecs.items():
                    key = (p.name, name, f"q={q:g}")
                    keep = abs(q - ROUNDTRIP_Q) < 1e-9
                    if key in done and name != "sft-small":
                        continue
                    with torch.inference_mode():
                        t0 = time.perf_counter()
                        data, lik = encode(codec, x, qmap, return_likelihoods=True)
                        t1 = time.perf_counter()
                        dec_s, dec = None, None
                        if name not in SERIAL or keep:
                            dec = tensor_to_image(decode(codec, data, synthesis="float32"))
                            dec_s = time.perf_counter() - t1
                        fwd = tensor_to_image(codec(x, qmap, quantize="round")["x_hat"]) if keep else None
                    if name == "sft-small":
                        ref = dec
                        if key in done:
                            continue
                    rec = {
                        "image": p.name,
                        "method": name,
                        "setting": key[2],
                        "q": q,
                        "weights": weights[name],
                        "bpp": bpp_of_bytes(len(data), H, W),
                        "bpp_est": float(sum((-torch.log2(v)).sum() for v in lik.values())) / (H * W),
                        "enc_s": t1 - t0,
                        "dec_s": dec_s,
                    }
                    if dec is not None:
                        rec["psnr"] = psnr(img, dec)
                        rec["same_pixels_as_sft_small"] = bool(np.array_equal(dec, ref))
                    else:
                        rec["psnr"] = psnr(img, ref)  # equal pixels: checked on the q = 0.5 points
                    if keep:
                        stem = f"{p.stem}.{name}"
                        (rt / f"{stem}.tcz").write_bytes(data)
                        save_image(fwd, rt / f"{stem}.forward.png")
                        rec["fwd_equal_dec_float32"] = bool(np.array_equal(fwd, dec))
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
            bar.update(1)


def fresh_decode() -> dict:
    """Decode every codec's q = 0.5 files in fresh processes (one thread each, two at a time, float32 synthesis:
    the forward pass's arithmetic) and compare with the encoding process's forward pass."""
    jobs = {}
    for name in CODECS:
        files = sorted((OUT / "roundtrip").glob(f"kodim*.{name}.tcz"))
        dst = OUT / "roundtrip" / "decoded" / name
        args = ["--codec", name, "--device", "cpu", "--synthesis", "float32"]
        args += ["--checkpoint", c] if (c := _checkpoint(name)) else []
        jobs[name] = (
            files,
            dst,
            [sys.executable, "-m", "taskcomp.cli", "decompress", *map(str, files), "-o", str(dst), *args],
        )
    rows, running = {}, []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pending = list(jobs)
    while pending or running:
        while pending and len(running) < 2:
            name = pending.pop(0)
            running.append(
                (
                    name,
                    time.time(),
                    subprocess.Popen(jobs[name][2], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
                )
            )
        time.sleep(1)
        for item in list(running):
            name, t0, proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            files, dst, _ = jobs[name]
            if proc.returncode != 0:
                raise SystemExit(f"fresh decode of {name} failed: {proc.stderr.read().strip().splitlines()[-1]}")
            diffs = []
            for f in files:
                stem = f.name[: -len(".tcz")]
                a, b = load_image(dst / f"{stem}.png"), load_image(f.with_name(f"{stem}.forward.png"))
                diffs.append(int(np.abs(a.astype(int) - b.astype(int)).max()))
            rows[name] = {
                "files": len(files),
                "bit_identical_to_forward": sum(d == 0 for d in diffs),
                "max_abs_diff_vs_forward": max(diffs) if diffs else None,
                "seconds_per_image_1_thread": round((time.time() - t0) / max(len(files), 1), 2),
            }
    return {n: rows[n] for n in CODECS}


def summarize(fresh: dict | None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    recs = [json.loads(l) for f in sorted(OUT.glob("records.shard*.jsonl")) for l in f.read_text().splitlines()]
    df = pd.DataFrame(recs)
    g = (
        df.groupby(["method", "setting"])
        .agg(
            bpp=("bpp", "mean"),
            psnr=("psnr", "mean"),
            enc_s=("enc_s", "mean"),
            dec_s=("dec_s", "mean"),
            n=("image", "count"),
        )
        .reset_index()
    )
    curves = {}
    for m, sub in g.groupby("method"):
        sub = sub.sort_values("bpp")
        curves[m] = {"bpp": sub["bpp"].tolist(), "psnr-rgb": sub["psnr"].tolist()}
    curves["sft-published"] = PUBLISHED_SFT_KODAK["results"]
    bd = {}
    for m in CODECS[1:] + ["jpeg", "webp", "sft-published"]:
        if m in curves:
            bd[f"{m} vs sft-small"] = round(
                bd_rate(
                    curves["sft-small"]["bpp"], curves["sft-small"]["psnr-rgb"], curves[m]["bpp"], curves[m]["psnr-rgb"]
                ),
                2,
            )
    ours = df[df["method"].isin(CODECS)]
    times = ours.groupby("method").agg(enc_s=("enc_s", "mean"), dec_s=("dec_s", "mean")).reindex(CODECS)
    base_dec = times.loc["sft-small", "dec_s"]
    same = ours.dropna(subset=["same_pixels_as_sft_small"]) if "same_pixels_as_sft_small" in ours else ours.iloc[:0]
    summary = {
        "images": f"Kodak ({df['image'].nunique()} images), uniform maps at q = "
        + ", ".join(sorted({s[2:] for s in ours["setting"]}, key=float)),
        "bd_rate_psnr_percent_vs_sft_small": bd,
        "mean_encode_s": {m: round(v, 3) for m, v in times["enc_s"].items()},
        "mean_decode_s_float32_synthesis": {m: (round(v, 3) if v == v else None) for m, v in times["dec_s"].items()},
        "decode_time_over_sft_small": {
            m: (round(v / base_dec, 2) if v == v else None) for m, v in times["dec_s"].items()
        },
        "decoded_pixels_equal_sft_small": {
            m: f"{int(s['same_pixels_as_sft_small'].sum())}/{len(s)}"
            for m, s in same.groupby("method")
            if m != "sft-small"
        },
        "real_vs_estimated_bpp_percent": {
            m: round(100 * (s["bpp"].mean() / s["bpp_est"].mean() - 1), 2) for m, s in ours.groupby("method")
        },
    }
    prev = OUT / "summary.json"
    if fresh is None and prev.is_file():  # --no-fresh keeps the last fresh-process check
        fresh = json.loads(prev.read_text()).get("fresh_process_decode_q05")
    if fresh:
        summary["fresh_process_decode_q05"] = fresh
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    lines = ["| method | setting | real bpp | PSNR dB | enc s | dec s |", "|---|---|---|---|---|---|"]
    for m in CODECS + ["jpeg", "webp"]:
        sub = g[g["method"] == m].sort_values("bpp")
        for _, r in sub.iterrows():
            ds = f"{r.dec_s:.3f}" if r.dec_s == r.dec_s else "-"
            lines.append(f"| {m} | {r.setting} | {r.bpp:.4f} | {r.psnr:.2f} | {r.enc_s:.3f} | {ds} |")
    (OUT / "rd_table.md").write_text("# Kodak RD: entropy models over sft-small\n\n" + "\n".join(lines) + "\n")

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    base = g[g["method"] == "sft-small"].set_index("setting")["bpp"]
    for m in CODECS[1:]:
        sub = g[g["method"] == m].set_index("setting")
        qs = sorted(sub.index, key=lambda v: float(v[2:]))
        ax2.plot([float(v[2:]) for v in qs], [100 * (sub.loc[v, "bpp"] / base[v] - 1) for v in qs], marker="o", label=m)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xlabel("q (uniform map)")
    ax2.set_ylabel("real bpp vs sft-small at the same q (%), same pixels")
    ax2.set_title("Rate change against sft-small")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    for m, c in curves.items():
        ax.plot(
            c["bpp"],
            c["psnr-rgb"],
            marker="o" if m in CODECS else ".",
            ms=3,
            label=m,
            ls="--" if m not in CODECS else "-",
        )
    ax.set_xlabel("real bpp (file size)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_xlim(0, 1.2)
    ax.set_title("Kodak, 24 images: entropy models over the frozen sft-small transforms")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "rd_psnr.png", dpi=120)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qualities", default="0,0.25,0.5,1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-root")
    ap.add_argument("--summarize-only", action="store_true")
    ap.add_argument("--limit", type=int, help="first N Kodak images (a smoke test)")
    ap.add_argument("--shard", default="0/1", help="i/n: this process takes images i, i+n, ... (run n at once)")
    ap.add_argument("--out", help="output folder (default: results/entropy_models/kodak)")
    ap.add_argument("--no-fresh", action="store_true", help="skip the fresh-process decode")
    a = ap.parse_args()
    global OUT
    if a.out:
        OUT = Path(a.out)
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    if not a.summarize_only:
        sweep([float(v) for v in a.qualities.split(",")], a.data_root, a.limit, a.shard)
        if a.shard != "0/1":
            return  # the last shard to finish runs --summarize-only
    fresh = None if a.no_fresh else fresh_decode()
    print(json.dumps(summarize(fresh), indent=2))


if __name__ == "__main__":
    main()
