"""Making quality maps: the one place the command line, the recipe runner and Python users get a map from.

A map is made for one image x (1, 3, h, w) in [0, 1] at a working resolution and coded at the input's own size:

- **uniform**: :func:`taskcomp.maps.uniform_map`;
- **optimised** per image: ``m* = argmin R(m) + lambda * L_task(m)`` (:class:`taskcomp.optimize.MapOptimizer`);
- **predicted** in one pass by a trained predictor (:mod:`taskcomp.predictors`), optionally **refined** by a few
  optimiser steps from there (:func:`predicted_maps`);
- from a **starting map** the objective offers itself (:meth:`taskcomp.objectives.Objective.initial_map`:
  Grad-CAM for classification and saliency, the text-box mask for text; :func:`starting_map`);

at a lambda, or at a target real bpp through one rate-matching search (:func:`match_target_bpp`: lambda bisected
in log space, then one global logit offset), shared by the optimiser (:func:`optimize_to_target_bpp`, which may
also blend towards the uniform map that meets the target) and the predictor (:func:`predict_to_target_bpp`).
One-parameter families of maps (a uniform level, an offset of a map's logits, a box mask's levels) meet a bpp
through :func:`family_at_bpp`. A map made at a working resolution is brought to the input's size by
:func:`made_at_input_size` (its target met again there by a logit offset).

:func:`make_map` does all of it for one image, as ``taskcomp optimize`` / ``ocr-map`` do::

    from taskcomp.codec import create_codec
    from taskcomp.objectives import create_objective
    from taskcomp.mapmaker import make_map

    made = make_map(create_codec(), create_objective("classification"), x, lam=0.1, steps=10, lr=0.3,
                    downsample=8)
    made.qmap, made.data, made.bpp   # (1, 1, H, W) in [0, 1], the .tcz bytes, real bits per pixel
"""

from __future__ import annotations

import inspect
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from .checks import check_image_tensor
from .maps.generators import map_at_size
from .objectives.base import Objective
from .optimize import (
    BppSearch,
    MapOptimizer,
    TargetBppError,
    check_optimizer_args,
    check_target_reachable,
    collate_contexts,
    logit,
    optimize_images,
    real_bpp,
    search_bpp,
    uniform_bpp_search,
)

__all__ = [
    "MadeMap",
    "make_map",
    "make_working_map",
    "make_maps",
    "made_at_input_size",
    "starting_map",
    "optimized_maps",
    "predicted_maps",
    "match_target_bpp",
    "optimize_to_target_bpp",
    "predict_to_target_bpp",
    "family_at_bpp",
    "map_at_input_size",
    "working_target_bpp",
    "comparison_maps",
]


@dataclass
class MadeMap:
    """One image's map and what making it took.

    Attributes:
        qmap: (1, 1, H, W) in [0, 1].
        data: the .tcz bytes of the image coded under ``qmap`` (None until coded: :func:`make_maps` leaves it to
            :func:`made_at_input_size`).
        lam: the lambda the map was made at (a target bpp's: the one the search settled on).
        seconds: wall time of making it (not of coding it at the input's size).
        adjust: what besides lambda moved the map to a target bpp: ``logit_offset`` (a global shift of its
            logits), ``blend`` (weight t of ``(1 - t) * map + t * uniform``), ``input_size_logit_offset`` (the
            offset that met the target at the input's size); empty when nothing did.
        how: ``"optimised"``, ``"predicted"``, ``"refined"`` (predicted, then optimiser steps) or
            ``"nothing to keep"`` (the objective keeps nothing, :meth:`~taskcomp.objectives.Objective.keeps_nothing`:
            q = 0 everywhere without optimising).
    """

    qmap: Tensor
    data: bytes | None
    lam: float
    seconds: float
    adjust: dict[str, float] = field(default_factory=dict)
    how: str = "optimised"

    @property
    def bpp(self) -> float:
        """Real bits per pixel of ``data`` over the map's pixels (the whole file; NaN before coding)."""
        if self.data is None:
            return float("nan")
        return 8.0 * len(self.data) / (self.qmap.shape[-2] * self.qmap.shape[-1])


