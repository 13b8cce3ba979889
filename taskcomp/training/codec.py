"""Codec training: ``taskcomp train --config train_sft_small [--resume]``.

Loss: ``bpp + 255^2 * mean(lambda(m) * (x_hat - x)^2)`` with a random quality map ``m`` per crop
(:func:`taskcomp.maps.random_training_map`), main and aux Adam optimisers, gradient-norm clipping,
non-finite batches skipped, a CSV log, periodic atomic checkpoints and ``--resume``.

Entropy models over frozen transforms (the context codecs, :mod:`taskcomp.codec.sft_context`): ``init_from`` a
codec whose layers the new one shares (e.g. sft-small for sft-small-ckbd: every shared weight is copied, the
context and entropy-parameters networks start as the hyperprior), ``freeze:`` parameter-name prefixes that stay
fixed (e.g. the analysis and synthesis transforms) and ``rate_only: true``, whose loss is bpp alone and skips the
synthesis: valid where y_hat does not depend on what trains, as in the context codecs (y_hat = round(y)).

Training length is ``steps`` and, optionally, a wall-clock ``budget_minutes``: progress is the larger of the
two fractions, the learning-rate schedule follows progress, and training stops at progress 1. On a shared
CPU the step rate varies, so a time budget is what makes the schedule finish annealing on time.

Data parallelism (:mod:`taskcomp.training.distributed`): under ``torchrun`` every process trains on its own
``batch_size`` crops and DistributedDataParallel averages the gradients; ``workers: N`` (``--workers N``) starts
N such processes on this machine through torch's launcher. Rank 0 logs, checkpoints and exports.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # annotations only: pandas is imported where the logs are read
    import pandas as pd

from ..codec.checkpoint import save_codec
from ..codec.sft import SFTCodec, bits_from_likelihoods
from ..codec.sft_context import SFTContextCodec, build_codec_model
from ..codec.zoo import CODEC_CONFIGS, resolve_name
from ..datasets import DataError, TrainingPool, data_root, open_training_pool
from ..io import atomic_write
from ..maps import random_training_map
from .distributed import LAUNCHED_ENV, DistGroup, launch_local, process_group, record_failure
from .loop import CsvLog, Prefetcher, check_fresh, cosine_lr, progress, restore_rng, rng_streams, save_state

__all__ = [
    "TrainConfig",
    "train",
    "rd_loss",
    "optimizer_step",
    "split_params",
    "freeze_params",
    "init_shared",
    "NewChannelBoost",
    "validate",
    "export",
    "plot_training",
    "lr_at",
    "AUX_PARAM_SUFFIX",
]

# The entropy bottleneck's quantiles: trained on the aux loss only, and averaged by hand, not by DDP.
AUX_PARAM_SUFFIX = "quantiles"


@dataclass
class TrainConfig:
    """A codec training run (the fields of a ``recipes/train_*.yaml``; unknown keys land in ``extra``)."""

    codec: str = "sft-small"
    data: str | list[str] = "train"  # folder under the data root, or an absolute path; or a list of them
    # Image files never trained on (paths under the data root, or absolute): e.g. a benchmark's evaluation images.
    exclude: list[str] = field(default_factory=list)
    out: str = "runs/sft-small"
    crop: int = 128
    batch_size: int = 8
    # Every large_every-th batch is large_batch_size crops of large_crop px, from the photos at least that big.
    # Small crops give a hyper-latent of 2x2 or 3x3 positions, all at a border; full images have interior
    # positions whose z statistics small crops never show (experiments/training/z_gap_by_size.py).
    large_crop: int | None = None
    large_batch_size: int = 6
    large_every: int = 2
    steps: int = 10000
    budget_minutes: float | None = None
    lr: float = 1e-4
    aux_lr: float = 1e-3
    warmup_steps: int = 0
    decay_start: float = 0.75  # fraction of progress where the LR starts its cosine decay
    final_lr: float = 1e-5
    clip: float = 1.0
    max_loss: float = 1e4  # batches with a larger or non-finite loss are skipped
    quantize: str = "mixed"
    threads: int = 2  # torch threads per worker process
    # Data parallelism on this machine: this many processes (each with `threads` threads and its own batch_size
    # crops) average their gradients every step, started as torchrun would start them. On 2 cores, 2 workers x
    # 1 thread trained 1.16-1.20x the pixels per second of 1 worker x 2 threads (results/train_speed.md); the
    # effective batch is workers x batch_size. Under torchrun the world size is torchrun's and this is ignored.
    workers: int = 1
    channels_last: bool = True
    # bf16 autocast of the analysis and synthesis transforms (the rate model stays float32, SFTCodec.forward), on
    # the CPU only: a training step of sft-small (8 x 192^2, one thread, channels_last) took 1.3 s against 2.3 s in
    # float32 on this AVX-512-BF16 CPU (results/codec_range/README.md measures what it does to the RD curve).
    bf16: bool = False
    checkpoint_every: int = 200
    seed: int = 0
    init_from: str | None = None  # codec checkpoint (path, or a registered name: its shipped weights) to start from
    # Parameter-name prefixes that do not train (e.g. [g_a, g_s, qmap_feature_g]: the transforms and their conditions).
    freeze: list[str] = field(default_factory=list)
    # Loss = bpp only, no synthesis pass: for entropy models over frozen transforms where y_hat does not depend on
    # the trained parameters (the context codecs); refused otherwise.
    rate_only: bool = False
    # With rate_only: train on latents computed once by the frozen analysis and saved here (training/latents.py),
    # cache_crops crops of `crop` px and, with large_crop, cache_large_crops of large_crop px.
    latent_cache: str | None = None
    cache_crops: int = 4000
    cache_large_crops: int = 400
    # For a codec grown by `taskcomp widen-codec`: the registered config it was grown from, and how many times
    # the optimiser's step the elements it added take (they start from zero while the rest is trained).
    widened_from: str | None = None
    new_lr_scale: float = 1.0
    stop_after_minutes: float | None = None  # end this invocation (state saved) after this wall time; --resume
    val_every: int = 0  # every this many steps, log the rate and PSNR of val_images at val_q to val.csv
    val_images: list[str] = field(default_factory=list)  # paths, paths under the data root, or names in its kodak/
    val_q: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "TrainConfig":
        """Read a config file; ``overrides`` that are not None replace its values.

        Raises:
            ValueError: one line for malformed YAML, a key written twice (:func:`taskcomp.yamlio.read`), or a file
                that is not a mapping of keys to values.
        """
        from ..yamlio import read

        d = read(path, "training config") or {}
        if not isinstance(d, dict):
            raise ValueError(f"training config {path} must be a mapping of keys to values, got {type(d).__name__}")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        extra = {k: v for k, v in d.items() if k not in cls.__dataclass_fields__}
        cfg = cls(**known, extra=extra)
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Warm-up, constant, then cosine decay from ``decay_start`` to ``final_lr`` at progress 1."""
    return cosine_lr(step, progress, cfg.lr, cfg.warmup_steps, cfg.decay_start, cfg.final_lr)


