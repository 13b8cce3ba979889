"""Per-image task-aware quality maps: ``m* = argmin_m R(m) + lambda * L_task(m)``.

The map is ``sigmoid(logits)``, with logits at full resolution or on a coarser grid upsampled bilinearly.
Rate and reconstruction come from the frozen codec in straight-through mode (``quantize="ste"``): their
values equal the bitstream's, and their gradients reach the map. The best iterate per image (lowest
objective) is kept. Images in a batch are optimised together but independently.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from .bitstream import encode
from .checks import check_image_tensor, check_map_tensor
from .codec.sft import SFTCodec, bits_from_likelihoods, padded_size
from .devices import resolve_memory_format, use_memory_format
from .objectives.base import Objective

__all__ = [
    "MapOptimizer",
    "check_optimizer_args",
    "OptimizeResult",
    "BppSearch",
    "search_bpp",
    "uniform_bpp_search",
    "check_target_reachable",
    "TargetBppError",
    "logit",
    "real_bpp",
    "collate_contexts",
    "pad_batch",
    "optimize_images",
    "group_key",
]


class TargetBppError(ValueError):
    """A target bpp outside what the codec can reach for this image."""


#: Largest weight ``scale * max(1, lam)`` the objective is descended with as written. Beyond it MapOptimizer
#: descends on the objective divided by ``scale * max(1, lam) / OBJECTIVE_WEIGHT_MAX`` (the same argmin), so
#: gradients stay in float32's range: as written, lambda 1e20 overflowed the squared gradient norm of the
#: clipping (inf, so a zero step) within 10 steps, 1e30 at once (the map came back untouched), and 1e39 made
#: lambda itself inf in float32 (results measured on a 160x120 photo, classification; 1e6 worked as written).
OBJECTIVE_WEIGHT_MAX = 1e6
#: log of the largest float64 (math.exp overflows beyond it).
_LOG_FLOAT_MAX = math.log(sys.float_info.max)
#: Largest learning rate: a step moves the logits by about lr (the map saturates beyond |logit| ~ 17 in float32);
#: lr 1e39 overflowed float32 inside Adam (a traceback), lr 1e30 gave a 0/1 map in one step.
MAX_LR = 1e6
#: The map optimisers (:class:`MapOptimizer`'s ``optimizer``).
OPTIMIZERS = ("adam", "lbfgs", "ngd")
#: The initial map is clamped to [LOGIT_EPS, 1 - LOGIT_EPS] before its logit is taken.
LOGIT_EPS = 1e-4


def logit(p: Tensor, eps: float = LOGIT_EPS) -> Tensor:
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def collate_contexts(ctxs: list[Any]) -> Any:
    """Merge per-image objective contexts (each prepared from one image) into the context of their batch.

    Tensors whose first dimension is 1 are concatenated along it, lists are concatenated, dicts merge key by key,
    None stays None when every image has None; equal scalars stay. This covers every objective in
    :mod:`taskcomp.objectives` (classification, saliency, detection, text, weighted).

    Raises:
        ValueError: contexts that do not line up (some images with a label, some without; other values).
    """
    first = ctxs[0]
    if isinstance(first, dict):
        if any(set(c) != set(first) for c in ctxs):
            raise ValueError("contexts of a batch have different keys")
        return {k: collate_contexts([c[k] for c in ctxs]) for k in first}
    if isinstance(first, Tensor):
        if not all(isinstance(c, Tensor) and c.dim() == first.dim() and c.dim() > 0 and c.size(0) == 1 for c in ctxs):
            raise ValueError("cannot batch these contexts: per-image tensors must have a leading dimension of 1")
        return torch.cat(ctxs)
    if isinstance(first, list):
        return [v for c in ctxs for v in c]
    if first is None:
        if any(c is not None for c in ctxs):
            raise ValueError("cannot batch images with and without a target (e.g. labelled and unlabelled)")
        return None
    if all(c == first for c in ctxs):
        return first
    raise ValueError(f"cannot batch contexts holding different values of type {type(first).__name__}")


def pad_batch(images: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
    """Stack images (1, 3, H_i, W_i) of different sizes into (B, 3, H, W), H and W the largest, replicating
    each image's last row and column as the codec's own padding does (so each image codes as it would alone, up to
    float noise, when all share one :func:`~taskcomp.codec.sft.padded_size`). Returns (batch, [(H_i, W_i), ...])."""
    sizes = [tuple(x.shape[-2:]) for x in images]
    H, W = max(s[0] for s in sizes), max(s[1] for s in sizes)
    padded = [
        x if tuple(x.shape[-2:]) == (H, W) else F.pad(x, (0, W - x.shape[-1], 0, H - x.shape[-2]), mode="replicate")
        for x in images
    ]
    return torch.cat(padded), sizes


@dataclass
class OptimizeResult:
    """Result of :meth:`MapOptimizer.run`.

    Attributes:
        qmap: (B, 1, H, W) best map per image (with ``sizes``: each image's map in the top-left (H_i, W_i),
            replicated beyond it; :meth:`map_of` crops one).
        log: one dict per step and image: step, image, bpp (straight-through estimate), task_loss, objective.
        best_step: (B,) step of the kept iterate (0 = the initial map).
        logits: (B, 1, ceil(H / downsample), ceil(W / downsample)) the kept iterate's logits on the coarse grid
            (``qmap`` is their sigmoid upsampled): what a map predictor outputs, kept as its training target.
    """

    qmap: Tensor
    log: list[dict[str, Any]] = field(default_factory=list)
    best_step: list[int] = field(default_factory=list)
    sizes: list[tuple[int, int]] | None = None
    logits: Tensor | None = None

    def map_of(self, i: int) -> Tensor:
        """The map of image ``i`` at its own size, (1, 1, H_i, W_i)."""
        m = self.qmap[i : i + 1]
        if self.sizes is None:
            return m
        h, w = self.sizes[i]
        return m[..., :h, :w]


def check_optimizer_args(
    lam: float = 1.0,
    steps: int = 20,
    lr: float = 0.1,
    optimizer: str = "adam",
    init: "str | Tensor" = "constant",
    init_q: float = 0.3,
    alpha: float = 1.0,
    downsample: int = 1,
    clip: float | None = 10.0,
    scale: float = 1.0,
    keep: str = "best",
    lr_schedule: str = "constant",
    memory_format: str = "auto",
) -> None:
    """Validate :class:`MapOptimizer`'s arguments (the same names and meanings) without a codec, e.g. before a
    command loads its models.

    Raises:
        ValueError: one line naming the first bad argument.
    """

    def number(v) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

    def integer(v) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if not (number(lam) and lam >= 0):
        raise ValueError(f"lambda must be a finite number >= 0, got {lam!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if not (integer(steps) and steps >= 0):
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if not (integer(downsample) and downsample >= 1):
        raise ValueError(f"downsample must be an integer >= 1, got {downsample!r}")
    if not (number(lr) and 0 < lr <= MAX_LR):
        raise ValueError(f"lr must be a finite number in (0, {MAX_LR:g}], got {lr!r}")
    if not (number(init_q) and 0 < init_q < 1):
        raise ValueError(f"init_q must lie strictly between 0 and 1 (the map is a sigmoid), got {init_q!r}")
    if not LOGIT_EPS <= init_q <= 1 - LOGIT_EPS:
        raise ValueError(
            f"init_q must lie in [{LOGIT_EPS:g}, {1 - LOGIT_EPS:g}] (the map's logits are clamped there), "
            f"got {init_q!r}"
        )
    if not (number(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if clip is not None and not (number(clip) and clip > 0):
        raise ValueError(f"clip must be None or a finite number > 0, got {clip!r}")
    if not (number(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    resolve_memory_format(memory_format, "cpu")  # raises for an unknown setting
    if not isinstance(init, Tensor) and init not in ("constant", "gradcam", "random"):
        raise ValueError(f"init must be 'constant', 'gradcam', 'random' or a (B, 1, H, W) map tensor, got {init!r}")


class MapOptimizer:
    """Gradient descent on the quality map of a frozen codec for one task objective.

    Args:
        codec: a frozen :class:`SFTCodec`.
        objective: the task (see :mod:`taskcomp.objectives`).
        lam: weight of the task loss against bpp (>= 0); any finite value is carried: beyond
            :data:`OBJECTIVE_WEIGHT_MAX` the objective is descended divided by a constant (same argmin).
        steps: optimisation steps (L-BFGS: outer steps of ``max_iter=1``, as the reference).
        lr: Adam learning rate on the logits (L-BFGS: its step size).
        optimizer: ``"adam"``, ``"lbfgs"`` or ``"ngd"``: normalised gradient descent, each step moves every
            image's logits by ``-lr * g / rms(g)`` (``g``: the objective's gradient, rms over that image's grid),
            so relative magnitudes survive (Adam's first step is ``lr * sign(g)``). With ``steps=1,
            keep="last"`` it is the training-free one-pass map: one forward and backward at the initial map.
        init: ``"constant"`` (level ``init_q``), ``"gradcam"`` (``alpha * CAM``), ``"random"`` (logits
            N(-2, 1), the reference's) or a (B, 1, H, W) tensor.
        init_q: level of the constant init, in (0, 1).
        alpha: scale of the Grad-CAM init.
        downsample: logits on a grid ``downsample`` times coarser than the image (1 = full resolution).
        clip: clip the logits' gradient norm per image to this (None: no clipping).
        scale: multiplies the whole objective (the reference's w = 1e4 for L-BFGS); Adam is invariant to it.
        keep: which iterate each image returns: ``"best"`` (lowest straight-through objective among the
            initial map and every step; the reference's choice) or ``"last"`` (the final step; the best one if the final objective is not finite). ``"last"`` is
            less sensitive to float noise (batch size, thread count, device): near-equal objective values
            at different steps no longer decide the map.
        lr_schedule: ``"constant"`` or ``"cosine"`` (step k = 0 .. n-1 uses ``lr * (1 + cos(pi * k / n)) / 2``:
            the first takes the full lr, the last a small one). With ``keep="last"`` the cosine makes the map far
            less sensitive to float noise:
            batch 8 against batch 1 on 16 ImageNet crops, real bpp within 0.84% on every image, against 10.5%
            with the defaults; it costs accuracy on the maps' own task model (6-9 top-1 points at equal bpp on
            32 ImageNet crops), so it is not the default (results/throughput/README.md).
        memory_format: layout of the codec's and the task models' 4-D weights and activations during the steps
            (:func:`taskcomp.devices.resolve_memory_format`): ``"auto"`` (channels_last on the CPU, where it
            made classification and detection steps 1.2-1.7x faster and text steps 0.9-1.15x: results/map_speed/),
            ``"channels_last"`` or ``"contiguous"``. The models are left as they were after :meth:`run`. Maps
            agree across settings up to float noise.

    Raises:
        ValueError: one line for a bad argument (lam < 0, steps < 0 or not an integer, lr outside (0, 1e6],
            init_q outside [1e-4, 1 - 1e-4], downsample < 1, an unknown optimizer or init, non-finite numbers); :meth:`run` for images
            or an init map that are not finite float tensors in [0, 1] of matching shapes
            (:mod:`taskcomp.checks`).
    """

    def __init__(
        self,
        codec: SFTCodec,
        objective: Objective,
        lam: float = 1.0,
        steps: int = 20,
        lr: float = 0.1,
        optimizer: str = "adam",
        init: str | Tensor = "constant",
        init_q: float = 0.3,
        alpha: float = 1.0,
        downsample: int = 1,
        clip: float | None = 10.0,
        scale: float = 1.0,
        keep: str = "best",
        lr_schedule: str = "constant",
        memory_format: str = "auto",
    ):
        check_optimizer_args(
            lam=lam,
            steps=steps,
            lr=lr,
            optimizer=optimizer,
            init=init,
            init_q=init_q,
            alpha=alpha,
            downsample=downsample,
            clip=clip,
            scale=scale,
            keep=keep,
            lr_schedule=lr_schedule,
            memory_format=memory_format,
        )
        self.codec, self.objective = codec, objective
        self.lam, self.steps, self.lr, self.optimizer = float(lam), int(steps), float(lr), optimizer
        self.init, self.init_q, self.alpha = init, float(init_q), float(alpha)
        self.downsample, self.clip, self.scale = int(downsample), clip, float(scale)
        self.keep, self.lr_schedule, self.memory_format = keep, lr_schedule, memory_format
        # Weights of bpp and task loss in the descended objective (scale, scale * lam unless that is beyond
        # OBJECTIVE_WEIGHT_MAX; then both divided by the same factor, in logs so that no product overflows).
        k = max(0.0, math.log(self.scale) + math.log(max(1.0, self.lam)) - math.log(OBJECTIVE_WEIGHT_MAX))
        # the objective as written is the descended one times this: inf where it is beyond float64 (scale * lam
        # near 1e308 * 1e308; math.exp would raise OverflowError), the descended weights stay finite
        self._divisor = math.exp(k) if k < _LOG_FLOAT_MAX else math.inf
        self._weights = (
            None
            if k == 0
            else (
                math.exp(math.log(self.scale) - k),
                math.exp(math.log(self.scale) + math.log(self.lam) - k) if self.lam > 0 else 0.0,
            )
        )
        for p in codec.parameters():
            p.requires_grad_(False)

    # ------------------------------------------------------------------ map parameterisation
    def _grid(self, H: int, W: int) -> tuple[int, int]:
        return max(1, math.ceil(H / self.downsample)), max(1, math.ceil(W / self.downsample))

    def to_map(self, logits: Tensor, size: tuple[int, int], sizes: list[tuple[int, int]] | None = None) -> Tensor:
        """Maps (B, 1, H, W) in [0, 1] from logits on the coarse grid. With per-image ``sizes``, image i's map is
        its own grid's top-left corner upsampled to (H_i, W_i), then replicate-padded to (H, W)."""
        if sizes is None or all(tuple(s) == tuple(size) for s in sizes):
            m = torch.sigmoid(logits)
            if m.shape[-2:] != size:
                m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            return m
        H, W = size
        out = []
        for i, (h, w) in enumerate(sizes):
            gh, gw = self._grid(h, w)
            m = torch.sigmoid(logits[i : i + 1, :, :gh, :gw])
            if (gh, gw) != (h, w):
                m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
            if (h, w) != (H, W):
                m = F.pad(m, (0, W - w, 0, H - h), mode="replicate")
            out.append(m)
        return torch.cat(out)

    def initial_logits(
        self, x: Tensor, ctx: dict[str, Any] | list, sizes: list[tuple[int, int]] | None = None
    ) -> Tensor:
        B, _, H, W = x.shape
        gh, gw = self._grid(H, W)
        if sizes is not None and self.init not in ("constant", "random"):
            raise ValueError("images of different sizes in one batch take init='constant' or 'random'")
        init = self.init
        if isinstance(init, Tensor):
            m0 = init.expand(B, 1, H, W)
        elif init == "constant":
            m0 = torch.full((B, 1, H, W), self.init_q, device=x.device)
        elif init == "gradcam":  # the objective's own start: alpha * Grad-CAM (Objective.initial_map)
            m0 = self.objective.initial_map("gradcam", x, ctx, self.alpha)
            if m0 is None:
                raise ValueError("init='gradcam' needs a classification or saliency objective")
        elif init == "random":
            return torch.randn(B, 1, gh, gw, device=x.device) - 2.0
        else:
            raise ValueError(f"unknown init {init!r}")
        if (gh, gw) != (H, W):
            m0 = F.adaptive_avg_pool2d(m0, (gh, gw))
        return logit(m0.detach().clone())

    # ------------------------------------------------------------------ objective
    def objective_terms(
        self, x: Tensor, qmap: Tensor, ctx: dict[str, Any] | list, sizes: list[tuple[int, int]] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(objective, bpp, task loss), each (B,), in straight-through mode. With ``sizes``, ``ctx`` is a list of
        per-image contexts and each image's bpp and task loss are over its own (H_i, W_i).

        The objective is ``scale * (bpp + lam * task)``; where ``scale * max(1, lam)`` exceeds
        :data:`OBJECTIVE_WEIGHT_MAX` it is divided by ``scale * max(1, lam) / OBJECTIVE_WEIGHT_MAX`` (same argmin,
        finite gradients in float32)."""
        out = self.codec(x, qmap, quantize="ste")
        bits = bits_from_likelihoods(out["likelihoods"])
        x_hat = out["x_hat"].clamp(0, 1)
        if sizes is None:
            bpp = bits / (x.shape[-2] * x.shape[-1])
            task = self.objective.loss(x_hat, ctx)
        else:
            bpp = bits / torch.tensor([h * w for h, w in sizes], dtype=bits.dtype, device=bits.device)
            task = torch.cat(
                [self.objective.loss(x_hat[i : i + 1, :, :h, :w], ctx[i]).reshape(1) for i, (h, w) in enumerate(sizes)]
            )
        if self._weights is None:
            return self.scale * (bpp + self.lam * task), bpp, task
        w_rate, w_task = self._weights
        return w_rate * bpp + w_task * task, bpp, task

    def run(
        self,
        x: Tensor,
        ctx: dict[str, Any] | list | None = None,
        progress: bool = False,
        sizes: list[tuple[int, int]] | None = None,
    ) -> OptimizeResult:
        """Optimise the maps of images x (B, 3, H, W) in [0, 1], each independently of the others.

        Args:
            x: a batch of images of one size; or, with ``sizes``, images of different sizes stacked by
                :func:`pad_batch` (group them so that all share one ``padded_size``: each then codes as alone,
                up to float noise).
            ctx: the objective's context of the batch (default ``objective.prepare(x)``; see
                :func:`collate_contexts`); with ``sizes``, a list of per-image contexts.
            sizes: per-image (H_i, W_i) for a padded batch of different sizes.
        """
        x = check_image_tensor(x, "image")
        if isinstance(self.init, Tensor):
            check_map_tensor(self.init, x, "initial map")
        if sizes is not None:
            if len(sizes) != x.size(0) or not isinstance(ctx, list) or len(ctx) != x.size(0):
                raise ValueError("with sizes, give one (H, W) and one context per image")
            if all(tuple(s) == tuple(x.shape[-2:]) for s in sizes):
                ctx, sizes = collate_contexts(ctx), None
        if ctx is None:
            ctx = self.objective.prepare(x)
        fmt = resolve_memory_format(self.memory_format, x.device)
        # Objective.models() on the instance's attributes also serves duck-typed objectives (not subclasses).
        models = self.objective.models() if hasattr(self.objective, "models") else Objective.models(self.objective)
        with use_memory_format([self.codec, *models], fmt):
            return self._descend(x.contiguous(memory_format=fmt), ctx, sizes, progress)

    def _descend(
        self, x: Tensor, ctx: dict[str, Any] | list, sizes: list[tuple[int, int]] | None, progress: bool
    ) -> OptimizeResult:
        """The optimisation steps of :meth:`run` on checked images and their contexts."""
        B, _, H, W = x.shape
        logits = self.initial_logits(x, ctx, sizes).requires_grad_(True)
        best_obj = torch.full((B,), float("inf"), device=x.device)
        best_logits = logits.detach().clone()
        best_step = [0] * B
        log: list[dict[str, Any]] = []

        def evaluate(step: int) -> Tensor:
            obj, bpp, task = self.objective_terms(x, self.to_map(logits, (H, W), sizes), ctx, sizes)
            with torch.no_grad():
                for i in range(B):
                    o = float(obj[i])
                    log.append(
                        {
                            "step": step,
                            "image": i,
                            "bpp": float(bpp[i]),
                            "task_loss": float(task[i]),
                            "objective": o * self._divisor if o else o,
                        }
                    )  # 0 * inf: 0, not NaN
                    last = self.keep == "last" and step == self.steps and bool(torch.isfinite(obj[i]))
                    if obj[i] < best_obj[i] or last:
                        best_obj[i] = obj[i]
                        best_logits[i] = logits[i].detach()
                        best_step[i] = step
            return obj

        def clip_grad() -> None:
            if self.clip is not None and logits.grad is not None:
                g = logits.grad
                norm = g.flatten(1).norm(dim=1)
                if not bool(torch.isfinite(norm).all()):  # squares beyond float32 (finite g): norm of g / peak
                    peak = g.flatten(1).abs().amax(dim=1).clamp_min(1e-30)
                    norm = (g / peak.view(-1, 1, 1, 1)).flatten(1).norm(dim=1) * peak
                norm = norm.clamp_min(1e-12)
                g.mul_((self.clip / norm).clamp(max=1.0).view(-1, 1, 1, 1))

        if self.optimizer == "adam":
            opt = torch.optim.Adam([logits], lr=self.lr)
        elif self.optimizer == "ngd":
            opt = torch.optim.SGD([logits], lr=self.lr)
        else:
            opt = torch.optim.LBFGS([logits], lr=self.lr, max_iter=1, line_search_fn=None)

        it = range(1, self.steps + 1)
        if progress:
            it = tqdm(it, desc="optimize map", leave=False)
        for step in it:
            if self.lr_schedule == "cosine":
                for g in opt.param_groups:
                    g["lr"] = self.lr * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / self.steps))
            if self.optimizer in ("adam", "ngd"):
                opt.zero_grad(set_to_none=True)
                obj = evaluate(step - 1)
                obj.sum().backward()
                if self.optimizer == "ngd":  # per-image unit-rms gradient: the step size is lr in logit units
                    g = logits.grad
                    g.div_(g.flatten(1).pow(2).mean(dim=1).sqrt().clamp_min(1e-30).view(-1, 1, 1, 1))
                else:
                    clip_grad()
                opt.step()
            else:

                def closure():
                    opt.zero_grad(set_to_none=True)
                    obj = evaluate(step - 1)
                    obj.sum().backward()
                    clip_grad()
                    return obj.sum()

                opt.step(closure)
        evaluate(self.steps)  # the last update has not been scored yet
        return OptimizeResult(
            qmap=self.to_map(best_logits, (H, W), sizes).detach(),
            log=log,
            best_step=best_step,
            sizes=sizes,
            logits=best_logits.detach(),
        )


def optimize_images(opt: "MapOptimizer", xs: list[Tensor], ctxs: list[Any]) -> OptimizeResult:
    """Optimise the maps of images ``xs`` (each (1, 3, H_i, W_i)) with per-image contexts ``ctxs`` together.

    One image runs alone; images of one size run as a plain batch (contexts collated); images of different
    sizes (they should share one padded size: group them with :func:`group_key`) run as a :func:`pad_batch`.
    A Grad-CAM init needs equal sizes, so a mixed-size batch with it runs image by image. Use
    :meth:`OptimizeResult.map_of` for image i's map.
    """
    if len(xs) == 1:
        return opt.run(xs[0], ctxs[0])
    if len({tuple(x.shape[-2:]) for x in xs}) == 1:
        return opt.run(torch.cat(xs), collate_contexts(ctxs))
    if opt.init not in ("constant", "random"):  # a CAM init is computed on the batch tensor
        parts = [opt.run(x, c) for x, c in zip(xs, ctxs)]
        H, W = max(x.shape[-2] for x in xs), max(x.shape[-1] for x in xs)
        maps = torch.cat(
            [F.pad(p.qmap, (0, W - p.qmap.shape[-1], 0, H - p.qmap.shape[-2]), mode="replicate") for p in parts]
        )
        return OptimizeResult(
            qmap=maps,
            log=[{**l, "image": i} for i, p in enumerate(parts) for l in p.log],
            best_step=[p.best_step[0] for p in parts],
            sizes=[tuple(x.shape[-2:]) for x in xs],
        )
    xb, sizes = pad_batch(xs)
    return opt.run(xb, ctxs, sizes=sizes)


def group_key(height: int, width: int) -> tuple[int, int]:
    """Images with the same key batch together: the codec's padded size (see :func:`pad_batch`)."""
    return padded_size(height, width)


def real_bpp(codec: SFTCodec, x: Tensor, qmap: Tensor) -> tuple[float, bytes]:
    """Real bits per pixel of one image (1, 3, H, W) coded under ``qmap``: the whole .tcz file."""
    with torch.inference_mode():
        data = encode(codec, x, qmap)
    return 8.0 * len(data) / (x.shape[-2] * x.shape[-1]), data


@dataclass
class BppSearch:
    """Result of :func:`search_bpp`: the setting ``s`` whose measured bpp came closest to the target.

    Attributes:
        s: the setting (q, logit offset, blend weight, ...).
        bpp: its measured real bpp.
        data: what the measurement returned beside the bpp (the .tcz bytes).
        met: whether ``bpp`` is within the relative tolerance of the target.
        samples: every (setting, bpp) measured, in the order measured.
    """

    s: float
    bpp: float
    data: Any
    met: bool
    samples: list[tuple[float, float]]

    def measured(self, name: str = "q") -> str:
        """One line of what was measured, e.g. ``measured 0.0238..0.0487 bpp over q in [0, 1] (19 points)``."""
        ss, bs = [p[0] for p in self.samples], [p[1] for p in self.samples]
        return (
            f"measured {min(bs):.4f}..{max(bs):.4f} bpp over {name} in [{min(ss):.3g}, {max(ss):.3g}] "
            f"({len(bs)} points)"
        )


def search_bpp(
    measure,
    target: float,
    lo: float = 0.0,
    hi: float = 1.0,
    tol: float = 0.005,
    grid: int = 11,
    refine: int = 10,
    prefer: float | None = None,
    max_brackets: int = 3,
) -> BppSearch:
    """Find a setting s in [lo, hi] whose real bpp ``measure(s)`` meets ``target`` (relative ``tol``), without
    assuming that rate is monotonic in s.

    Rate is not monotonic in q on flat images (a blank page: 0.0315 bpp at q=0, 0.0238 at q=0.05, 0.0487 at
    q=0.7), so a plain bisection between the ends misses reachable targets. This scans ``grid`` equally spaced
    settings; every pair of neighbours whose bpp lie on both sides of the target brackets a crossing (wherever
    rate is continuous), refined by bisection on the side of the target (``refine`` steps; no monotonicity
    needed). Without ``prefer`` the scan runs from ``lo`` and stops at the first setting that meets the target;
    with ``prefer`` it scans the whole grid and returns the met setting nearest to ``prefer`` (e.g. logit offset 0:
    the least change to an optimised map), refining the brackets nearest to it first (at most ``max_brackets``).

    Args:
        measure: s -> (bpp, data); bpp of the whole file.
        target: bits per pixel (> 0).

    Returns:
        :class:`BppSearch`; if nothing met the tolerance (the target outside the measured range, or a jump in
        rate across it), the closest setting measured, with ``met`` False.
    """
    samples: list[tuple[float, float]] = []
    best: list = []  # [s, bpp, data]
    met_found: list[tuple[float, float, Any]] = []

    def ok(b: float) -> bool:
        return abs(b / target - 1) <= tol

    def take(s: float) -> tuple[float, Any]:
        b, d = measure(s)
        samples.append((s, b))
        if not best or abs(b - target) < abs(best[1] - target):
            best[:] = [s, b, d]
        if ok(b):
            met_found.append((s, b, d))
        return b, d

    def bisect(a: float, fa: float, c: float) -> tuple[float, float, Any] | None:
        for _ in range(refine):
            m = (a + c) / 2
            b, d = take(m)
            if ok(b):
                return m, b, d
            if (b - target) * (fa - target) > 0:
                a, fa = m, b
            else:
                c = m
        return None

    def result(hit) -> BppSearch:
        if hit is not None:
            return BppSearch(hit[0], hit[1], hit[2], True, samples)
        return BppSearch(best[0], best[1], best[2], False, samples)

    points = [lo + (hi - lo) * i / (grid - 1) for i in range(grid)] if grid > 1 else [lo]
    if prefer is None:
        prev = None
        for s in points:
            b, d = take(s)
            if ok(b):
                return result((s, b, d))
            if prev is not None and (prev[1] - target) * (b - target) < 0:
                hit = bisect(prev[0], prev[1], s)
                if hit is not None:
                    return result(hit)
            prev = (s, b)
        return result(None)
    bpps = [take(s)[0] for s in points]
    brackets = [
        (points[i], bpps[i], points[i + 1])
        for i in range(len(points) - 1)
        if (bpps[i] - target) * (bpps[i + 1] - target) < 0
    ]
    brackets.sort(key=lambda br: abs((br[0] + br[2]) / 2 - prefer))
    for a, fa, c in brackets[:max_brackets]:
        nearest = min(met_found, key=lambda h: abs(h[0] - prefer), default=None)
        if nearest is not None and abs(nearest[0] - prefer) <= min(abs(a - prefer), abs(c - prefer)):
            break  # a met setting already lies nearer than this bracket
        bisect(a, fa, c)
    return result(min(met_found, key=lambda h: abs(h[0] - prefer), default=None))


def uniform_bpp_search(codec: SFTCodec, x: Tensor, target: float, tol: float = 0.005, **kw) -> BppSearch:
    """The uniform level q in [0, 1] whose real bpp for image x (1, 3, H, W) meets ``target`` (:func:`search_bpp`,
    so a target reachable by some q is found although rate need not be monotonic in q)."""
    H, W = x.shape[-2:]
    return search_bpp(
        lambda q: real_bpp(codec, x, torch.full((1, 1, H, W), q, device=x.device)), target, 0.0, 1.0, tol=tol, **kw
    )


def check_target_reachable(codec: SFTCodec, x: Tensor, target: float, tol: float = 0.03) -> None:
    """Raise :class:`TargetBppError` if no uniform map reaches ``target`` real bpp (within ``tol``) on x.

    Cheap when it is: the bpp at q=0 and q=1 first (a target between them is reached by some q wherever rate is
    continuous); only a target outside them scans q (:func:`uniform_bpp_search`), since the lowest and highest
    rates need not lie at the ends. The error states only what was measured.

    Raises:
        TargetBppError: e.g. ``target 0.01 bpp is unreachable, below the lowest this image reaches: measured
            0.0244..0.0487 bpp over q in [0, 1] (11 points)``.
    """
    H, W = x.shape[-2:]
    ends = [real_bpp(codec, x, torch.full((1, 1, H, W), q, device=x.device))[0] for q in (0.0, 1.0)]
    if min(ends) * (1 - tol) <= target <= max(ends) * (1 + tol):
        return
    found = uniform_bpp_search(codec, x, target, tol=tol)
    if found.met:
        return
    bs = [b for _, b in found.samples] + ends
    if min(bs) * (1 - tol) <= target <= max(bs) * (1 + tol):
        return  # inside what was measured: reachable up to a jump in rate, left to the caller's search
    side = "below the lowest" if target < min(bs) else "above the highest"
    raise TargetBppError(f"target {target:g} bpp is unreachable, {side} this image reaches: {found.measured('q')}")
