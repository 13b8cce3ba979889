"""What the subcommands share: ``--threads`` and ``--device``, the codec of ``--codec`` / ``--checkpoint``, image
arguments, where the map commands write (checked before any work), and the output format (``--format tcz`` or a
standard HEVC / H.264 stream, :mod:`taskcomp.codec.standard`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..bitstream import decode, decoded_array
from ..codec import create_codec
from ..codec.standard import DEFAULT_CRF, STANDARD_FORMATS, decode_standard, require_pyav
from ..datasets import DataError, list_images
from ..devices import describe_device, resolve_device
from ..io import save_image, tensor_to_image
from ..outputs import OutputError, OutputPlan, check_suffix
from ..pictures import save_map_output, save_overlay

__all__ = [
    "IMAGE_ERRORS",
    "apply_threads",
    "device",
    "load_codec",
    "image_args",
    "outputs",
    "side_outputs",
    "map_outputs",
    "save_pictures",
    "format_args",
    "format_suffix",
    "check_format_suffix",
]

#: Errors of one image that do not stop the other images of a batch.
IMAGE_ERRORS = (ValueError, OSError, MemoryError, RuntimeError)


def apply_threads(a) -> None:
    """``--threads N``: checked (>= 1, one-line error) and set with ``torch.set_num_threads``; no-op without it."""
    n = getattr(a, "threads", None)
    if n is None:
        return
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)


def format_args(a) -> tuple[str, float | None, str | None]:
    """``--format``, ``--crf`` and ``--chroma`` of compress / optimize, checked before any work.

    Returns:
        (fmt, crf, chroma): ``("tcz", None, None)`` for a .tcz (no ``--format``: the default); for ``hevc`` /
        ``h264`` the CRF of a map of mean 0.5 in [0, 51] (``--crf``, default
        :data:`taskcomp.codec.standard.DEFAULT_CRF`) and ``auto`` / ``420`` / ``444``.

    Raises:
        ValueError: one line: ``--crf`` or ``--chroma`` with the .tcz format, a CRF outside [0, 51].
        taskcomp.codec.standard.MissingExtraError: hevc / h264 without PyAV (one line naming the extra).
    """
    fmt = getattr(a, "format", None) or "tcz"
    crf, chroma = getattr(a, "crf", None), getattr(a, "chroma", None)
    if fmt == "tcz":
        for opt, v in (("--crf", crf), ("--chroma", chroma)):
            if v is not None:
                raise ValueError(
                    f"{opt} applies to --format hevc or h264; the .tcz format has none (its rate and quality "
                    "follow the quality map)"
                )
        return "tcz", None, None
    if fmt not in STANDARD_FORMATS:
        raise ValueError(f"--format must be tcz, {' or '.join(STANDARD_FORMATS)}, got {fmt!r}")
    crf = DEFAULT_CRF if crf is None else crf
    if not 0.0 <= crf <= 51.0:  # NaN fails too
        raise ValueError(f"--crf must lie in [0, 51] (x265/x264's rate factor; lower is better quality), got {crf}")
    require_pyav()  # a missing extra is said before any work
    return fmt, float(crf), chroma or "auto"


def format_suffix(fmt: str) -> str:
    """The file suffix a format's outputs get in a folder: ``.tcz``, ``.hevc``, ``.h264``."""
    return ".tcz" if fmt == "tcz" else STANDARD_FORMATS[fmt].suffixes[0]


def check_format_suffix(path, fmt: str, option: str = "-o") -> None:
    """Refuse an output file name whose extension contradicts ``fmt`` (:func:`taskcomp.outputs.check_suffix` for
    .tcz; ``.hevc`` / ``.h265`` / ``.265`` for hevc, ``.h264`` / ``.264`` / ``.avc`` for h264). A name without
    extension passes.

    Raises:
        taskcomp.outputs.OutputError: one line naming ``path``, the format and the extensions to use.
    """
    s = os.path.splitext(str(path))[1].lower()
    if not s:
        return
    if fmt == "tcz":
        named = next((f.name for f in STANDARD_FORMATS.values() if s in f.suffixes), None)
        if named is not None:
            raise OutputError(
                f"{option} {path}: the name says an {named} stream, but the output is a .tcz file: add "
                f"--format {named}, or name it .tcz"
            )
        check_suffix(path, "tcz", option)
        return
    suffixes = STANDARD_FORMATS[fmt].suffixes
    if s not in suffixes:
        raise OutputError(
            f"{option} {path}: the output is a raw {fmt} stream (--format {fmt}), but the name says {s}; name it "
            + " or ".join(suffixes)
        )


def device(a):
    """The command's device (``--device``), announced in the first line the command prints; applies
    ``--threads``."""
    apply_threads(a)
    dev = resolve_device(getattr(a, "device", "auto"))
    print(f"taskcomp {a.command}: device {describe_device(dev)}")
    return dev


def load_codec(a, device=None):
    """The codec of ``--codec`` / ``--checkpoint`` on ``device``."""
    # No --codec with a --checkpoint: the checkpoint's own codec (a widened sft-medium, a context codec, ...).
    return create_codec(a.codec, checkpoint=a.checkpoint, device=device)


def image_args(paths: list[str]):
    """Image files and folders (searched recursively) -> sorted paths with distinct file names (records are
    keyed by file name)."""
    found = []
    for s in paths:
        p = Path(s)
        if p.is_dir():
            found += list_images(p)
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"no such image file or folder: {s}")
    if not found:
        raise DataError(f"no images in {' '.join(paths)}")
    names = [p.name for p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"images must have distinct file names; given more than once: {', '.join(twice[:5])}")
    return sorted(found, key=lambda p: p.name)