def rd_loss(model: SFTCodec, x: torch.Tensor, qmap: torch.Tensor, quantize: str = "mixed", rate_only: bool = False):
    """The training objective of one batch.

    Args:
        model: the codec in train mode.
        x: (B, 3, H, W) crops in [0, 1]; H and W multiples of 64 (no padding).
        qmap: (B, 1, H, W) quality maps.
        quantize: the codec's quantisation mode for training.
        rate_only: loss = bpp, without the synthesis pass (a context codec over frozen transforms).

    Returns:
        ``(loss, bpp, se)``: scalar ``bpp + 255^2 * mean(lambda(qmap) * se)``, lambda the codec's own
        (:meth:`~taskcomp.codec.sft.SFTConfig.lambda_of_q`), scalar mean bpp, and the
        (B, 3, H, W) squared error (None with ``rate_only``).
    """
    if rate_only:
        out = model(x, qmap, quantize=quantize, decode=False)
        bpp = bits_from_likelihoods(out["likelihoods"]).mean() / (x.shape[-2] * x.shape[-1])
        return bpp, bpp, None
    out = model(x, qmap, quantize=quantize)
    bpp = bits_from_likelihoods(out["likelihoods"]).mean() / (x.shape[-2] * x.shape[-1])
    se = (out["x_hat"] - x) ** 2
    return bpp + 255.0**2 * (model_config(model).lambda_of_q(qmap) * se).mean(), bpp, se


def model_config(model):
    """The :class:`~taskcomp.codec.sft.SFTConfig` of a codec, or of the codec inside a DistributedDataParallel."""
    return getattr(model, "module", model).config