# ---------------------------------------------------------------------------------------------- starting maps
def starting_map(objective: Objective, x: Tensor, ctx: Any, init: str | Tensor, level: float) -> str | Tensor:
    """The ``init`` to give :class:`~taskcomp.optimize.MapOptimizer` for a named start: ``"box-mask"`` (also
    spelt ``"box_mask"``, the recipes' name) becomes the objective's own first map (1 per image, (B, 1, H, W) in
    [0, 1] on x's device: :meth:`~taskcomp.objectives.Objective.initial_map`, ``level`` inside the text boxes);
    every other init (``"constant"``, ``"random"``, ``"gradcam"``, which the optimiser asks of the objective
    itself, or a map tensor) is returned unchanged.

    Raises:
        ValueError: the objective offers no box-mask start (not a text objective).
    """
    if not isinstance(init, str) or init.replace("_", "-") != "box-mask":
        return init
    m0 = objective.initial_map("box-mask", x, ctx, level)
    if m0 is None:
        raise ValueError(f"init box-mask needs the text objective (text boxes), not {objective.name}")
    return m0


# ---------------------------------------------------------------------------------------------- rate matching
def family_at_bpp(
    codec,
    x: Tensor,
    make_map: Callable[[float], Tensor],
    target: float,
    tol: float = 0.005,
    prefer: float | None = None,
) -> tuple[float, float, bytes]:
    """The member of a one-parameter map family ``make_map(s)``, s in [0, 1], whose real bpp on x (1, 3, H, W) is
    closest to ``target`` (within ``tol`` relative when reachable): a grid scan with brackets refined
    (:func:`taskcomp.optimize.search_bpp`), not assuming rate monotonic in s; with ``prefer``, the member nearest
    to s = ``prefer`` among those that meet it.

    Returns:
        (s, its real bpp, its .tcz bytes).
    """
    found = search_bpp(lambda s: real_bpp(codec, x, make_map(s)), target, 0.0, 1.0, tol=tol, prefer=prefer)
    return found.s, found.bpp, found.data


def match_target_bpp(
    codec,
    x: Tensor,
    map_at: Callable[[float], tuple[Tensor, dict[str, Any]]],
    target: float,
    lam_range: tuple[float, float],
    iters: int,
    tol: float = 0.03,
    log_base: float = 10.0,
    offset_grid: int = 11,
    log=None,
) -> tuple[dict[str, Any], BppSearch | None]:
    """The rate-matching search of every map maker: the lambda whose map codes x (1, 3, H, W) at ``target`` real
    bpp within ``tol`` (relative), else the closest map's logits shifted by one global offset.

    (1) lambda is bisected in log space over ``lam_range`` (``iters`` maps; midpoints ``10 ** mid`` for
    ``log_base`` 10, ``exp(mid)`` for ``math.e``; a guess that rate rises with lambda, usually right) and the
    closest map kept; (2) if none met the tolerance, that map's logits are shifted by an offset in [-12, 12]
    found by :func:`taskcomp.optimize.search_bpp` (a grid of ``offset_grid`` points, then the bracket nearest
    offset 0 refined; no monotonic rate assumed). Each try's bpp is said through ``log``.

    Args:
        map_at: lambda -> (map (1, 1, H, W) in [0, 1], extra fields kept with that try, e.g. the optimiser's run).

    Returns:
        (the met or closest try: ``{"qmap", "data", "bpp", "lam", "offset", **extra}``, the offset search or None
        when a lambda met the target). The offset search's ``met`` says whether the returned try meets it.
    """
    say = log or (lambda *a: None)
    to_log = math.log10 if log_base == 10 else math.log
    lo, hi = to_log(lam_range[0]), to_log(lam_range[1])
    best = None
    for _ in range(iters):
        mid = (lo + hi) / 2
        lam = 10**mid if log_base == 10 else math.exp(mid)
        qmap, extra = map_at(lam)
        bpp, data = real_bpp(codec, x, qmap)
        say(f"lambda {lam:.4g}: {bpp:.4f} bpp")
        cand = {"qmap": qmap, "data": data, "bpp": bpp, "lam": lam, "offset": 0.0, **extra}
        if best is None or abs(bpp - target) < abs(best["bpp"] - target):
            best = cand
        if abs(bpp / target - 1) <= tol:
            return cand, None
        if bpp > target:
            hi = mid
        else:
            lo = mid
    base = logit(best["qmap"])
    shifted = search_bpp(
        lambda off: real_bpp(codec, x, torch.sigmoid(base + off)),
        target,
        -12.0,
        12.0,
        tol=tol,
        grid=offset_grid,
        prefer=0.0,
    )
    if shifted.met:
        return {
            **best,
            "qmap": torch.sigmoid(base + shifted.s),
            "data": shifted.data,
            "bpp": shifted.bpp,
            "offset": shifted.s,
        }, shifted
    return best, shifted


