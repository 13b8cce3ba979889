"""Subcommands that train or reshape codecs and predictors: train, train-predictor, make-targets, distill-predictor,
export-codec, widen-codec and plot-training."""

from __future__ import annotations

import os
from pathlib import Path

from ..codec import CODEC_CONFIGS, resolve_name, save_codec, widen_codec
from ..outputs import OutputPlan
from ..runner.recipe import check_config_keys, resolve_recipe
from ..training.codec import TrainConfig, export, plot_training, train
from ..training.predictor import PredictorTrainConfig, train_predictor
from .common import apply_threads, load_codec

__all__ = [
    "cmd_train",
    "cmd_train_predictor",
    "cmd_distill_predictor",
    "cmd_make_targets",
    "cmd_export",
    "cmd_widen",
    "cmd_plot_training",
]


def cmd_train(a):
    """``taskcomp train``: train a codec from a YAML config (:func:`taskcomp.training.codec.train`)."""
    if a.workers is not None and a.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {a.workers}")
    if a.threads is not None and a.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {a.threads}")
    path = resolve_recipe(a.config)
    check_config_keys(path, [k for k in TrainConfig.__dataclass_fields__ if k != "extra"], "training config")
    cfg = TrainConfig.from_yaml(
        path,
        steps=a.steps,
        budget_minutes=a.budget_minutes,
        out=a.out,
        init_from=a.init_from,
        stop_after_minutes=a.stop_after,
        workers=a.workers,
        threads=a.threads,
    )
    train(cfg, resume=a.resume, data=a.data, device=a.device)


def cmd_train_predictor(a):
    """``taskcomp train-predictor``: train a map predictor from a YAML config
    (:func:`taskcomp.training.predictor.train_predictor`)."""
    cfg = PredictorTrainConfig.from_yaml(
        resolve_recipe(a.config),
        steps=a.steps,
        budget_minutes=a.budget_minutes,
        out=a.out,
        stop_after_minutes=a.stop_after,
        workers=a.workers,
        threads=a.threads,
    )
    train_predictor(cfg, resume=a.resume, data=a.data, device=a.device)