def optimizer_step(
    model: SFTCodec,
    loss: torch.Tensor,
    opt,
    aux_opt,
    main_params,
    clip: float,
    sync_grads=None,
    boost: NewChannelBoost | None = None,
    sync_aux_grads=None,
) -> torch.Tensor:
    """Backward, grad-norm clip and step of the main optimiser, then one step of the entropy bottleneck's aux
    optimiser (its quantiles). ``sync_grads(params)``, if given, averages the gradients between data-parallel
    workers after each backward (main and aux); with a DistributedDataParallel model, whose backward averages
    the main gradients itself, pass ``sync_aux_grads`` instead, for the aux gradients only. ``boost``, if given,
    scales the main step of a widening's new elements. ``model`` is the bare codec (not its DDP wrapper).
    Returns the aux loss."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if sync_grads:
        sync_grads(main_params)
    torch.nn.utils.clip_grad_norm_(main_params, clip)
    if boost:
        boost.before()
    opt.step()
    if boost:
        boost.after()
    if aux_opt is None:  # the entropy bottleneck is frozen
        return torch.zeros(())
    aux_loss = model.aux_loss()
    aux_opt.zero_grad(set_to_none=True)
    aux_loss.backward()  # also writes gradients of the bottleneck's main parameters: unused, cleared next step
    aux_sync = sync_aux_grads or sync_grads
    if aux_sync:
        aux_sync([p for g in aux_opt.param_groups for p in g["params"]])
    aux_opt.step()
    return aux_loss


class NewChannelBoost:
    """Multiply the optimiser's update of the parameter elements a widening added by ``scale``.

    Adam's step is per element, so scaling the update of the new elements is the same as giving them their own
    learning rate; they share tensors with trained elements, so param groups cannot. Call :meth:`before` ahead
    of ``opt.step()`` and :meth:`after` once it is done.

    Args:
        model: the widened codec being trained.
        old_config: the config it was grown from (:func:`taskcomp.codec.widen.new_channel_masks`).
        scale: update multiplier of the new elements.
    """

    def __init__(self, model: SFTCodec, old_config, scale: float):
        from ..codec.widen import new_channel_masks

        params = dict(model.named_parameters())
        self.items = [(params[k], m) for k, m in new_channel_masks(model, old_config).items()]
        self.scale = scale
        self._saved: list[torch.Tensor] = []

    def before(self) -> None:
        """Remember the parameters ahead of the optimiser's step."""
        self._saved = [p.detach().clone() for p, _ in self.items]

    @torch.no_grad()
    def after(self) -> None:
        """Scale the step just taken on the new elements."""
        for (p, mask), old in zip(self.items, self._saved):
            p.add_((p - old) * mask, alpha=self.scale - 1)
        self._saved = []


def split_params(model: SFTCodec) -> tuple[list, list]:
    """(main parameters, aux parameters): the entropy bottleneck's quantiles train on the aux loss only.
    Frozen parameters (``requires_grad`` False, see :func:`freeze_params`) are in neither."""
    aux = [p for n, p in model.named_parameters() if n.endswith(AUX_PARAM_SUFFIX) and p.requires_grad]
    main = [p for n, p in model.named_parameters() if not n.endswith(AUX_PARAM_SUFFIX) and p.requires_grad]
    return main, aux


def freeze_params(model: SFTCodec, prefixes: list[str]) -> int:
    """Stop the parameters whose names start with one of ``prefixes`` from training; returns how many elements.

    Raises:
        ValueError: a prefix that names no parameter (a typo would otherwise silently train everything).
    """
    names = [n for n, _ in model.named_parameters()]
    for pre in prefixes:
        if not any(n.startswith(pre) for n in names):
            raise ValueError(
                f"freeze: {pre!r} names no parameter of the codec (parameters start with: "
                f"{', '.join(sorted({n.split('.')[0].rstrip('0123456789') for n in names}))})"
            )
    n = 0
    for name, p in model.named_parameters():
        if any(name.startswith(pre) for pre in prefixes):
            p.requires_grad_(False)
            n += p.numel()
    return n


def init_shared(model: SFTCodec, src: SFTCodec) -> int:
    """Copy every weight ``src`` shares with ``model`` (same name and shape); returns how many tensors.

    For a context codec initialised from its hyperprior parent: the layers both have are copied, the context
    and entropy-parameters networks keep their init (which codes as the hyperprior).

    Raises:
        ValueError: a tensor of ``src`` that ``model`` lacks or holds in another shape (not a parent of it).
    """
    dst = model.state_dict()
    bad = [
        k
        for k, v in src.state_dict().items()
        if k not in dst
        or (dst[k].shape != v.shape and not k.startswith(("gaussian_conditional.", "entropy_bottleneck._")))
    ]
    if bad:
        raise ValueError(f"init_from: {len(bad)} tensors do not fit the new codec, e.g. {bad[0]}")
    # The entropy coders' table buffers change size with their contents; CompressAI's load resizes them.
    shared = {
        k: v
        for k, v in src.state_dict().items()
        if dst[k].shape == v.shape or k.startswith(("gaussian_conditional.", "entropy_bottleneck._"))
    }
    with torch.no_grad():
        for k, v in shared.items():
            if dst[k].shape != v.shape:  # a filled table of another size: CompressAI resizes only empty ones
                model.get_buffer(k).resize_(v.shape)
    model.load_state_dict(shared, strict=False)
    return len(shared)


class _Prefetcher(Prefetcher):
    """Prepares training batches (crops and random maps, numpy on the CPU) in a thread while the model steps."""

    def __init__(self, pool: TrainingPool, cfg: TrainConfig, rng: np.random.Generator, pin: bool, depth: int = 3):
        self.pool, self.cfg, self.rng, self.pin = pool, cfg, rng, pin
        self.made = 0  # batches made so far: every cfg.large_every-th is a large-crop batch
        super().__init__(self._make, depth)

    def _make(self):
        cfg, rng = self.cfg, self.rng
        self.made += 1
        if cfg.large_crop and self.made % cfg.large_every == 0:
            crop, batch = cfg.large_crop, cfg.large_batch_size
        else:
            crop, batch = cfg.crop, cfg.batch_size
        x = torch.from_numpy(self.pool.sample(batch, rng, crop)).permute(0, 3, 1, 2)
        qmap = torch.cat([random_training_map(crop, crop, rng) for _ in range(batch)])
        if self.pin:  # page-locked, so the copy to the GPU can overlap the step
            x, qmap = x.pin_memory(), qmap.pin_memory()
        return x, qmap