def optimize_to_target_bpp(
    codec,
    objective: Objective,
    x: Tensor,
    target: float,
    tol: float = 0.03,
    lam_range: tuple[float, float] = (1e-4, 1e4),
    max_lambda_iters: int = 7,
    ctx: dict[str, Any] | None = None,
    log=None,
    **opt_kwargs,
) -> dict[str, Any]:
    """Find lambda whose optimised map codes ``x`` (1, 3, H, W) at ``target`` real bpp (+-``tol``, relative).

    No step relies on rate being monotonic in lambda or q. (1) The target must be reachable by some uniform map
    (:func:`taskcomp.optimize.check_target_reachable`). (2)-(3) :func:`match_target_bpp`: lambda bisected in
    log10 space (``max_lambda_iters`` optimisations), then the closest map's logits shifted by a global offset
    (a 13-point grid over [-12, 12]). (4) If still not met (rate can jump), the map is blended towards the
    uniform map that meets the target, ``(1 - t) * map + t * q``, with the smallest t found that meets it
    (t = 1 always does).

    Returns:
        dict with ``qmap`` (1, 1, H, W), ``data`` (the .tcz bytes), ``bpp``, ``lam``, ``offset`` (logit shift, 0 if
        none), ``blend`` (t, 0 if none), ``result`` (the kept optimiser run).
    Raises:
        ValueError: more than one image, a target that is not a positive number, bad images or optimiser
            arguments.
        TargetBppError: no uniform map of this image reaches the target (the message gives the measured range).
    """
    x = check_image_tensor(x, "image")
    if x.size(0) != 1:
        raise ValueError("target-bpp search works on one image at a time")
    if not (isinstance(target, numbers.Real) and math.isfinite(target) and target > 0):
        raise ValueError(f"target bpp must be a positive number, got {target}")
    check_optimizer_args(**opt_kwargs)
    check_target_reachable(codec, x, target, tol)
    if ctx is None:
        ctx = objective.prepare(x)
    say = log or (lambda *a: None)

    def optimised(lam: float) -> tuple[Tensor, dict[str, Any]]:
        res = MapOptimizer(codec, objective, lam=lam, **opt_kwargs).run(x, ctx)
        return res.qmap, {"blend": 0.0, "result": res}

    best, shifted = match_target_bpp(
        codec, x, optimised, target, lam_range, max_lambda_iters, tol=tol, log_base=10, offset_grid=13, log=log
    )
    if shifted is None:
        return best
    if shifted.met:
        say(f"logit offset {shifted.s:+.3f}: {shifted.bpp:.4f} bpp")
        return best
    # Blend towards the uniform map that meets the target.
    uni = uniform_bpp_search(codec, x, target, tol=tol)
    if not uni.met:
        raise TargetBppError(
            f"could not meet {target:g} bpp within {100 * tol:g}%: optimised maps "
            f"{shifted.measured('logit offset')}; uniform maps {uni.measured('q')}"
        )
    q = torch.full_like(best["qmap"], uni.s)
    blended = search_bpp(
        lambda t: real_bpp(codec, x, (1 - t) * best["qmap"] + t * q), target, 0.0, 1.0, tol=tol, grid=11, prefer=0.0
    )
    if not blended.met:  # t = 1 is the uniform map itself; only a non-deterministic encoder could get here
        raise TargetBppError(f"could not meet {target:g} bpp within {100 * tol:g}%: {blended.measured('blend')}")
    say(f"blended {blended.s:.2f} of the way to uniform q={uni.s:.3f}: {blended.bpp:.4f} bpp")
    return {
        **best,
        "qmap": (1 - blended.s) * best["qmap"] + blended.s * q,
        "data": blended.data,
        "bpp": blended.bpp,
        "blend": blended.s,
    }


