"""Whole experiments from a recipe: ``taskcomp run imagenet_classification.yaml``.

Every (image, method, setting) gives one record in ``OUT/records.shard{i}of{n}.jsonl``, written as soon as it
is done; a rerun skips finished records, whatever number of processes wrote them. Codec records carry the
codec's weights id (``weights``), and a run folder refuses to resume with other weights.

Scale-out uses the engines users already have, not a launcher of ours:

- ``torchrun --nproc_per_node N -m taskcomp run RECIPE`` (and multi-node through torchrun's rendezvous): rank r
  of N takes items r, r + N, ... of the (evenly spread, ``--limit``) item list, runs on ``cuda:LOCAL_RANK`` when
  GPUs exist, and writes ``records.shard{r}of{N}.jsonl``; rank 0 waits for all (a gloo barrier) and writes
  the report.
- A Slurm job array (``SLURM_ARRAY_TASK_ID`` / ``SLURM_ARRAY_TASK_COUNT``), or ``--shard i/n``: independent
  processes, one shard each; ``taskcomp report OUT`` when all are done.

Items are split by position in the full list, and finished points are skipped wherever they were written, so
a run resumes under another world size.

Batches (``batch_size``): the task-aware maps of several images are optimised together, each independently of
the others (Adam on per-image logits; the codec and task model see a batch). Images of one size (ImageNet
crops) batch directly; images of different sizes (COCO, SROIE) are grouped by the codec's padded size and
stacked with replicate padding, which codes each as alone up to float noise. Other methods code image by image.
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..bench.baselines import pillow_roundtrip
from ..bench.metrics import psnr
from ..bitstream import decode, unpack, weights_id
from ..io import atomic_write, image_to_tensor, tensor_to_image
from ..mapmaker import optimized_maps, predicted_maps
from ..maps import map_at_size, uniform_map
from ..objectives import objective_class
from ..optimize import group_key, real_bpp
from .gallery import example_dir, save_example
from .layouts import list_items
from .recipe import (
    MAP_OPTIONS,
    STANDARD_OPTIONS,
    check_objective,
    is_map_method,
    is_predicted,
    method_kind,
    parse_shard,
    standard_format,
    validate_recipe,
)
from .recipe import settings as recipe_settings
from .tasks import TASKS, objective_spec

__all__ = ["run_recipe", "spread", "shard_items", "record_file", "DEFAULT_EXAMPLES"]

#: Gallery examples of a run when the recipe has no ``examples:`` key: the first N items of the run keep their
#: decoded images, maps and overlays under ``OUT/examples/`` (:func:`taskcomp.runner.gallery.save_example`).
DEFAULT_EXAMPLES = 2


def spread(items: list, limit: int | None) -> list:
    """``limit`` items evenly spread over the list (all when ``limit`` is None or not smaller).

    ImageNet-sample is ordered by class (the first 200 are all animals), so the first N would be biased.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if not limit or limit >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def shard_items(items: list, rank: int, world: int) -> list:
    """The items of shard ``rank`` of ``world``: positions rank, rank + world, ... of the full list."""
    return items[rank::world]


def record_file(out: Path, rank: int, world: int) -> Path:
    return out / f"records.shard{rank}of{world}.jsonl"


def _done_points(out: Path) -> tuple[set, dict[str, str]]:
    """Finished (image, method, setting) keys in every record file of ``out``, and weights id -> a file."""
    done, weights = set(), {}
    for p in sorted(out.glob("records*.jsonl")):
        for line in p.read_text().splitlines():
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that point is simply redone
                continue
            done.add((r["image"], r["method"], r["setting"]))
            if r.get("weights"):
                weights.setdefault(r["weights"], p.name)
    return done, weights


class _Group:
    """A torchrun process group for coordination only (gloo on the CPU, whatever device the ranks compute on)."""

    def __init__(self, env):
        self.env, self.active = env, False
        if env.is_torchrun and env.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                # Ranks finish at different times; the final barrier may wait long.
                dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
            self.active = True

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.active = False