def _val_images(cfg: TrainConfig, device) -> list[tuple[str, torch.Tensor]]:
    from ..io import image_to_tensor, load_image

    out = []
    for name in cfg.val_images:
        p = Path(name)
        if not p.is_file():  # a path under the data root (held-out photos), or a Kodak name (a monitor only)
            p = data_root() / name if (data_root() / name).is_file() else data_root() / "kodak" / name
        out.append((p.stem, image_to_tensor(load_image(p)).to(device)))
    return out


@torch.no_grad()
def validate(model: SFTCodec, images: list[tuple[str, torch.Tensor]], qs: list[float]) -> list[dict]:
    """Estimated bpp (rounded latents; ``z_bpp`` the hyper-latent's share) and PSNR of the 8-bit reconstruction
    of each image at each uniform q: a cheap learning monitor."""
    was_training = model.training
    model.eval()
    rows = []
    for name, x in images:
        for q in qs:
            out = model(x, torch.full_like(x[:, :1], q), quantize="round")
            n_px = x.shape[-2] * x.shape[-1]
            bpp = bits_from_likelihoods(out["likelihoods"]).item() / n_px
            z_bpp = (-torch.log2(out["likelihoods"]["z"])).sum().item() / n_px
            mse = ((out["x_hat"].clamp(0, 1) * 255).round() / 255 - x).pow(2).mean().item()
            rows.append(
                {"image": name, "q": q, "bpp": bpp, "z_bpp": z_bpp, "psnr": 10 * math.log10(1 / max(mse, 1e-10))}
            )
    model.train(was_training)
    return rows


def train(
    cfg: TrainConfig,
    resume: bool = False,
    data: str | None = None,
    log=print,
    device: str | torch.device | None = "auto",
) -> Path | None:
    """Train a codec; returns the path of the exported codec checkpoint (``OUT/codec.pth``).

    One process trains alone. Under torchrun (``torchrun --nproc_per_node N -m taskcomp train ...``, on one
    node or several) every process trains on its own ``batch_size`` crops and DistributedDataParallel averages
    the gradients every step; rank 0 logs (with ``log``), checkpoints, exports and returns the path, the other
    ranks return None. With ``cfg.workers > 1`` outside torchrun, that many processes are started on this
    machine through torch's launcher, each running ``python -m taskcomp train`` on this config: the torchrun
    path, whose rank 0 prints its log. A run can be resumed with another number of processes (ranks the
    checkpoint did not have get fresh random streams).

    Args:
        cfg: the run.
        resume: continue ``OUT/last.pth``.
        data: training image folder (default: ``cfg.data`` under the data root).
        log: where rank 0's progress lines go; the first names the device.
        device: ``auto`` (``cuda:LOCAL_RANK`` when CUDA is available, else the CPU), ``cpu``, ``cuda``, ``cuda:N``.

    Raises:
        ValueError: a bad device (:class:`~taskcomp.devices.DeviceError`), a failed worker (one line).
        FileExistsError: ``OUT/last.pth`` exists and ``resume`` is false.
    """
    from ..devices import process_group_env

    env = process_group_env(slurm_array=False)
    if env.is_torchrun and env.world > 1:
        try:
            with process_group(device) as group:
                return _train(cfg, resume, data, log if group.lead else _quiet, group)
        except Exception as e:
            record_failure(e)  # for the launcher's report (ours, or torchrun's)
            if os.environ.get(LAUNCHED_ENV):
                raise SystemExit(2) from None  # launch_local reports it, once, as the command's error
            raise
    if cfg.workers > 1 and not env.is_torchrun:
        return _launch_workers(cfg, resume, data, device)
    with process_group(device) as group:
        return _train(cfg, resume, data, log, group)


def _quiet(*args, **kwargs) -> None:
    """The log of ranks other than 0."""


def _launch_workers(cfg: TrainConfig, resume: bool, data: str | None, device) -> Path:
    """``cfg.workers`` local processes running ``python -m taskcomp train`` on ``cfg`` (written to a temporary
    config file), as torchrun would start them."""
    import tempfile

    from ..devices import resolve_device

    resolve_device(device)  # a bad --device and an existing run fail here, before any process starts
    check_fresh(Path(cfg.out), resume)
    with tempfile.TemporaryDirectory(prefix="taskcomp-train-") as tmp:
        cfg_path = Path(tmp) / "config.yaml"
        cfg_path.write_text(_config_yaml(cfg))
        argv = ["train", "--config", str(cfg_path), "--device", str(device or "auto")]
        argv += ["--resume"] if resume else []
        argv += ["--data", str(data)] if data else []
        launch_local(cfg.workers, argv)
    return Path(cfg.out) / "codec.pth"