def predict_to_target_bpp(
    codec, predictor, x: Tensor, target: float, tol: float = 0.03, iters: int = 12, log=None
) -> dict[str, Any]:
    """The predicted map whose .tcz meets ``target`` real bpp (within ``tol``, relative): :func:`match_target_bpp`
    with lambda bisected in natural-log space over the predictor's trained range (``iters`` tries, each one
    predictor pass and one encode, no codec gradients), then the closest try's logits shifted by a global offset
    (an 11-point grid over [-12, 12], the met offset nearest 0).

    Args:
        codec: the frozen codec.
        predictor: a :class:`taskcomp.predictors.FeatureFiLMPredictor` (``predict_map(x, lam)``, ``config``'s
            ``lambda_min`` / ``lambda_max``).
        x: one image (1, 3, H, W) in [0, 1].
        target: bits per pixel of the whole file (> 0).

    Returns:
        dict with ``qmap`` (1, 1, H, W), ``data`` (.tcz bytes), ``bpp``, ``lam``, ``offset``.

    Raises:
        ValueError: more than one image, a target that is not a positive number.
        taskcomp.optimize.TargetBppError: the target lies outside what the codec reaches for this image, or
            neither lambda nor the offset met it.
    """
    if x.size(0) != 1:
        raise ValueError("target-bpp search works on one image at a time")
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target bpp must be a positive number, got {target}")
    check_target_reachable(codec, x, target, tol)  # rate need not be monotonic in q: scans q when needed

    def predicted(lam: float) -> tuple[Tensor, dict[str, Any]]:
        with torch.no_grad():
            return predictor.predict_map(x, lam), {}

    lam_range = (predictor.config.lambda_min, predictor.config.lambda_max)
    best, found = match_target_bpp(
        codec, x, predicted, target, lam_range, iters, tol=tol, log_base=math.e, offset_grid=11, log=log
    )
    if found is None or found.met:
        return best
    best = best if abs(best["bpp"] - target) <= abs(found.bpp - target) else {**best, "bpp": found.bpp}
    raise TargetBppError(f"could not meet {target} bpp within {100 * tol:.0f}% (closest {best['bpp']:.4f} bpp)")


# ---------------------------------------------------------------------------------------------- several images
def optimized_maps(
    codec, objective: Objective, xs: list[Tensor], ctxs: list[Any], lam: float, **opt_kwargs
) -> list[tuple[Tensor, int]]:
    """Optimised maps of images ``xs`` (each (1, 3, h_i, w_i) in [0, 1]) at one lambda, together where they can
    be (:func:`taskcomp.optimize.optimize_images`); with ``init="box-mask"`` (or ``"box_mask"``) each image
    starts from its objective's own box mask at level ``init_q`` (:func:`starting_map`), one image at a time.

    Returns:
        one (map (1, 1, h_i, w_i) in [0, 1], the kept step: 0 = the first map) per image.
    """
    init = opt_kwargs.get("init")
    if isinstance(init, str) and init.replace("_", "-") == "box-mask":
        kw = {k: v for k, v in opt_kwargs.items() if k != "init"}
        level = float(kw.get("init_q", inspect.signature(MapOptimizer).parameters["init_q"].default))
        out = []
        for x, c in zip(xs, ctxs):
            first = starting_map(objective, x, c, "box-mask", level)
            res = MapOptimizer(codec, objective, lam=lam, init=first, **kw).run(x, c)
            out.append((res.map_of(0), res.best_step[0]))
        return out
    res = optimize_images(MapOptimizer(codec, objective, lam=lam, **opt_kwargs), xs, ctxs)
    return [(res.map_of(i), res.best_step[i]) for i in range(len(xs))]