def run_recipe(
    recipe: dict[str, Any],
    out: Path,
    data_root: Path,
    limit: int | None = None,
    shard: str | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    log=print,
    report: bool = True,
) -> int:
    """Run (or resume) a recipe; returns the number of new records written by this process.

    Args:
        recipe: a loaded recipe (:func:`taskcomp.runner.recipe.load_recipe`).
        out: run folder (records, ``recipe.yaml``, report).
        data_root: folder the recipe's ``data`` is relative to.
        limit: this many items, evenly spread over the data set (None: all).
        shard: ``i/n`` to run one shard by hand; default from torchrun (``RANK``/``WORLD_SIZE``) or a Slurm array.
        batch_size: images optimised together (default: the recipe's ``batch_size``, else 1).
        device: ``auto`` (``cuda:LOCAL_RANK`` when CUDA exists), ``cpu``, ``cuda``, ``cuda:N``.
        report: under torchrun, rank 0 writes the report when all ranks are done.

    Raises:
        ValueError: bad recipe, shard, device, or a run folder made with other codec weights.
    """
    from ..devices import describe_device, process_group_env, resolve_device

    torch.set_flush_denormal(True)
    recipe = validate_recipe(
        recipe, f"recipe {recipe.get('name', '')}".strip() if isinstance(recipe, dict) else "recipe"
    )
    task_name = recipe.get("task", "classification")
    if task_name not in TASKS:
        raise ValueError(f"unknown task {task_name!r}; recipes support {', '.join(TASKS)}")
    check_objective(recipe, f"recipe {recipe['name']}")
    points = recipe_settings(recipe["methods"])
    if any(standard_format(m) for m, _, _ in points):  # HEVC / H.264 methods: PyAV is checked before any work
        from ..codec.standard import require_pyav

        require_pyav()
    for method, _, _ in points:
        if method in ("gradcam", "box_mask", "saliency") and method != TASKS[task_name].baseline:
            raise ValueError(f"method {method} does not apply to task {task_name}")
    # --batch-size 0 is an error, not "the recipe's": only None falls back
    bs = batch_size if batch_size is not None else recipe.get("batch_size", 1)
    if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
        raise ValueError(f"batch size must be an integer >= 1, got {bs!r}")
    ta = map_method_options(recipe)
    if any(o.get("optimizer") == "lbfgs" for o in ta.values()) and bs > 1:
        raise ValueError(
            "L-BFGS keeps one curvature history for the whole batch (the images would not be "
            "independent): use batch_size 1 with optimizer lbfgs"
        )

    env = process_group_env()
    if shard and env.world > 1:
        raise ValueError(f"--shard given inside a {env.source} job of {env.world} processes: use one or the other")
    si, sn = parse_shard(shard) if shard else (env.rank, env.world)
    dev = resolve_device(device)
    if env.is_torchrun and env.world > 1 and str(device).startswith("cuda:"):
        raise ValueError(
            f"--device {device} under torchrun would put every rank on one GPU: use --device auto or "
            "cuda (each rank takes cuda:LOCAL_RANK)"
        )
    group = _Group(env)
    try:
        items = spread(list_items(recipe, data_root), limit)
        for it in items[: recipe.get("examples", DEFAULT_EXAMPLES)]:  # the gallery's images keep their pictures
            it["examples_dir"] = str(example_dir(out, it["id"]))
        mine = shard_items(items, si, sn)
        out.mkdir(parents=True, exist_ok=True)
        done, folder_weights = _done_points(out)
        _check_run_folder(out, recipe, items, limit, {k[0] for k in done}, log)
        if si == 0:
            from ..yamlio import dump as dump_yaml

            atomic_write(out / "recipe.yaml", dump_yaml(recipe, sort_keys=False).encode())
        todo = [(it, s) for it in mine for s in points if (it["id"], s[0], s[1]) not in done]
        log(
            f"{recipe['name']}: device {describe_device(dev)}; shard {si}/{sn} ({env.source}); "
            f"{len(mine)} of {len(items)} images x {len(points)} points: {len(todo)} to do, "
            f"{len(mine) * len(points) - len(todo)} done; batch {bs}"
        )
        n_new = 0
        if todo:
            n_new = _run_points(recipe, task_name, todo, out, record_file(out, si, sn), folder_weights, ta, bs, dev)
        group.barrier()  # rank 0 reports only when every rank has written its records
        if report and group.active and env.rank == 0:
            from .report import report as make_report

            make_report(out, data_root=data_root)
            log(f"report written to {out}")
        return n_new
    finally:
        group.close()


