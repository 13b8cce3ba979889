"""Pictures people look at: quality maps in colour with a colour bar, maps blended over their image, decoded
images with detections drawn, and the recipe runner's example galleries.

The exact map (for ``--qmap``, or for programs) is a separate file: :func:`taskcomp.maps.save_map_exact`
(``.npy``, 16-bit ``.tif`` / ``.pgm``). A picture is never read back as a map (:func:`taskcomp.maps.load_map`
refuses colour images).

Colours: matplotlib's ``inferno`` colormap on the fixed scale q = 0 (black: fewest bits) to q = 1 (pale
yellow: most bits), never scaled to the map's own range, so two pictures compare by eye.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CMAP", "class_name", "colorize", "map_picture", "overlay", "save_map_picture", "save_map_output", "save_overlay",
           "draw_boxes", "example_dir", "save_example", "gallery", "PICTURE_SUFFIXES", "EXACT_SUFFIXES"]

#: The colormap of every map picture and overlay (matplotlib name; OpenCV has the same table).
CMAP = "inferno"
#: ``--save-map`` suffixes that write a picture; :data:`EXACT_SUFFIXES` write the map itself.
PICTURE_SUFFIXES = (".png",)
EXACT_SUFFIXES = (".npy", ".tif", ".tiff", ".pgm")
#: Detections drawn in pictures: confidence at least this (the default detector objective's threshold).
BOX_CONF = 0.25


def _as_2d(qmap) -> np.ndarray:
    """(H, W) float array in [0, 1] from a (1, 1, H, W) / (1, H, W) / (H, W) tensor or array (checked)."""
    import torch

    from .maps import check_map

    m = check_map(torch.as_tensor(np.asarray(qmap.detach().cpu() if hasattr(qmap, "detach") else qmap,
                                             dtype=np.float32)))
    if m.size(0) != 1:
        raise ValueError(f"one map at a time, got a batch of {m.size(0)}")
    return m[0, 0].numpy()


def _lut(cmap: str = CMAP) -> np.ndarray:
    """(256, 3) uint8 colour table of a matplotlib colormap."""
    import matplotlib

    return np.round(matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def colorize(qmap, cmap: str = CMAP) -> np.ndarray:
    """A map's colours: (H, W, 3) uint8, q quantised to 256 levels on the fixed scale 0..1 (q = 0 is the
    colormap's first colour, q = 1 its last, whatever the map's own range)."""
    q = _as_2d(qmap)
    return _lut(cmap)[np.round(q * 255).astype(np.intp)]


def _colour_bar(height: int, cmap: str = CMAP, label: str = "quality q (0: fewest bits, 1: most)") -> np.ndarray:
    """A vertical colour bar for q in [0, 1] with ticks and ``label``, rendered by matplotlib: (height, w, 3)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fs = float(np.clip(height / 24, 7, 16))  # font size in points (= px at dpi 72)
    width = int(round(fs * 5.2 + 14))
    fig = Figure(figsize=(width / 72, height / 72), dpi=72)
    FigureCanvasAgg(fig)
    pad = fs / height
    cax = fig.add_axes((0.12, 1.2 * pad, 0.2, 1 - 2.4 * pad))
    cb = ColorbarBase(cax, cmap=colormaps[cmap], norm=Normalize(0, 1), orientation="vertical")
    cb.set_ticks([0, 0.25, 0.5, 0.75, 1] if height >= 200 else [0, 0.5, 1])
    cb.ax.tick_params(labelsize=fs)
    cb.set_label(label if height >= 12 * fs else "q", fontsize=fs)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def map_picture(qmap, cmap: str = CMAP, min_height: int = 160) -> np.ndarray:
    """A map a person can see: the map's colours at its own size (one pixel per map pixel, fixed scale q 0..1)
    with a labelled colour bar on the right. Maps lower than ``min_height`` px sit on a white canvas that tall
    so that the bar's text stays readable.

    Args:
        qmap: (1, 1, H, W), (1, H, W) or (H, W) in [0, 1].
    Returns:
        (max(H, min_height), W + bar width, 3) uint8 RGB; the map occupies [:H, :W].
    Raises:
        ValueError (:class:`taskcomp.maps.MapError`): a map that is not finite, not in [0, 1], or a batch.
    """
    rgb = colorize(qmap, cmap)
    H, W = rgb.shape[:2]
    Hc = max(H, min_height)
    bar = _colour_bar(Hc, cmap)
    canvas = np.full((Hc, W + bar.shape[1], 3), 255, np.uint8)
    canvas[:H, :W] = rgb
    canvas[:, W:] = bar
    return canvas


