"""The steering test on Kodak for HEVC / H.264 intra frames steered by a quality map (taskcomp.codec.standard):
plain CRF against a left/right map, per image and on average, next to the SFT codec's half-map test.

    python experiments/hevc/steering.py --crf 37 --out results/hevc/steering

For each Kodak image and each format (hevc, h264; 4:2:0, preset slow): the plain stream (a uniform map, i.e.
CRF ``--crf``) and two steered streams, ``left1-right0`` (q = 1 on the left half, 0 on the right) and its mirror
``left0-right1``, both of map mean 0.5, so their rate factor is the plain one and only the per-block QP offsets
(``-qp_per_q * (q - 0.5)``, about -9 / +9 QP at the default :data:`QP_PER_Q`) differ. Per stream: real bpp
(stream size) and PSNR-RGB of the left and right halves. Repeated with ``qp_per_q`` scaled by 0.5 and 2 to show
the mapping's strength.

Figures: ``steer_db`` is how far the map moves the quality towards the half it favours, the change of the gap
(favoured half minus the other, dB) from the plain stream to the steered one; ``cost_pct`` is the steered stream's
size over the plain one's, -1, in percent. The SFT codec's figures come from its eval-codec records (the
``map=half`` points against the uniform q = 0.5 points, the same map mean), read, not recomputed.

Writes OUT.json (every per-image figure, the settings, the command) and OUT.md (tables), atomically.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from taskcomp.bench.metrics import psnr
from taskcomp.codec.standard import QP_PER_Q, standard_roundtrip
from taskcomp.datasets import kodak_paths
from taskcomp.io import atomic_write, load_image

MAPS = ("left1-right0", "left0-right1")
SCALES = (0.5, 1.0, 2.0)


def lr_map(h: int, w: int, left: float) -> np.ndarray:
    """A map of ``left`` on the left half (``w // 2`` columns) and ``1 - left`` on the right."""
    m = np.full((h, w), 1.0 - left)
    m[:, : w // 2] = left
    return m


def halves(img: np.ndarray, dec: np.ndarray) -> tuple[float, float]:
    """PSNR-RGB (dB) of the left and right halves."""
    w = img.shape[1] // 2
    return psnr(img[:, :w], dec[:, :w]), psnr(img[:, w:], dec[:, w:])


def point(img: np.ndarray, fmt: str, crf: float, qmap=None, qp_per_q: float = QP_PER_Q) -> dict:
    """One stream: bpp (real size), PSNR of each half and of the whole image, the encoder's rate factor."""
    dec, n, te, td, info = standard_roundtrip(img, fmt, crf, qmap, qp_per_q=qp_per_q, preset="slow", chroma="auto")
    left, right = halves(img, dec)
    return {
        "bpp": 8 * n / (img.shape[0] * img.shape[1]),
        "psnr_left": left,
        "psnr_right": right,
        "psnr": psnr(img, dec),
        "crf_used": info["crf"],
        "chroma": info["chroma"],
        "regions": info["regions"],
        "enc_s": te,
    }


def steering(plain: dict, steered: dict, favoured: str) -> dict:
    """The steering figures of one steered stream against the plain one (``favoured``: ``left`` or ``right``)."""
    other = "right" if favoured == "left" else "left"

    def gap(p):
        return p[f"psnr_{favoured}"] - p[f"psnr_{other}"]

    return {
        "steer_db": gap(steered) - gap(plain),
        "favoured_db": steered[f"psnr_{favoured}"] - plain[f"psnr_{favoured}"],
        "other_db": steered[f"psnr_{other}"] - plain[f"psnr_{other}"],
        "gap_db": gap(steered),
        "cost_pct": 100 * (steered["bpp"] / plain["bpp"] - 1),
    }


def sft_figures(records: Path, codec: str) -> dict | None:
    """The SFT codec's half-map test from eval-codec records: per image, the half map (q = 1 left, 0 right)
    against uniform q = 0.5; None when the file or the points are missing."""
    if not records.is_file():
        return None
    latest = {}
    for line in records.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:  # blank, or the last line of a file another process is still writing
            continue
        if r["method"] == codec and r["setting"] in ("map=half", "q=0.5"):
            latest[(r["image"], r["setting"], r["weights"])] = r
    weights = {k[2] for k in latest}
    if len(weights) != 1:  # one set of weights only (a records file may hold older ones)
        return None
    rows = []
    for img in sorted({k[0] for k in latest}):
        half, uni = latest.get((img, "map=half", *weights)), latest.get((img, "q=0.5", *weights))
        if half and uni:
            rows.append({"image": img, "plain": _sft_point(uni), "left1-right0": _sft_point(half)})
            rows[-1]["left1-right0"].update(steering(rows[-1]["plain"], rows[-1]["left1-right0"], "left"))
    if not rows:
        return None
    return {"codec": codec, "weights": weights.pop(), "records": str(records), "per_image": rows, "mean": _means(rows)}


def _sft_point(r: dict) -> dict:
    return {k: r[k] for k in ("bpp", "psnr_left", "psnr_right", "psnr")}


def _means(rows: list[dict]) -> dict:
    """Means over images of every numeric figure, per stream."""
    out = {}
    for key in rows[0]:
        if key == "image":
            continue
        out[key] = {
            f: float(np.mean([r[key][f] for r in rows]))
            for f in rows[0][key]
            if isinstance(rows[0][key][f], (int, float))
        }
    return out


def main() -> None:
    """Run the test (24 Kodak images x 2 formats x 7 streams) and write OUT.json and OUT.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crf", type=float, default=37.0, help="the plain streams' CRF (default 37: ~0.5 bpp HEVC)")
    ap.add_argument("--formats", default="hevc,h264")
    ap.add_argument("--data-root")
    ap.add_argument("--limit", type=int, help="first N Kodak images only (a quick look)")
    ap.add_argument("--sft-records", default="results/hevc/kodak/records.jsonl")
    ap.add_argument("--sft-codec", default="sft-small")
    ap.add_argument("--lowrate-records", default="results/hevc/kodak_lowrate/records.jsonl")
    ap.add_argument("--out", default="results/hevc/steering", help="OUT.json and OUT.md are written")
    a = ap.parse_args()
    command = "python " + " ".join(shlex.quote(v) for v in sys.argv)
    paths = kodak_paths(a.data_root)[: a.limit]
    fmts = [f.strip() for f in a.formats.split(",") if f.strip()]
    t0 = time.time()
    per_fmt = {}
    for fmt in fmts:
        rows = []
        for p in paths:
            img = load_image(p)
            H, W = img.shape[:2]
            row = {"image": p.name, "plain": point(img, fmt, a.crf)}
            for s in SCALES:
                for name in MAPS:
                    left = 1.0 if name == "left1-right0" else 0.0
                    st = point(img, fmt, a.crf, lr_map(H, W, left), qp_per_q=s * QP_PER_Q)
                    st.update(steering(row["plain"], st, "left" if left else "right"))
                    row[f"{name} x{s:g}"] = st
            rows.append(row)
            print(f"{fmt} {p.name}: {json.dumps({k: round(v['bpp'], 3) for k, v in row.items() if k != 'image'})}")
        per_fmt[fmt] = {"per_image": rows, "mean": _means(rows)}
    sft = {
        name: sft_figures(Path(path), codec)
        for name, path, codec in (
            ("sft-small", a.sft_records, a.sft_codec),
            ("sft-small-lowrate", a.lowrate_records, "sft-small-lowrate"),
        )
    }
    result = {
        "command": command,
        "images": [p.name for p in paths],
        "crf": a.crf,
        "settings": "one intra frame, preset slow, chroma auto (4:2:0 on Kodak), aq-mode=1:aq-strength=0, qg-size 16",
        "qp_per_q": {f"x{s:g}": s * QP_PER_Q for s in SCALES},
        "maps": "left1-right0: q = 1 on the left half, 0 on the right; left0-right1: the mirror (map mean 0.5)",
        "figures": "steer_db: change of (favoured half - other half) PSNR from plain to steered; cost_pct: "
        "steered bpp / plain bpp - 1; favoured_db / other_db: each half's change",
        "formats": per_fmt,
        "sft": {k: v for k, v in sft.items() if v is not None},
        "seconds": time.time() - t0,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out.with_suffix(".json"), json.dumps(result, indent=2).encode())
    atomic_write(out.with_suffix(".md"), markdown(result).encode())
    print(markdown(result))


def markdown(r: dict) -> str:
    """The tables of OUT.md."""
    L = [
        "# Steering test on Kodak: HEVC / H.264 intra with a left/right quality map",
        "",
        f"Made by `{r['command']}` ({len(r['images'])} Kodak images, {r['seconds'] / 60:.0f} min).",
        "",
        f"Plain stream: CRF {r['crf']:g}, {r['settings']}. Steered: {r['maps']}; "
        f"QP offsets `-qp_per_q * (q - 0.5)` per 16x16 block, rate factor unchanged. {r['figures']}.",
        "",
        "## Means over images",
        "",
        "| codec | qp_per_q | plain bpp | plain L / R dB | map | steered bpp | steered L / R dB | "
        "favoured / other half dB | steer dB | cost % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fmt, d in r["formats"].items():
        m = d["mean"]
        pl = m["plain"]
        for s, q in r["qp_per_q"].items():
            for name in MAPS:
                st = m[f"{name} {s}"]
                L.append(
                    f"| {fmt} | {q:.2f} ({s}) | {pl['bpp']:.3f} | {pl['psnr_left']:.2f} / {pl['psnr_right']:.2f} | "
                    f"{name} | {st['bpp']:.3f} | {st['psnr_left']:.2f} / {st['psnr_right']:.2f} | "
                    f"{st['favoured_db']:+.2f} / {st['other_db']:+.2f} | {st['steer_db']:+.2f} | "
                    f"{st['cost_pct']:+.1f} |"
                )
    for name, d in r["sft"].items():
        pl, st = d["mean"]["plain"], d["mean"]["left1-right0"]
        L.append(
            f"| {name} (q = 0.5 vs half map) | (lambda) | {pl['bpp']:.3f} | {pl['psnr_left']:.2f} / "
            f"{pl['psnr_right']:.2f} | left1-right0 | {st['bpp']:.3f} | {st['psnr_left']:.2f} / "
            f"{st['psnr_right']:.2f} | {st['favoured_db']:+.2f} / {st['other_db']:+.2f} | {st['steer_db']:+.2f} | "
            f"{st['cost_pct']:+.1f} |"
        )
    if r["sft"]:
        L += [
            "",
            "SFT rows: read from eval-codec records ("
            + ", ".join(f"`{d['records']}`, weights {d['weights']}" for d in r["sft"].values())
            + "): the `map=half` point against the uniform q = 0.5 point.",
        ]
    for fmt, d in r["formats"].items():
        L += [
            "",
            f"## Per image: {fmt}, qp_per_q {r['qp_per_q']['x1']:.2f}",
            "",
            "| image | plain bpp | plain L / R dB | left1-right0 bpp | L / R dB | steer dB | left0-right1 bpp | "
            "L / R dB | steer dB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in d["per_image"]:
            pl, a, b = row["plain"], row["left1-right0 x1"], row["left0-right1 x1"]
            L.append(
                f"| {row['image']} | {pl['bpp']:.3f} | {pl['psnr_left']:.2f} / {pl['psnr_right']:.2f} | "
                f"{a['bpp']:.3f} | {a['psnr_left']:.2f} / {a['psnr_right']:.2f} | {a['steer_db']:+.2f} | "
                f"{b['bpp']:.3f} | {b['psnr_left']:.2f} / {b['psnr_right']:.2f} | {b['steer_db']:+.2f} |"
            )
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