def predicted_maps(
    codec, objective: Objective, predictor, xs: list[Tensor], ctxs: list[Any], lam: float, refine: int = 0, **opt_kwargs
) -> list[tuple[Tensor, int | None]]:
    """Maps of images ``xs`` (each (1, 3, h_i, w_i) in [0, 1]) predicted in one pass each at ``lam``; with
    ``refine`` > 0, then ``refine`` optimiser steps from the predicted maps (``opt_kwargs``: the other
    :class:`~taskcomp.optimize.MapOptimizer` arguments), batched over the images of one size (contexts
    collated).

    Returns:
        one (map (1, 1, h_i, w_i) in [0, 1], the kept step of the refinement: 0 = the predicted map; None
        without refinement) per image.
    """
    first = []
    for x in xs:  # images may differ in size: the predictor runs per image
        with torch.no_grad():
            first.append(predictor.predict_map(x, lam))
    if not refine:
        return [(m, None) for m in first]
    out: list = [None] * len(xs)
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(xs):
        groups.setdefault(tuple(x.shape[-2:]), []).append(i)
    for idx in groups.values():
        init = torch.cat([first[i] for i in idx])
        opt = MapOptimizer(codec, objective, lam=lam, **{**opt_kwargs, "steps": refine, "init": init})
        ctx = collate_contexts([ctxs[i] for i in idx]) if len(idx) > 1 else ctxs[idx[0]]
        res = opt.run(torch.cat([xs[i] for i in idx]), ctx)
        for j, i in enumerate(idx):
            out[i] = (res.map_of(j), res.best_step[j])
    return out


def make_maps(
    codec, objective: Objective, xs: list[Tensor], ctxs: list[Any], lam: float, **opt_kwargs
) -> list[MadeMap]:
    """Optimised maps of several images at one lambda (:func:`optimized_maps`), not yet coded (``data`` None;
    :func:`made_at_input_size` codes them); ``seconds`` is each image's share of the batch's time."""
    t0 = time.perf_counter()
    maps = optimized_maps(codec, objective, xs, ctxs, lam, **opt_kwargs)
    secs = (time.perf_counter() - t0) / len(xs)
    return [MadeMap(qmap=m, data=None, lam=lam, seconds=secs) for m, _ in maps]


