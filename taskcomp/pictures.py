"""Pictures people look at: quality maps in colour with a colour bar, maps blended over their image, decoded
images with detections drawn, and the ImageNet class names their captions use.

Below the runner, the CLI and the demo, which all draw with it. A recipe run's example images and gallery are
the runner's own (:mod:`taskcomp.runner.gallery`).

The exact map (for ``--qmap``, or for programs) is a separate file: :func:`taskcomp.maps.save_map_exact`
(``.npy``, 16-bit ``.tif`` / ``.pgm``). A picture is never read back as a map (:func:`taskcomp.maps.load_map`
refuses colour images).

Colours: matplotlib's ``inferno`` colormap on the fixed scale q = 0 (black: fewest bits) to q = 1 (pale
yellow: most bits), never scaled to the map's own range, so two pictures compare by eye.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "CMAP",
    "class_name",
    "colorize",
    "map_picture",
    "overlay",
    "save_map_picture",
    "save_map_output",
    "save_overlay",
    "draw_boxes",
    "save_picture",
    "PICTURE_SUFFIXES",
    "EXACT_SUFFIXES",
    "BOX_CONF",
]

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

    m = check_map(
        torch.as_tensor(np.asarray(qmap.detach().cpu() if hasattr(qmap, "detach") else qmap, dtype=np.float32))
    )
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


def save_picture(arr: np.ndarray, path: str | Path) -> None:
    """Write an (H, W, 3) uint8 RGB picture (format from the suffix, PNG if unknown), atomically
    (:func:`taskcomp.io.save_image`)."""
    from .io import save_image

    save_image(np.ascontiguousarray(arr), path)


def save_map_picture(qmap, path: str | Path) -> None:
    """Write :func:`map_picture` as an 8-bit RGB PNG, atomically."""
    save_picture(map_picture(qmap), path)


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
    raise ValueError(
        f"--save-map {path}: use .png for a picture of the map, or {', '.join(EXACT_SUFFIXES)} for "
        "the exact map (which --qmap reads back)"
    )


def save_overlay(image: np.ndarray, qmap, path: str | Path) -> None:
    """Write :func:`overlay` as an 8-bit RGB image (format from the suffix, PNG if unknown), atomically."""
    save_picture(overlay(image, qmap), path)


def draw_boxes(image: np.ndarray, boxes, colour=(0, 255, 80), width: int | None = None) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 with boxes (x0, y0, x1, y1[, conf, ...]) in pixels drawn on it."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(image))
    d = ImageDraw.Draw(im)
    w = width or max(1, round(max(image.shape[:2]) / 250))
    for b in boxes:
        d.rectangle([float(b[0]), float(b[1]), float(b[2]), float(b[3])], outline=tuple(colour), width=w)
    return np.asarray(im)


def class_name(i) -> str:
    """ImageNet class description (first synonym) of index ``i`` (timm's ImageNetInfo), else ``class i``."""
    try:
        from timm.data import ImageNetInfo

        return ImageNetInfo().index_to_description(int(i)).split(",")[0]
    except Exception:  # no timm table, or not an ImageNet index
        return f"class {i}"