def overlay(image: np.ndarray, qmap, cmap: str = CMAP, image_weight: float = 0.5) -> np.ndarray:
    """The map blended over its image, as pytorch-grad-cam's ``show_cam_on_image`` does (used when installed):
    ``image_weight * image + (1 - image_weight) * colours(map)``, divided by its maximum.

    Args:
        image: (H, W, 3) uint8 RGB.
        qmap: a map in [0, 1] of the image's size (a map of another size is resized bilinearly).
    Returns:
        (H, W, 3) uint8 RGB.
    """
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"overlay takes an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    q = _as_2d(qmap)
    H, W = image.shape[:2]
    if q.shape != (H, W):
        q = np.clip(cv2.resize(q, (W, H), interpolation=cv2.INTER_LINEAR), 0, 1)
    code = getattr(cv2, f"COLORMAP_{cmap.upper()}")
    img = image.astype(np.float32) / 255
    try:
        from pytorch_grad_cam.utils.image import show_cam_on_image
    except ImportError:  # the same formula
        heat = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * q), code), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        cam = (1 - image_weight) * heat + image_weight * img
        return np.uint8(255 * cam / np.max(cam))
    return show_cam_on_image(img, q, use_rgb=True, colormap=code, image_weight=image_weight)


def _save_png(arr: np.ndarray, path: str | Path) -> None:
    from .io import save_image

    save_image(np.ascontiguousarray(arr), path)


def save_map_picture(qmap, path: str | Path) -> None:
    """Write :func:`map_picture` as an 8-bit RGB PNG, atomically."""
    _save_png(map_picture(qmap), path)


def save_map_output(qmap, path: str | Path, also_exact: bool = False) -> list[Path]:
    """``--save-map PATH``: ``.png`` writes the picture (:func:`map_picture`); ``.npy``, ``.tif``/``.tiff``,
    ``.pgm`` write the exact map (float32 ``.npy``; 16-bit images; :func:`taskcomp.maps.save_map_exact`), which
    ``--qmap`` reads back. With ``also_exact`` (a folder of maps) the exact ``.npy`` is written beside the
    picture. Returns the paths written.

    Raises:
        ValueError: another suffix (one line naming the choices).
    """
    from .maps import save_map_exact

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICTURE_SUFFIXES:
        save_map_picture(qmap, path)
        done = [path]
        if also_exact:
            save_map_exact(qmap, path.with_suffix(".npy"))
            done.append(path.with_suffix(".npy"))
        return done
    if suffix in EXACT_SUFFIXES:
        save_map_exact(qmap, path)
        return [path]
    raise ValueError(f"--save-map {path}: use .png for a picture of the map, or {', '.join(EXACT_SUFFIXES)} for "
                     "the exact map (which --qmap reads back)")


def save_overlay(image: np.ndarray, qmap, path: str | Path) -> None:
    """Write :func:`overlay` as an 8-bit RGB image (format from the suffix, PNG if unknown), atomically."""
    _save_png(overlay(image, qmap), path)


def draw_boxes(image: np.ndarray, boxes, colour=(0, 255, 80), width: int | None = None) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 with boxes (x0, y0, x1, y1[, conf, ...]) in pixels drawn on it."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(image))
    d = ImageDraw.Draw(im)
    w = width or max(1, round(max(image.shape[:2]) / 250))
    for b in boxes:
        d.rectangle([float(b[0]), float(b[1]), float(b[2]), float(b[3])], outline=tuple(colour), width=w)
    return np.asarray(im)


# --- recipe examples -----------------------------------------------------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", str(name)).strip("._") or "_"


def example_dir(out: str | Path, image_id: str) -> Path:
    """The folder of one example image of a run: ``OUT/examples/ID`` (ID with unsafe characters replaced)."""
    return Path(out) / "examples" / _safe(image_id)


def _boxes_of(rec: dict[str, Any], item: dict[str, Any]) -> list[list[float]]:
    """A detection record's boxes at or above :data:`BOX_CONF` in the coded image's pixels (records keep them in
    the input image's pixels, as COCO does: x, y, w, h, conf)."""
    s = float(item.get("scale", 1.0) or 1.0)
    return [[x * s, y * s, (x + w) * s, (y + h) * s, c] for x, y, w, h, c in rec.get("detections") or []
            if c >= BOX_CONF]


def save_example(folder: str | Path, arr: np.ndarray, method: str, setting: str, dec_arr: np.ndarray, qmap,
                 rec: dict[str, Any], item: dict[str, Any], state: dict[str, Any]) -> None:
    """Keep one point of a gallery example image (called by the runner for the run's first ``examples`` images).

    Writes under ``folder``: ``original.png`` (the coded input), and per point ``METHOD/SETTING.png`` (decoded),
    with a map: ``SETTING.map.npy`` (exact), ``SETTING.map.png`` (picture) and ``SETTING.overlay.png``; for
    detection ``SETTING.boxes.png`` (detections at confidence >= 0.25 drawn); for text ``SETTING.ocr.txt``
    (easyocr's reading: one line per box, confidence and text). All files are written atomically.
    """
    from .io import atomic_write
    from .maps import save_map_exact

    folder = Path(folder)
    if not (folder / "original.png").is_file():
        _save_png(arr, folder / "original.png")
    d, stem = folder / _safe(method), _safe(setting)
    _save_png(dec_arr, d / f"{stem}.png")
    if qmap is not None and method != "uniform":
        save_map_exact(qmap, d / f"{stem}.map.npy")
        save_map_picture(qmap, d / f"{stem}.map.png")
        save_overlay(arr, qmap, d / f"{stem}.overlay.png")
    if "detections" in rec:
        _save_png(draw_boxes(dec_arr, _boxes_of(rec, item)), d / f"{stem}.boxes.png")
    reading = state.get("reading")  # text tasks: easyocr's reading of this point's decoded image
    if reading is not None:
        lines = [f"{float(conf):.2f}\t{text}" for _, text, conf, *_ in reading]
        atomic_write(d / f"{stem}.ocr.txt", ("\n".join(lines) + "\n").encode())