#: The run folder's file naming the items it runs on (written at the first run, checked at every later one).
RUN_FILE = "run.json"
#: Recipe keys whose change would make a run folder's records incomparable (codec weights are checked apart).
_FIXED_KEYS = (
    "task",
    "data",
    "preprocess",
    "objective",
    "coco_category",
    "ap_conf",
    "reading",
    "synthesis",
    "codec",
    "checkpoint",
)
#: Values a recipe without the key has (a folder made before the key existed compares equal to its default).
_KEY_DEFAULTS = {"reading": "page", "synthesis": "float64", "codec": "sft-small"}


def _check_run_folder(
    out: Path, recipe: dict[str, Any], items: list, limit: int | None, recorded: set, log=print
) -> None:
    """A run folder never mixes image sets or settings.

    ``OUT/run.json`` keeps the item ids (and ``--limit``) of the folder's run. A later run (any shard) must use
    the same items, or a superset of them (e.g. the whole set after a ``--limit`` run: the folder is extended
    and ``run.json`` updated); any other set is refused. A folder from before ``run.json`` is checked against
    the images of its records. The recipe's task, data, preprocessing, objective and each method's options
    (all but its sweep) must equal those of the folder's ``recipe.yaml``: a sweep may grow, its points may
    not change meaning. ``run.json`` also keeps the objective's arguments with their defaults filled in
    (:func:`objective_record`); when present, they are what the objective is compared by.

    Raises:
        ValueError: one line saying what differs and what to do.
    """
    ids = [it["id"] for it in items]
    path = out / RUN_FILE
    prev = None
    if path.is_file():
        try:
            prev = json.loads(path.read_text())
            old, old_limit = list(prev["items"]), prev.get("limit")
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path} is damaged: delete it to take the items from the records") from None
    else:
        old, old_limit = sorted(recorded), None
    new = set(ids)
    if not set(old) <= new:
        stray = sorted(set(old) - new)
        was = f"--limit {old_limit}" if old_limit is not None else ("all images" if prev is not None else "records")
        now = f"--limit {limit}" if limit is not None else "all images"
        raise ValueError(
            f"{out} holds a run on {len(old)} images ({was}); this run's {len(ids)} images ({now}) "
            f"leave out {len(stray)} of them (e.g. {stray[0]}): a run folder never mixes image sets: "
            f"rerun with {was if prev is not None and old_limit is not None else 'the same images'}, "
            "without --limit (extends the folder to every image), or use another --out"
        )
    args = objective_record(recipe)
    was = (prev or {}).get("objective")
    if was is not None and not isinstance(was, dict):
        raise ValueError(f"{path} is damaged (objective): delete it to take the items from the records")
    # a recorded objective is compared with its defaults filled in (below), not as the recipe spelled it
    _check_same_settings(out, recipe, skip=("objective",) if was is not None else ())
    if was is not None:
        _check_same_objective(out, was, args, log)
    # A folder that already holds records but no objective record (made before the record existed) keeps none:
    # today's defaults are not what its records were made with (e.g. max_boxes was 64 before 2026-11-30).
    record = args if was is not None or not recorded else None
    if prev is None or list(old) != ids or (was is None and record is not None):
        if prev is not None and list(old) != ids:
            log(f"{out}: extending the run from {len(old)} to {len(ids)} images")
        atomic_write(
            path,
            json.dumps(
                {
                    "recipe": recipe.get("name"),
                    "limit": limit,
                    "n_items": len(ids),
                    **({"objective": record} if record is not None else {}),
                    "items": ids,
                },
                indent=1,
            ).encode(),
        )


