"""Per-image optimised maps as training targets for a map predictor (issue 36).

Every per-image map is a worked answer to the question a predictor must learn; making them is slow (~7 s per
image and lambda on a CPU core) but independent per image, so they are made once, sharded and resumable, and a
predictor is then distilled from them on cached features in minutes.

A target folder holds:

- ``targets.json``: what the targets mean (:class:`TargetSpec`: codec and its weights id, task, task model,
  objective, lambdas, optimiser settings, preprocessing); written by the first run, and a later run (any shard)
  with another meaning is refused, so a folder never mixes two kinds of targets.
- ``maps/KEY.npz``: one file per image (KEY: the first 16 hex digits of the SHA-1 of its path under the data
  root): ``logits`` float16 (L, 1, gh, gw), the optimiser's kept logits on its coarse grid for each of the L
  lambdas (what :class:`taskcomp.predictors.FeatureFiLMPredictor` outputs), ``lambdas``, the estimated ``bpp``
  and ``task_loss`` of each kept map; written atomically.
- ``index.shard{i}of{n}.jsonl``: one line per finished image (image, file, map means, bpp, seconds), appended
  as each image is done; a rerun skips the images of every index file, whatever world size wrote them.

Images are taken in a fixed pseudo-random order (by the SHA-1 of their path), so the first N of a folder are a
random subset: ``--count`` grows the set across sessions without bias, and "a quarter, half and all of the
set" are prefixes. Evaluation sets are refused (:data:`EVALUATION_SETS`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_write, image_to_tensor

__all__ = [
    "TargetSpec",
    "TargetsError",
    "EVALUATION_SETS",
    "target_images",
    "make_targets",
    "load_targets",
    "done_images",
]

FORMAT = "taskcomp-map-targets"
#: Folders under the data root that hold evaluation images: never targets (a predictor must not see them).
EVALUATION_SETS = ("imagenet-sample", "kodak", "coco-val", "sroie")


class TargetsError(ValueError):
    """A target folder that cannot be used: another meaning than asked, damaged, or made for other weights."""


@dataclass
class TargetSpec:
    """What a folder's targets mean.

    Attributes:
        codec: codec name; ``weights``: its weights id (hex, :func:`taskcomp.bitstream.weights_id`).
        task: ``classification`` (label-free: KL to the task model's prediction on the original) or ``detection``.
        task_model: the objective's model (timm name, ultralytics weights).
        objective: the objective's arguments (name included).
        lambdas: the rate-task trade-offs, one map per image each.
        optimizer: :class:`taskcomp.optimize.MapOptimizer` arguments (steps, lr, init_q, downsample, ...).
        resize, crop: preprocessing: short side resized to ``resize`` px (bilinear), then a centre ``crop``.
    """

    codec: str
    weights: str
    task: str
    task_model: str
    objective: dict[str, Any]
    lambdas: list[float]
    optimizer: dict[str, Any]
    resize: int = 256
    crop: int = 224
    format: str = FORMAT
    version: int = 1
    notes: dict[str, Any] = field(default_factory=dict)

    def meaning(self) -> dict[str, Any]:
        """The fields two runs must share to write into one folder (all but ``notes``)."""
        d = asdict(self)
        d.pop("notes")
        return d


def _key(rel: str) -> str:
    return hashlib.sha1(rel.encode()).hexdigest()[:16]


def evaluation_copies(data_root: str | Path, images: list[Path]) -> set[Path]:
    """Those of ``images`` whose bytes equal an image of an evaluation set under ``data_root`` (the shared
    ``train/coco`` holds three ``coco-val`` files): such a copy is never a target.

    Files are compared by size, then by the SHA-256 of their bytes (only same-size files are read, each once)."""
    from ..datasets import IMAGE_SUFFIXES
    from ..outputs import file_sha256

    root = Path(data_root)
    by_size: dict[int, list[Path]] = {}
    for e in EVALUATION_SETS:
        if (root / e).is_dir():
            for p in (root / e).rglob("*"):
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                    by_size.setdefault(p.stat().st_size, []).append(p)

    digests: dict[Path, str | None] = {}

    def digest(p: Path) -> str | None:
        if p not in digests:
            digests[p] = file_sha256(p)
        return digests[p]

    copies = set()
    for p in images:
        same = by_size.get(p.stat().st_size)
        if same and digest(p) is not None and digest(p) in {digest(q) for q in same}:  # unreadable: not a copy
            copies.add(p)
    return copies


def target_images(
    data_root: str | Path, folders: list[str], limit: int | None = None, log=None
) -> list[tuple[str, Path]]:
    """The images of ``folders`` (under ``data_root``) in the targets' fixed pseudo-random order: (path relative
    to the data root, absolute path) pairs, the first ``limit`` of them. Files identical to an evaluation image
    are left out (:func:`evaluation_copies`), and ``log`` (if given) is told how many.

    Raises:
        TargetsError: a folder that is missing, outside the data root, holds no image, or is (inside) an
            evaluation set.
    """
    from ..datasets import IMAGE_SUFFIXES

    root = Path(data_root)
    out = []
    for f in folders:
        parts = Path(f).parts
        if any(e in parts for e in EVALUATION_SETS):
            raise TargetsError(
                f"{f} is an evaluation set ({', '.join(EVALUATION_SETS)}): targets are made on training photos only"
            )
        d = root / f
        if not d.is_dir():
            raise TargetsError(f"no such folder under the data root {root}: {f}")
        if not d.resolve().is_relative_to(root.resolve()):
            raise TargetsError(f"{f} is not under the data root {root}: name a folder inside it (or set --data-root)")
        found = [p for p in sorted(d.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        found = [p for p in found if not any(e in p.relative_to(root).parts for e in EVALUATION_SETS)]
        copies = evaluation_copies(root, found)
        found = [p for p in found if p not in copies]
        if copies and log is not None:
            log(f"targets: {len(copies)} image(s) of {f} left out: byte copies of evaluation images")
        if not found:
            raise TargetsError(f"no images in {d}" + (" but copies of evaluation images" if copies else ""))
        out += [(p.relative_to(root).as_posix(), p) for p in found]
    out.sort(key=lambda t: _key(t[0]))
    if limit is not None:
        if limit < 1:
            raise TargetsError(f"--count must be >= 1, got {limit}")
        out = out[:limit]
    return out


def done_images(out: Path) -> set[str]:
    """Images (paths under the data root) with a line in any ``index*.jsonl`` of the folder and a map file."""
    done = set()
    for p in sorted(Path(out).glob("index*.jsonl")):
        for line in p.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that image is redone
                continue
            if (Path(out) / r["file"]).is_file():
                done.add(r["image"])
    return done


def _check_folder(out: Path, spec: TargetSpec) -> None:
    path = out / "targets.json"
    if not path.is_file():
        atomic_write(path, json.dumps(asdict(spec), indent=1).encode())
        return
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise TargetsError(f"{path} is damaged") from None
    now = spec.meaning()
    for k in sorted(now):
        was, new = old.get(k), now[k]
        if was != new:
            if isinstance(was, dict) and isinstance(new, dict):  # name the setting inside (absent: its default)
                sub = sorted(j for j in set(was) | set(new) if was.get(j) != new.get(j))[0]
                k, was, new = f"{k}.{sub}", was.get(sub, "(default)"), new.get(sub, "(default)")
            raise TargetsError(f"{out} holds targets made with {k} = {was!r}; this run has {new!r}: use another --out")


def _load_crop(path: Path, resize: int, crop: int) -> np.ndarray:
    from PIL import Image

    from ..datasets import preprocess_image
    from ..io import load_image

    img = load_image(path)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    # bilinear, as the targets were first made (the recipes resize bicubic)
    return preprocess_image(img, resize=resize, crop=crop, resample=Image.BILINEAR)[0]


def make_targets(
    images: list[tuple[str, Path]],
    out: str | Path,
    codec,
    objective,
    spec: TargetSpec,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    log=print,
) -> int:
    """Make (or resume) the targets of shard ``i`` of ``n`` of ``images``; returns the images done by this call.

    Args:
        images: :func:`target_images`' list (the whole set: the shard takes positions i, i + n, ...).
        out: the target folder.
        codec: the SFT codec the maps are made through; ``objective``: the task objective (label-free context
            from ``objective.prepare``).
        spec: what the targets mean (:class:`TargetSpec`; checked against the folder's).
        batch_size: images optimised together (each independently; one crop size, so a plain batch).

    Raises:
        TargetsError: the folder holds targets of another meaning.
    """
    from tqdm import tqdm

    from ..optimize import MapOptimizer

    torch.set_flush_denormal(True)  # as the runner: denormal floats in the codec's backward pass cost minutes
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "maps").mkdir(exist_ok=True)
    _check_folder(out, spec)
    i, n = shard
    mine = images[i::n]
    done = done_images(out)
    todo = [t for t in mine if t[0] not in done]
    log(f"targets: shard {i}/{n}: {len(mine)} images, {len(mine) - len(todo)} done, {len(todo)} to do ({out})")
    index = out / f"index.shard{i}of{n}.jsonl"
    made = 0
    bar = tqdm(total=len(todo), desc="targets", dynamic_ncols=True)
    with open(index, "a") as f:
        for start in range(0, len(todo), batch_size):
            part = todo[start : start + batch_size]
            t0 = time.perf_counter()
            x = torch.cat([image_to_tensor(_load_crop(p, spec.resize, spec.crop)) for _, p in part]).to(device)
            ctx = objective.prepare(x)
            logits, bpp, task = [], [], []
            for lam in spec.lambdas:
                res = MapOptimizer(codec, objective, lam=lam, **spec.optimizer).run(x, ctx)
                logits.append(res.logits.cpu())
                last = {(r["image"], r["step"]): r for r in res.log}
                bpp.append([last[(k, res.best_step[k])]["bpp"] for k in range(len(part))])
                task.append([last[(k, res.best_step[k])]["task_loss"] for k in range(len(part))])
            seconds = (time.perf_counter() - t0) / len(part)
            for k, (rel, _) in enumerate(part):
                lg = torch.stack([lt[k] for lt in logits]).numpy().astype(np.float16)
                name = f"maps/{_key(rel)}.npz"
                import io

                buf = io.BytesIO()
                np.savez_compressed(
                    buf,
                    logits=lg,
                    lambdas=np.asarray(spec.lambdas, dtype=np.float64),
                    bpp=np.asarray([b[k] for b in bpp]),
                    task_loss=np.asarray([t[k] for t in task]),
                )
                atomic_write(out / name, buf.getvalue())
                means = [
                    float(torch.sigmoid(torch.from_numpy(lg[j].astype(np.float32))).mean()) for j in range(len(lg))
                ]
                rec = {
                    "image": rel,
                    "file": name,
                    "map_mean": means,
                    "bpp": [b[k] for b in bpp],
                    "seconds": seconds,
                }
                f.write(json.dumps(rec) + "\n")
                f.flush()
                made += 1
            bar.update(len(part))
    bar.close()
    return made


def load_targets(out: str | Path, weights: str | None = None, task_model: str | None = None):
    """A target folder's spec and entries, checked against the codec weights and task model a trainer uses.

    Args:
        weights: the codec weights id (hex) the trainer's codec has; targets made with others are refused.
        task_model: the trainer's task model; targets made for another are refused.

    Returns:
        (spec dict, entries): one dict per finished image (image, file, map_mean, bpp, seconds), in the
        targets' order.

    Raises:
        TargetsError: no or a damaged ``targets.json``, other weights or task model (one line each).
    """
    out = Path(out)
    path = out / "targets.json"
    if not path.is_file():
        raise TargetsError(f"{out} holds no targets (no targets.json): make them with `taskcomp make-targets`")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise TargetsError(f"{path} is damaged") from None
    if spec.get("format") != FORMAT:
        raise TargetsError(f"{path} is not a taskcomp target folder")
    if weights is not None and spec.get("weights") != weights:
        raise TargetsError(
            f"{out}: targets were made with codec weights {str(spec.get('weights'))[:16]} ({spec.get('codec')}), "
            f"this codec's are {weights[:16]}: make targets with this codec or train with theirs"
        )
    if task_model is not None and spec.get("task_model") != task_model:
        raise TargetsError(f"{out}: targets are for task model {spec.get('task_model')}, not {task_model}")
    entries = {}
    for p in sorted(out.glob("index*.jsonl")):
        for line in p.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (out / r["file"]).is_file():
                entries[r["image"]] = r
    ordered = sorted(entries.values(), key=lambda r: _key(r["image"]))
    return spec, ordered
