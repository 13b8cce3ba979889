"""Where a command writes, checked before it writes: outputs never land on an input or on each other, and an
output's extension says what it holds; batches of images report every failure at the end.

A command lists its inputs and the files it will write in an :class:`OutputPlan` and calls
:meth:`OutputPlan.check` before any work: a path that names one of the inputs (also as another spelling, through a
symlink or as a hard link of it) or another output is a one-line :class:`OutputError`, and nothing is touched.
:func:`check_suffix` refuses an output name whose extension contradicts what is written (a ``.png`` name for a
``.tcz`` file, an unknown image extension). :class:`BatchError` carries the per-image failures of a batch whose
other images were done. This module imports no heavy library.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = [
    "OutputError",
    "OutputPlan",
    "BatchError",
    "BatchFailures",
    "failure_text",
    "file_key",
    "check_suffix",
    "check_parent",
    "IMAGE_SUFFIXES",
    "file_sha256",
    "is_results_file",
    "check_results_file",
]


class OutputError(ValueError):
    """An output path that would overwrite an input or another output, or whose extension contradicts its
    content (one line, naming the user's paths)."""


class BatchError(ValueError):
    """Some images of a batch failed; the others were done and their outputs written.

    Attributes:
        failures: ``[(path, message), ...]`` in input order, one per failed image.
        n_total: the number of images in the batch (done, skipped and failed).
    """

    def __init__(self, failures: list[tuple[str, str]], n_total: int, what: str = "image"):
        self.failures = list(failures)
        self.n_total = int(n_total)
        n = len(self.failures)
        super().__init__(
            f"{n} of {n_total} {what}{'s' if n_total != 1 else ''} failed; "
            f"the other {n_total - n} {'is' if n_total - n == 1 else 'are'} done"
        )

    def lines(self) -> list[str]:
        """One line per failure (``PATH: message``, the path not repeated when the message names it)."""
        return [msg if str(path) in msg else f"{path}: {msg}" for path, msg in self.failures]


def failure_text(e: BaseException) -> str:
    """One line for an item's failure in a batch (the message; the error's class too where it is not a
    ValueError or OSError, or the message is empty)."""
    text = " ".join(str(e).split())
    return text if isinstance(e, (ValueError, OSError)) and text else f"{type(e).__name__}: {text}"


class BatchFailures:
    """The failures of a batch's items, noted as they happen (the other items go on) and raised at the end.

    Example::

        failures = BatchFailures(len(images), single=len(images) == 1)
        for p in images:
            try:
                work(p)
            except ValueError as e:
                failures.note(p, e)   # says "p: failed (...); going on with the other images"
        failures.raise_if_any()       # BatchError listing every failure

    Args:
        n_total: the number of items in the batch.
        what: what an item is, for the messages ("image", "file").
        single: the batch is one item given alone: :meth:`note` re-raises its error as it is (so is every error
            under ``TASKCOMP_DEBUG``).
        log: where :meth:`note` says each failure (print).
        on_note: called as ``on_note(path, message)`` after each failure is noted (e.g. to keep a --json file).
    """

    def __init__(self, n_total: int, what: str = "image", single: bool = False, log=print, on_note=None):
        self.n_total, self.what, self.single, self.log, self.on_note = int(n_total), what, bool(single), log, on_note
        self.failures: list[tuple[str, str]] = []

    def note(self, path, exc: BaseException) -> str:
        """Note that ``path`` failed with ``exc`` and say so in one line; returns the line's message. Raises ``exc``
        itself for a single item (or under ``TASKCOMP_DEBUG``)."""
        if self.single or os.environ.get("TASKCOMP_DEBUG"):
            raise exc
        msg = failure_text(exc)
        self.failures.append((str(path), msg))
        self.log(f"{path}: failed ({msg}); going on with the other {self.what}s")
        if self.on_note is not None:
            self.on_note(str(path), msg)
        return msg

    def __bool__(self) -> bool:
        return bool(self.failures)

    def raise_if_any(self) -> None:
        """Raises :class:`BatchError` with every noted failure (nothing when none was noted)."""
        if self.failures:
            raise BatchError(self.failures, self.n_total, what=self.what)


#: Extensions of the image formats taskcomp writes (Pillow's writers of RGB images), lower case.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm", ".tga")
#: Extensions that name something other than an image (what a .json file, a map or a .tcz must not be called).
_OTHER_SUFFIXES = {
    ".tcz": "a compressed .tcz file",
    ".npy": "a NumPy array",
    ".json": "JSON",
    ".yaml": "YAML",
    ".yml": "YAML",
    ".pth": "a checkpoint",
    ".pt": "a checkpoint",
    ".csv": "CSV",
    ".txt": "text",
    ".jsonl": "JSON lines",
}


def _kind_of(suffix: str) -> str:
    s = suffix.lower()
    if s in _OTHER_SUFFIXES:
        return _OTHER_SUFFIXES[s]
    if s in IMAGE_SUFFIXES or s in (".gif", ".pgm", ".pbm", ".ico", ".jp2", ".j2k"):
        return f"an image ({s})"
    return f"a {s} file"


def check_suffix(path: str | Path, kind: str, option: str = "-o") -> None:
    """Refuse an output file name whose extension contradicts what is written there.

    Args:
        path: the output file (a name without extension passes: nothing is claimed).
        kind: ``"tcz"`` (a compressed file: ``.tcz``), ``"image"`` (one of :data:`IMAGE_SUFFIXES`) or ``"json"``
            (anything but an image, ``.tcz``, ``.npy`` or another known non-JSON kind).
        option: the option that named ``path``, for the message.

    Raises:
        OutputError: one line naming ``path``, what it would hold and the extensions to use.
    """
    suffix = os.path.splitext(str(path))[1]
    if not suffix:
        return
    s = suffix.lower()
    if kind == "tcz":
        if s != ".tcz":
            raise OutputError(
                f"{option} {path}: the output is a compressed .tcz file, but the name says "
                f"{_kind_of(s)}; name it .tcz (decompress makes images)"
            )
    elif kind == "image":
        if s not in IMAGE_SUFFIXES:
            hint = " (that is the compressed format: compress writes it)" if s == ".tcz" else ""
            raise OutputError(
                f"{option} {path}: {s} is not an image format taskcomp writes{hint}; use one of "
                f"{', '.join(IMAGE_SUFFIXES)} (.png keeps the decoded pixels exactly)"
            )
    elif kind == "json":
        if s in IMAGE_SUFFIXES or (s in _OTHER_SUFFIXES and s not in (".json", ".txt")):
            raise OutputError(f"{option} {path}: the output is JSON, but the name says {_kind_of(s)}; name it .json")
    else:
        raise ValueError(f"unknown output kind {kind!r}")


def file_key(path: str | Path) -> set:
    """What identifies the file ``path`` names: its real path (symlinks resolved, ``..`` applied, as the write
    that makes missing folders would resolve it) and, for an existing file, its (device, inode), so another
    spelling, a symlink and a hard link of one file share a key. Returns a set of keys."""
    p = os.fspath(path)
    keys = {("path", os.path.normcase(os.path.realpath(os.path.abspath(p))))}
    try:
        st = os.stat(p)
        keys.add(("inode", st.st_dev, st.st_ino))
    except OSError:
        pass
    return keys


class OutputPlan:
    """The inputs a command reads and the files it writes, checked against each other before any work.

    Example::

        plan = OutputPlan()
        plan.add_input("photo.png", "the input image")
        plan.add_output("photo.png", "-o")
        plan.check()   # OutputError: -o photo.png would overwrite the input image photo.png ...
    """

    def __init__(self) -> None:
        self.inputs: list[tuple[str, str]] = []
        self.outputs: list[tuple[str, str]] = []
        self.results_files: list[tuple[str, str]] = []

    def add_input(self, path: str | Path | None, role: str = "input") -> None:
        """Record a file the command reads (None: ignored); ``role`` names it in messages ("the input image
        x.png": the user's spelling, since an output may reach it by another)."""
        if path is not None and str(path) != "-":
            self.inputs.append((str(path), role))

    def add_output(self, path: str | Path | None, option: str = "-o", results_file: bool = False) -> None:
        """Record a file the command writes (None or ``-``: ignored); ``option`` names where it comes from.
        ``results_file``: the file is a --json results file, and an existing file there is only replaced when it is
        one (:func:`check_results_file`)."""
        if path is not None and str(path) != "-":
            self.outputs.append((str(path), option))
            if results_file:
                self.results_files.append((str(path), option))

    def check(self) -> None:
        """Every output is a new place: not an input, not another output, not an existing folder; and its
        nearest existing folder is a writable folder (:func:`check_parent`).

        Raises:
            OutputError: one line naming the output's option and path and what it would overwrite.
        """
        ins: dict = {}
        for path, role in self.inputs:
            for k in file_key(path):
                ins.setdefault(k, (path, role))
        seen: dict = {}
        for path, option in self.outputs:
            if os.path.isdir(path):
                raise OutputError(f"{option} {path} is a folder; name a file (or give several inputs to fill a folder)")
            keys = file_key(path)
            hit = next((k for k in keys if k in ins), None)
            if hit is not None:
                _, role = ins[hit]
                raise OutputError(
                    f"{option} {path} would overwrite {role}; write the output elsewhere (nothing was written)"
                )
            hit = next((k for k in keys if k in seen), None)
            if hit is not None:
                other, other_opt = seen[hit]
                both = path if other == path else f"{other} and {path}"
                raise OutputError(
                    f"{other_opt} and {option} would both write {both}; give them different names (nothing was written)"
                    if other_opt != option
                    else f"{option}: two outputs would be written to {both} (inputs with one file name "
                    "stem into one folder); rename the inputs or run them separately (nothing was "
                    "written)"
                )
            for k in keys:
                seen[k] = (path, option)
        for path, option in self.results_files:  # a --json file replaces only an earlier taskcomp results file
            check_results_file(path, option)
        for path, option in self.outputs:  # and each can be written (checked without making any folder)
            check_parent(path, option)


def is_results_file(path: str | Path) -> bool:
    """``path`` holds a taskcomp results file: the JSON object ``--json FILE`` writes (optimize, ocr-map:
    ``{"command", "status", "settings", "images", "failed"}``), i.e. an ``images`` list beside a ``settings``
    object (or, as taskcomp wrote it before settings were recorded, beside a ``command`` name). False for anything
    else: another JSON document, text that is not JSON, a file that cannot be read."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            if f.read(64).lstrip()[:1] != "{":  # not a JSON object: not read further
                return False
            f.seek(0)
            doc = json.load(f)
    except (OSError, ValueError):
        return False
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("images"), list)
        and (isinstance(doc.get("settings"), dict) or isinstance(doc.get("command"), str))
    )


def check_results_file(path: str | Path, option: str = "--json") -> None:
    """An existing ``path`` may be replaced by a results file only when it is one (:func:`is_results_file`): a
    user's ``settings.json`` or notes are never written over. A missing file passes.

    Raises:
        OutputError: one line naming ``path``.
    """
    if os.path.lexists(path) and not os.path.isdir(path) and not is_results_file(path):
        raise OutputError(
            f"{option} {path} exists and is not a taskcomp results file; choose another name or "
            "remove it (nothing was written)"
        )


def check_parent(path: str | Path, option: str) -> None:
    """``option``'s file ``path`` can be written: its nearest existing folder is a folder and writable. Creates
    nothing (missing folders are made when the file is written).

    Raises:
        OutputError: one line naming ``path`` and the folder.
    """
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    probe = parent
    while not os.path.exists(probe):
        up = os.path.dirname(probe)
        if up == probe:
            break
        probe = up
    if not os.path.isdir(probe):
        raise OutputError(f"{option} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: the folder {probe} is not writable")


def file_sha256(path: str | Path) -> str | None:
    """Hex SHA-256 of a file's bytes (None when it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()