def _config_yaml(cfg: TrainConfig) -> str:
    """``cfg`` as the YAML :meth:`TrainConfig.from_yaml` reads back (``extra`` keys at the top level)."""
    from ..yamlio import dump

    return dump({**{k: v for k, v in cfg.__dict__.items() if k != "extra"}, **cfg.extra}, sort_keys=False)


def _train(cfg: TrainConfig, resume: bool, data: str | None, log, w: DistGroup) -> Path | None:
    """The training loop of one process of ``w`` (a group of one, or one rank under torchrun)."""
    from tqdm import tqdm

    from ..devices import describe_device

    torch.set_flush_denormal(True)
    torch.set_num_threads(cfg.threads)
    device = w.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one or two fixed crop sizes: let cuDNN pick kernels once each
    t_start = time.time()
    name = resolve_name(cfg.codec)
    log(
        f"taskcomp train: device {describe_device(device)}"
        + (f" x {w.world} processes ({w.backend}, DistributedDataParallel)" if w.distributed else "")
        + f"; {name} -> {cfg.out}"
    )
    if w.distributed and cfg.workers != w.world:  # what the run was: config.yaml, the codec's metadata
        cfg = dataclasses.replace(cfg, workers=w.world)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path, log_path = out / "last.pth", out / "log.csv"

    model = build_codec_model(CODEC_CONFIGS[name]).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.freeze:
        n_frozen = freeze_params(model, cfg.freeze)
        log(
            f"frozen: {n_frozen:,} of {sum(p.numel() for p in model.parameters()):,} parameters ({', '.join(cfg.freeze)})"
        )
    if cfg.rate_only:
        # The synthesis reads y_hat = round(y - mu_h) + mu_h (mu_h from h_s) and z_hat (its quality condition comes
        # from z_hat), so everything that makes either must stay fixed for the distortion to stay what it was.
        feeds_synthesis = ("g_a", "g_s", "qmap_feature_g", "h_a", "qmap_feature_h", "entropy_bottleneck", "h_s")
        trained = [n for n, p in model.named_parameters() if n.startswith(feeds_synthesis) and p.requires_grad]
        if not isinstance(model, SFTContextCodec) or trained:
            raise ValueError(
                "rate_only trains an entropy model without the distortion: it needs a context codec "
                f"and freeze: [{', '.join(feeds_synthesis)}]" + (f" ({trained[0]} would train)" if trained else "")
            )
    main_params, aux_params = split_params(model)
    opt = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=cfg.aux_lr) if aux_params else None
    # Rank 0 draws exactly what a one-process run draws; the others get their own streams.
    rng = np.random.default_rng(cfg.seed if w.lead else [cfg.seed, w.rank])
    if not w.lead:
        torch.manual_seed(cfg.seed * 1000 + w.rank)
    step, elapsed, skipped = 0, 0.0, 0

    if resume and state_path.is_file():
        st = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        if aux_opt is not None:
            aux_opt.load_state_dict(st["aux_optimizer"])
        step, elapsed, skipped = st["step"], st["elapsed"], st.get("skipped", 0)
        rng = restore_rng(st, w, rng, cfg.seed, step)  # a rank the checkpoint did not have: fresh streams
        log(f"resumed {state_path} at step {step} ({elapsed / 60:.1f} min trained)")
    else:
        check_fresh(out, resume)
        if cfg.init_from:
            from ..codec.checkpoint import load_codec_checkpoint
            from ..codec.zoo import shipped_checkpoint

            try:  # a registered codec name or alias: its shipped weights; anything else is a path or URL
                init = shipped_checkpoint(resolve_name(cfg.init_from))
                registered = True
            except ValueError:
                init, registered = cfg.init_from, False
            if registered and init is None:
                raise ValueError(f"init_from: no weights ship with {cfg.init_from}; give a checkpoint path")
            src, info = load_codec_checkpoint(init)
            # A child may add a context model, attention or another lambda(q) range (a re-targeted fine-tune).
            if (
                dataclasses.replace(
                    src.config,
                    context=model.config.context,
                    mixture=model.config.mixture,
                    attention=model.config.attention,
                    lambda_min=model.config.lambda_min,
                    lambda_max=model.config.lambda_max,
                )
                != model.config
            ):
                raise ValueError(f"--init-from {cfg.init_from} is a {info['codec']} with other widths than {name}")
            if (
                dataclasses.replace(src.config, lambda_min=model.config.lambda_min, lambda_max=model.config.lambda_max)
                == model.config
            ):
                model.load_state_dict(src.state_dict())
            else:  # a hyperprior parent of a context codec
                init_shared(model, src)
            log(f"initialised from {cfg.init_from} ({info['hash'][:16]}, {info['meta'].get('steps', '?')} steps)")
        if w.lead:
            atomic_write(out / "config.yaml", _config_yaml(cfg).encode())
    # Every rank starts from rank 0's weights (DDP's own start-up sync skips the quantiles it ignores).
    w.share_weights(model)
    # Gradient averaging: DDP's backward averages every main parameter's gradient, bucketed and overlapped with
    # the backward pass. The entropy bottleneck's quantiles are left out of DDP: they train on the aux loss,
    # whose backward (model.aux_loss(), outside the wrapper's forward) DDP does not see, and the main loss
    # reaches them in "ste"/"round" only, where that gradient is discarded (aux_opt.zero_grad) as it always was.
    # optimizer_step averages their aux gradients with one all-reduce instead (sync_aux_grads), as before.
    ddp_model = w.wrap(model, ignore=[n for n, _ in model.named_parameters() if n.endswith(AUX_PARAM_SUFFIX)])

    t0 = time.time()
    pool = open_training_pool(data or cfg.data, cfg.crop, cfg.exclude)
    folders = pool.folders
    folder = ", ".join(str(f) for f in folders)
    log(
        f"{len(pool)} training images from {folder} loaded in {time.time() - t0:.0f}s"
        + (f" ({pool.excluded} excluded)" if pool.excluded else "")
        + (f"; {w.world} processes x {cfg.threads} threads" if w.distributed else "")
    )
    if cfg.large_crop:
        n_large = len(pool.at_least(cfg.large_crop))  # checked here: the prefetch thread would hide the error
        if not n_large:
            raise DataError(f"no training images of at least {cfg.large_crop}x{cfg.large_crop} for large_crop")
        log(f"every {cfg.large_every}th batch: {cfg.large_batch_size} x {cfg.large_crop}^2 from {n_large} images")

    def progress_of(step: int, elapsed: float) -> float:
        return progress(step, cfg.steps, elapsed, cfg.budget_minutes)

    cache = None
    if cfg.latent_cache:
        if not cfg.rate_only:
            raise ValueError("latent_cache needs rate_only (a frozen analysis transform)")
        if w.distributed:
            raise ValueError("latent_cache trains in one process (workers: 1, no torchrun)")
        from .latents import LatentCache

        crops = {cfg.crop: cfg.cache_crops, **({cfg.large_crop: cfg.cache_large_crops} if cfg.large_crop else {})}
        cache = LatentCache.load_or_build(cfg.latent_cache, model, pool, crops, seed=cfg.seed, log=log)

    val_imgs = _val_images(cfg, device) if cfg.val_every and cfg.val_images and w.lead else []
    val_path = out / "val.csv"
    new_val = not val_path.is_file()
    valf = open(val_path, "a", newline="") if val_imgs else None
    val_writer = csv.writer(valf) if valf else None
    if val_writer and new_val:
        val_writer.writerow(["step", "wall_s", "image", "q", "bpp", "psnr"])

    def run_val():
        for r in validate(model, val_imgs, cfg.val_q):
            val_writer.writerow([step, f"{elapsed:.1f}", r["image"], r["q"], f"{r['bpp']:.5f}", f"{r['psnr']:.3f}"])
        valf.flush()

    logf = None
    if w.lead:  # a resumed run's log is cut back to its checkpoint: steps trained again are logged once
        logf = CsvLog(
            log_path,
            ["step", "wall_s", "lr", "loss", "bpp", "mse", "psnr", "aux", "skipped"],
            resume_step=step if resume and state_path.is_file() else None,
        )
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {name}", dynamic_ncols=True, disable=not w.lead)
    model.train()
    last_ckpt = step
    prefetch = _Prefetcher(pool, cfg, rng, pin=device.type == "cuda") if cache is None else None
    sync_aux = w.average_grads if w.distributed else None
    boost = None
    if cfg.widened_from and cfg.new_lr_scale != 1.0:
        boost = NewChannelBoost(model, CODEC_CONFIGS[resolve_name(cfg.widened_from)], cfg.new_lr_scale)
        log(
            f"elements added by widening {cfg.widened_from}: {sum(int(m.sum()) for _, m in boost.items):,}, "
            f"step x{cfg.new_lr_scale:g}"
        )
    stopped_early = False
    if val_imgs and new_val:  # the starting point, once
        run_val()
    try:
        while True:
            done = progress_of(step, elapsed) >= 1.0
            early = bool(cfg.stop_after_minutes and time.time() - t_start > cfg.stop_after_minutes * 60)
            done, early, elapsed = w.from_lead([done, early, elapsed])  # rank 0's clock decides for all
            if done:
                break
            if early:
                stopped_early = True
                break
            t_step = time.time()
            lr = lr_at(cfg, step, progress_of(step, elapsed))
            for g in opt.param_groups:
                g["lr"] = lr
            if cache is not None:
                large = bool(cfg.large_crop) and (step + 1) % cfg.large_every == 0
                crop = cfg.large_crop if large else cfg.crop
                yb, qb = cache.sample(crop, cfg.large_batch_size if large else cfg.batch_size, rng)
                _, _, lik = model.code_latent(yb.to(device), qb.to(device), cfg.quantize)
                bpp = bits_from_likelihoods(lik).mean() / (crop * crop)
                loss, se = bpp, None
            else:
                xb, qb = prefetch.next()
                x = xb.to(device, non_blocking=True).float().div_(255.0)
                qmap = qb.to(device, non_blocking=True)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                    qmap = qmap.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    loss, bpp, se = rd_loss(ddp_model, x, qmap, cfg.quantize, rate_only=cfg.rate_only)
            # All ranks skip together (a forward without its backward leaves DDP waiting for nothing).
            if w.any(not torch.isfinite(loss) or loss.item() > cfg.max_loss):
                skipped += 1
                opt.zero_grad(set_to_none=True)
                step += 1
                continue
            aux_loss = optimizer_step(
                model, loss, opt, aux_opt, main_params, cfg.clip, boost=boost, sync_aux_grads=sync_aux
            )

            step += 1
            elapsed += time.time() - t_step
            loss_v, bpp_v, mse = w.mean([loss.item(), bpp.item(), se.detach().mean().item() if se is not None else 0.0])
            psnr = 10 * math.log10(1 / mse) if mse > 0 else float("nan")
            if logf:
                logf.row(
                    [
                        step,
                        f"{elapsed:.1f}",
                        f"{lr:.3g}",
                        f"{loss_v:.5f}",
                        f"{bpp_v:.5f}",
                        f"{mse:.6g}",
                        f"{psnr:.3f}",
                        f"{aux_loss.item():.4g}",
                        skipped,
                    ]
                )
            bar.update(1)
            bar.set_postfix(
                bpp=f"{bpp_v:.3f}", psnr=f"{psnr:.2f}", lr=f"{lr:.1e}", pct=f"{100 * progress_of(step, elapsed):.0f}"
            )
            if val_imgs and step % cfg.val_every == 0:
                run_val()
            if step - last_ckpt >= cfg.checkpoint_every:
                state = _state(model, opt, aux_opt, step, elapsed, skipped, rng, w, log)
                if w.lead:
                    logf.flush()
                    save_state(state_path, state)
                last_ckpt = step
    finally:
        if prefetch is not None:
            prefetch.close()
        bar.close()
        if logf:
            logf.close()
        if valf:
            valf.close()
    state = _state(model, opt, aux_opt, step, elapsed, skipped, rng, w, log)
    if not w.lead:
        return None
    save_state(state_path, state)
    model = model.to(memory_format=torch.contiguous_format).cpu().eval()
    codec_path = out / "codec.pth"
    h = _export_codec(model, codec_path, name, cfg, step, elapsed, skipped)
    what = "stopped (--stop-after; continue with --resume)" if stopped_early else "done"
    log(f"{what}: {step} steps, {elapsed / 60:.1f} min, {skipped} skipped; exported {codec_path} ({h[:16]})")
    return codec_path