# ---------------------------------------------------------------------------------------------- one image
def make_working_map(
    codec,
    objective: Objective,
    x: Tensor,
    ctx: Any,
    lam: float | None = None,
    target_bpp: float | None = None,
    predictor=None,
    refine: int = 0,
    default_lam: float = 1.0,
    log=None,
    progress: bool = False,
    **opt_kwargs,
) -> MadeMap:
    """One image's map at the resolution of x (1, 3, h, w) in [0, 1], coded at that size.

    Without ``predictor`` the map is optimised (``opt_kwargs``: :class:`~taskcomp.optimize.MapOptimizer`'s
    arguments; ``init="box-mask"``: the objective's own first map, :func:`starting_map`) at ``lam`` (None:
    ``default_lam``; an objective that keeps nothing gets q = 0 without optimising) or for ``target_bpp``
    (:func:`optimize_to_target_bpp`). With ``predictor`` it is predicted at ``lam`` and refined by ``refine``
    optimiser steps on the predictor's grid (:func:`predicted_maps`), or predicted for ``target_bpp``
    (:func:`predict_to_target_bpp`). ``log`` receives the target searches' lines; ``progress`` shows the
    optimiser's steps.

    Raises:
        taskcomp.optimize.TargetBppError: the target cannot be met.
        ValueError: bad arguments (as the functions named).
    """
    t0 = time.perf_counter()
    init = opt_kwargs.get("init")
    if isinstance(init, str) and init.replace("_", "-") == "box-mask":  # the text boxes read on the original
        opt_kwargs = {**opt_kwargs, "init": starting_map(objective, x, ctx, init, opt_kwargs["init_q"])}
    if predictor is not None:
        if target_bpp is not None:
            found = predict_to_target_bpp(codec, predictor, x, target_bpp, log=log)
            return MadeMap(
                found["qmap"],
                found["data"],
                found["lam"],
                time.perf_counter() - t0,
                {"logit_offset": float(found["offset"])} if found["offset"] else {},
                how="predicted",
            )
        lam = default_lam if lam is None else lam
        kw = {**opt_kwargs, "downsample": predictor.config.downsample}
        qmap = predicted_maps(codec, objective, predictor, [x], [ctx], lam, refine, **kw)[0][0]
        _, data = real_bpp(codec, x, qmap)
        return MadeMap(qmap, data, lam, time.perf_counter() - t0, {}, how="refined" if refine else "predicted")
    adjust: dict[str, float] = {}
    how = "optimised"
    if target_bpp is not None:
        found = optimize_to_target_bpp(codec, objective, x, target_bpp, ctx=ctx, log=log, **opt_kwargs)
        qmap, data, lam = found["qmap"], found["data"], found["lam"]
        # lambda alone did not meet the target: what else moved the map is part of the result
        adjust = {k: float(found[f]) for k, f in (("logit_offset", "offset"), ("blend", "blend")) if found[f]}
    else:
        lam = default_lam if lam is None else lam
        if objective.keeps_nothing(ctx):  # e.g. a blank page: the task loss is flat, the lowest map is the optimum
            qmap, how = torch.zeros_like(x[:, :1]), "nothing to keep"
        else:
            qmap = MapOptimizer(codec, objective, lam=lam, **opt_kwargs).run(x, ctx, progress=progress).qmap
        _, data = real_bpp(codec, x, qmap)
    return MadeMap(qmap, data, lam, time.perf_counter() - t0, adjust, how=how)


def working_target_bpp(codec, x: Tensor, x_input: Tensor, target: float) -> float:
    """``target`` bpp of the input x_input (1, 3, H, W) carried over to its working-resolution copy x
    (1, 3, h, w): scaled by the ratio of the two sizes' real bpp under a uniform q = 0.5 map (the header is a
    larger share of a small image's bits). The input's own target is met afterwards by
    :func:`map_at_input_size`."""
    ratio = (
        real_bpp(codec, x, torch.full((1, 1, *x.shape[-2:]), 0.5, device=x.device))[0]
        / real_bpp(codec, x_input, torch.full((1, 1, *x_input.shape[-2:]), 0.5, device=x.device))[0]
    )
    return target * ratio


def map_at_input_size(codec, qmap: Tensor, x_input: Tensor, target_bpp: float | None) -> tuple[Tensor, bytes, float]:
    """A map made at a working resolution, brought to the input's size: bilinear resampling
    (:func:`taskcomp.maps.map_at_size`), then (with ``target_bpp``) one global logit offset ``24 s - 12``,
    s in [0, 1], found by :func:`family_at_bpp` so that the full-size image meets the target.

    Returns:
        (qmap (1, 1, H, W) in [0, 1], .tcz bytes of x_input (1, 3, H, W) coded under it, the logit offset applied
        at the input's size (0.0 without ``target_bpp``)).

    Raises:
        taskcomp.optimize.TargetBppError: the closest offset misses the target by more than 3%.
    """
    up = map_at_size(qmap, x_input.shape[-2:])
    if target_bpp is None:
        return up, real_bpp(codec, x_input, up)[1], 0.0
    base = torch.logit(up, eps=1e-4)
    s, bpp, data = family_at_bpp(codec, x_input, lambda s: torch.sigmoid(base + 24 * s - 12), target_bpp)
    if abs(bpp / target_bpp - 1) > 0.03:
        raise TargetBppError(
            f"target {target_bpp} bpp not met at the input's size {x_input.shape[-1]}x"
            f"{x_input.shape[-2]}: the closest map measured {bpp:.4f} bpp"
        )
    return torch.sigmoid(base + 24 * s - 12), data, float(24 * s - 12)


