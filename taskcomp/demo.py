"""The ``taskcomp demo`` computation: task-aware against uniform quality maps on a few bundled images.

For each image, a label-free classification map (KL to EfficientNet-Lite0's prediction on the original) is
optimised with :class:`~taskcomp.optimize.MapOptimizer`, the image is coded under it, and the uniform map whose
real bpp (whole ``.tcz`` file) is the same within 0.5% is found (:func:`~taskcomp.optimize.uniform_bpp_search`).
Both decoded images are classified; an image "keeps its class" when the top-1 class of the decoded image equals
the top-1 class of the original (label-free: the bundled images carry no labels).

The bundled set (:data:`DEMO_IMAGES`) and how it was chosen: see :data:`SELECTION`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEMO_IMAGES",
    "DEMO_LAMBDA",
    "DEMO_SETTINGS",
    "TASK_FILES",
    "SELECTION",
    "SELECTION_COUNTS",
    "selection_note",
    "DemoResult",
    "bundled_images",
    "kodak_candidate",
    "run_demo_image",
    "summarize",
    "demo_gallery",
]

#: Bundled demo images (``taskcomp/samples/``): Kodak crops (see :func:`kodak_candidate`), chosen as
#: :data:`SELECTION` says.
DEMO_IMAGES: tuple[str, ...] = ("kodim03_256.png", "kodim10_256.png", "kodim13_256.png", "kodim17_256.png")
#: Task weight of the demo's maps (the optimiser's other settings: :data:`DEMO_SETTINGS`).
DEMO_LAMBDA = 0.1
#: MapOptimizer settings of the demo: `taskcomp optimize`'s defaults (the ImageNet recipe's measured settings).
DEMO_SETTINGS: dict[str, Any] = {"steps": 10, "lr": 0.3, "init_q": 0.1, "downsample": 8}
#: The files :func:`demo_task` writes in its folder (``taskcomp demo`` checks them against its inputs first).
TASK_FILES = (
    "task_aware.tcz",
    "task_aware.png",
    "uniform_same_bpp.png",
    "task_aware_map.png",
    "task_aware_map.npy",
    "task_aware_overlay.png",
    "demo_gallery.png",
)
#: The candidate run the bundled images were chosen from (results/demo/candidates.jsonl at :data:`DEMO_LAMBDA`):
#: the candidates tried and how many kept their class (Lite0's top-1 on the original) under each map. The one
#: source of these figures for :data:`SELECTION` and the gallery's note (:func:`selection_note`).
SELECTION_COUNTS: dict[str, int] = {"candidates": 24, "uniform_kept": 9, "task_aware_kept": 13}
_N, _KU, _KT = (SELECTION_COUNTS[k] for k in ("candidates", "uniform_kept", "task_aware_kept"))
#: How the bundled images were chosen (printed by ``taskcomp demo --help`` and the demo; README).
SELECTION = (
    f"Of the {_N} Kodak images tried as candidates (each its centred square at 256 px; "
    f"results/demo/candidates.jsonl), these {len(DEMO_IMAGES)} are every one whose class (Lite0's top-1 on "
    "the original) task-aware maps kept and uniform maps of the same real bpp lost; no candidate went the "
    f"other way. Over all {_N} candidates (lambda {DEMO_LAMBDA:g}, mean 0.223 bpp): class kept by uniform "
    f"maps {_KU}/{_N} ({_KU / _N:.0%}), by task-aware maps {_KT}/{_N} ({_KT / _N:.0%})."
)


def selection_note() -> str:
    """The gallery's note on the bundled images (two lines, from :data:`SELECTION_COUNTS`): they were picked, and the
    rates over every candidate."""
    return (
        f"Picked, not typical: these are the {len(DEMO_IMAGES)} of {_N} Kodak crops where uniform maps lost "
        "Lite0's class (the original's top-1) and task-aware maps kept it.\n"
        f"Over all {_N}: class kept by uniform maps {_KU}/{_N}, by task-aware maps {_KT}/{_N} "
        "(results/demo/candidates.jsonl)."
    )


def kodak_candidate(arr: np.ndarray, side: int = 256) -> np.ndarray:
    """A demo candidate from a Kodak image (H, W, 3) uint8: the centred square of the short side, resized to
    ``side`` x ``side`` (Lanczos). This is how the bundled ``kodimNN_256.png`` images were made."""
    from PIL import Image

    H, W = arr.shape[:2]
    s = min(H, W)
    top, left = (H - s) // 2, (W - s) // 2
    im = Image.fromarray(arr[top : top + s, left : left + s])
    return np.asarray(im.resize((side, side), Image.LANCZOS))


def bundled_images() -> list[Path]:
    """Paths of the bundled demo images (:data:`DEMO_IMAGES`), in order."""
    from importlib import resources

    root = resources.files("taskcomp") / "samples"
    return [Path(str(root / name)) for name in DEMO_IMAGES]


@dataclass
class DemoResult:
    """One image's demo result: the original's top-1 class and, for the task-aware map and the uniform map of
    the same real bpp, the .tcz bytes, real bpp, PSNR, top-1 class of the decoded image and whether it equals
    the original's.

    Attributes:
        name: the image's name.
        image: the original (H, W, 3) uint8.
        pred_original: Lite0's top-1 class index on the original.
        qmap: the task-aware map (1, 1, H, W) on the CPU.
        uniform_q: the uniform map's level.
        rows: {"task-aware": {...}, "uniform": {...}}, each with ``data`` (bytes), ``bpp``, ``psnr``, ``pred``,
            ``keeps`` (bool), ``decoded`` (H, W, 3) uint8.
        seconds: wall time of the map's optimisation.
        bpp_met: whether the uniform map's real bpp is within 0.5% of the task-aware one.
    """

    name: str
    image: np.ndarray
    pred_original: int
    qmap: Any
    uniform_q: float
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    bpp_met: bool = True


def run_demo_image(
    codec, objective, img: np.ndarray, name: str, lam: float = DEMO_LAMBDA, label: int | None = None, **settings: Any
) -> DemoResult:
    """Optimise a label-free (or, with ``label``, label cross-entropy) classification map for one image
    (H, W, 3) uint8, code it, find the uniform map of the same real bpp and classify both decoded images.

    Args:
        codec: the codec (its device is the computation's).
        objective: a classification objective (:func:`taskcomp.objectives.create_objective`).
        lam: task weight.
        label: class index; None: label-free, and "keeps" compares with the original's top-1.
        settings: MapOptimizer arguments over :data:`DEMO_SETTINGS`.
    """
    import torch

    from .bench.metrics import psnr
    from .bitstream import decode
    from .io import image_to_tensor, tensor_to_image
    from .optimize import MapOptimizer, real_bpp, uniform_bpp_search

    dev = next(codec.parameters()).device
    x = image_to_tensor(img).to(dev)
    ctx = objective.prepare(x, label=label) if label is not None else objective.prepare(x)
    target = int(ctx["ref_logits"].argmax(1)[0]) if label is None else int(label)
    t0 = time.perf_counter()
    res = MapOptimizer(codec, objective, lam=lam, **{**DEMO_SETTINGS, **settings}).run(x, ctx)
    secs = time.perf_counter() - t0
    bpp, data = real_bpp(codec, x, res.qmap)
    found = uniform_bpp_search(codec, x, bpp)
    out = DemoResult(
        name,
        img,
        int(ctx["ref_logits"].argmax(1)[0]),
        res.qmap.detach().cpu(),
        float(found.s),
        seconds=secs,
        bpp_met=bool(found.met),
    )
    for key, (b, d) in (("task-aware", (bpp, data)), ("uniform", (found.bpp, found.data))):
        with torch.inference_mode():
            x_dec = decode(codec, d)
        pred = int(objective.evaluate(x_dec, ctx)[0]["pred"])
        dec = tensor_to_image(x_dec)
        out.rows[key] = {
            "data": d,
            "bytes": len(d),
            "bpp": float(b),
            "psnr": float(psnr(img, dec)),
            "pred": pred,
            "keeps": pred == target,
            "decoded": dec,
        }
    return out


def summarize(results: list[DemoResult]) -> dict[str, Any]:
    """Means over the images: top-1 kept (fraction), real bpp and PSNR of each map, and the images counted."""
    n = len(results)
    s: dict[str, Any] = {"n_images": n}
    for key in ("task-aware", "uniform"):
        s[key] = {
            k: float(np.mean([r.rows[key][v] for r in results])) if n else float("nan")
            for k, v in (("top1_kept", "keeps"), ("bpp", "bpp"), ("psnr", "psnr"))
        }
    return s


def demo_gallery(
    results: list[DemoResult],
    path: str | Path,
    title: str = "",
    note: str = "",
    reference: str = "the original's top-1",
) -> Path:
    """The demo's picture: one row per image, original | uniform | task-aware (same real bpp) | the task-aware
    map (inferno, fixed scale q 0..1), with bpp, PSNR and the predicted class under each, and whether it kept
    ``reference`` (what "keeps" compares with: the original's top-1 when label-free, else the label). ``note``
    (e.g. :func:`selection_note`) goes under the title. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from .io import save_figure
    from .pictures import CMAP, class_name, colorize

    n = len(results)
    fig, axes = plt.subplots(n, 4, figsize=(4 * 3.0 + 0.8, n * 3.9 + 0.5), squeeze=False, layout="constrained")
    for i, r in enumerate(results):
        H, W = r.image.shape[:2]
        panels = [(r.image, f"{r.name}\noriginal, 24 bpp", f"top-1: {class_name(r.pred_original)}")]
        for key, setting in (("uniform", f"q = {r.uniform_q:.3f} everywhere"), ("task-aware", "label-free Lite0 map")):
            row = r.rows[key]
            mark = "kept" if row["keeps"] else "LOST"
            panels.append(
                (
                    row["decoded"],
                    f"{key}: {row['bpp']:.3f} bpp\n{setting}",
                    f"PSNR {row['psnr']:.1f} dB\ntop-1: {class_name(row['pred'])}\n{mark} {reference}",
                )
            )
        q = r.qmap[0, 0].numpy()
        panels.append(
            (
                colorize(q),
                "task-aware map\n(bright: more bits)",
                f"q mean {q.mean():.2f}, range {q.min():.2f}-{q.max():.2f}",
            )
        )
        for ax, (arr, t, cap) in zip(axes[i], panels):
            ax.imshow(arr)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(t, fontsize=9)
            ax.set_xlabel(cap, fontsize=9)
        cb = fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps[CMAP]), ax=axes[i, 3], fraction=0.05, pad=0.02)
        cb.set_label("q (0: fewest bits, 1: most)", fontsize=7)
        cb.ax.tick_params(labelsize=7)
    if title or note:
        fig.suptitle("\n".join(t for t in (title, note) if t), fontsize=10)
    save_figure(fig, path, dpi=90)
    plt.close(fig)
    return Path(path)


