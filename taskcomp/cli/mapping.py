"""Subcommands that make task-aware maps and code images with them: optimize and ocr-map.

The maps are made by :mod:`taskcomp.mapmaker`; this module reads the arguments, loads the images, writes the
files (.tcz, map, overlay, decoded image; ``--json`` through :mod:`taskcomp.batch`) and prints a line per image.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import torch

from .. import mapmaker as making
from .. import objectives
from ..batch import done_before, json_row, record_weights, with_json_results
from ..bitstream import decode
from ..checks import MAX_WEIGHT, check_number
from ..codec.standard import StandardCodecError, decode_standard, encode_standard
from ..io import atomic_write, image_to_tensor, load_image, tensor_to_image
from ..optimize import TargetBppError, check_optimizer_args, group_key
from ..outputs import BatchFailures, file_sha256
from ..pictures import EXACT_SUFFIXES, PICTURE_SUFFIXES
from ..predictors import check_codec, check_task_model, create_predictor, default_predictor, list_predictors
from ..runner.tasks import preprocess_image
from .arguments import OCR_MAP_DEFAULTS
from .common import (
    IMAGE_ERRORS,
    apply_threads,
    device,
    format_args,
    image_args,
    load_codec,
    map_outputs,
    save_pictures,
)

__all__ = ["cmd_optimize", "cmd_ocr_map", "ocr_working_image"]


#: The map optimiser's options, in :class:`taskcomp.optimize.MapOptimizer`'s order, as the map commands name them
#: (``ocr-map`` has no ``--optimizer``: its maps always use Adam).
_OPTIMIZER_OPTIONS = (
    "steps",
    "lr",
    "optimizer",
    "init",
    "init_q",
    "downsample",
    "keep",
    "lr_schedule",
    "memory_format",
)


def _optimizer_kwargs(a) -> dict:
    """MapOptimizer keyword arguments from the options the command has (:data:`_OPTIMIZER_OPTIONS`)."""
    return {k: getattr(a, k) for k in _OPTIMIZER_OPTIONS if hasattr(a, k)}


def _early_checks(a):
    """Optimiser arguments and --target-bpp, checked before any model loads (one-line ValueError); applies
    --threads."""
    apply_threads(a)
    try:
        check_optimizer_args(
            steps=a.steps,
            lr=a.lr,
            init_q=a.init_q,
            downsample=a.downsample,
            **({"lam": a.lam} if a.lam is not None else {}),
        )
    except ValueError as e:  # name the option: "init_q must ..." -> "--init-q must ..."
        word, _, rest = str(e).partition(" ")
        raise ValueError(f"--{word.replace('_', '-')} {rest}") from None
    t = getattr(a, "target_bpp", None)
    if t is not None and not (t == t and 0 < t < float("inf")):
        raise ValueError(f"--target-bpp must be a positive number, got {t}")
    m = getattr(a, "save_map", None)
    if m and os.path.splitext(m)[1] and not os.path.isdir(m):
        if os.path.splitext(m)[1].lower() not in PICTURE_SUFFIXES + EXACT_SUFFIXES:
            raise ValueError(
                f"--save-map {m}: use .png for a picture of the map, or {', '.join(EXACT_SUFFIXES)} "
                "for the exact map (which --qmap reads back)"
            )


def _working_map(codec, objective, x, ctx, a, x_input, default_lam: float, opt_kwargs: dict) -> making.MadeMap:
    """One image's map at the working resolution x (:func:`taskcomp.mapmaker.make_working_map`) at ``--lambda``
    or for ``--target-bpp``, carried over to the working resolution when the input x_input is larger
    (:func:`taskcomp.mapmaker.working_target_bpp`); says what else than lambda moved a predicted map, or that
    nothing was read on the page."""
    carried = x_input is not None and a.target_bpp is not None
    target = making.working_target_bpp(codec, x, x_input, a.target_bpp) if carried else a.target_bpp
    try:
        made = making.make_working_map(
            codec,
            objective,
            x,
            ctx,
            lam=a.lam,
            target_bpp=target,
            predictor=getattr(a, "predictor_model", None),
            refine=getattr(a, "refine", 0),
            default_lam=default_lam,
            log=print,
            progress=True,
            **opt_kwargs,
        )
    except TargetBppError as e:
        if not carried:
            raise
        raise TargetBppError(
            f"--target-bpp {a.target_bpp} at the input's size is {target:.4f} bpp at the "
            f"working resolution {x.shape[-1]}x{x.shape[-2]} (--max-side), where the {e}"
        ) from None
    if made.how == "nothing to keep":
        print("no text read on the original: the map is q = 0 everywhere")
    elif made.how == "predicted" and made.adjust.get("logit_offset"):  # the lambda alone did not meet the target
        print(
            f"lambda {made.lam:.4g} missed the target; the map's logits were shifted by "
            f"{made.adjust['logit_offset']:+.3f} to meet it (--lambda {made.lam:.4g} alone gives another rate)"
        )
    return made


def _print_comparison(codec, objective, x, ctx, rows, fmt: str = "tcz"):
    """Decode each (name, setting, bpp, data) row (.tcz bytes with ``codec``, or an ``fmt`` hevc / h264 stream)
    and print its PSNR and task metrics; returns them as dicts (map, setting, bpp, bytes, psnr and the task's
    metrics) for ``--json``."""
    print(f"{'map':<12}{'setting':<22}{'real bpp':>10}  metrics")
    out = []
    for name, setting, b, d in rows:
        if fmt != "tcz":
            x_dec = image_to_tensor(decode_standard(d, fmt)).to(x.device)
        else:
            with torch.inference_mode():
                x_dec = decode(codec, d)
        m = objective.evaluate(x_dec, ctx)[0]
        mse = float(((x_dec - x) ** 2).mean())
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())
        p = 10 * math.log10(1 / max(mse, 1e-12))
        print(f"{name:<12}{setting:<22}{b:>10.4f}  PSNR={p:.2f}, {shown}")
        out.append({"map": name, "setting": setting, "bpp": b, "bytes": len(d), "psnr": p, **m})
    return out


#: --target-bpp with --format hevc / h264: the real bpp met within this (as the .tcz search, 3%).
_STANDARD_BPP_TOLERANCE = 0.03


def _crf_at_bpp(img, qmap, fmt: str, chroma: str, bpp: float, tol: float = 0.005, max_encodes: int = 12):
    """The closest encode of :func:`_crf_search` (crf, real bpp, bytes, info)."""
    return _crf_search(img, qmap, fmt, chroma, bpp, tol, max_encodes)[0]


def _crf_search(img, qmap, fmt: str, chroma: str, bpp: float, tol: float = 0.005, max_encodes: int = 12):
    """The CRF at which ``img`` (H, W, 3) uint8 coded as an ``fmt`` stream under ``qmap`` ((1, 1, H, W) in [0, 1],
    or None: plain CRF) comes closest to ``bpp`` real bits per pixel: bisection on [0, 51] (the rate falls as the
    CRF rises; the encoder takes it to 0.01), at most ``max_encodes`` encodes, stopping within ``tol`` (relative).

    Returns:
        (closest, under, over): each (crf given to :func:`~taskcomp.codec.standard.encode_standard`, real bpp,
        stream bytes, its info dict): the closest encode, the largest rate at or below ``bpp`` and the smallest
        above it (None where no encode was).

    Raises:
        taskcomp.codec.standard.StandardCodecError: an image the encoder cannot code.
    """
    H, W = img.shape[:2]
    lo, hi, best = 0.0, 51.0, None
    under = over = None  # the largest rate at or below the target, the smallest above it
    for _ in range(max_encodes):
        c = round((lo + hi) / 2, 2)
        data, info = encode_standard(img, qmap, crf=c, fmt=fmt, chroma=chroma)
        b = 8 * len(data) / (H * W)
        if best is None or abs(b - bpp) < abs(best[1] - bpp):
            best = (c, b, data, info)
        if b <= bpp and (under is None or b > under[1]):
            under = (c, b, data, info)
        if b > bpp and (over is None or b < over[1]):
            over = (c, b, data, info)
        if abs(b - bpp) <= tol * bpp:
            break
        lo, hi = (c, hi) if b > bpp else (lo, c)  # too many bits: a higher CRF
    return best, under, over


def _code_standard(a, x, qmap, std) -> tuple[bytes, dict]:
    """The image x (1, 3, H, W) coded as a ``std = (fmt, crf, chroma)`` hevc / h264 stream under its map qmap
    (1, 1, H, W): at ``--crf``, or with ``--target-bpp`` at the CRF that meets it (within 3%). Returns (bytes,
    the encoder's info dict).

    Raises:
        taskcomp.codec.standard.StandardCodecError: an image the encoder cannot code, a target it cannot meet.
    """
    fmt, crf, chroma = std
    img = tensor_to_image(x)
    if a.target_bpp is None:
        return encode_standard(img, qmap, crf=crf, fmt=fmt, chroma=chroma)
    (c, b, data, info), under, over = _crf_search(img, qmap, fmt, chroma, a.target_bpp)
    if abs(b - a.target_bpp) <= _STANDARD_BPP_TOLERANCE * a.target_bpp:
        return data, info
    # For one intra frame the encoder moves the rate in whole-QP steps (10-15% apart): a target between two steps
    # is met as a budget, by the largest rate at or below it, and said so.
    if under is None or over is None:
        raise StandardCodecError(
            f"--target-bpp {a.target_bpp}: {fmt} under this map {'needs at least' if under is None else 'reaches at most'} "
            f"{b:.4f} bpp (--crf {c:.2f}; the CRF spans 0..51)"
        )
    nxt = f"; the next step up is {over[1]:.4f} bpp"
    print(
        f"note: {fmt} moves this image's rate in whole-QP steps: --target-bpp {a.target_bpp} coded as a budget, at "
        f"{under[1]:.4f} bpp (--crf {under[0]:.2f}){nxt}",
        file=sys.stderr,
    )
    return under[2], under[3]


def _map_images(
    a,
    objective,
    codec,
    dev,
    images,
    load,
    prepare,
    default_lam: float,
    opt_kwargs: dict,
    describe,
    full=None,
    after=None,
    std=("tcz", None, None),
):
    """Make and code the maps of ``images`` (paths): batches of ``--batch-size`` images of one padded size at
    ``--lambda``, one image at a time for ``--target-bpp`` or with a predictor. Images are loaded as they come
    (``load(path)`` -> (uint8 array, extra)), so only the open batches are held in memory.

    ``prepare(x, extra)`` gives an image's objective context; ``describe(path, W, H, ctx, extra)`` the first words
    of its report line. ``full(extra)``, when given, is the input image at its own size where the loaded array is
    a smaller working resolution: the map made at the working resolution is brought to the input's size
    (:func:`taskcomp.mapmaker.made_at_input_size`) and the input is coded at its own size, so the .tcz decodes to
    the input's size and bpp counts the input's pixels. Writes each .tcz (and map) atomically as soon as it is
    coded. ``after(x, qmap, ctx, (h, w), data)``, when given, runs once an image is coded (x and qmap: the coded
    image and its map, ctx: its context at the working resolution (h, w), data: the .tcz bytes) and returns fields
    for its --json row (ocr-map: the CER against the original's reading).

    ``std`` (:func:`taskcomp.cli.common.format_args`): ``(fmt, crf, chroma)``; for hevc / h264 the map, made as for
    a .tcz (the SFT codec is its differentiable stand-in), codes the image as that stream instead
    (:func:`_code_standard`), and ``--compare`` sets it beside plain CRF at the same real bpp."""
    if a.lam is not None and a.lam < 0:
        raise ValueError(f"--lambda must be >= 0, got {a.lam}")
    if a.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {a.batch_size}")
    predictor = getattr(a, "predictor_model", None)
    dests, sides, maps_folder = map_outputs(a, images)
    record_weights(a, codec, predictor)  # a rerun with other weights redoes the images
    bs = 1 if a.target_bpp is not None else a.batch_size
    totals = [0.0, 0]
    finished: set = set()

    def keep_in_json(path: str, msg: str) -> None:
        if getattr(a, "json_failed", None) is not None:
            a.json_failed.append({"image": path, "error": msg})

    failures = BatchFailures(len(images), single=len(images) == 1, on_note=keep_in_json)

    def failed(paths, e) -> None:
        """One image's error in a batch of several: noted, said at the end; the others go on."""
        for p in paths:
            failures.note(p, e)
        if getattr(a, "json_flush", None):
            a.json_flush()

    def input_tensor(arr, extra):
        """The input at its own size (1, 3, H, W) when it is not the working resolution, else None."""
        big = full(extra) if full is not None else None
        return image_to_tensor(big).to(dev) if big is not None and big.shape[:2] != arr.shape[:2] else None

    def code(batch) -> None:
        xs = [image_to_tensor(arr).to(dev) for _, arr, _ in batch]
        ctxs = [prepare(x, extra) for x, (_, _, extra) in zip(xs, batch)]
        inputs = [input_tensor(arr, extra) for _, arr, extra in batch]
        if len(batch) == 1 or predictor is not None:  # a predictor pass is cheap
            made = [
                _working_map(codec, objective, x, c, a, xi, default_lam, opt_kwargs)
                for x, c, xi in zip(xs, ctxs, inputs)
            ]
        else:
            made = making.make_maps(codec, objective, xs, ctxs, default_lam if a.lam is None else a.lam, **opt_kwargs)
        for j, ((path, arr, extra), m) in enumerate(zip(batch, made)):
            Hw, Ww = arr.shape[:2]
            x, ctx = xs[j], ctxs[j]
            m = making.made_at_input_size(codec, m, x, inputs[j], a.target_bpp)  # coded at the input's size
            if inputs[j] is not None:
                x = inputs[j]
                if a.compare:
                    ctx = prepare(x, extra)
            qmap, data, lam, secs, adjust = m.qmap, m.data, m.lam, m.seconds, m.adjust
            H, W = x.shape[-2:]
            dst, map_dst = dests[path]
            fmt, info = std[0], None
            if fmt != "tcz":  # the map made with the SFT codec steers the standard encoder
                data, info = _code_standard(a, x, qmap, std)
            atomic_write(dst, data)
            save_pictures(codec, x, qmap, data, map_dst, maps_folder, *sides[path], fmt=fmt)
            totals[0] += secs
            totals[1] += 1
            bpp = 8 * len(data) / (H * W)
            setting = f"lambda {lam:.4g}" + "".join(f", {k.replace('_', ' ')} {v:+.3f}" for k, v in adjust.items())
            if info is not None:
                setting += f", {fmt} crf {info['crf']:.2f}, chroma {':'.join(info['chroma'])}"
            print(
                f"{describe(path, Ww, Hw, ctxs[j], extra)}: {setting}, {bpp:.4f} bpp, map in {secs:.1f}s "
                f"-> {dst}" + (f" (map {map_dst})" if map_dst else "")
            )
            more = dict(adjust)  # --json: the offset / blend that met --target-bpp beside lambda
            if info is not None:
                more.update(format=fmt, crf=info["crf"], chroma=info["chroma"])
            if after is not None:
                more.update(after(x, qmap, ctxs[j], (Hw, Ww), data) or {})
            if a.compare:
                short = {"logit_offset": "offset", "blend": "blend", "input_size_logit_offset": "offset@input"}
                label = f"lambda={lam:.4g}" + "".join(f",{short[k]}={v:+.2f}" for k, v in adjust.items())
                if info is not None:  # plain CRF (a uniform map) at the same real bpp
                    c, b, d, _ = _crf_at_bpp(tensor_to_image(x), None, fmt, std[2], bpp)
                    rows = [("task-aware", f"crf={info['crf']:.2f}+map", bpp, data), ("uniform", f"crf={c:.2f}", b, d)]
                else:
                    rows = [("task-aware", label, bpp, data)] + making.comparison_maps(
                        codec, objective, x, ctx, bpp, box_mask=a.command == "ocr-map"
                    )
                more["compare"] = _print_comparison(codec, objective, x, ctx, rows, fmt)
            if getattr(a, "json_rows", None) is not None:  # recorded (and written) once the image is wholly done
                row = json_row(a, path, dst, map_dst, W, H, lam, bpp, len(data), secs)
                row.update(more, input_sha256=file_sha256(path), output_sha256=file_sha256(dst))
                if getattr(a, "json_flush", None):
                    a.json_flush()
            finished.add(path)

    def code_or_note(batch) -> None:
        try:
            code(batch)
        except IMAGE_ERRORS as e:
            failed([p for p, _, _ in batch if p not in finished], e)

    pending: dict[tuple[int, int], list] = {}
    for path in images:
        prev = done_before(a, path, *dests[path], sides[path])
        if prev is not None:  # a rerun: this image's outputs and record are from an earlier run, unchanged
            a.json_rows.append(prev)
            print(
                f"{path}: done in an earlier run with the same settings (--json {a.json}): {prev['output']} "
                "kept, skipped"
            )
            continue
        try:
            arr, extra = load(path)
        except IMAGE_ERRORS as e:
            failed([path], e)
            continue
        key = group_key(*arr.shape[:2])
        pending.setdefault(key, []).append((path, arr, extra))
        if len(pending[key]) >= bs:
            code_or_note(pending.pop(key))
    for key in list(pending):
        code_or_note(pending.pop(key))
    if totals[1] > 1:
        print(f"{totals[1]} maps, {totals[0] / totals[1]:.1f}s per map on average")
    failures.raise_if_any()


def _optimize(a):
    """``taskcomp optimize``: task-aware maps of images (optimised, or predicted and refined) at ``--lambda`` or
    ``--target-bpp``, each image coded with its map (a .tcz, or with ``--format hevc`` / ``h264`` a standard stream
    steered by the map)."""
    _early_checks(a)
    std = format_args(a)
    if a.crf is not None and a.target_bpp is not None:
        raise ValueError("--crf and --target-bpp: the target sets the CRF; give one of them")
    if a.refine and not a.predictor:
        raise ValueError("--refine K refines a predicted map: give --predictor")
    if a.refine is not None and a.refine < 0:
        raise ValueError(f"--refine must be >= 0 steps, got {a.refine}")
    if a.predictor and a.lam is not None and not a.lam > 0:
        raise ValueError(f"--lambda must be > 0 with --predictor (its input is log lambda), got {a.lam}")
    if a.predictor and a.predictor != "auto":  # a wrong path fails before any model loads
        if a.predictor not in list_predictors() and not Path(a.predictor).is_file():
            raise ValueError(
                f"--predictor {a.predictor}: not a registered predictor ({', '.join(list_predictors())}) "
                "nor a checkpoint file"
            )
    images = image_args(a.image)
    map_outputs(a, images)  # collisions and extensions refused before any model loads
    if a.label is not None and len(images) > 1:
        raise ValueError("--label applies to one image; several images are optimised label-free")
    dev = device(a)
    kw = {"model": a.model} if a.model else {}
    if "," in a.task or ":" in a.task:
        if a.label is not None or a.model:
            raise ValueError("--label and --model apply to a single task, not to a weighted task list")
        objective = objectives.create_objective("weighted", objectives=objectives.parse_task_spec(a.task), device=dev)
    else:
        objective = objectives.create_objective(a.task, device=dev, **kw)
    codec = load_codec(a, dev)
    opt_kwargs = _optimizer_kwargs(a)
    a.predictor_model = None
    if a.predictor:
        if a.target_bpp is not None and a.refine:
            raise ValueError(
                "--target-bpp bisects the predictor's lambda; refine steps would move the rate: "
                "use --lambda with --refine"
            )
        model_name = getattr(objective, "model_name", None)
        name = default_predictor(a.task, model_name) if a.predictor == "auto" else a.predictor
        a.predictor_model = create_predictor(name, device=dev)
        check_task_model(a.predictor_model, a.task, model_name)
        check_codec(a.predictor_model, codec)
        lo, hi = a.predictor_model.config.lambda_min, a.predictor_model.config.lambda_max
        if a.lam is not None and not a.refine and not lo <= a.lam <= hi:  # its FiLM input is clamped to that range
            raise ValueError(
                f"--lambda {a.lam:g} is outside the range predictor {a.predictor_model.name} was trained "
                f"on ([{lo:g}, {hi:g}]; it would give the map for {min(max(a.lam, lo), hi):g}): give "
                "a lambda in that range, add --refine K, or optimise without --predictor"
            )
        print(
            f"predictor {a.predictor_model.name} ({a.predictor_model.meta.get('steps', '?')} training steps)"
            + (f", then {a.refine} optimiser steps" if a.refine else "")
        )
    if a.optimizer == "lbfgs" and a.batch_size > 1:
        raise ValueError("L-BFGS keeps one curvature history for the whole batch: use --batch-size 1 with it")

    def prepare(x, _):
        return objective.prepare(x, label=a.label) if a.label is not None else objective.prepare(x)

    _map_images(
        a,
        objective,
        codec,
        dev,
        images,
        lambda p: (load_image(p), None),
        prepare,
        1.0,
        opt_kwargs,
        lambda p, W, H, ctx, _: f"{p}: {W}x{H}, task {a.task}",
        std=std,
    )


def ocr_working_image(img, max_side: int, path, say=None):
    """ocr-map's working resolution of ``img`` (H, W, 3) uint8: shrunk so its long side is at most ``max_side`` px
    (0: as it is; Lanczos, :func:`taskcomp.runner.tasks.preprocess_image`). At the default
    (:data:`~taskcomp.cli.arguments.OCR_MAP_DEFAULTS`), an image that is shrunk gets a one-line note on ``say``
    (default stdout) saying so and how to keep its own size."""
    work = preprocess_image(img, max_side=max_side or None)[0]
    if max_side == OCR_MAP_DEFAULTS["max_side"] and work.shape[:2] != img.shape[:2]:
        (H0, W0), (h, w) = img.shape[:2], work.shape[:2]
        print(
            f"note: {path} is {W0}x{H0}, larger than the default working size ({max_side} px on the long side): "
            f"its map is made at {w}x{h} and upsampled, the image is coded at its own size; --max-side 0 makes the "
            "map at full size (more time and memory)",
            file=say or sys.stdout,
        )
    return work


def _ocr_map(a):
    """``taskcomp ocr-map``: OCR-preserving maps of document images (made at a working resolution, coded at the
    input's own size), with the CER of the written file against the original's reading and where the bits go."""
    _early_checks(a)
    if a.max_side is not None and a.max_side < 0:
        raise ValueError(f"--max-side must be >= 0 (0: the input's own size), got {a.max_side}")
    images = image_args(a.image)
    map_outputs(a, images)  # collisions and extensions refused before any model loads
    dev = device(a)
    if a.init == "box-mask" and a.batch_size > 1:
        raise ValueError("--init box-mask gives each image its own first map: use --batch-size 1 with it")
    for name in ("det_weight", "rec_weight"):
        check_number(getattr(a, name), f"--{name.replace('_', '-')}", 0, MAX_WEIGHT)
    if a.det_weight == 0 and a.rec_weight == 0:
        raise ValueError("--det-weight and --rec-weight are both 0: the text loss would be empty")
    objective = objectives.create_objective("text", device=dev, det_weight=a.det_weight, rec_weight=a.rec_weight)
    if a.codec is None and a.checkpoint is None:
        a.codec = OCR_MAP_DEFAULTS["codec"]  # the document codec (results/documents)
    codec = load_codec(a, dev)
    say = sys.stderr if getattr(a, "json", None) == "-" else sys.stdout

    def prepare(x, _):  # easyocr's reading of the original: the targets (seconds to a minute at full size)
        print(f"reading the original ({x.shape[-1]}x{x.shape[-2]}) with easyocr ...", end=" ", flush=True, file=say)
        t0 = time.perf_counter()
        ctx = objective.prepare(x)
        print(
            f"{len(ctx['images'][0]['boxes'])} boxes of text in {time.perf_counter() - t0:.1f}s; optimising the map "
            f"({a.steps} steps)",
            flush=True,
            file=say,
        )
        return ctx

    def after(x, qmap, ctx, hw, data):  # CER of the written file against the original's reading, where the bits go
        if not hasattr(objective, "box_reading_cer"):  # a stand-in objective (tests)
            return {}
        t0 = time.perf_counter()
        with torch.inference_mode():
            x_dec = decode(codec, data, synthesis="float32")
        scale = (x.shape[-2] / hw[0], x.shape[-1] / hw[1])
        r = objective.box_reading_cer(x, x_dec, ctx, scale=scale)
        if r["cer"] is None:
            print("  CER: no text read on the original", file=say)
            return {"cer_vs_original": None}
        print(
            f"  CER against the original's reading: {r['cer']:.3f} ({100 * r['cer']:.1f}% of the characters of "
            f"{r['n_boxes']} text boxes; word accuracy {r['word_acc']:.1%}), read in "
            f"{time.perf_counter() - t0:.1f}s",
            file=say,
        )
        split = objective.bit_split(codec, x, qmap, ctx, scale=scale)
        print(
            f"  where the bits go: the text boxes cover {split['text_area_share']:.0%} of the page and take "
            f"{split['text_bits_share']:.0%} of its bits (mean q {split['q_mean_text']:.2f} in the text boxes, "
            f"{split['q_mean_paper']:.2f} elsewhere)",
            file=say,
        )
        return {"cer_vs_original": r["cer"], "word_acc_vs_original": r["word_acc"], **split}

    def load(p):  # the map is made at the working resolution; the input is coded at its own size
        img = load_image(p)
        return ocr_working_image(img, a.max_side, p, say), img

    opt_kwargs = _optimizer_kwargs(a)

    def describe(p, W, H, ctx, img):
        H0, W0 = img.shape[:2]
        work = f", working resolution {W}x{H} (map upsampled to {W0}x{H0})" if (H, W) != (H0, W0) else ""
        return f"{p}: {W0}x{H0}{work}" + f", {len(ctx['images'][0]['boxes'])} text boxes read on the original"

    _map_images(
        a,
        objective,
        codec,
        dev,
        images,
        load,
        prepare,
        OCR_MAP_DEFAULTS["lambda"],
        opt_kwargs,
        describe,
        full=lambda img: img,
        after=after,
    )


#: ``taskcomp optimize`` and ``ocr-map`` with ``--json`` results (:func:`taskcomp.batch.with_json_results`).
cmd_optimize = with_json_results(_optimize)
cmd_ocr_map = with_json_results(_ocr_map)