def cmd_make_targets(a):
    """``taskcomp make-targets``: label-free per-image optimised maps of training photos at several lambdas, the
    targets a predictor is distilled from (:mod:`taskcomp.training.targets`); sharded (``--shard``, torchrun) and
    resumable."""
    import torch

    from ..bitstream import weights_id
    from ..datasets import data_root
    from ..devices import process_group_env
    from ..objectives import create_objective
    from ..runner.recipe import parse_shard
    from ..training.targets import TargetSpec, make_targets, target_images
    from .common import device

    try:
        lambdas = [float(v) for v in a.lambdas.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--lambdas takes comma-separated numbers > 0, got {a.lambdas!r}") from None
    if not lambdas or not all(v > 0 and v < float("inf") for v in lambdas):
        raise ValueError(f"--lambdas takes comma-separated numbers > 0, got {a.lambdas!r}")
    for name, v, lo in (("--steps", a.steps, 1), ("--downsample", a.downsample, 1), ("--crop", a.crop, 8)):
        if v < lo:
            raise ValueError(f"{name} must be >= {lo}, got {v}")
    if a.resize < a.crop:
        raise ValueError(f"--resize ({a.resize}) must be at least --crop ({a.crop})")
    if a.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {a.batch_size}")
    if Path(a.out).exists() and not Path(a.out).is_dir():
        raise ValueError(f"--out {a.out} is a file: name a folder for the targets")
    apply_threads(a)
    env = process_group_env()
    shard = parse_shard(a.shard) if a.shard else (env.rank, env.world)
    images = target_images(data_root(a.data_root), a.data or ["train", "photos/imagen"], a.count, log=print)
    dev = device(a)
    codec = load_codec(a, dev)
    model = a.model or ("tf_efficientnet_lite0" if a.task == "classification" else None)
    obj_args = {"model": model} if model else {}
    objective = create_objective(a.task, device=dev, **obj_args)
    optimizer = {"steps": a.steps, "lr": a.lr, "init_q": a.init_q, "downsample": a.downsample}
    # only settings that differ from the defaults enter the targets' meaning (folders made before they existed)
    if a.optimizer != "adam":
        optimizer["optimizer"] = a.optimizer
    if a.keep != "best":
        optimizer["keep"] = a.keep
    from ..optimize import check_optimizer_args

    check_optimizer_args(**optimizer)
    spec = TargetSpec(
        codec=codec.checkpoint_info.get("codec", a.codec or "sft-small"),
        weights=weights_id(codec).hex(),
        task=a.task,
        task_model=str(getattr(objective, "model_name", model)),
        objective={"name": a.task, **obj_args},
        lambdas=lambdas,
        optimizer=optimizer,
        resize=a.resize,
        crop=a.crop,
    )
    torch.set_flush_denormal(True)
    n = make_targets(images, Path(a.out), codec, objective, spec, shard=shard, batch_size=a.batch_size, device=dev)
    print(f"{n} images' targets made in {a.out}")


def cmd_distill_predictor(a):
    """``taskcomp distill-predictor``: a predictor's decoder trained on cached features to reproduce a target
    folder's maps (:func:`taskcomp.training.distill.distill_predictor`)."""
    from ..bitstream import weights_id
    from ..datasets import data_root
    from ..training.distill import distill_predictor
    from ..training.targets import load_targets

    if Path(a.out).suffix not in (".pth", ".pt"):
        raise ValueError(f"--out must name a .pth or .pt file, got {a.out}")
    for flag, v in (("--steps", a.steps), ("--batch-size", a.batch_size), ("--eval-every", a.eval_every)):
        if v < 1:
            raise ValueError(f"{flag} must be >= 1, got {v}")
    if a.count is not None and a.count < 2:
        raise ValueError(f"--count must be >= 2 (target images to train on), got {a.count}")
    if not 0 < a.lr < 1:
        raise ValueError(f"--lr must be in (0, 1), got {a.lr}")
    plan = OutputPlan()
    plan.add_input(a.checkpoint, "the --checkpoint codec weights")
    plan.add_output(a.out, "--out")
    plan.add_output(Path(a.out).with_name(Path(a.out).name + ".json"), "--out (its .json)")
    plan.add_output(Path(a.out).with_name(Path(a.out).name + ".log.csv"), "--out (its .log.csv)")
    plan.check()
    if Path(a.out).resolve().is_relative_to(Path(a.targets).resolve()):
        raise ValueError(f"--out {a.out} is inside the targets folder {a.targets}: write the predictor elsewhere")
    spec, _ = load_targets(a.targets)
    a.codec = a.codec or spec.get("codec")
    apply_threads(a)
    wid = weights_id(load_codec(a, "cpu")).hex()
    distill_predictor(
        a.targets,
        a.out,
        data_root(a.data_root),
        count=a.count,
        steps=a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        eval_every=a.eval_every,
        name=a.name,
        codec_weights=wid,
    )


def cmd_export(a):
    """``taskcomp export-codec``: a training run's last state as a codec checkpoint; prints its path."""
    run_dir = Path(a.run_dir)
    plan = OutputPlan()  # -o RUN_DIR/last.pth would replace the training state it exports
    for name in ("last.pth", "config.yaml"):
        plan.add_input(run_dir / name, f"the run's {name} ({run_dir / name})")
    plan.add_output(a.output or run_dir / "codec.pth", "-o")
    plan.check()
    apply_threads(a)
    print(export(a.run_dir, a.output, half=a.half, base=a.base))


def cmd_widen(a):
    """``taskcomp widen-codec``: the codec grown to a wider registered config computing the same function
    (:func:`taskcomp.codec.widen_codec`), saved to ``-o``."""
    plan = OutputPlan()  # -o equal to the codec it widens would replace it
    if a.checkpoint and os.path.isfile(a.checkpoint):
        plan.add_input(a.checkpoint, f"the --checkpoint file {a.checkpoint}")
    plan.add_output(a.output, "-o")
    plan.check()
    apply_threads(a)
    target = resolve_name(a.to)
    src = load_codec(a)
    wide = widen_codec(src, CODEC_CONFIGS[target], seed=a.seed)
    info = src.checkpoint_info
    meta = {
        "widened_from": info.get("hash"),
        "source_codec": info.get("codec"),
        "steps": info["meta"].get("steps"),
        "note": "function-preserving widening (taskcomp.codec.widen): new channels start at zero",
    }
    digest = save_codec(wide, a.output, target, meta=meta)
    n_src, n_wide = (sum(p.numel() for p in m.parameters()) for m in (src, wide))
    print(f"{a.output}: {target}, {n_wide:,} parameters (from {n_src:,}), weights {digest[:16]}")


def cmd_plot_training(a):
    """``taskcomp plot-training``: a training run's loss, bpp and PSNR curves as a picture; prints its path."""
    print(plot_training(a.run_dir, a.output))
