"""Map-predictor training: ``taskcomp train-predictor --config recipes/predictor_classification.yaml [--resume]``.

The predictor (:mod:`taskcomp.predictors`) learns the map the per-image optimiser would find: it minimises
``E[bpp + lambda * L_task]`` over random crops of unlabeled photos and a lambda drawn log-uniformly from the
config's range per crop, through the frozen codec in straight-through mode (the optimiser's own objective,
:meth:`taskcomp.optimize.MapOptimizer.objective_terms`). Task losses are label-free (classification: KL to the
task model's prediction on the original; detection: the original's detections as pseudo-labels), so any photo
folder trains it. Each crop's objective is divided by ``(lambda_weight_offset + lambda)`` so that small and large
lambdas weigh alike (a per-image constant: each image's minimiser is unchanged).

Shared machinery (:mod:`taskcomp.training.loop`, :mod:`taskcomp.training.distributed`): the process group and
DistributedDataParallel (torchrun, ``--workers``), the learning-rate schedule, batch prefetching, atomic
checkpoints, ``--stop-after`` and the CSV log. Batch ``k`` of rank ``r`` is drawn from its own random stream
``(seed, r, k)``, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..datasets import TrainingPool, open_training_pool
from ..io import atomic_write
from ..yamlio import dump as dump_yaml
from ..yamlio import load as load_yaml
from .distributed import LAUNCHED_ENV, DistGroup, launch_local, process_group, record_failure
from .loop import CsvLog, Prefetcher, check_fresh, cosine_lr, progress, save_state

__all__ = ["PredictorTrainConfig", "train_predictor", "export_predictor", "ConfigError"]


class ConfigError(ValueError):
    """A training config with an unknown key or a value of the wrong type or range."""


@dataclass
class PredictorTrainConfig:
    """A predictor training run (the keys of a ``recipes/predictor_*.yaml``)."""

    name: str = "lite0-classification"  # the name the exported checkpoint carries
    task: str = "classification"
    task_model: str = "tf_efficientnet_lite0"
    backbone: str | None = None  # frozen features; default: the task model's own (classification)
    channels: int = 64
    downsample: int = 8
    codec: str = "sft-small"
    data: list[str] = field(default_factory=lambda: ["train", "photos/imagen"])  # folders under the data root
    exclude: list[str] = field(default_factory=list)  # image files never trained on (a benchmark's images)
    objective_args: dict = field(default_factory=dict)  # the task objective's own arguments (create_objective)
    out: str = "runs/predictor-lite0-classification"
    crop: int = 224
    batch_size: int = 8
    lambda_min: float = 0.003
    lambda_max: float = 3.0
    lambda_weight_offset: float = 0.3
    init_q: float = 0.1
    steps: int = 2000
    budget_minutes: float | None = None
    lr: float = 1e-3
    warmup_steps: int = 20
    decay_start: float = 0.6
    final_lr: float = 1e-5
    clip: float = 1.0
    threads: int = 2
    workers: int = 1
    checkpoint_every: int = 25
    stop_after_minutes: float | None = None
    seed: int = 0

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "PredictorTrainConfig":
        """Read and check a config file; ``overrides`` that are not None replace its values.

        Raises:
            ConfigError: unreadable YAML, an unknown key (named, with the keys allowed), a wrong type or range.
        """
        from ..yamlio import read

        try:
            d = read(path, "config", ConfigError) or {}
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path} must be a mapping of keys to values")
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d, where=str(path))

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "PredictorTrainConfig":
        fields = cls.__dataclass_fields__
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(fields)}")
        defaults = cls()
        for k, v in d.items():
            want = type(getattr(defaults, k))
            if v is None and getattr(defaults, k) is None:
                continue
            if k in ("budget_minutes", "stop_after_minutes", "backbone") and v is None:
                continue
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                d[k] = float(v)
                continue
            if k == "data" and isinstance(v, str):
                d[k] = [v]
                continue
            ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
            if getattr(defaults, k) is None:  # optional numbers / names
                ok = isinstance(v, (int, float, str)) and not isinstance(v, bool)
            if not ok:
                raise ConfigError(
                    f"{where}: {k} must be {want.__name__ if getattr(defaults, k) is not None else 'a value'}"
                    f", got {v!r}"
                )
        cfg = cls(**d)
        cfg.check(where)
        return cfg

    def check(self, where: str = "config") -> None:
        """Raises ConfigError for values out of range."""
        positive = ["channels", "downsample", "crop", "batch_size", "steps", "threads", "workers", "checkpoint_every"]
        for k in positive:
            if getattr(self, k) < 1:
                raise ConfigError(f"{where}: {k} must be >= 1, got {getattr(self, k)}")
        if not (0 < self.lambda_min < self.lambda_max and math.isfinite(self.lambda_max)):
            raise ConfigError(f"{where}: need 0 < lambda_min < lambda_max, got {self.lambda_min}, {self.lambda_max}")
        if not (0 < self.init_q < 1) or not (self.lr > 0) or self.lambda_weight_offset < 0:
            raise ConfigError(f"{where}: need 0 < init_q < 1, lr > 0, lambda_weight_offset >= 0")
        if "model" in self.objective_args:
            raise ConfigError(f"{where}: objective_args: give the task model as task_model, not model")
        if self.objective_args:
            from ..objectives import objective_arguments

            try:  # a typo fails here, in one line, not after the models have loaded
                objective_arguments(self.task, **self.objective_args)
            except ValueError as e:
                raise ConfigError(f"{where}: objective_args: {e}") from None
        for k in ("budget_minutes", "stop_after_minutes"):
            v = getattr(self, k)
            if v is not None and not v > 0:
                raise ConfigError(f"{where}: {k} must be > 0 minutes, got {v}")

    def to_yaml(self) -> str:
        return dump_yaml(dataclasses.asdict(self), sort_keys=False)


def _objective(cfg: PredictorTrainConfig, device: torch.device):
    from ..objectives import create_objective

    kw = {} if cfg.task_model in ("", "default") else {"model": cfg.task_model}  # "default": the task's own
    return create_objective(cfg.task, device=device, **{**cfg.objective_args, **kw})


def _backbone(cfg: PredictorTrainConfig) -> str:
    if cfg.backbone:
        return cfg.backbone
    if cfg.task == "classification":
        return cfg.task_model
    return "tf_efficientnet_lite0"  # detection and text: ImageNet features (the detector is not a timm model)


def _predictor_config(cfg: PredictorTrainConfig):
    """The model config a training config trains (what the exported checkpoint stores)."""
    from ..predictors import PredictorConfig

    return PredictorConfig(
        backbone=_backbone(cfg),
        channels=cfg.channels,
        downsample=cfg.downsample,
        lambda_min=cfg.lambda_min,
        lambda_max=cfg.lambda_max,
        init_q=cfg.init_q,
        task=cfg.task,
        task_model=cfg.task_model,
    )


def _export_meta(cfg: PredictorTrainConfig, step: int, elapsed: float, world: int, data=None) -> dict:
    """The training facts an exported checkpoint carries."""
    return {
        "steps": step,
        "train_minutes": round(elapsed / 60, 2),
        "batch_size": cfg.batch_size * world,
        "crop": cfg.crop,
        "codec": cfg.codec,
        "data": [str(d) for d in (data or cfg.data)],
        "excluded": len(cfg.exclude),
        "objective_args": dict(cfg.objective_args),
    }


class _Batches(Prefetcher):
    """Crops (uint8, NHWC numpy) and lambdas of batch k, drawn from the random stream (seed, rank, k)."""

    def __init__(self, pool: TrainingPool, cfg: PredictorTrainConfig, rank: int, first: int):
        self.pool, self.cfg, self.rank, self.k = pool, cfg, rank, first
        super().__init__(self._make, depth=2)

    def _make(self):
        rng = np.random.default_rng([self.cfg.seed, self.rank, self.k])
        self.k += 1
        x = torch.from_numpy(self.pool.sample(self.cfg.batch_size, rng, self.cfg.crop)).permute(0, 3, 1, 2)
        lo, hi = math.log(self.cfg.lambda_min), math.log(self.cfg.lambda_max)
        lam = torch.from_numpy(np.exp(rng.uniform(lo, hi, self.cfg.batch_size))).float()
        return x, lam


def _pool(cfg: PredictorTrainConfig, data: list[str] | None) -> tuple[TrainingPool, list[Path]]:
    pool = open_training_pool(data or cfg.data, cfg.crop, cfg.exclude, each_folder=True)
    return pool, pool.folders


#: Keys that define what the trained weights mean: a resumed run must keep them.
MODEL_KEYS = (
    "name",
    "task",
    "task_model",
    "backbone",
    "channels",
    "downsample",
    "lambda_min",
    "lambda_max",
    "init_q",
    "codec",
    "crop",
    "batch_size",
    "seed",
    "objective_args",
)


def _check_same_model(saved: dict, cfg: PredictorTrainConfig, where: Path) -> None:
    """Raises ConfigError when resuming with a config that changes what the weights were trained as."""
    for k in MODEL_KEYS:
        if k in saved and saved[k] != getattr(cfg, k):
            raise ConfigError(
                f"{where} was trained with {k}: {saved[k]!r}; this config has {getattr(cfg, k)!r}: "
                "resume with the run's own config (OUT/config.yaml) or start a new --out"
            )


def train_predictor(
    cfg: PredictorTrainConfig,
    resume: bool = False,
    data: list[str] | None = None,
    log=print,
    device: str | torch.device | None = "auto",
) -> Path | None:
    """Train a map predictor; returns the exported checkpoint ``OUT/predictor.pth`` (rank 0; others None).

    Runs alone, under torchrun (DistributedDataParallel over the decoder), or as ``cfg.workers`` local
    processes through torch's launcher, like :func:`taskcomp.training.codec.train`.

    Raises:
        FileExistsError: ``OUT/last.pth`` exists and ``resume`` is false.
        DataError: a training folder without images of at least ``crop`` px.
        ValueError: a bad device, a failed worker.
    """
    from ..devices import process_group_env

    env = process_group_env(slurm_array=False)
    if env.is_torchrun and env.world > 1:
        try:
            with process_group(device) as group:
                return _train(cfg, resume, data, log if group.lead else (lambda *a, **k: None), group)
        except Exception as e:
            record_failure(e)
            if os.environ.get(LAUNCHED_ENV):
                raise SystemExit(2) from None
            raise
    if cfg.workers > 1 and not env.is_torchrun:
        import tempfile

        from ..devices import resolve_device

        resolve_device(device)
        check_fresh(Path(cfg.out), resume)
        with tempfile.TemporaryDirectory(prefix="taskcomp-train-predictor-") as tmp:
            p = Path(tmp) / "config.yaml"
            p.write_text(cfg.to_yaml())
            argv = ["train-predictor", "--config", str(p), "--device", str(device or "auto")]
            argv += ["--resume"] if resume else []
            for d in data or []:
                argv += ["--data", str(d)]
            launch_local(cfg.workers, argv, what="predictor training")
        return Path(cfg.out) / "predictor.pth"
    with process_group(device) as group:
        return _train(cfg, resume, data, log, group)


def _train(cfg: PredictorTrainConfig, resume: bool, data: list[str] | None, log, w: DistGroup) -> Path | None:
    from tqdm import tqdm

    from ..codec.zoo import create_codec
    from ..devices import describe_device
    from ..optimize import MapOptimizer
    from ..predictors import FeatureFiLMPredictor, save_predictor

    t_start = time.time()
    torch.set_flush_denormal(True)
    torch.set_num_threads(cfg.threads)
    device = w.device
    if w.distributed and cfg.workers != w.world:
        cfg = dataclasses.replace(cfg, workers=w.world)
    out = Path(cfg.out)
    state_path = out / "last.pth"
    log(
        f"taskcomp train-predictor: device {describe_device(device)}"
        + (f" x {w.world} processes ({w.backend}, DistributedDataParallel)" if w.distributed else "")
        + f"; {cfg.name} for {cfg.task} / {cfg.task_model} -> {out}"
    )
    check_fresh(out, resume)
    # data and objective first: a refused exclusion list or objective argument leaves no run folder behind
    t0 = time.time()
    pool, folders = _pool(cfg, data)
    log(
        f"{len(pool)} training images of at least {cfg.crop} px from {', '.join(map(str, folders))} "
        f"({time.time() - t0:.0f}s)"
    )
    try:
        objective = _objective(cfg, device)
    except ValueError as e:
        raise ConfigError(f"objective_args {cfg.objective_args}: {e}") from None
    out.mkdir(parents=True, exist_ok=True)

    pcfg = _predictor_config(cfg)
    torch.manual_seed(cfg.seed)  # the decoder's initial weights (rank 0's are shared with the others)
    model = FeatureFiLMPredictor(pcfg).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    codec = create_codec(cfg.codec, device=device)
    terms = MapOptimizer(codec, objective, downsample=cfg.downsample)  # its objective, with our maps

    step, elapsed = 0, 0.0
    resumed = resume and state_path.is_file()
    if resumed:
        st = torch.load(state_path, map_location=device, weights_only=False)
        _check_same_model(load_yaml(st.get("config") or "{}") or {}, cfg, state_path)
        model.load_state_dict(st["model"], strict=False)
        opt.load_state_dict(st["optimizer"])
        step, elapsed = st["step"], st["elapsed"]
        log(f"resumed {state_path} at step {step} ({elapsed / 60:.1f} min trained)")
        if progress(step, cfg.steps, elapsed, cfg.budget_minutes) >= 1.0:
            budget = f" or {cfg.budget_minutes:g} min" if cfg.budget_minutes else ""
            log(
                f"the run is already finished ({cfg.steps} steps{budget}): nothing to train; exporting its weights "
                "again (raise --steps or --budget-minutes to train on)"
            )
    elif w.lead:
        atomic_write(out / "config.yaml", cfg.to_yaml().encode())
    w.share_weights(model)
    ddp = w.wrap(model)

    def progress_of(s: int, e: float) -> float:
        return progress(s, cfg.steps, e, cfg.budget_minutes)

    csv_log = (
        CsvLog(
            out / "log.csv",
            ["step", "wall_s", "lr", "loss", "bpp", "task_loss", "mean_q"],
            resume_step=step if resumed else None,
        )
        if w.lead
        else None
    )
    bar = tqdm(
        total=cfg.steps, initial=step, desc=f"train-predictor {cfg.name}", dynamic_ncols=True, disable=not w.lead
    )
    batches = _Batches(pool, cfg, w.rank, step)
    model.train()
    stopped_early = False
    last_ckpt = step

    def state() -> dict:
        return {
            "model": model.decoder_state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "elapsed": elapsed,
            "config": cfg.to_yaml(),
        }

    try:
        while True:
            done = progress_of(step, elapsed) >= 1.0
            early = bool(cfg.stop_after_minutes and time.time() - t_start > cfg.stop_after_minutes * 60)
            done, early, elapsed = w.from_lead([done, early, elapsed])
            if done or early:
                stopped_early = bool(early and not done)
                break
            t_step = time.time()
            lr = cosine_lr(step, progress_of(step, elapsed), cfg.lr, cfg.warmup_steps, cfg.decay_start, cfg.final_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            xb, lam = batches.next()
            x = xb.to(device).float().div_(255.0)
            lam = lam.to(device)
            ctx = objective.prepare(x)
            logits = ddp(x, lam)
            qmap = terms.to_map(logits, tuple(x.shape[-2:]))
            _, bpp, task = terms.objective_terms(x, qmap, ctx)
            loss = ((bpp + lam * task) / (cfg.lambda_weight_offset + lam)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            opt.step()
            step += 1
            elapsed += time.time() - t_step
            loss_v, bpp_v, task_v, q_v = w.mean(
                [loss.item(), bpp.mean().item(), task.mean().item(), qmap.mean().item()]
            )
            if csv_log:
                csv_log.row(
                    [
                        step,
                        f"{elapsed:.1f}",
                        f"{lr:.3g}",
                        f"{loss_v:.5f}",
                        f"{bpp_v:.5f}",
                        f"{task_v:.5f}",
                        f"{q_v:.4f}",
                    ]
                )
            bar.update(1)
            bar.set_postfix(bpp=f"{bpp_v:.3f}", task=f"{task_v:.3f}", q=f"{q_v:.2f}", lr=f"{lr:.1e}")
            if step - last_ckpt >= cfg.checkpoint_every:
                if w.lead:
                    csv_log.flush()
                    save_state(state_path, state())
                last_ckpt = step
    finally:
        batches.close()
        bar.close()
        if csv_log:
            csv_log.close()
    if not w.lead:
        return None
    save_state(state_path, state())
    path = out / "predictor.pth"
    save_predictor(model.cpu().eval(), path, cfg.name, meta=_export_meta(cfg, step, elapsed, w.world, data))
    what = "stopped (--stop-after; continue with --resume)" if stopped_early else "done"
    log(
        f"{what}: {step} steps, {elapsed / 60:.1f} min; exported {path} "
        f"({path.stat().st_size / 1024:.0f} KiB, decoder only)"
    )
    return path


def export_predictor(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Export a training run's last state (mid-training too) as a predictor checkpoint (default ``RUN/predictor.pth``).

    Raises:
        FileNotFoundError: no ``RUN/last.pth``.
    """
    from ..predictors import FeatureFiLMPredictor, save_predictor

    run_dir = Path(run_dir)
    if not (run_dir / "last.pth").is_file():
        raise FileNotFoundError(f"no training state in {run_dir} (last.pth)")
    st = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=False)
    cfg = PredictorTrainConfig.from_dict(load_yaml(st["config"]), where=str(run_dir / "last.pth"))
    model = FeatureFiLMPredictor(_predictor_config(cfg), pretrained=False)
    model.load_state_dict(st["model"], strict=False)
    path = Path(out) if out else run_dir / "predictor.pth"
    save_predictor(model.eval(), path, cfg.name, meta=_export_meta(cfg, st["step"], st["elapsed"], cfg.workers))
    return path
