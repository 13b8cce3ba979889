"""Data sets over a data root: Kodak, the codec training photos (later: ImageNet sample, COCO, SROIE).

The data root comes from an argument, else ``$TASKCOMP_DATA``, else ``../shared/data`` beside the project.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import load_image

__all__ = [
    "DataError",
    "data_root",
    "kodak_paths",
    "list_images",
    "TrainingPool",
    "open_training_pool",
    "preprocess_image",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


class DataError(FileNotFoundError):
    """The data root or a data set inside it is missing."""


def data_root(root: str | Path | None = None) -> Path:
    """Resolve the data root: ``root``, else $TASKCOMP_DATA, else ../shared/data next to the project.

    An explicit ``root`` (``--data-root``) or ``$TASKCOMP_DATA`` that is not a folder is an error, never
    passed over for the next candidate.

    Raises:
        DataError: one line naming the missing folder and where it came from.
    """
    if root is not None and str(root) != "":
        if not Path(root).is_dir():
            raise DataError(f"data root {root} (--data-root) is not a folder")
        return Path(root)
    env = os.environ.get("TASKCOMP_DATA")
    if env:
        if not Path(env).is_dir():
            raise DataError(f"data root {env} (from $TASKCOMP_DATA) is not a folder; fix it or pass --data-root")
        return Path(env)
    candidates = [Path(__file__).resolve().parents[1].parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise DataError(
        "data root not found (tried ../shared/data beside the project and the working folder); "
        "pass --data-root or set TASKCOMP_DATA"
    )


def list_images(folder: str | Path) -> list[Path]:
    """All image files under ``folder`` (recursive), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    # Hidden files (macOS "._x.jpg" resource forks and the like) are not images.
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def kodak_paths(root: str | Path | None = None) -> list[Path]:
    """The 24 Kodak images ``kodim01.png`` .. ``kodim24.png``."""
    paths = list_images(data_root(root) / "kodak")
    if not paths:
        raise DataError(f"no Kodak images in {data_root(root) / 'kodak'}")
    return paths


class TrainingPool:
    """Training photos held in memory as uint8 arrays, sampled as random crops with horizontal flips.

    Decoding JPEGs every step would cost as much CPU as a small codec's step, so images are decoded once.
    Images smaller than the crop are skipped.
    """

    def __init__(
        self,
        folder: str | Path | list,
        crop: int,
        exclude: tuple[str, ...] = ("kodak",),
        exclude_files: tuple[str | Path, ...] = (),
    ):
        """Args:
            folder: an image folder (searched recursively), or a list of them (pooled).
            crop: crop side in px; smaller images are skipped.
            exclude: path components (folder names) whose images are skipped, e.g. ``kodak``.
            exclude_files: image files (paths) that are skipped, e.g. a benchmark's evaluation images.

        Raises:
            DataError: a folder is missing, or no image is at least ``crop`` px on its short side.
        """
        self.crop = crop
        folders = list(folder) if isinstance(folder, (list, tuple)) else [folder]
        skip = {Path(f).resolve() for f in exclude_files}
        found = {p.resolve(): p for f in folders for p in list_images(f)}  # overlapping folders count once
        paths = [p for r, p in found.items() if not any(e in p.parts for e in exclude) and r not in skip]
        #: how many of ``exclude_files`` were among the folders' images (and so left out)
        self.excluded = len(skip & set(found))
        self.images: list[np.ndarray] = []
        for p in paths:
            arr = load_image(p)
            if min(arr.shape[:2]) >= crop:
                self.images.append(arr)
        if not self.images:
            where = ", ".join(str(f) for f in folders)
            raise DataError(f"no training images of at least {crop}x{crop} in {where}")
        self._by_crop: dict[int, list[np.ndarray]] = {crop: self.images}  # images big enough for each crop

    def __len__(self) -> int:
        return len(self.images)

    def at_least(self, crop: int) -> list[np.ndarray]:
        """The images whose short side is at least ``crop`` (computed once per crop size)."""
        if crop not in self._by_crop:
            self._by_crop[crop] = [im for im in self.images if min(im.shape[:2]) >= crop]
        return self._by_crop[crop]

    def sample(self, batch: int, rng: np.random.Generator, crop: int | None = None) -> np.ndarray:
        """(batch, crop, crop, 3) uint8; ``crop`` defaults to the pool's, and a larger one draws only from
        the images at least that big."""
        crop = crop or self.crop
        images = self.at_least(crop)
        if not images:
            raise DataError(f"no training images of at least {crop}x{crop}")
        out = np.empty((batch, crop, crop, 3), np.uint8)
        for i in range(batch):
            im = images[int(rng.integers(len(images)))]
            y = int(rng.integers(im.shape[0] - crop + 1))
            x = int(rng.integers(im.shape[1] - crop + 1))
            c = im[y : y + crop, x : x + crop]
            out[i] = c[:, ::-1] if rng.random() < 0.5 else c
        return out