# --- gallery -------------------------------------------------------------------------------------------------

def class_name(i) -> str:
    """ImageNet class description (first synonym) of index ``i`` (timm's ImageNetInfo), else ``class i``."""
    try:
        from timm.data import ImageNetInfo

        return ImageNetInfo().index_to_description(int(i)).split(",")[0]
    except Exception:  # no timm table, or not an ImageNet index
        return f"class {i}"


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
    from .runner.recipe import is_map_method

    recs = df_img.to_dict("records")
    methods = [m for m in dict.fromkeys(r["method"] for r in recs) if is_map_method(m)]
    methods.sort(key=lambda m: (not m.startswith("task_aware"), m))
    if method is not None:  # one method's gallery (e.g. predicted)
        methods = [m for m in methods if m == method]
    for m in methods:
        ta = sorted((r for r in recs if r["method"] == m and (folder / _safe(m) / f"{_safe(r['setting'])}.png").is_file()),
                    key=lambda r: r["bpp"])
        uni = [r for r in recs if r["method"] == "uniform" and (folder / "uniform" / f"{_safe(r['setting'])}.png").is_file()]
        if ta and uni:
            t = ta[(len(ta) - 1) // 2]
            return t, min(uni, key=lambda r: abs(r["bpp"] - t["bpp"]))
    return None


def gallery(run_dir: str | Path, df, task: str, path: str | Path, per_image_ap: dict | None = None,
            method: str | None = None) -> Path | None:
    """The run's gallery figure: one row per example image (``OUT/examples``): original | uniform | task-aware at
    the same real bpp | the task-aware map (colours on the fixed scale q 0..1) | the map over the image, with the bpp and the task's result under each
    (top-1 class; detections at confidence >= 0.25, drawn as boxes, with AP50 when given and F1 against the
    original's; CER against the ground truth). The task-aware point is the middle one by bpp of the method's
    settings, the uniform point the one closest to it in real bpp.

    Args:
        df: the run's records (:func:`taskcomp.report.load_records`).
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

    from .io import save_figure

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
    ar = np.mean([Image.open(f / "original.png").size[0] / Image.open(f / "original.png").size[1]
                  for _, f, *_ in rows])
    panel_w = max(3.2 * ar, 3.0)  # portrait pages (receipts) get taller panels, not narrower ones
    panel_h = panel_w / ar
    fig, axes = plt.subplots(len(rows), 5, figsize=(5 * panel_w + 1.0, len(rows) * (panel_h + 1.3) + 0.4),
                             squeeze=False, layout="constrained")

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
        show(axes[i, 1], np.asarray(Image.open(folder / "uniform" / f"{_safe(u['setting'])}.png").convert("RGB")),
             f"uniform\n{u['setting']}", f"{u['bpp']:.3f} bpp, PSNR {u['psnr']:.1f} dB\n{cap(u)}", u)
        show(axes[i, 2], np.asarray(Image.open(folder / _safe(t["method"]) / f"{_safe(t['setting'])}.png").convert("RGB")),
             f"{t['method']}\n{t['setting']}", f"{t['bpp']:.3f} bpp, PSNR {t['psnr']:.1f} dB\n{cap(t)}", t)
        ov = folder / _safe(t["method"]) / f"{_safe(t['setting'])}.overlay.png"
        mp = folder / _safe(t["method"]) / f"{_safe(t['setting'])}.map.npy"
        if mp.is_file():
            q = np.load(mp)
            show(axes[i, 3], colorize(q), f"{t['method']} map\n(where the bits went)",
                 f"q mean {q.mean():.2f}, range {q.min():.2f}-{q.max():.2f}\n(uniform: q={u.get('q', '?')} everywhere)")
            show(axes[i, 4], np.asarray(Image.open(ov).convert("RGB")) if ov.is_file() else overlay(original, q),
                 "map over\nthe original", "bright: more bits")
        else:
            axes[i, 3].axis("off")
            axes[i, 4].axis("off")
        cb = fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps[CMAP]), ax=axes[i, 3:], fraction=0.04, pad=0.02)
        cb.set_label("quality q (0: fewest bits, 1: most)", fontsize=8)
        cb.ax.tick_params(labelsize=8)
    fig.suptitle(f"{run_dir.name}: where the bits went (uniform vs task-aware at about the same real bpp)",
                 fontsize=11)
    save_figure(fig, path, dpi=90)  # 3.2 in panels: about 290 px tall, ImageNet crops near their own size
    plt.close(fig)
    return Path(path)