def _export_codec(
    model,
    path,
    name,
    cfg: TrainConfig,
    step: int,
    elapsed: float,
    skipped: int,
    half: bool = False,
    base: str | None = None,
) -> str:
    meta = {
        "steps": step,
        "train_minutes": round(elapsed / 60, 2),
        "skipped_batches": skipped,
        "crop": cfg.crop,
        "batch_size": cfg.batch_size,
        "large_crop": cfg.large_crop,
        "workers": cfg.workers,
    }
    return save_codec(model, path, name, meta=meta, half=half, base=base)


def _state(model, opt, aux_opt, step, elapsed, skipped, rng, w: DistGroup, log=_quiet) -> dict:
    """The resumable state. Rank 0's random streams are ``rng``/``torch_rng`` (what a one-process run reads);
    with several ranks ``rng_workers`` holds every rank's, and ``param_digests`` every rank's parameter digest
    (equal while the ranks train in step; a warning is logged otherwise). Collective: all ranks must call it."""
    st = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "aux_optimizer": aux_opt.state_dict() if aux_opt is not None else None,
        "step": step,
        "elapsed": elapsed,
        "skipped": skipped,
        **rng_streams(w, rng),
    }
    if w.distributed:
        st["param_digests"] = w.digests(model)
        if len(set(st["param_digests"])) > 1:
            log(f"warning: the ranks' parameters differ at step {step} ({st['param_digests']})")
    return st