def open_training_pool(folders, crop: int, exclude_files=(), each_folder: bool = False) -> TrainingPool:
    """The training pool of every trainer (codec, predictor): folders and excluded files resolved against the
    data root, the exclusion list checked so that a typo cannot silently train on an evaluation image.

    Args:
        folders: a folder or a non-empty list of folders (absolute, or relative to :func:`data_root`).
        crop: crop side in px; smaller images are skipped.
        exclude_files: image files never trained on (absolute, or relative to the data root), e.g. a benchmark's
            evaluation images.
        each_folder: every folder must give images of at least ``crop`` px (the error names the one that does
            not); otherwise only the pool as a whole must.

    Raises:
        ValueError: ``folders`` or ``exclude_files`` of the wrong type.
        DataError: a missing folder; no image of at least ``crop`` px; a listed exclusion that does not exist or is
            not among the folders' images (one line each).
    """
    if isinstance(folders, (str, Path)):
        folders = [folders]
    if (
        not folders
        or not isinstance(folders, (list, tuple))
        or not all(isinstance(f, (str, Path)) and str(f) for f in folders)
    ):
        raise ValueError(f"data must be a folder or a non-empty list of folders, got {folders!r}")
    if not isinstance(exclude_files, (list, tuple)) or not all(isinstance(e, (str, Path)) for e in exclude_files):
        raise ValueError(
            f"exclude must be a list of image paths (under the data root, or absolute), got {exclude_files!r}"
        )
    root = None
    resolved = []
    for f in list(folders) + list(exclude_files):
        p = Path(f)
        if not p.is_absolute():
            root = root or data_root()
            p = root / p
        resolved.append(p)
    dirs = resolved[: len(folders)]
    excluded = list({p.resolve(): p for p in resolved[len(folders) :]}.values())  # one entry per file
    missing = [str(f) for f in excluded if not f.is_file()]
    if missing:
        raise DataError(f"exclude: {len(missing)} listed file(s) not found, e.g. {missing[0]}")
    if each_folder:
        pools = []
        for d in dirs:
            try:
                pools.append(TrainingPool(d, crop, exclude_files=excluded))
            except DataError as e:
                raise DataError(f"training data {d}: {e}") from None
        pool = pools[0]
        for other in pools[1:]:
            pool.images.extend(other.images)  # the pool's crop-size index refers to this same list
        # a file under two of the folders (one inside the other) is one exclusion
        found = {q.resolve() for d in dirs for q in list_images(d)}
        pool.excluded = len({p.resolve() for p in excluded} & found)
    else:
        found = None
        pool = TrainingPool(dirs, crop, exclude_files=excluded)
    if pool.excluded < len(excluded):  # e.g. another data root: the list no longer names the images it should
        found = found if found is not None else {q.resolve() for d in dirs for q in list_images(d)}
        stray = next(str(p) for p in excluded if p.resolve() not in found)
        raise DataError(
            f"exclude: {len(excluded) - pool.excluded} of the {len(excluded)} listed files are not among "
            f"the training images of {', '.join(str(d) for d in dirs)}, e.g. {stray}"
        )
    pool.folders = dirs
    return pool


def preprocess_image(
    arr: np.ndarray,
    resize: int | None = None,
    crop: int | None = None,
    max_side: int | None = None,
    resample: int | None = None,
) -> tuple[np.ndarray, float]:
    """Resize the short side to ``resize`` (bicubic, or ``resample``: a PIL filter) and centre-crop ``crop``; or
    shrink so the long side is at most ``max_side`` (Lanczos). Returns (uint8 image, scale applied to coordinates).
    The recipes' preprocessing (``preprocess:``) and the map targets' crops."""
    from PIL import Image

    im = Image.fromarray(arr)
    scale = 1.0
    if resize:
        w, h = im.size
        scale = resize / min(w, h)
        im = im.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC if resample is None else resample
        )
    if max_side and max(im.size) > max_side:
        s = max_side / max(im.size)
        im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.LANCZOS)
        scale *= s
    if crop:
        w, h = im.size
        left, top = (w - crop) // 2, (h - crop) // 2
        im = im.crop((left, top, left + crop, top + crop))
    return np.asarray(im), scale