def _check_same_objective(out: Path, was: dict[str, Any], now: dict[str, Any], log=print) -> None:
    """The recorded objective arguments equal this recipe's (both with defaults filled in).

    An argument the record lacks (added to the objective after the folder was made) is accepted when this recipe
    leaves it at its default, with a note: the records were made before it existed, i.e. without it.

    Raises:
        ValueError: one line naming the first argument that differs (the objective's name first).
    """
    if was.get("name") != now.get("name"):
        raise ValueError(
            f"{out} was run with objective {was.get('name')!r}; this recipe has {now.get('name')!r}: "
            "records would mix two settings: use another --out"
        )
    cls = objective_class(now["name"])
    params = inspect.signature(cls).parameters if cls is not None else {}
    added = [
        k
        for k in now
        if k not in was
        and k in params
        and params[k].default is not inspect.Parameter.empty
        and now[k] == params[k].default
    ]
    for key in sorted(set(was) | set(now)):
        if key in added:
            continue
        if key not in was or key not in now or was[key] != now[key]:
            a = repr(was[key]) if key in was else "(absent)"
            b = repr(now[key]) if key in now else "(absent)"
            raise ValueError(
                f"{out} was run with objective {key}: {a}; this recipe means {b} (defaults included): "
                "records would mix two settings: use another --out"
            )
    if added:
        log(
            f"{out}: objective argument(s) {', '.join(added)} did not exist when the folder was made; "
            "this recipe leaves them at their defaults"
        )