def export(run_dir: str | Path, out: str | Path | None = None, half: bool = False, base: str | None = None) -> Path:
    """Export ``RUN/last.pth`` (mid-training too) as a taskcomp codec checkpoint (float16 with ``half``; with
    ``base``, only the tensors that differ from that registered codec's shipped weights, see
    :func:`taskcomp.codec.checkpoint.save_codec`)."""
    run_dir = Path(run_dir)
    st = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else TrainConfig()
    name = resolve_name(cfg.codec)
    model = build_codec_model(CODEC_CONFIGS[name])
    model.load_state_dict(st["model"])
    model.eval()
    path = Path(out) if out else run_dir / "codec.pth"
    _export_codec(model, path, name, cfg, st["step"], st["elapsed"], st.get("skipped", 0), half=half, base=base)
    return path


def _read_logs(sources) -> tuple["pd.DataFrame", list[tuple[int, float]], str]:
    """Concatenate training logs (run folders or their ``log.csv`` files), one stage after another: each
    stage's steps and training time continue from the previous one's. Returns the frame, the (step, time)
    where each later stage starts, and a title."""
    import pandas as pd

    if isinstance(sources, (str, Path)):
        sources = [sources]
    frames, starts, step0, time0 = [], [], 0, 0.0
    for i, src in enumerate(sources):
        src = Path(src)
        df = pd.read_csv(src / "log.csv" if src.is_dir() else src)
        df = df.assign(step=df["step"] + step0, wall_s=df["wall_s"] + time0)
        if i:
            starts.append((step0, time0))
        step0, time0 = int(df["step"].iloc[-1]), float(df["wall_s"].iloc[-1])
        frames.append(df)
    name = " + ".join(Path(s).stem if Path(s).is_file() else Path(s).name for s in sources)
    return pd.concat(frames, ignore_index=True), starts, name


