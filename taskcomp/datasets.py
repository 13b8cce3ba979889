"""Data sets over a data root: Kodak, the codec training photos (later: ImageNet sample, COCO, SROIE).

The data root comes from an argument, else ``$TASKCOMP_DATA``, else ``../shared/data`` beside the project.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import load_image

__all__ = ["DataError", "data_root", "kodak_paths", "list_images", "TrainingPool"]

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
    raise DataError("data root not found (tried ../shared/data beside the project and the working folder); "
                    "pass --data-root or set TASKCOMP_DATA")


def list_images(folder: str | Path) -> list[Path]:
    """All image files under ``folder`` (recursive), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    # Hidden files (macOS "._x.jpg" resource forks and the like) are not images.
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                  and p.is_file())


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

    def __init__(self, folder: str | Path | list, crop: int, exclude: tuple[str, ...] = ("kodak",),
                 exclude_files: tuple[str | Path, ...] = ()):
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