def made_at_input_size(codec, made: MadeMap, x: Tensor, x_input: Tensor | None, target_bpp: float | None) -> MadeMap:
    """``made`` (a map of the working-resolution image x (1, 3, h, w)) as coded for the input: with an input
    x_input (1, 3, H, W) of another size, resampled and coded at that size (:func:`map_at_input_size`; the offset
    that met ``target_bpp`` there is added to ``adjust`` as ``input_size_logit_offset``); else coded at x's size
    when it is not coded yet. ``made`` itself is not changed."""
    if x_input is not None and tuple(x_input.shape[-2:]) != tuple(x.shape[-2:]):
        qmap, data, offset = map_at_input_size(codec, made.qmap, x_input, target_bpp)
        adjust = {**made.adjust, "input_size_logit_offset": offset} if offset else made.adjust
        return MadeMap(qmap, data, made.lam, made.seconds, adjust, made.how)
    if made.data is None:
        return MadeMap(made.qmap, real_bpp(codec, x, made.qmap)[1], made.lam, made.seconds, made.adjust, made.how)
    return made


def make_map(
    codec,
    objective: Objective,
    x: Tensor,
    ctx: Any = None,
    lam: float | None = None,
    target_bpp: float | None = None,
    predictor=None,
    refine: int = 0,
    x_input: Tensor | None = None,
    default_lam: float = 1.0,
    log=None,
    progress: bool = False,
    **opt_kwargs,
) -> MadeMap:
    """What ``taskcomp optimize`` / ``ocr-map`` make for one image: the map of x (1, 3, h, w) in [0, 1]
    (:func:`make_working_map`; ``ctx`` default ``objective.prepare(x)``), and, when x is a smaller working copy of
    the input x_input (1, 3, H, W), that map brought to the input's size and the input coded under it
    (:func:`made_at_input_size`); a ``target_bpp`` is then carried over to the working resolution
    (:func:`working_target_bpp`) and met again at the input's size.

    Returns:
        :class:`MadeMap` with the map and .tcz bytes at the input's size.

    Raises:
        taskcomp.optimize.TargetBppError: the target cannot be met (at the working resolution or the input's size).
        ValueError: bad arguments.
    """
    if ctx is None:
        ctx = objective.prepare(x)
    carried = x_input is not None and target_bpp is not None and tuple(x_input.shape[-2:]) != tuple(x.shape[-2:])
    work_target = working_target_bpp(codec, x, x_input, target_bpp) if carried else target_bpp
    made = make_working_map(
        codec,
        objective,
        x,
        ctx,
        lam=lam,
        target_bpp=work_target,
        predictor=predictor,
        refine=refine,
        default_lam=default_lam,
        log=log,
        progress=progress,
        **opt_kwargs,
    )
    return made_at_input_size(codec, made, x, x_input, target_bpp)


# ---------------------------------------------------------------------------------------------- baselines
def comparison_maps(
    codec, objective: Objective, x: Tensor, ctx: Any, bpp: float, box_mask: bool = False
) -> list[tuple[str, str, float, bytes]]:
    """Baseline maps of x (1, 3, H, W) at the same real bpp as a made map (``--compare``): the uniform level that
    meets ``bpp`` (within 0.5%), and with ``box_mask`` the text objective's box mask (in = min(1, 2s),
    out = max(0, 2s - 1)) that meets it.

    Returns:
        one (name, setting, real bpp, .tcz bytes) per baseline: ``uniform`` (setting ``q=...``), ``box-mask``
        (setting ``in=...,out=...``).
    """
    H, W = x.shape[-2:]
    q, ubpp, udata = family_at_bpp(codec, x, lambda s: torch.full((1, 1, H, W), s, device=x.device), bpp)
    rows = [("uniform", f"q={q:.3f}", ubpp, udata)]
    if box_mask:
        box = objective.box_mask(ctx, (H, W), 1.0, 0.0).to(x.device)
        s, b, d = family_at_bpp(codec, x, lambda s: box * min(1.0, 2 * s) + (1 - box) * max(0.0, 2 * s - 1), bpp)
        rows.append(("box-mask", f"in={min(1, 2 * s):.2f},out={max(0, 2 * s - 1):.2f}", b, d))
    return rows