def _read_val(sources, starts: list[tuple[int, float]]) -> "pd.DataFrame | None":
    """The learning-monitor logs (``val.csv`` beside each stage's ``log.csv``, or ``*-val.csv`` beside a
    ``*-log.csv``) on the step axis of :func:`_read_logs`, whose ``starts`` give each later stage's first step:
    mean over the monitor images per (step, q). None when no stage has one."""
    import pandas as pd

    if isinstance(sources, (str, Path)):
        sources = [sources]
    frames = []
    for src, step0 in zip(sources, [0] + [s for s, _ in starts]):
        src = Path(src)
        val_csv = src / "val.csv" if src.is_dir() else src.with_name(src.name.replace("log", "val"))
        if val_csv.is_file() and val_csv != src:
            v = pd.read_csv(val_csv)
            frames.append(v.assign(step=v["step"] + step0))
    if not frames:
        return None
    return pd.concat(frames).groupby(["step", "q"], as_index=False)[["bpp", "psnr"]].mean()


def plot_training(run_dirs, out_png: str | Path, window: int = 100) -> dict:
    """Plot loss, bpp and PSNR against step and training time (rolling mean over ``window``).

    Args:
        run_dirs: a run folder or ``log.csv``, or a list of them for a run trained in stages (e.g. a second
            stage started with ``--init-from`` the first's weights); stages are drawn one after another.
        out_png: the figure to write.

    Returns:
        The last smoothed values and the total step count.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df, starts, name = _read_logs(run_dirs)
    val = _read_val(run_dirs, starts)
    sm = df[["loss", "bpp", "psnr"]].rolling(window, min_periods=1).mean()
    fig, axes = plt.subplots(3 if val is not None else 2, 3, figsize=(13, 9.75 if val is not None else 6.5))
    for row, (xcol, xlabel) in enumerate([("step", "step"), ("wall_s", "training time (min)")]):
        xs = df[xcol] / (60 if xcol == "wall_s" else 1)
        for col, (key, label) in enumerate(
            [("loss", "loss"), ("bpp", "bpp (train, noisy rate)"), ("psnr", "PSNR dB (train crops)")]
        ):
            ax = axes[row, col]
            ax.plot(xs, df[key], color="0.8", lw=0.5)
            ax.plot(xs, sm[key], lw=1.5)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if key == "loss":
                ax.set_yscale("log")
            for st_step, st_time in starts:
                ax.axvline(st_step if xcol == "step" else st_time / 60, color="k", ls="--", lw=0.8)
    if val is not None:
        for q, g in val.groupby("q"):
            axes[2, 0].plot(g["step"], g["bpp"], marker=".", label=f"q={q:g}")
            axes[2, 1].plot(g["step"], g["psnr"], marker=".", label=f"q={q:g}")
            axes[2, 2].plot(g["bpp"], g["psnr"], marker=".", label=f"q={q:g}")
        for ax, xl, yl in [
            (axes[2, 0], "step", "monitor bpp (estimated)"),
            (axes[2, 1], "step", "monitor PSNR dB"),
            (axes[2, 2], "monitor bpp (estimated)", "monitor PSNR dB (path over training)"),
        ]:
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    title = (
        f"{name}: {int(df['step'].iloc[-1])} steps, {df['wall_s'].iloc[-1] / 60:.0f} min "
        f"(rolling mean over {window} steps{'; dashed: a new stage starts' if starts else ''})"
    )
    fig.suptitle("\n".join(textwrap.wrap(title, 130)))  # several logs' names would run off the figure
    fig.tight_layout()
    from ..io import save_figure

    save_figure(fig, out_png)
    plt.close(fig)
    return {k: float(sm[k].iloc[-1]) for k in ("loss", "bpp", "psnr")} | {"steps": int(df["step"].iloc[-1])}
