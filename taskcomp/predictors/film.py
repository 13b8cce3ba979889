"""Feature-FiLM map predictor: frozen pretrained features, a small lambda-conditioned decoder, map logits.

The predictor turns an image and a rate-task trade-off lambda into the logits of a quality map on the map
optimiser's coarse grid (:class:`taskcomp.optimize.MapOptimizer`, 1/8 of the image by default), in one forward
pass. It is trained (:mod:`taskcomp.training.predictor`) to minimise the per-image objective the optimiser
minimises by gradient descent, ``bpp + lambda * L_task``, averaged over images and lambdas.

Architecture:
- **Features**: a timm backbone created with ``features_only=True`` (default: the task model's own, e.g.
  EfficientNet-Lite0), frozen, its pretrained weights taken from the offline classifier weights
  (:func:`taskcomp.task_models.create_classifier`). The last three feature levels (strides 8, 16, 32) are projected
  to ``channels`` by 1x1 convolutions, upsampled to the stride-8 grid and summed (a feature-pyramid fusion, Lin
  et al. 2017).
- **Lambda conditioning**: FiLM (Perez et al. 2018) by ``t = log(lambda)`` normalised to [-1, 1] over the
  trained range: each of the two 3x3 conv blocks is scaled and shifted per channel by ``(1 + gamma(t), beta(t))``,
  the same spatial-feature-transform idea the SFT codec uses for its quality map (Song et al. 2021), with the
  condition a scalar. One predictor spans the rate range.
- **Head**: a 3x3 convolution to one logit per grid cell, started at zero weight and bias ``logit(init_q)``, so
  an untrained predictor predicts the optimiser's default constant map.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PredictorConfig", "FeatureFiLMPredictor"]


@dataclass
class PredictorConfig:
    """What a predictor is: its features, decoder width, grid, lambda range, and the task it was trained for.

    Attributes:
        backbone: timm model name of the frozen features (``features_only``).
        channels: decoder width.
        downsample: the logit grid is ``ceil(H / downsample) x ceil(W / downsample)``.
        lambda_min, lambda_max: the trained lambda range (the FiLM input is clamped to it).
        init_q: the untrained predictor's constant map level.
        task: the objective it was trained for (``classification``, ``detection``, ...).
        task_model: that objective's model (timm name, ultralytics weights), the one its maps are for.
        codec, codec_weights: the codec its maps were made for and that codec's weights id (hex; ``""``: not
            recorded, as in checkpoints made before it was). Its maps are refused with other weights
            (:func:`taskcomp.predictors.check_codec`).
        training: how it was trained: ``end-to-end`` (through codec and task model,
            :mod:`taskcomp.training.predictor`) or ``distilled`` (from per-image maps, :mod:`taskcomp.training.distill`).
    """

    backbone: str = "tf_efficientnet_lite0"
    channels: int = 64
    downsample: int = 8
    lambda_min: float = 0.003
    lambda_max: float = 3.0
    init_q: float = 0.1
    task: str = "classification"
    task_model: str = "tf_efficientnet_lite0"
    codec: str = "sft-small"
    codec_weights: str = ""
    training: str = "end-to-end"

    def to_dict(self) -> dict:
        return asdict(self)


class _FiLM(nn.Module):
    """Per-channel scale and shift from a scalar condition: ``h * (1 + gamma(t)) + beta(t)``; starts as identity."""

    def __init__(self, channels: int, hidden: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, h: Tensor, t: Tensor) -> Tensor:
        gamma, beta = self.mlp(t.view(-1, 1)).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return h * (1 + gamma) + beta


class FeatureFiLMPredictor(nn.Module):
    """Quality-map predictor: ``logits = decoder(features(x), log lambda)``.

    Args:
        config: :class:`PredictorConfig`.
        pretrained: load the backbone's pretrained weights (offline classifier weights; False for tests).

    Input images are (B, 3, H, W) in [0, 1] (a (B, 1, H, W) grayscale batch is repeated to 3 channels), any size
    from 1x1 up; lambda is a float or a (B,) tensor, > 0.

    Raises:
        taskcomp.task_models.ModelError: an unknown backbone, or weights that do not fit it.
    """

    def __init__(self, config: PredictorConfig | None = None, pretrained: bool = True):
        super().__init__()
        import timm

        from ..task_models import ModelError, create_classifier, resolve_classifier_name

        self.config = cfg = config or PredictorConfig()
        arch = resolve_classifier_name(cfg.backbone)
        if not timm.is_model(arch):
            raise ModelError(f"unknown predictor backbone {cfg.backbone!r} (not a timm model name)")
        self.backbone = timm.create_model(arch, pretrained=False, features_only=True)
        if pretrained:
            src = create_classifier(arch, pretrained=True).state_dict()
            missing = self.backbone.load_state_dict(src, strict=False).missing_keys
            if missing:
                raise ModelError(f"the {arch} classifier weights miss {len(missing)} feature entries ({missing[0]})")
        self.backbone.eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        dc = timm.data.resolve_data_config({}, model=self.backbone)
        self.register_buffer("mean", torch.tensor(dc["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(dc["std"]).view(1, 3, 1, 1), persistent=False)
        info = self.backbone.feature_info
        levels = [i for i, r in enumerate(info.reduction()) if r >= 8][-3:]
        self.levels = levels
        C = cfg.channels
        self.lateral = nn.ModuleList(nn.Conv2d(info.channels()[i], C, 1) for i in levels)
        self.film1, self.film2 = _FiLM(C), _FiLM(C)
        self.conv1 = nn.Conv2d(C, C, 3, padding=1)
        self.conv2 = nn.Conv2d(C, C, 3, padding=1)
        self.head = nn.Conv2d(C, 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        q = min(max(cfg.init_q, 1e-4), 1 - 1e-4)
        nn.init.constant_(self.head.bias, math.log(q / (1 - q)))

    def train(self, mode: bool = True) -> "FeatureFiLMPredictor":
        super().train(mode)
        self.backbone.eval()  # frozen, batch-norm statistics included
        return self

    def decoder_state_dict(self) -> dict[str, Tensor]:
        """The trainable part's weights (the backbone comes from its pretrained package)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def lambda_code(self, lam: float | Tensor, batch: int, device: torch.device) -> Tensor:
        """(B,) FiLM input: log(lambda) mapped linearly from [lambda_min, lambda_max] to [-1, 1], clamped."""
        lam = torch.as_tensor(lam, dtype=torch.float32, device=device).reshape(-1)
        if lam.numel() == 1:
            lam = lam.expand(batch)
        if lam.numel() != batch:
            raise ValueError(f"got {lam.numel()} lambdas for {batch} images")
        if not bool(torch.isfinite(lam).all()) or bool((lam <= 0).any()):
            raise ValueError("lambda must be a finite number > 0")
        lo, hi = math.log(self.config.lambda_min), math.log(self.config.lambda_max)
        return ((lam.log() - lo) / (hi - lo) * 2 - 1).clamp(-1, 1)

    def grid(self, H: int, W: int) -> tuple[int, int]:
        """The logit grid of an H x W image."""
        d = self.config.downsample
        return max(1, math.ceil(H / d)), max(1, math.ceil(W / d))

    def forward(self, x: Tensor, lam: float | Tensor) -> Tensor:
        """Map logits (B, 1, ceil(H / downsample), ceil(W / downsample)) for images ``x`` at trade-off ``lam``.

        Raises:
            ValueError: ``x`` not (B, 1 or 3, H, W), non-finite values, or a lambda that is not > 0.
        """
        if not isinstance(x, Tensor) or x.dim() != 4 or x.size(1) not in (1, 3):
            raise ValueError(f"images must be (B, 3, H, W) (or B, 1, H, W), got {tuple(getattr(x, 'shape', ()))}")
        if x.size(1) == 1:
            x = x.expand(-1, 3, -1, -1)
        from ..checks import check_image_tensor

        check_image_tensor(x)  # float, non-empty, finite, in [0, 1] (0..255 data is refused, not clamped)
        B, _, H, W = x.shape
        return self.decode(self.features(x), self.lambda_code(lam, B, x.device), self.grid(H, W))

    def features(self, x: Tensor) -> list[Tensor]:
        """The frozen backbone's feature levels the decoder reads (strides 8, 16, 32), for checked images
        (B, 3, H, W) in [0, 1]; computed without gradients (what a distillation cache stores)."""
        with torch.no_grad():
            feats = self.backbone((x - self.mean) / self.std)
        return [feats[i] for i in self.levels]

    def decode(self, feats: list[Tensor], t: Tensor, grid: tuple[int, int]) -> Tensor:
        """Logits (B, 1, gh, gw) from :meth:`features`' levels and the FiLM input ``t`` (B,) in [-1, 1]
        (:meth:`lambda_code`): the trainable part."""
        h = 0
        for lat, f in zip(self.lateral, feats):
            f = lat(f)
            if f.shape[-2:] != tuple(grid):
                f = F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
            h = h + f
        h = F.relu(self.film1(self.conv1(F.relu(h)), t))
        h = F.relu(self.film2(self.conv2(h), t))
        return self.head(h)

    def predict_map(self, x: Tensor, lam: float | Tensor) -> Tensor:
        """Quality maps (B, 1, H, W) in [0, 1]: ``sigmoid(logits)`` upsampled bilinearly to the image size, as
        :meth:`taskcomp.optimize.MapOptimizer.to_map` does."""
        m = torch.sigmoid(self(x, lam))
        if m.shape[-2:] != x.shape[-2:]:
            m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return m
