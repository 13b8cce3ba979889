"""A recipe run's pictures: the example images the runner keeps (``OUT/examples/ID``: decoded images, maps,
overlays, detections drawn, OCR readings) and the gallery figure ``taskcomp report`` draws from them.

Part of the runner (it writes the examples while a run goes, and its report draws the gallery); the pictures of
one map (colours, colour bar, overlay, boxes) are :mod:`taskcomp.pictures`, below the runner, shared with the CLI
and the demo.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write, save_figure
from ..maps import save_map_exact
from ..pictures import (
    BOX_CONF,
    CMAP,
    class_name,
    colorize,
    draw_boxes,
    overlay,
    save_map_picture,
    save_overlay,
    save_picture,
)
from .recipe import MAP_KINDS, method_kind

__all__ = ["example_dir", "save_example", "gallery"]


def _safe(name: str) -> str:
    """``name`` as one safe file or folder name: characters other than letters, digits and ``._=-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", str(name)).strip("._") or "_"


def example_dir(out: str | Path, image_id: str) -> Path:
    """The folder of one example image of a run: ``OUT/examples/ID`` (ID with unsafe characters replaced)."""
    return Path(out) / "examples" / _safe(image_id)


def _boxes_of(rec: dict[str, Any], item: dict[str, Any]) -> list[list[float]]:
    """A detection record's boxes at or above :data:`BOX_CONF` in the coded image's pixels (records keep them in
    the input image's pixels, as COCO does: x, y, w, h, conf)."""
    s = float(item.get("scale", 1.0) or 1.0)
    return [
        [x * s, y * s, (x + w) * s, (y + h) * s, c] for x, y, w, h, c in rec.get("detections") or [] if c >= BOX_CONF
    ]


def save_example(
    folder: str | Path,
    arr: np.ndarray,
    method: str,
    setting: str,
    dec_arr: np.ndarray,
    qmap,
    rec: dict[str, Any],
    item: dict[str, Any],
    state: dict[str, Any],
) -> None:
    """Keep one point of a gallery example image (called by the runner for the run's first ``examples`` images).

    Writes under ``folder``: ``original.png`` (the coded input), and per point ``METHOD/SETTING.png`` (decoded),
    with a map: ``SETTING.map.npy`` (exact), ``SETTING.map.png`` (picture) and ``SETTING.overlay.png``; for
    detection ``SETTING.boxes.png`` (detections at confidence >= 0.25 drawn); for text ``SETTING.ocr.txt``
    (easyocr's reading: one line per box, confidence and text). All files are written atomically.
    """
    folder = Path(folder)
    if not (folder / "original.png").is_file():
        save_picture(arr, folder / "original.png")
    d, stem = folder / _safe(method), _safe(setting)
    save_picture(dec_arr, d / f"{stem}.png")
    if qmap is not None and method != "uniform":
        save_map_exact(qmap, d / f"{stem}.map.npy")
        save_map_picture(qmap, d / f"{stem}.map.png")
        save_overlay(arr, qmap, d / f"{stem}.overlay.png")
    if "detections" in rec:
        save_picture(draw_boxes(dec_arr, _boxes_of(rec, item)), d / f"{stem}.boxes.png")
    reading = state.get("reading")  # text tasks: easyocr's reading of this point's decoded image
    if reading is not None:
        lines = [f"{float(conf):.2f}\t{text}" for _, text, conf, *_ in reading]
        atomic_write(d / f"{stem}.ocr.txt", ("\n".join(lines) + "\n").encode())


# --- gallery -------------------------------------------------------------------------------------------------


def _result_text(r: dict[str, Any], task: str) -> str:
    """The task's result of one record, for a caption."""
    if task == "classification":
        preds = sorted(k for k in r if k.startswith("pred/"))
        if not preds:
            return ""
        p = r[preds[0]]
        ok = r.get("label") is not None and r.get("label") == r.get("label") and int(p) == int(r["label"])
        mark = "" if r.get("label") is None or r.get("label") != r.get("label") else (" (right)" if ok else " (wrong)")
        return f"top-1: {class_name(p)}{mark}"
    if task == "detection":
        n = sum(1 for d in r.get("detections") or [] if d[4] >= BOX_CONF)
        f1 = r.get("f1/original")
        f1s = "" if f1 is None or f1 != f1 else f", F1 vs original {f1:.2f}"
        ap, n_gt = r.get("ap50") or (None, None)
        gts = "" if n_gt is None else f" ({n_gt} in ground truth)"
        aps = "" if ap is None else f"\nAP50 {ap:.2f}"
        return f"{n} detection{'s' if n != 1 else ''}{gts}{aps}{f1s}"
    if task == "text":
        c = r.get("cer/gt", r.get("cer/original"))
        which = "CER" if "cer/gt" in r and r.get("cer/gt") == r.get("cer/gt") else "CER vs original"
        w = r.get("word_acc/gt")
        return f"{which} {c:.1%}" + ("" if w is None or w != w else f", words {w:.0%}")
    return ""