def _fmt_class(i: int, width: int = 18) -> str:
    from .pictures import class_name

    name = class_name(i)
    return name if len(name) <= width else name[: width - 1] + "~"


def demo_task(
    codec,
    out: str | Path,
    image: str | Path | None = None,
    label: int | None = None,
    lam: float | None = None,
    log=print,
) -> dict[str, Any]:
    """The task part of ``taskcomp demo``: :func:`run_demo_image` on the bundled images (:data:`DEMO_IMAGES`) or
    on ``image``, a table per image and the means (:func:`summarize`), the example's files (``task_aware.tcz``,
    ``task_aware.png``, ``task_aware_map.png`` / ``.npy``, ``task_aware_overlay.png``, ``uniform_same_bpp.png``)
    and ``demo_gallery.png`` in ``out``.

    Args:
        codec: the codec (its device is the computation's).
        image: one image instead of the bundled set.
        label: the class of ``image`` (default: label-free).
        lam: task weight (default :data:`DEMO_LAMBDA`).
        log: where the lines go.

    Returns:
        :func:`summarize`'s dict with ``gallery`` (its path), ``example`` (the image whose files were written)
        and ``seconds``.
    """
    from .io import atomic_write, load_image, save_image
    from .objectives import create_objective
    from .pictures import save_map_output, save_overlay

    out = Path(out)
    lam = DEMO_LAMBDA if lam is None else float(lam)
    dev = next(codec.parameters()).device
    clf = create_objective("classification", device=dev)
    sources = [Path(image)] if image is not None else bundled_images()
    what = (
        f"label {label}"
        if label is not None
        else "label-free: an image keeps its class when the decoded image's top-1 equals the original's"
    )
    log(f"\nclassification with {clf.model_name} ({what})")
    log(
        f"task-aware maps (lambda {lam:g}, {DEMO_SETTINGS['steps']} Adam steps from q = {DEMO_SETTINGS['init_q']}) "
        f"against the uniform map of the same real bpp (whole .tcz file), on "
        + (f"{sources[0].name}" if image is not None else f"the {len(sources)} bundled demo images (Kodak crops)")
    )
    log(
        f"{'image':<14}{'original top-1':<20}{'uniform q':>10}{'bpp':>7}{'PSNR':>6}  {'top-1':<20}"
        f"{'task-aware bpp':>15}{'PSNR':>6}  {'top-1':<20}{'map s':>6}"
    )
    t0 = time.perf_counter()
    results = []
    for p in sources:
        r = run_demo_image(codec, clf, load_image(p), p.stem, lam=lam, label=label)
        u, t = r.rows["uniform"], r.rows["task-aware"]
        log(
            f"{r.name:<14}{_fmt_class(r.pred_original):<20}{r.uniform_q:>10.3f}{u['bpp']:>7.3f}{u['psnr']:>6.1f}  "
            f"{_fmt_class(u['pred']) + (' ok' if u['keeps'] else ' LOST'):<20}{t['bpp']:>15.3f}{t['psnr']:>6.1f}  "
            f"{_fmt_class(t['pred']) + (' ok' if t['keeps'] else ' LOST'):<20}{r.seconds:>6.1f}"
            + ("" if r.bpp_met else "  (no uniform q meets this bpp within 0.5%: the closest shown)")
        )
        results.append(r)
    s = summarize(results)
    n = s["n_images"]
    ku = sum(r.rows["uniform"]["keeps"] for r in results)
    kt = sum(r.rows["task-aware"]["keeps"] for r in results)
    reference = "the original's top-1" if label is None else f"label {label}"  # what "kept" compares with
    log(
        f"mean over {'the ' + str(n) + ' bundled images' if image is None else 'the image'}: {reference} kept by "
        f"uniform maps {ku}/{n} ({ku / n:.0%}), by task-aware maps {kt}/{n} ({kt / n:.0%}); real bpp "
        f"{s['uniform']['bpp']:.3f} vs {s['task-aware']['bpp']:.3f}; PSNR {s['uniform']['psnr']:.2f} vs "
        f"{s['task-aware']['psnr']:.2f} dB (task-aware maps spend bits where the classifier looks, not where PSNR "
        "counts them)"
    )
    if image is None:
        log(SELECTION)
    # the example's files: the first image that uniform loses and task-aware keeps (else the first)
    ex = next((r for r in results if r.rows["task-aware"]["keeps"] and not r.rows["uniform"]["keeps"]), results[0])
    t = ex.rows["task-aware"]
    atomic_write(out / "task_aware.tcz", t["data"])
    save_image(t["decoded"], out / "task_aware.png")
    save_image(ex.rows["uniform"]["decoded"], out / "uniform_same_bpp.png")
    save_map_output(ex.qmap, out / "task_aware_map.png", also_exact=True)
    save_overlay(ex.image, ex.qmap, out / "task_aware_overlay.png")
    title = (
        f"uniform vs task-aware maps at the same real bpp ({'label-free ' if label is None else ''}"
        f"{clf.model_name}, lambda {lam:g}); {reference} kept: uniform {ku}/{n}, task-aware {kt}/{n}"
    )
    gal = demo_gallery(
        results,
        out / "demo_gallery.png",
        title=title,
        note=selection_note() if image is None else "",
        reference=reference,
    )
    secs = time.perf_counter() - t0
    log(
        f"example ({ex.name}): task_aware.png (its map: task_aware_map.png, .npy; over the image: "
        f"task_aware_overlay.png), uniform_same_bpp.png; {secs:.0f}s for the task part"
    )
    log(f"gallery (original | uniform | task-aware | map, per image): {gal}")
    return {**s, "gallery": str(gal), "example": ex.name, "seconds": secs}
