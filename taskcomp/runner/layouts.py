"""Data layouts of the recipe runner: how a recipe's ``data:`` turns into the list of items to run.

A recipe names its data either as a string, the folder under the data root read with the task's default
layout (``data: imagenet-sample``), or as a mapping with a path, a layout and the layout's options::

    data: {path: /data/imagenet/val, layout: imagefolder}
    data: {path: val2017, layout: coco, annotations: annotations/instances_val2017.json, images: .}

``path`` is absolute or relative to the data root (``~`` and ``$VARS`` expand); a layout's own path options
(``labels``, ``annotations``, ``images``, ``text_dir``, ...) are absolute or relative to ``path``.

Every item is a dict with ``id`` (unique, stable across runs: records are keyed by it; the path relative to
the data folder, or the file name for flat layouts), ``path`` (the image) and the task's fields:
classification ``label`` (class index in the model's ImageNet class order, or None when unlabeled); text
``boxes`` (SROIE-style csv or None) and ``gt_text`` (str or None); detection ``coco_id`` and ``annotations``
(the COCO JSON). A folder that does not match its layout gets a one-line :class:`LayoutError` saying what the
layout expects and what was found.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..datasets import IMAGE_SUFFIXES

__all__ = [
    "LayoutError",
    "LAYOUTS",
    "DEFAULT_LAYOUT",
    "register_layout",
    "data_spec",
    "list_layout",
    "list_items",
    "annotation_file",
    "imagenet_classes",
    "read_coco",
    "coco_ground_truth",
]


class LayoutError(ValueError):
    """A data folder does not match its layout, or the layout does not fit the recipe (one line)."""


@dataclass
class Layout:
    """A registered layout: the function listing the items, the tasks it serves and its options."""

    name: str
    fn: Callable[..., list[dict[str, Any]]]
    tasks: tuple[str, ...]
    options: tuple[str, ...] = ()
    expects: str = ""
    doc: str = field(default="", repr=False)


LAYOUTS: dict[str, Layout] = {}
DEFAULT_LAYOUT = {"classification": "imagenet-sample", "text": "sroie", "detection": "coco"}
_SYNSET = re.compile(r"^n\d{8}$")
_VAL_NUMBER = re.compile(r"ILSVRC2012_val_(\d{8})")


def register_layout(name: str, tasks: tuple[str, ...], options: tuple[str, ...] = (), expects: str = ""):
    """Decorator registering ``fn(path, options, recipe) -> items`` as layout ``name`` for ``tasks``."""

    def deco(fn):
        LAYOUTS[name] = Layout(name, fn, tuple(tasks), tuple(options), expects, fn.__doc__ or "")
        return fn

    return deco


# ---------------------------------------------------------------------------------------------- helpers


def _expand(p: str | Path) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(str(p))))


def _under(base: Path, p: str | Path) -> Path:
    """``p`` if absolute, else ``base / p`` (after ~ and $VAR expansion)."""
    p = _expand(p)
    return p if p.is_absolute() else base / p


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")


def _images(folder: Path, recursive: bool) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if _is_image(p) and not any(s.startswith(".") for s in p.relative_to(folder).parts))


def _describe(folder: Path) -> str:
    """A short account of what a folder holds, for error messages."""
    if not folder.exists():
        return f"{folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    dirs = sorted(p.name for p in entries if p.is_dir())
    imgs = [p for p in entries if _is_image(p)]
    other = sorted(p.name for p in entries if p.is_file() and not _is_image(p))
    parts = []
    if dirs:
        parts.append(
            f"{len(dirs)} subfolder{'s' * (len(dirs) != 1)} ({', '.join(dirs[:3])}{', ...' * (len(dirs) > 3)})"
        )
    parts.append(f"{len(imgs)} image file{'s' * (len(imgs) != 1)} at the top")
    if other:
        parts.append(f"other files {', '.join(other[:3])}{', ...' * (len(other) > 3)}")
    return f"{folder} holds " + ", ".join(parts)


def _fail(layout: str, folder: Path, problem: str | None = None) -> LayoutError:
    exp = LAYOUTS[layout].expects
    msg = f"layout {layout} expects {exp}" + (f"; {problem}" if problem else f"; found: {_describe(folder)}")
    return LayoutError(msg.replace("\n", " "))


def _need_dir(layout: str, folder: Path) -> None:
    if not folder.is_dir():
        raise _fail(layout, folder, f"found: {_describe(folder)}")


def _model_name(recipe: dict[str, Any] | None) -> str | None:
    if not recipe:
        return None
    return (recipe.get("objective") or {}).get("model")


def imagenet_classes(recipe: dict[str, Any] | None = None, options: dict[str, Any] | None = None) -> list[str]:
    """The WordNet synset ids in the class order of the recipe's classifier: index i is logit i.

    ``options["classes"]`` overrides: a timm ImageNet subset name (``imagenet-1k``, ``imagenet-12k``, ...) or
    a text file with one synset per line. Otherwise the subset is inferred from the objective model's timm
    pretrained config (its number of classes, without loading weights); ImageNet-1k (the torchvision / timm
    order, synsets sorted) when it cannot be inferred.
    """
    from timm.data import ImageNetInfo, infer_imagenet_subset

    spec = (options or {}).get("classes")
    if spec and not str(spec).startswith("imagenet"):
        path = _expand(spec)
        if not path.is_file():
            raise LayoutError(f"classes: {spec} is neither a timm ImageNet subset name nor a synset list file")
        return [ln.split()[0] for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    subset, offset = spec or "imagenet-1k", 0
    name = _model_name(recipe)
    if not spec and name:
        from ..task_models import resolve_classifier_name

        try:
            import timm

            cfg = timm.models.get_pretrained_cfg(resolve_classifier_name(name))
            if cfg:
                subset = infer_imagenet_subset(cfg.to_dict()) or subset
                offset = int(cfg.label_offset or 0)  # e.g. 1001-class models with a background class 0
        except Exception:  # unknown to timm's registry: keep ImageNet-1k
            pass
    try:
        return ["background"] * offset + list(ImageNetInfo(subset).label_names())
    except Exception as e:
        raise LayoutError(f"classes: unknown ImageNet subset {subset!r} ({e})") from None


def _class_index(name: str, classes: list[str], index: dict[str, int], where: str) -> int:
    """Class index of a synset id or a decimal class index string."""
    name = name.strip()
    if _SYNSET.match(name):
        if name not in index:
            raise LayoutError(f"{where}: synset {name} is not one of the model's {len(classes)} ImageNet classes")
        return index[name]
    if name.isdigit():
        k = int(name)
        if k >= len(classes):
            raise LayoutError(f"{where}: class index {k} out of range 0..{len(classes) - 1}")
        return k
    raise LayoutError(
        f"{where}: {name!r} is neither a WordNet synset id (n01440764) nor a class index (0-{len(classes) - 1})"
    )


# ---------------------------------------------------------------------------------------------- layouts


@register_layout(
    "imagenet-sample",
    ("classification",),
    (),
    "DIR/labels.csv (columns file, class_index) and the images in DIR/images/",
)
def imagenet_sample(path: Path, options: dict[str, Any], recipe: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The bundled ImageNet sample: ``images/`` and ``labels.csv`` (file, synset, class_index, name); ids are
    the file names."""
    labels, images = path / "labels.csv", path / "images"
    if not labels.is_file() or not images.is_dir():
        raise _fail("imagenet-sample", path)
    with open(labels, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is not part of a column name
        rows = [{(k or "").strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    if not rows or not {"file", "class_index"} <= set(rows[0]):
        raise _fail("imagenet-sample", path, f"{labels} has columns {', '.join(rows[0]) if rows else '(empty)'}")
    items = []
    for n, r in enumerate(rows, 2):  # extra columns are ignored; file and class_index must be there
        name, k = (r.get("file") or "").strip(), (r.get("class_index") or "").strip()
        if not name or not k.isdigit():
            raise _fail(
                "imagenet-sample",
                path,
                f"{labels} line {n}: file {name!r}, class_index {k!r} (a file name and a class number are needed)",
            )
        items.append({"id": name, "path": images / name, "label": int(k)})
    missing = [it["id"] for it in items if not it["path"].is_file()]
    if missing:
        raise _fail(
            "imagenet-sample",
            path,
            f"{len(missing)} of the {len(items)} files in labels.csv are not in {images} (first: {missing[0]})",
        )
    return items


@register_layout(
    "imagefolder",
    ("classification",),
    ("classes",),
    "a torchvision ImageFolder: one subfolder per class named by its WordNet id (n01440764) or its "
    "class index (0-999), holding the images",
)
def imagefolder(path: Path, options: dict[str, Any], recipe: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """torchvision ImageFolder. The class index is the synset's position in the model's ImageNet class order
    (not the folder's sorted position, which differs when classes are missing); folders named 0..999 give the
    index directly. Ids are ``synset/file``."""
    _need_dir("imagefolder", path)
    dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise _fail(
            "imagefolder",
            path,
            f"found: {_describe(path)} (a flat folder: use layout folder for "
            "label-free runs, or imagenet-flat with a ground-truth file)",
        )
    classes = imagenet_classes(recipe, options)
    index = {s: i for i, s in enumerate(classes)}
    items = []
    for d in dirs:
        if not (_SYNSET.match(d.name) or d.name.isdigit()):
            raise _fail(
                "imagefolder", path, f"found subfolder {d.name!r} in {path}, neither a WordNet id nor a class index"
            )
        k = _class_index(d.name, classes, index, f"imagefolder {path}")
        items += [{"id": p.relative_to(path).as_posix(), "path": p, "label": k} for p in _images(d, recursive=True)]
    if not items:
        raise _fail("imagefolder", path, f"the {len(dirs)} class subfolders of {path} hold no images")
    return items


def _find_gt(path: Path) -> Path | None:
    for folder in (path, path.parent):
        for name in (
            "LOC_val_solution.csv",
            "ILSVRC2012_validation_ground_truth.txt",
            "val_labels.csv",
            "val_labels.txt",
            "labels.csv",
            "labels.txt",
            "val.txt",
            "ground_truth.txt",
        ):
            if (folder / name).is_file():
                return folder / name
    return None


_GT_FORMATS = (
    "Kaggle LOC_val_solution.csv (ImageId,PredictionString), a two-column 'file,synset' or "
    "'file class_index' text/csv, or the devkit's ILSVRC2012_validation_ground_truth.txt with its meta.mat"
)


def _devkit_ids_to_synsets(meta: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> WNID of the 1000 leaf classes from the devkit's ``meta.mat``."""
    from scipy.io import loadmat

    syn = loadmat(str(meta), squeeze_me=True)["synsets"]
    names = syn.dtype.names
    out = {}
    for s in syn:
        rec = dict(zip(names, s))
        if int(rec.get("num_children", 0)) == 0:
            out[int(rec["ILSVRC2012_ID"])] = str(rec["WNID"])
    return out


def _read_gt(gt: Path, options: dict[str, Any], base: Path) -> dict[str, str]:
    """Ground-truth file -> {image key (file name or stem): synset or class index string}."""
    lines = [ln.strip() for ln in gt.read_text(encoding="utf-8-sig", errors="replace").splitlines() if ln.strip()]
    if not lines:
        raise LayoutError(f"imagenet-flat: ground-truth file {gt} is empty; accepted: {_GT_FORMATS}")
    head = [h.strip().lower() for h in lines[0].split(",")]
    if "imageid" in head and "predictionstring" in head:  # Kaggle LOC_val_solution.csv
        i, j = head.index("imageid"), head.index("predictionstring")
        rows = list(csv.reader(lines[1:]))
        return {r[i].strip(): r[j].split()[0] for r in rows if len(r) > max(i, j) and r[j].split()}
    if all(ln.isdigit() for ln in lines[:50]):  # devkit: one ILSVRC2012_ID per line, in file-number order
        meta = (
            _under(base, options["meta"])
            if options.get("meta")
            else next((p for p in (gt.parent / "meta.mat", base / "meta.mat") if p.is_file()), None)
        )
        if meta is None or not meta.is_file():
            raise LayoutError(
                f"imagenet-flat: {gt.name} holds devkit ILSVRC2012_IDs, whose order is not the "
                "model's; mapping them needs the devkit's meta.mat (option meta:, or beside the file); "
                f"accepted: {_GT_FORMATS}"
            )
        to_wnid = _devkit_ids_to_synsets(meta)
        try:
            return {f"ILSVRC2012_val_{n:08d}": to_wnid[int(v)] for n, v in enumerate(lines, 1)}
        except KeyError as e:
            raise LayoutError(
                f"imagenet-flat: ILSVRC2012_ID {e.args[0]} of {gt} is not a leaf class of {meta}"
            ) from None
    # Two columns (a header naming file/class columns is allowed): "file,synset", "file class_index", ...
    if "," in lines[0]:
        rows = list(csv.reader(lines))
    else:
        rows = [ln.split() for ln in lines]
    fcol, lcol = 0, 1
    hdr = [h.strip().lower() for h in rows[0]]
    label_names = ("class_index", "label", "class", "synset", "target", "wnid")
    if len(hdr) > 2 and any(h in label_names for h in hdr):  # e.g. labels.csv: file,synset,class_index,name
        fcol = next(
            (k for k, h in enumerate(hdr) if h in ("file", "filename", "file_name", "image", "imageid", "path")), 0
        )
        lcol = next(k for name in label_names for k, h in enumerate(hdr) if h == name)
    if len(rows[0]) < 2:
        raise LayoutError(f"imagenet-flat: cannot read {gt}: accepted: {_GT_FORMATS}")
    if not (_SYNSET.match(rows[0][lcol].strip()) or rows[0][lcol].strip().isdigit()):
        rows = rows[1:]  # header
    out = {}
    for r in rows:
        if len(r) <= max(fcol, lcol):
            raise LayoutError(f"imagenet-flat: line {r!r} of {gt} lacks a label column; accepted: {_GT_FORMATS}")
        out[r[fcol].strip()] = r[lcol].strip()
    return out


@register_layout(
    "imagenet-flat",
    ("classification",),
    ("labels", "meta", "classes"),
    "the images in one folder (e.g. ILSVRC2012_val_00000001.JPEG) and a ground-truth file "
    "(option labels:, or LOC_val_solution.csv / labels.txt / ILSVRC2012_validation_ground_truth.txt "
    "beside them)",
)
def imagenet_flat(path: Path, options: dict[str, Any], recipe: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The official flat val folder (or any flat folder) with a ground-truth file: Kaggle LOC_val_solution.csv,
    a two-column file/label text or csv (synset or class index), or the devkit's
    ILSVRC2012_validation_ground_truth.txt mapped through its meta.mat. Ids are the file names."""
    _need_dir("imagenet-flat", path)
    imgs = _images(path, recursive=False)
    if not imgs:
        raise _fail("imagenet-flat", path)
    gt = _under(path, options["labels"]) if options.get("labels") else _find_gt(path)
    if gt is None or not gt.is_file():
        raise _fail(
            "imagenet-flat",
            path,
            f"no ground-truth file {'at ' + str(gt) if gt else 'found'} (for unlabeled images use layout folder)",
        )
    table = _read_gt(gt, options, path)
    classes = imagenet_classes(recipe, options)
    index = {s: i for i, s in enumerate(classes)}
    items, missing = [], []
    for p in imgs:
        m = _VAL_NUMBER.search(p.name)
        key = next((k for k in (p.name, p.stem, m.group(0) if m else None) if k and k in table), None)
        if key is None:
            missing.append(p.name)
            continue
        items.append(
            {"id": p.name, "path": p, "label": _class_index(table[key], classes, index, f"imagenet-flat {gt}")}
        )
    if missing:
        raise LayoutError(
            f"imagenet-flat: {len(missing)} of {len(imgs)} images in {path} have no entry in {gt} "
            f"(first: {missing[0]}); accepted: {_GT_FORMATS}"
        )
    return items


@register_layout("folder", ("classification", "text"), (), "image files (png, jpg, ...) in a folder or its subfolders")
def folder(path: Path, options: dict[str, Any], recipe: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A plain folder of images, recursive, without labels (label-free objectives). Ids are the paths relative
    to the folder."""
    _need_dir("folder", path)
    imgs = _images(path, recursive=True)
    if not imgs:
        raise _fail("folder", path)
    return [{"id": p.relative_to(path).as_posix(), "path": p} for p in imgs]


@register_layout(
    "coco",
    ("detection",),
    ("annotations", "images"),
    "a COCO instances JSON (option annotations:, default DIR/instances.json or the only "
    "instances*.json in DIR or DIR/annotations) and its images (option images:, default DIR/images or DIR)",
)
def coco(path: Path, options: dict[str, Any], recipe: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Any COCO instances JSON plus an image folder; ids are the JSON's ``file_name``s."""
    ann = coco_annotations(path, options)
    category = None
    if recipe is not None and recipe.get("task", "detection") == "detection":
        category = recipe.get("coco_category", 1)
    d = read_coco(ann, category)
    images = (
        _under(path, options["images"])
        if options.get("images")
        else (path / "images" if (path / "images").is_dir() else path)
    )
    _need_dir("coco", images)
    items = [
        {"id": im["file_name"], "path": images / im["file_name"], "coco_id": im["id"], "annotations": ann}
        for im in sorted(d["images"], key=lambda i: i["file_name"])
    ]
    missing = [it["id"] for it in items if not it["path"].is_file()]
    if missing:
        raise LayoutError(
            f"layout coco: {len(missing)} of the {len(items)} images of {ann.name} are not in "
            f"{images} (first: {missing[0]}); set images: to their folder"
        )
    if not items:
        raise LayoutError(f"layout coco: {ann} lists no images")
    return items


def _coco_field(ann: Path, where: str, problem: str) -> LayoutError:
    return LayoutError(f"COCO file {ann}: {where} {problem}")


def _coco_int(ann: Path, where: str, value: Any, what: str) -> int:
    """``value`` of the field ``where`` as an integer (``int()`` of a number or a numeric string), else the one-line
    LayoutError naming the file and the field (``what``: what the field must be)."""
    try:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise _coco_field(ann, where, f"is {value!r}, not {what}") from None


def read_coco(ann: str | Path, category: int | None = None) -> dict[str, Any]:
    """Read and check a COCO instances JSON as exporters write it, before any compute; returns the dataset dict
    normalised for pycocotools' bbox evaluation.

    Optional fields may be missing: ``info``, ``licenses``, ``annotations`` (a file without ground truth, e.g. a
    test split: AP is then undefined, reported as NaN), and per annotation ``iscrowd`` (0), ``area`` (box width x
    height, in pixels^2), ``segmentation`` (not used for boxes) and ``id``. Annotation ids are renumbered 1..n
    when any is missing, repeated or 0 (pycocotools counts a match with ground-truth id 0 as no match).
    Crowd-only files are read (crowd boxes are ignored by COCO AP, which is then undefined).

    Args:
        ann: the JSON file.
        category: the recipe's ``coco_category``; when given it must be one of the file's categories.

    Raises:
        LayoutError: one line naming the file and the field: not JSON, no ``images`` list, an image without
            ``id`` or ``file_name``, an annotation without ``image_id``, ``category_id`` or a ``bbox`` of four
            finite numbers with non-negative width and height, no ``categories`` or none with id ``category``.
    """
    import math

    ann = Path(ann)
    try:
        with open(ann, encoding="utf-8-sig") as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise LayoutError(f"layout coco: {ann} is not JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise LayoutError(f"layout coco: {ann} is not UTF-8 text ({e.reason})") from None
    if not isinstance(d, dict) or not isinstance(d.get("images"), list):
        raise LayoutError(
            f"layout coco expects a COCO instances JSON with 'images' and 'annotations' lists (the "
            "annotations may be empty or absent); "
            f"{ann} has {', '.join(d) if isinstance(d, dict) else type(d).__name__}"
        )
    for i, im in enumerate(d["images"]):
        for key in ("id", "file_name"):
            if not isinstance(im, dict) or key not in im:
                raise _coco_field(ann, f"images[{i}]", f"has no '{key}'")
        _coco_int(ann, f"images[{i}].id", im["id"], "an integer id")  # the report scores by int(id)
    anns = d.get("annotations")
    if anns is None:
        anns = []
    if not isinstance(anns, list):
        raise _coco_field(ann, "'annotations'", f"is a {type(anns).__name__}, not a list")
    out = []
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise _coco_field(ann, f"annotations[{i}]", "is not an object")
        for key in ("image_id", "category_id", "bbox"):
            if key not in a:
                raise _coco_field(ann, f"annotations[{i}]", f"has no '{key}'")
        b = a["bbox"]
        if (
            not isinstance(b, list)
            or len(b) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in b)
            or b[2] < 0
            or b[3] < 0
        ):
            raise _coco_field(
                ann, f"annotations[{i}].bbox", f"is {b!r}, not [x, y, width, height] (finite, width and height >= 0)"
            )
        a = {**a, "iscrowd": _coco_int(ann, f"annotations[{i}].iscrowd", a.get("iscrowd") or 0, "0 or 1")}
        area = a.get("area")
        if not isinstance(area, (int, float)) or isinstance(area, bool) or not math.isfinite(area):
            a["area"] = float(b[2] * b[3])  # missing (exporters leave it out) or unusable: the box's
        out.append(a)
    ids = [a.get("id") for a in out]
    if any(not isinstance(i, int) or isinstance(i, bool) or i <= 0 for i in ids) or len(set(ids)) != len(ids):
        out = [{**a, "id": k} for k, a in enumerate(out, 1)]
    cats = d.get("categories")
    if category is not None:
        if not isinstance(cats, list) or not cats:
            raise _coco_field(ann, "'categories'", f"is missing or empty (the recipe scores coco_category {category})")
        known = [c.get("id") for c in cats if isinstance(c, dict)]
        if category not in known:
            raise _coco_field(
                ann,
                "'categories'",
                f"has no id {category} (the recipe's coco_category; ids: "
                f"{', '.join(map(str, known[:12]))}{', ...' if len(known) > 12 else ''})",
            )
    return {**d, "annotations": out, "categories": cats if isinstance(cats, list) else []}


def coco_ground_truth(ann: str | Path, category: int | None = None):
    """A pycocotools ``COCO`` object of :func:`read_coco`'s normalised dataset (pycocotools' own loader needs
    ``iscrowd``, ``area`` and annotation ``id`` in every annotation). Raises LayoutError as :func:`read_coco`."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = read_coco(ann, category)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_annotations(path: Path, options: dict[str, Any]) -> Path:
    """The COCO JSON of a ``coco`` layout folder (see the layout's ``expects``)."""
    if options.get("annotations"):
        ann = _under(path, options["annotations"])
        if not ann.is_file():
            raise _fail("coco", path, f"annotations file {ann} not found")
        return ann
    _need_dir("coco", path)
    if (path / "instances.json").is_file():
        return path / "instances.json"
    found = sorted(p for d in (path, path / "annotations") if d.is_dir() for p in d.glob("instances*.json"))
    if len(found) == 1:
        return found[0]
    problem = (
        f"several candidates ({', '.join(p.name for p in found)}): set annotations:"
        if found
        else f"no JSON found: {_describe(path)}"
    )
    raise _fail("coco", path, problem)


@register_layout(
    "sroie",
    ("text",),
    (),
    "DIR/images/ (receipts) and DIR/boxes/ (one SROIE csv per image: x1,y1,...,x4,y4,transcript)",
)
def sroie(path: Path, options: dict[str, Any], recipe: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """SROIE receipts: ``images/NNN.jpg`` and ``boxes/NNN.csv``; an image without a csv gets ``boxes`` None.
    Ids are the file names."""
    images, boxes = path / "images", path / "boxes"
    if not images.is_dir() or not boxes.is_dir():
        raise _fail("sroie", path, f"found: {_describe(path)} (images without box ground truth: layout documents)")
    imgs = _images(images, recursive=False)
    if not imgs:
        raise _fail("sroie", path, f"{images} holds no images")
    return [
        {"id": p.name, "path": p, "boxes": (b if (b := boxes / f"{p.stem}.csv").is_file() else None), "gt_text": None}
        for p in imgs
    ]


@register_layout(
    "documents",
    ("text",),
    ("text_dir", "boxes_dir"),
    "document images in a folder (recursive), with optional ground-truth text as a same-stem .txt "
    "beside each image or in text_dir",
)
def documents(path: Path, options: dict[str, Any], recipe: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A folder of document images; ground truth optional: ``stem.txt`` beside the image or in ``text_dir``
    (whole-page text), ``stem.csv`` in ``boxes_dir`` (SROIE-style lines). Ids are the paths relative to the
    folder."""
    _need_dir("documents", path)
    text_dir = _under(path, options["text_dir"]) if options.get("text_dir") else None
    boxes_dir = _under(path, options["boxes_dir"]) if options.get("boxes_dir") else None
    for name, d in (("text_dir", text_dir), ("boxes_dir", boxes_dir)):
        if d is not None and not d.is_dir():
            raise _fail("documents", path, f"{name} {d} is not a folder")
    skip = [d.resolve() for d in (text_dir, boxes_dir) if d is not None]
    imgs = [p for p in _images(path, recursive=True) if not any(p.resolve().is_relative_to(s) for s in skip)]
    if not imgs:
        raise _fail("documents", path)
    items, from_text_dir = [], 0
    for p in imgs:
        rel = p.relative_to(path)
        cands = [p.with_suffix(".txt")]
        if text_dir is not None:
            cands = [text_dir / rel.with_suffix(".txt"), text_dir / f"{p.stem}.txt"] + cands
        txt = next((c for c in cands if c.is_file()), None)
        from_text_dir += txt is not None and text_dir is not None and txt.parent != p.parent
        box = None
        if boxes_dir is not None:
            box = next(
                (c for c in (boxes_dir / rel.with_suffix(".csv"), boxes_dir / f"{p.stem}.csv") if c.is_file()), None
            )
        items.append(
            {
                "id": rel.as_posix(),
                "path": p,
                "boxes": box,
                "gt_text": txt.read_text(encoding="utf-8-sig", errors="replace") if txt else None,
            }
        )
    found = {"text_dir": from_text_dir, "boxes_dir": sum(it["boxes"] is not None for it in items)}
    for name, d in (("text_dir", text_dir), ("boxes_dir", boxes_dir)):
        if d is not None and not found[name]:
            raise _fail("documents", path, f"{name} {d} holds no file named after any of the {len(items)} images")
    return items


# ---------------------------------------------------------------------------------------------- recipes


def data_spec(recipe: dict[str, Any], data_root: str | Path) -> tuple[Path, str, dict[str, Any]]:
    """(data folder, layout name, layout options) of a recipe's ``data:``.

    A string is a folder under the data root read with the task's default layout (imagenet-sample, sroie,
    coco); a mapping gives ``path`` (absolute or relative to the data root), ``layout`` (default: the task's)
    and the layout's options.
    """
    task = recipe.get("task", "classification")
    data = recipe.get("data")
    root = Path(data_root)
    if isinstance(data, (str, Path)):
        path, layout, options = _under(root, data), DEFAULT_LAYOUT.get(task), {}
    elif isinstance(data, dict):
        options = dict(data)
        if "path" not in options:
            raise LayoutError("recipe data: needs a path (data: {path: DIR, layout: NAME, ...})")
        path = _under(root, options.pop("path"))
        layout = options.pop("layout", None) or DEFAULT_LAYOUT.get(task)
    else:
        raise LayoutError(f"recipe data: must be a folder name or {{path: DIR, layout: NAME}}, got {data!r}")
    if layout not in LAYOUTS:
        raise LayoutError(f"unknown data layout {layout!r}; layouts: {', '.join(LAYOUTS)}")
    lay = LAYOUTS[layout]
    if task not in lay.tasks:
        fits = [n for n, lo in LAYOUTS.items() if task in lo.tasks]
        raise LayoutError(f"layout {layout} does not serve task {task}; for {task}: {', '.join(fits)}")
    bad = sorted(set(options) - set(lay.options))
    if bad:
        raise LayoutError(f"layout {layout} has no option {bad[0]!r}; its options: {', '.join(lay.options) or 'none'}")
    return path, layout, options


def list_layout(
    layout: str, path: str | Path, options: dict[str, Any] | None = None, recipe: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The items of one folder read with one layout (no task checks; see :func:`list_items`)."""
    if layout not in LAYOUTS:
        raise LayoutError(f"unknown data layout {layout!r}; layouts: {', '.join(LAYOUTS)}")
    return LAYOUTS[layout].fn(Path(path), dict(options or {}), recipe)


def list_items(recipe: dict[str, Any], data_root: str | Path) -> list[dict[str, Any]]:
    """The items a recipe runs on, in a stable order, checked against the task.

    Every item has ``id``, ``path`` and the task's fields (classification ``label``, int or None; text
    ``boxes`` and ``gt_text``; detection ``coco_id`` and ``annotations``). Raises :class:`LayoutError` (one
    line) when the folder does not match the layout, ids repeat, or the layout lacks what the recipe needs:
    labels for classification maps with ``use_label: true`` (the default), box ground truth for text maps with
    ``use_gt: true`` and for ``reading: boxes``.
    """
    task = recipe.get("task", "classification")
    path, layout, options = data_spec(recipe, data_root)
    items = list_layout(layout, path, options, recipe)
    defaults = {"classification": {"label": None}, "text": {"boxes": None, "gt_text": None}}.get(task, {})
    items = [{**defaults, **it} for it in items]
    seen: set[str] = set()
    for it in items:
        if it["id"] in seen:
            raise LayoutError(f"layout {layout}: two images in {path} share the id {it['id']!r}")
        seen.add(it["id"])
    ta = (recipe.get("methods") or {}).get("task_aware")
    if task == "classification" and ta is not None and (ta or {}).get("use_label", True):
        n = sum(it["label"] is None for it in items)
        if n:
            raise LayoutError(
                f"layout {layout} gives no labels for {n} of {len(items)} images but the recipe's "
                "task_aware maps use labels: set methods.task_aware.use_label: false (label-free "
                "maps; top-1 then counts agreement with the original's prediction)"
            )
    if task == "text" and (ta or {}).get("use_gt", False):
        n = sum(it["boxes"] is None for it in items)
        if n:
            raise LayoutError(
                f"layout {layout} gives no box ground truth for {n} of {len(items)} images but the "
                "recipe's task_aware maps use it: set methods.task_aware.use_gt: false"
            )
    if task == "text" and recipe.get("reading") == "boxes":
        n = sum(it["boxes"] is None for it in items)
        if n:
            raise LayoutError(
                f"layout {layout} gives no box ground truth for {n} of {len(items)} images but the "
                "recipe reads the ground-truth boxes (reading: boxes): set reading: page"
            )
    return items


def annotation_file(recipe: dict[str, Any], data_root: str | Path) -> Path:
    """The COCO instances JSON of a detection recipe's data (what the report scores AP against)."""
    path, layout, options = data_spec({"task": "detection", **recipe}, data_root)
    return coco_annotations(path, options)
