"""Results files of batch commands (``optimize``, ``ocr-map``): one JSON document per run, rewritten after every
image, that a rerun with the same settings resumes from.

A command's arguments (an ``argparse.Namespace``, or any object with the same attributes) carry the run's state:
``json`` (the file, ``-`` for stdout, None for none), ``json_rows`` (the records so far), ``json_failed``,
``json_settings``, ``json_previous`` (records of an earlier run to reuse) and ``json_flush`` (rewrites the file).
:func:`with_json_results` sets them up around a command; :func:`json_row`, :func:`record_weights` and
:func:`done_before` are called by the command as it goes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path

from . import __version__
from .io import atomic_write
from .outputs import BatchError, check_parent, file_sha256, is_results_file

__all__ = [
    "with_json_results",
    "json_row",
    "jsonable",
    "command_settings",
    "previous_results",
    "record_weights",
    "done_before",
    "NOT_SETTINGS",
    "LOADED_SETTINGS",
]

#: Arguments that do not change what a command writes (left out of the settings --json records and compares).
NOT_SETTINGS = ("func", "command", "image", "input", "json", "device", "threads", "predictor_model")

#: Settings --json records once the command has loaded its models (:func:`record_weights`): what the arguments
#: alone do not say (a --checkpoint path whose file was replaced, another predictor, another taskcomp).
LOADED_SETTINGS = ("codec_weights", "predictor_weights", "taskcomp_version")


def json_row(a, path, dst, map_dst, W, H, lam, bpp, n_bytes, secs) -> dict:
    """One image's result for ``--json``: image, output, map (paths as given; map None), width and height (px), task
    (``a.task``, default ``text``), lambda, real bpp, bytes, seconds. Appended to ``a.json_rows`` when JSON is asked
    for; returned either way."""
    row = {
        "image": str(path),
        "output": str(dst),
        "map": str(map_dst) if map_dst else None,
        "width": int(W),
        "height": int(H),
        "task": getattr(a, "task", "text"),
        "lambda": float(lam),
        "bpp": float(bpp),
        "bytes": int(n_bytes),
        "seconds": float(secs),
    }
    if getattr(a, "json_rows", None) is not None:
        a.json_rows.append(row)
    return row


def jsonable(v):
    """JSON-safe values: numpy / torch scalars and arrays as Python numbers and lists, NaN and inf as null."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if hasattr(v, "tolist"):  # numpy / torch
        return jsonable(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def with_json_results(cmd):
    """``cmd`` with ``--json FILE``: one result per image (image, output, map, size, lambda, real bpp, bytes,
    seconds, and with --compare every compared map's bpp, PSNR and task metrics) written to FILE atomically
    after every image (so the images done are kept after a failure or Ctrl-C), beside the command's settings,
    the images that failed and a status (done, failed, interrupted, stopped); ``--json -`` prints it to stdout
    at the end and sends the human-readable lines to stderr. A FILE from an earlier run with the same settings
    (the arguments, and the codec's and predictor's weights and the taskcomp version: :func:`record_weights`)
    lets the command skip the images it records as done (:func:`done_before`). An existing FILE that is not a
    taskcomp results file (a user's settings.json, notes) is refused before any work, never replaced."""

    def run(a):
        dest = getattr(a, "json", None)
        if dest and dest != "-":  # found before minutes of work, not after
            check_parent(dest, "--json")
        for opt in ("save_map", "save_overlay", "save_decoded"):
            p = getattr(a, opt, None)
            if p and os.path.splitext(p)[1]:  # a file (a folder without suffix is created when needed)
                check_parent(p, "--" + opt.replace("_", "-"))
        a.json_rows = [] if dest else None
        a.json_failed = []
        a.json_settings = command_settings(a)  # as given: a command may fill in defaults (ocr-map's codec) as it runs
        a.json_previous = previous_results(a, dest) if dest and dest != "-" else {}

        def document(status: str) -> str:
            return json.dumps(
                jsonable(
                    {
                        "command": a.command,
                        "status": status,
                        "settings": a.json_settings,
                        "images": a.json_rows,
                        "failed": a.json_failed,
                    }
                ),
                indent=2,
            )

        def write(status: str) -> None:
            atomic_write(Path(dest), (document(status) + "\n").encode())

        a.json_flush = (lambda: write("running")) if dest and dest != "-" else None
        status = "stopped"  # an error that ended the command after some images were done
        try:
            with contextlib.redirect_stdout(sys.stderr) if dest == "-" else contextlib.nullcontext():
                cmd(a)
            status = "done"
        except BatchError:
            status = "failed"
            raise
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if dest and (status == "done" or a.json_rows or a.json_failed):  # a refusal before any work writes none
                if dest == "-":
                    print(document(status))
                else:
                    write(status)

    run.__name__ = cmd.__name__
    return run


def command_settings(a) -> dict:
    """The command's settings as --json records them: its plain arguments (None, str, int, float, bool), less
    inputs, device and threads (:data:`NOT_SETTINGS`) and the ``json_*`` state."""
    keep = {
        k: v
        for k, v in sorted(vars(a).items())
        if k not in NOT_SETTINGS and not k.startswith("json_") and (v is None or isinstance(v, (str, int, float, bool)))
    }
    return json.loads(json.dumps(jsonable(keep)))


def _differing(old: dict, new: dict) -> str:
    """The settings that differ between two settings dicts, as ``key old -> new`` (for the rerun's line)."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k} {old.get(k, 'not recorded')} -> {new.get(k, 'not recorded')}" for k in keys[:4]) + (
        f"; and {len(keys) - 4} more" if len(keys) > 4 else ""
    )


def previous_results(a, dest: str) -> dict:
    """--json FILE of an earlier run of this command: its records by image path when its settings as given are this
    run's (else {} and a line saying which setting differs and that every image is redone). The settings of the
    loaded models are compared once they are loaded (:func:`record_weights`). A file that is not a taskcomp results
    file gives {} here and is refused, before any work, by the command's output plan."""
    if not os.path.isfile(dest):
        return {}
    try:
        with open(dest, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    if not is_results_file(dest):
        return {}  # not a results file: the command's output plan refuses to write over it
    if doc.get("command") != a.command:
        was_cmd = f"taskcomp {doc['command']}" if isinstance(doc.get("command"), str) else "another command"
        print(f"--json {dest} holds results of {was_cmd}: every image is done again and the file replaced")
        return {}
    was = doc.get("settings") if isinstance(doc.get("settings"), dict) else {}
    a.json_previous_settings = was
    given = {k: v for k, v in was.items() if k not in LOADED_SETTINGS}
    if given != a.json_settings:
        print(
            f"--json {dest} holds results of other settings ({_differing(given, a.json_settings)}): every image "
            "is done again"
        )
        return {}
    return {r["image"]: r for r in doc["images"] if isinstance(r, dict) and isinstance(r.get("image"), str)}


def record_weights(a, codec, predictor=None) -> None:
    """Add to the --json settings what the arguments do not say: the codec's weights id (``checkpoint_info``'s
    hash, 16 hex digits), the predictor's weights hash when one makes the maps, and the taskcomp version; records of
    an earlier run that differ in one of them are not reused (a line says which). No-op without --json."""
    settings = getattr(a, "json_settings", None)
    if settings is None:
        return
    settings["codec_weights"] = str(codec.checkpoint_info.get("hash") or "")[:16] or None
    if predictor is not None:
        settings["predictor_weights"] = str(getattr(predictor, "digest", "") or "")[:16] or None
    settings["taskcomp_version"] = __version__
    was = getattr(a, "json_previous_settings", None)
    if getattr(a, "json_previous", None) and was is not None and was != settings:
        print(
            f"--json {a.json} holds results of other settings ({_differing(was, settings)}): every image is done again"
        )
        a.json_previous = {}


def done_before(a, path, dst, map_dst, sides) -> dict | None:
    """The --json record of ``path`` from an earlier run with the same settings, when what it wrote is still there
    unchanged (same input bytes, same .tcz bytes, the map and the ``sides`` pictures present); else None."""
    prev = (getattr(a, "json_previous", None) or {}).get(str(path))
    if not prev or prev.get("output") != str(dst) or prev.get("map") != (str(map_dst) if map_dst else None):
        return None
    if not Path(dst).is_file() or prev.get("output_sha256") != file_sha256(dst):
        return None
    if prev.get("input_sha256") != file_sha256(path):
        return None
    if any(p is not None and not Path(p).is_file() for p in (map_dst, *sides)):
        return None
    return prev