def objective_record(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe's objective with every argument its constructor would default filled in.

    Kept in ``run.json`` (from a folder's first run on) so a folder resumed after a default changed (e.g. the
    text objective's ``max_boxes``, 64 before 2026-11-30, all boxes since) is refused instead of mixing two
    meanings under one label.
    """
    from ..objectives.base import objective_arguments

    spec = objective_spec(recipe)
    return objective_arguments(spec.pop("name"), **spec)


def _check_same_settings(out: Path, recipe: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    """The fixed part of the recipe (but ``skip``) equals the folder's ``recipe.yaml`` (see
    :func:`_check_run_folder`)."""
    p = out / "recipe.yaml"
    if not p.is_file():
        return
    try:
        from ..yamlio import load as load_yaml

        old = load_yaml(p.read_text()) or {}
    except yaml.YAMLError:
        return
    if not isinstance(old, dict):
        return
    for key in (k for k in _FIXED_KEYS if k not in skip):
        was, now = old.get(key, _KEY_DEFAULTS.get(key)), recipe.get(key, _KEY_DEFAULTS.get(key))
        if was != now:
            raise ValueError(
                f"{out} was run with {key}: {was!r}; this recipe has {key}: {now!r}: records would mix "
                "two settings: use another --out"
            )
    # memory_format is a speed setting (float noise only), compared no more than thread counts are
    sweeps = ("q", "alpha", "q_in", "quality", "lambda", "crf", "memory_format")
    for method, spec in (recipe.get("methods") or {}).items():
        if method not in (old.get("methods") or {}):
            continue
        a = {k: v for k, v in ((old["methods"][method]) or {}).items() if k not in sweeps}
        b = {k: v for k, v in (spec or {}).items() if k not in sweeps}
        if a != b:
            key = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))[0]
            raise ValueError(
                f"{out} was run with methods.{method}.{key}: {a.get(key)!r}; this recipe has "
                f"{b.get(key)!r}: its points would mix two settings under one label: use another --out "
                f"(or another method name, e.g. {method}_{key})"
            )


def _run_points(recipe, task_name, todo, out: Path, rec_path: Path, folder_weights, ta, bs: int, dev) -> int:
    from tqdm import tqdm

    from ..codec import create_codec

    task = TASKS[task_name](recipe)
    for obj in {id(o): o for o in _task_objectives(task)}.values():
        obj.to(dev)
    codec = create_codec(recipe.get("codec", "sft-small"), checkpoint=recipe.get("checkpoint"), device=dev)
    wid = weights_id(codec).hex()
    # A run folder's codec points must come from one set of weights: resuming with other weights (a new
    # shipped checkpoint, another `checkpoint:`) would silently mix two codecs in one table.
    other = sorted(set(folder_weights) - {wid})
    if other:
        raise ValueError(
            f"{out} holds codec points made with weights {other[0]} ({folder_weights[other[0]]}); "
            f"this codec's weights are {wid}: use another --out"
        )

    predictors = _predictors(recipe, task_name, task, dev, codec)
    by_image: dict[str, list] = {}
    for it, s in todo:
        by_image.setdefault(it["id"], [it, []])[1].append(s)

    n_new = 0
    bar = tqdm(total=len(by_image), desc=recipe["name"], dynamic_ncols=True)
    pending: dict[tuple[int, int], list] = {}  # padded size -> loaded images waiting for a full batch

    def flush(key) -> None:
        nonlocal n_new
        batch = pending.pop(key)
        n_new += _code_batch(batch, task, codec, wid, ta, f, predictors)
        bar.update(len(batch))

    _end_with_newline(rec_path)
    with open(rec_path, "a") as f:
        for img_id, (it, sets) in by_image.items():
            arr = task.load(it)
            x = image_to_tensor(arr).to(dev)
            t_ctx = time.perf_counter()
            opt_ctx, state = task.contexts(x, it)
            state["target_seconds"] = time.perf_counter() - t_ctx
            # A task with a working resolution (documents: preprocess.working_side) optimises and predicts maps
            # on a smaller copy; the maps are upsampled and the image is coded at its own size.
            xw = state.pop("work", x)
            key = group_key(*xw.shape[-2:])  # maps are optimised together at the working size
            pending.setdefault(key, []).append(
                {"id": img_id, "item": it, "sets": sets, "arr": arr, "x": x, "xw": xw, "ctx": opt_ctx, "state": state}
            )
            if len(pending[key]) >= bs:
                flush(key)
        for key in list(pending):
            flush(key)
    bar.close()
    return n_new


def map_method_options(recipe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task-aware or predicted method of a recipe: its MapOptimizer arguments (the method's keys but
    ``lambda`` and the other :data:`MAP_OPTIONS`); for ``predicted*`` methods, the refine steps' arguments."""
    out = {}
    for method, spec in (recipe.get("methods") or {}).items():
        if is_map_method(method):
            out[method] = {k: v for k, v in (spec or {}).items() if k not in MAP_OPTIONS + STANDARD_OPTIONS}
    return out


def _map_job(recipe: dict[str, Any], method: str, params: dict[str, Any]) -> tuple:
    """What a map point's map is: one per (job, image). Optimised maps (``task_aware*``, ``hevc_*``, ``h264_*``)
    with equal optimiser options, label use and lambda are the same map, made once and coded by each of them
    (the HEVC points of a lambda share its map across their CRFs); a predicted method's maps are its own."""
    spec = recipe["methods"][method] or {}
    if is_predicted(method):
        return ("predicted", method, params["lam"])
    options = {k: v for k, v in spec.items() if k not in ("lambda",) + STANDARD_OPTIONS}
    return ("optimized", json.dumps(options, sort_keys=True), params["lam"])


def _end_with_newline(path: Path) -> None:
    """A process killed mid-write leaves a cut last line: close it, so appended records start on a new line
    (readers skip the cut line and the point is redone)."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")


def _task_objectives(task) -> list:
    objs = [task.objective]
    objs += list(getattr(task, "evaluators", {}).values())
    return objs


def _predictors(recipe: dict[str, Any], task_name: str, task, dev, codec=None) -> dict[str, Any]:
    """The predictor of each ``predicted*`` method (``predictor:`` a registered name or a checkpoint path, default
    the task model's registered one; ``checkpoint:`` other weights), checked against the task's objective."""
    from ..predictors import check_codec, check_task_model, create_predictor, default_predictor

    out = {}
    for method, spec in recipe["methods"].items():
        if not is_predicted(method):
            continue
        spec = spec or {}
        model_name = getattr(task.objective, "model_name", None)
        name = spec.get("predictor") or default_predictor(task_name, model_name)
        pred = create_predictor(name, checkpoint=spec.get("checkpoint"), device=dev)
        check_task_model(pred, task_name, model_name)
        if codec is not None:
            check_codec(pred, codec)
        out[method] = pred
    return out


def _method_context(task, b, method: str, spec: dict[str, Any]):
    """The objective context of one image for one map method: the task's own, or, for a method that sets
    ``use_label: false`` (``use_gt: false``) where the task's uses targets, the label-free context prepared from
    the original alone."""
    flag = spec.get("use_label", spec.get("use_gt"))
    if flag is None or bool(flag) == bool(getattr(task, "targets_in_context", False)):
        return b["ctx"]
    if flag:
        raise ValueError(
            f"method {method} sets use_label/use_gt true but the task's targets are off: set it "
            "on the task_aware method"
        )
    key = ("label_free", id(task.objective))
    if key not in b:
        b[key] = task.objective.prepare(b["xw"])
    return b[key]


def _code_batch(batch, task, codec, wid: str, ta: dict[str, dict[str, Any]], f, predictors=None) -> int:
    """All points of a batch of loaded images: task-aware maps optimised together, the rest image by image."""
    # Task-aware settings first, batched over the images that still need each one.
    maps: dict[tuple[str, tuple], tuple[torch.Tensor, dict[str, Any], float]] = {}
    jobs: dict[tuple, tuple] = {}  # map job -> the first setting that asks for it
    job_of: dict[tuple[str, str], tuple] = {}  # (method, setting label) -> its map job, decoded once
    for b in batch:
        for s in b["sets"]:
            if is_map_method(s[0]):
                job = job_of.setdefault((s[0], s[1]), _map_job(task.recipe, s[0], s[2]))
                jobs.setdefault(job, s)
    for job, s in jobs.items():
        method = s[0]
        spec = task.recipe["methods"][method] or {}
        sub = [b for b in batch if any(job_of.get((t[0], t[1])) == job for t in b["sets"])]
        ctxs = [_method_context(task, b, method, spec) for b in sub]
        t0 = time.perf_counter()
        xs = [b["xw"] for b in sub]
        if is_predicted(method):
            pred = predictors[method]
            refine = int(spec.get("refine", 0) or 0)
            opt_kw = {"lr": 0.3, "downsample": pred.config.downsample, **ta[method]}
            made = predicted_maps(codec, task.objective, pred, xs, ctxs, s[2]["lam"], refine, **opt_kw)
            per_image = (time.perf_counter() - t0) / len(sub)
            for (qmap, best), b in zip(made, sub):
                qmap = map_at_size(qmap, b["x"].shape[-2:])
                extra = {"best_step": best, "refine_steps": refine} if refine else {}
                maps[(b["id"], job)] = (
                    qmap,
                    {**extra, "map_mean": float(qmap.mean()), "batch": len(sub), "predictor": pred.digest},
                    per_image,
                )
            continue
        # init box_mask: each image starts from its own text-box mask, one image at a time
        results = optimized_maps(codec, task.objective, xs, ctxs, s[2]["lam"], **ta[method])
        per_image = (time.perf_counter() - t0) / len(sub)
        for (qmap, best), b in zip(results, sub):
            qmap = map_at_size(qmap, b["x"].shape[-2:])
            maps[(b["id"], job)] = (
                qmap,
                {"best_step": best, "map_mean": float(qmap.mean()), "batch": len(sub)},
                per_image,
            )

    n = 0
    for b in batch:
        arr, x, it, state = b["arr"], b["x"], b["item"], b["state"]
        H, W = arr.shape[:2]
        for method, setting, params in b["sets"]:
            t0 = time.perf_counter()
            extra: dict[str, Any] = {}
            qmap = None
            opt_seconds = 0.0
            if method == "original":  # the task metric's ceiling: the preprocessed image, 24 bpp raw RGB
                dec_arr, bpp, x_dec = arr, 24.0, x
            elif method in ("jpeg", "webp"):
                dec_arr, n_bytes, _, _ = pillow_roundtrip(arr, method, params["quality"])
                bpp = 8 * n_bytes / (H * W)
                x_dec = image_to_tensor(dec_arr).to(x.device)
            elif standard_format(method):  # HEVC / H.264: plain CRF, or an optimised map as per-block QP offsets
                if method_kind(method) == "standard_map":
                    qmap, extra, opt_seconds = maps[(b["id"], job_of[(method, setting)])]
                    extra = {**extra, "map_seconds": opt_seconds, "target_seconds": state.get("target_seconds")}
                dec_arr, n_bytes, info = _standard_point(
                    arr, method, task.recipe["methods"][method] or {}, params, qmap
                )
                bpp = 8 * n_bytes / (H * W)
                x_dec = image_to_tensor(dec_arr).to(x.device)
                extra.update(info)
            else:
                if method == "uniform":
                    qmap = uniform_map(H, W, params["q"]).to(x.device)
                elif is_map_method(method):
                    qmap, extra, opt_seconds = maps[(b["id"], job_of[(method, setting)])]
                    # map_seconds: making the map; target_seconds: its targets on the original (once per image)
                    extra = {**extra, "map_seconds": opt_seconds, "target_seconds": state.get("target_seconds")}
                else:
                    qmap = map_at_size(
                        task.baseline_map(b["xw"], state, next(iter(params.values()))).to(x.device), (H, W)
                    )
                bpp, data = real_bpp(codec, x, qmap)
                with torch.inference_mode():  # synthesis: float32 decodes 4-5x faster than the default
                    x_dec = decode(codec, data, synthesis=task.recipe.get("synthesis"))
                dec_arr = tensor_to_image(x_dec)
                extra["weights"] = wid  # every point this codec coded names its weights
                extra["tcz_sha256"] = hashlib.sha256(data).hexdigest()[:16]  # compare files across runs
                if unpack(data)[0].gray:  # a gray source: decoded as luma in all channels (bitstream.GRAY_FLAG)
                    extra["gray"] = True
            rec = {
                "image": b["id"],
                "method": method,
                "setting": setting,
                **params,
                "width": W,
                "height": H,
                "bpp": bpp,
                "psnr": psnr(arr, dec_arr),
                **task.metrics(arr, dec_arr, x_dec, state, it),
                "seconds": opt_seconds + time.perf_counter() - t0,
                **extra,
            }
            f.write(json.dumps(rec) + "\n")
            f.flush()
            n += 1
            if it.get("examples_dir"):  # decoded image, map, overlay, boxes / reading: OUT/examples/ID/METHOD/
                save_example(it["examples_dir"], arr, method, setting, dec_arr, qmap, rec, it, state)
    return n


def _standard_point(arr: np.ndarray, method: str, spec: dict[str, Any], params: dict[str, Any], qmap) -> tuple:
    """One HEVC / H.264 point: (decoded uint8 image, file bytes, record fields: the CRF the encoder ran at, chroma,
    encode and decode seconds)."""
    from ..codec.standard import QP_PER_Q, standard_roundtrip

    dec, n_bytes, enc_s, dec_s, info = standard_roundtrip(
        arr,
        standard_format(method),
        params["crf"],
        qmap,
        chroma=str(spec.get("chroma", "auto")),
        preset=spec.get("preset", "slow"),
        qp_per_q=float(spec.get("qp_per_q", QP_PER_Q)),
    )
    fields = {"crf_used": info["crf"], "chroma": info["chroma"], "enc_s": enc_s, "dec_s": dec_s}
    return dec, n_bytes, fields