def _pick(df_img, run_dir: Path, folder: Path, method: str | None = None):
    """The example's task-aware point (middle setting by bpp of the first task_aware* / predicted* method with
    pictures) and the uniform point closest to it in real bpp. Returns (ta record, uniform record) or None."""
    recs = df_img.to_dict("records")
    methods = [m for m in dict.fromkeys(r["method"] for r in recs) if method_kind(m) in MAP_KINDS]
    methods.sort(key=lambda m: (method_kind(m) != "optimized", m))  # optimised maps first, then predicted
    if method is not None:  # one method's gallery (e.g. predicted)
        methods = [m for m in methods if m == method]
    for m in methods:
        ta = sorted(
            (r for r in recs if r["method"] == m and (folder / _safe(m) / f"{_safe(r['setting'])}.png").is_file()),
            key=lambda r: r["bpp"],
        )
        uni = [
            r
            for r in recs
            if r["method"] == "uniform" and (folder / "uniform" / f"{_safe(r['setting'])}.png").is_file()
        ]
        if ta and uni:
            t = ta[(len(ta) - 1) // 2]
            return t, min(uni, key=lambda r: abs(r["bpp"] - t["bpp"]))
    return None


def gallery(
    run_dir: str | Path, df, task: str, path: str | Path, per_image_ap: dict | None = None, method: str | None = None
) -> Path | None:
    """The run's gallery figure: one row per example image (``OUT/examples``): original | uniform | task-aware at
    the same real bpp | the task-aware map (colours on the fixed scale q 0..1) | the map over the image, with the bpp and the task's result under each
    (top-1 class; detections at confidence >= 0.25, drawn as boxes, with AP50 when given and F1 against the
    original's; CER against the ground truth). The task-aware point is the middle one by bpp of the method's
    settings, the uniform point the one closest to it in real bpp.

    Args:
        df: the run's records (:func:`taskcomp.runner.report.load_records`).
        per_image_ap: optional {(image, method, setting): (AP50 or None, ground-truth boxes)} for the detection
            captions.
    Returns:
        ``path`` (PNG, written atomically), or None when the run kept no examples.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle
    from PIL import Image

    run_dir = Path(run_dir)
    rows = []
    for img_id in sorted(df["image"].astype(str).unique()):
        folder = example_dir(run_dir, img_id)
        if not (folder / "original.png").is_file():
            continue
        g = df[df["image"].astype(str) == img_id]
        picked = _pick(g, run_dir, folder, method)
        if picked is None:
            continue
        orig = [r for r in g.to_dict("records") if r["method"] == "original"]
        rows.append((img_id, folder, orig[0] if orig else None, *picked))
    if not rows:
        return None
    ar = np.mean([Image.open(f / "original.png").size[0] / Image.open(f / "original.png").size[1] for _, f, *_ in rows])
    panel_w = max(3.2 * ar, 3.0)  # portrait pages (receipts) get taller panels, not narrower ones
    panel_h = panel_w / ar
    fig, axes = plt.subplots(
        len(rows),
        5,
        figsize=(5 * panel_w + 1.0, len(rows) * (panel_h + 1.3) + 0.4),
        squeeze=False,
        layout="constrained",
    )

    def show(ax, arr, title, caption, rec=None):
        ax.imshow(arr)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(caption, fontsize=9)
        if rec is not None and task == "detection":
            s = arr.shape[1] / float(rec.get("input_width") or arr.shape[1])
            for x, y, w, h, c in rec.get("detections") or []:
                if c >= BOX_CONF:
                    ax.add_patch(Rectangle((x * s, y * s), w * s, h * s, fill=False, color="#00ff50", lw=1.5))

    def cap(r):
        if per_image_ap is not None and r is not None:
            r = {**r, "ap50": per_image_ap.get((r["image"], r["method"], r["setting"]))}
        return _result_text(r, task) if r is not None else ""

    for i, (img_id, folder, o, t, u) in enumerate(rows):
        original = np.asarray(Image.open(folder / "original.png").convert("RGB"))
        H, W = original.shape[:2]
        show(axes[i, 0], original, f"{img_id}: original\n{W}x{H}, 24 bpp", cap(o), o)
        show(
            axes[i, 1],
            np.asarray(Image.open(folder / "uniform" / f"{_safe(u['setting'])}.png").convert("RGB")),
            f"uniform\n{u['setting']}",
            f"{u['bpp']:.3f} bpp, PSNR {u['psnr']:.1f} dB\n{cap(u)}",
            u,
        )
        show(
            axes[i, 2],
            np.asarray(Image.open(folder / _safe(t["method"]) / f"{_safe(t['setting'])}.png").convert("RGB")),
            f"{t['method']}\n{t['setting']}",
            f"{t['bpp']:.3f} bpp, PSNR {t['psnr']:.1f} dB\n{cap(t)}",
            t,
        )
        ov = folder / _safe(t["method"]) / f"{_safe(t['setting'])}.overlay.png"
        mp = folder / _safe(t["method"]) / f"{_safe(t['setting'])}.map.npy"
        if mp.is_file():
            q = np.load(mp)
            show(
                axes[i, 3],
                colorize(q),
                f"{t['method']} map\n(where the bits went)",
                f"q mean {q.mean():.2f}, range {q.min():.2f}-{q.max():.2f}\n(uniform: q={u.get('q', '?')} everywhere)",
            )
            show(
                axes[i, 4],
                np.asarray(Image.open(ov).convert("RGB")) if ov.is_file() else overlay(original, q),
                "map over\nthe original",
                "bright: more bits",
            )
        else:
            axes[i, 3].axis("off")
            axes[i, 4].axis("off")
        cb = fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps[CMAP]), ax=axes[i, 3:], fraction=0.04, pad=0.02)
        cb.set_label("quality q (0: fewest bits, 1: most)", fontsize=8)
        cb.ax.tick_params(labelsize=8)
    fig.suptitle(f"{run_dir.name}: where the bits went (uniform vs task-aware at about the same real bpp)", fontsize=11)
    save_figure(fig, path, dpi=90)  # 3.2 in panels: about 290 px tall, ImageNet crops near their own size
    plt.close(fig)
    return Path(path)