def outputs(images, output: str, save_map: str | None, suffix: str = ".tcz"):
    """Where each image's .tcz and map go: ``-o FILE`` for one image, ``-o FOLDER`` (and ``--save-map FOLDER``)
    for several, one ``STEM.tcz`` / ``STEM.png`` per image."""
    out = Path(output)
    if len(images) == 1 and out.suffix and not out.is_dir():
        return [(out, Path(save_map) if save_map else None)]
    if out.suffix and not out.is_dir():
        raise ValueError(f"with several images, -o must be a folder (got the file name {out})")
    maps = Path(save_map) if save_map else None
    if maps is not None and maps.suffix and not maps.is_dir() and len(images) > 1:
        raise ValueError(f"with several images, --save-map must be a folder (got the file name {maps})")
    stems = [p.stem for p in images]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(
            f"outputs are named by file stem, and these stems repeat: {', '.join(twice[:5])}; "
            "rename the images or run them separately"
        )
    pairs = []
    for p in images:
        m = None
        if maps is not None:
            m = maps if (len(images) == 1 and maps.suffix) else maps / f"{p.stem}.png"
        pairs.append((out / f"{p.stem}{suffix}", m))
    return pairs


def side_outputs(images, path: str | None, option: str):
    """Per image, where ``--save-overlay`` / ``--save-decoded`` writes (None when not asked): PATH itself for one
    image and a file name, else PATH/STEM.png for each image (PATH a folder)."""
    if not path:
        return [None] * len(images)
    p = Path(path)
    if len(images) == 1 and p.suffix and not p.is_dir():
        return [p]
    if p.suffix and not p.is_dir():
        raise ValueError(f"with several images, {option} must be a folder (got the file name {p})")
    return [p / f"{i.stem}.png" for i in images]


def map_outputs(a, images):
    """Where optimize / ocr-map write for ``images``, checked before any work (:class:`taskcomp.outputs.OutputPlan`):
    no output on an input (image, checkpoint, predictor, model file) or on another output (.tcz, map picture and
    exact map, overlay, decoded image, --json), and each file's extension fits what it holds (``--format``: a
    .tcz, or a .hevc / .h264 stream).

    Returns (dests {image: (.tcz / .hevc / .h264 path, map path or None)}, sides {image: (overlay or None, decoded or None)},
    maps_folder (--save-map names a folder: STEM.png and STEM.npy per image)).

    Raises:
        ValueError: one line (taskcomp.outputs.OutputError for collisions and extensions).
    """
    fmt = getattr(a, "format", None) or "tcz"
    dests = dict(zip(images, outputs(images, a.output, a.save_map, suffix=format_suffix(fmt))))
    sides = dict(
        zip(
            images,
            zip(
                side_outputs(images, a.save_overlay, "--save-overlay"),
                side_outputs(images, a.save_decoded, "--save-decoded"),
            ),
        )
    )
    maps_folder = a.save_map is not None and (
        len(images) > 1 or os.path.isdir(a.save_map) or not os.path.splitext(a.save_map)[1]
    )
    plan = OutputPlan()
    for p in images:
        plan.add_input(p, f"the input image {p}")
    for opt in ("checkpoint", "predictor", "model"):
        p = getattr(a, opt, None)
        if p and os.path.isfile(p):
            plan.add_input(p, f"the --{opt} file {p}")
    for p in images:
        (dst, m), (ov, dec) = dests[p], sides[p]
        plan.add_output(dst, "-o")
        plan.add_output(m, "--save-map")
        if m is not None and maps_folder and m.suffix.lower() == ".png":
            plan.add_output(m.with_suffix(".npy"), "--save-map")
        plan.add_output(ov, "--save-overlay")
        plan.add_output(dec, "--save-decoded")
    plan.add_output(getattr(a, "json", None), "--json", results_file=True)  # replaces only a taskcomp results file
    plan.check()  # an output on an input is said first, then a name that contradicts the content
    if len(images) == 1 and dests[images[0]][0] == Path(a.output):
        check_format_suffix(a.output, fmt, "-o")
    for opt, j in (("--save-overlay", 0), ("--save-decoded", 1)):
        p = sides[images[0]][j]
        if len(images) == 1 and p is not None:
            check_suffix(p, "image", opt)
    if getattr(a, "json", None) not in (None, "-"):
        check_suffix(a.json, "json", "--json")
    return dests, sides, maps_folder


def save_pictures(codec, x, qmap, data, map_dst, also_exact, overlay_dst, decoded_dst, fmt: str = "tcz") -> None:
    """--save-map (a picture for .png, the exact map for .npy/.tif/.pgm; a folder gets both), --save-overlay
    (the map over the coded image) and --save-decoded (``data`` decoded: a .tcz with ``codec``, or an ``fmt``
    hevc / h264 stream with FFmpeg's decoder) of one image x (1, 3, H, W)."""
    if map_dst is not None:
        save_map_output(qmap, map_dst, also_exact=also_exact)
    if overlay_dst is not None:
        save_overlay(tensor_to_image(x), qmap, overlay_dst)
    if decoded_dst is not None and fmt != "tcz":
        save_image(decode_standard(data, fmt), decoded_dst)
    elif decoded_dst is not None:
        with torch.inference_mode():  # as decompress writes it: one channel (mode L) when the source was gray
            save_image(decoded_array(decode(codec, data), data), decoded_dst)
