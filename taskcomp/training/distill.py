"""Distilling a map predictor from per-image optimised maps (issue 36): ``taskcomp distill-predictor``.

The end-to-end trainer (:mod:`taskcomp.training.predictor`) backpropagates through the codec and the task model
at every step (6-15 s per CPU step). Here the per-image maps of :mod:`taskcomp.training.targets` are the answers:
the predictor's frozen backbone features of every target crop are computed once and cached (with the crop's
horizontal mirror, an augmentation whose target is the mirrored map), and only the small lambda-conditioned
decoder of :class:`taskcomp.predictors.FeatureFiLMPredictor` is trained to reproduce the targets' coarse-grid
logits, for each of their lambdas. A step costs a fraction of a second on one CPU core.

Loss: binary cross-entropy of the predicted logits against the target map ``sigmoid(target logits)`` per grid
cell (soft targets; its gradient is the map difference), reported as KL divergence (cross-entropy minus the
targets' entropy; 0 when the maps agree). A fixed tenth of the target images (by the SHA-1 of their path, so
the same images whatever the set's size) is held out; the weights kept are those of the lowest held-out loss.
``count`` trains on the first N other images of the targets' fixed random order (a random subset: how the gain
grows with the set's size).
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_write, image_to_tensor
from .loop import cosine_lr
from .targets import TargetsError, _key, _load_crop, load_targets

__all__ = ["distill_predictor", "feature_cache", "held_out"]


def held_out(image: str, every: int = 10) -> bool:
    """Whether a target image (path under the data root) is in the held-out tenth (``every``: 1 in N)."""
    return int(_key(image), 16) % every == 0


def feature_cache(
    targets: str | Path, model, spec: dict[str, Any], entries: list[dict], data_root: str | Path, log=print
) -> dict[str, list[list[torch.Tensor]]]:
    """The predictor backbone's feature levels of every target crop and of its mirror, float16, computed once.

    Stored in ``TARGETS/features/BACKBONE.pt`` ({image: [levels, mirrored levels]}); images added to the targets
    since are computed and the file rewritten (atomically).

    Returns:
        {image: [[level tensors (C_l, h_l, w_l)], [mirrored]]}.

    Raises:
        TargetsError: a target image missing under ``data_root``.
    """
    path = Path(targets) / "features" / f"{model.config.backbone}-{spec['resize']}-{spec['crop']}.pt"
    cache: dict = {}
    if path.is_file():
        try:
            cache = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a cut or foreign file
            raise TargetsError(
                f"the feature cache {path} is damaged ({type(e).__name__}): delete it to compute it again"
            ) from None
    todo = [e["image"] for e in entries if e["image"] not in cache]
    if todo:
        from tqdm import tqdm

        t0 = time.perf_counter()
        for rel in tqdm(todo, desc="features", dynamic_ncols=True):
            p = Path(data_root) / rel
            if not p.is_file():
                raise TargetsError(f"target image {rel} is not under the data root {data_root}")
            x = image_to_tensor(_load_crop(p, spec["resize"], spec["crop"]))
            fs = model.features(torch.cat([x, x.flip(-1)]))
            cache[rel] = [[f[k].half().clone() for f in fs] for k in range(2)]
        path.parent.mkdir(exist_ok=True)
        import io

        buf = io.BytesIO()
        torch.save(cache, buf)
        atomic_write(path, buf.getvalue())
        log(f"features: {len(todo)} crops in {time.perf_counter() - t0:.0f} s -> {path}")
    return cache


def _stack(cache, images: list[str], flips: list[int]) -> list[torch.Tensor]:
    levels = len(cache[images[0]][0])
    return [torch.stack([cache[im][fl][lv] for im, fl in zip(images, flips)]).float() for lv in range(levels)]


def distill_predictor(
    targets: str | Path,
    out: str | Path,
    data_root: str | Path,
    count: int | None = None,
    steps: int = 400,
    batch_size: int = 16,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    channels: int = 64,
    eval_every: int = 25,
    name: str | None = None,
    codec_weights: str | None = None,
    init_from: str | None = None,
    holdout_every: int = 10,
    seed: int = 0,
    log=print,
) -> dict[str, Any]:
    """Train a predictor's decoder to reproduce a target folder's maps; write it as a predictor checkpoint.

    Args:
        targets: a folder of ``taskcomp make-targets``.
        out: the predictor checkpoint (``.pth``); beside it ``OUT.log.csv`` (step, lr, train and held-out KL)
            and ``OUT.json`` (what was trained on, minutes, the held-out figures).
        count: train on the first N non-held-out target images (None: all).
        steps, batch_size, lr: AdamW on the decoder; ``batch_size`` images per step, each with all its lambdas
            and a random mirror; linear warm-up over min(20, steps / 10) steps, cosine decay over the last 40%.
        weight_decay: AdamW's decoupled weight decay (0: Adam).
        eval_every: held-out evaluation interval (steps); the best held-out weights are kept.
        init_from: a predictor (registered name or checkpoint) whose decoder the training starts from (its width
            and lambda range are kept, so its FiLM inputs mean what they meant); None: a fresh decoder.
        holdout_every: one target image in N (by the SHA-1 of its path) is held out.
        codec_weights: the weights id (hex) of the codec the predictor is for: targets made with other weights
            are refused (None: the targets' own).

    Returns:
        the summary written to ``OUT.json``.

    Raises:
        TargetsError: no or damaged targets, too few images, a missing target image.
        ValueError: a bad number (one line).
    """
    from ..predictors import FeatureFiLMPredictor, PredictorConfig, save_predictor

    for k, v, lo in (("steps", steps, 1), ("batch_size", batch_size, 1), ("eval_every", eval_every, 1)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{k} must be an integer >= {lo}, got {v!r}")
    if not (isinstance(lr, (int, float)) and 0 < lr < 1):
        raise ValueError(f"lr must be in (0, 1), got {lr!r}")
    if count is not None and count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    out = Path(out)
    spec, entries = load_targets(targets, weights=codec_weights)
    if spec["task"] not in ("classification", "detection"):
        raise TargetsError(f"{targets}: no predictor backbone for {spec['task']} targets")
    val = [e for e in entries if held_out(e["image"], holdout_every)]
    train = [e for e in entries if not held_out(e["image"], holdout_every)][:count]
    if len(train) < 2 or not val:
        raise TargetsError(
            f"{targets} has {len(entries)} target images ({len(val)} held out): distilling needs at least 2 to "
            "train on and 1 held out (make more with `taskcomp make-targets`)"
        )
    lams = [float(v) for v in spec["lambdas"]]
    backbone = spec["task_model"] if spec["task"] == "classification" else "tf_efficientnet_lite0"
    config = PredictorConfig(
        backbone=backbone,
        channels=channels,
        downsample=int(spec["optimizer"].get("downsample", 1)),
        lambda_min=min(lams),  # the FiLM input is clamped to the lambdas the targets cover: no extrapolation
        lambda_max=max(lams) if max(lams) > min(lams) else min(lams) * 10,
        init_q=float(spec["optimizer"].get("init_q", 0.1)),
        task=spec["task"],
        task_model=spec["task_model"] if spec["task"] == "classification" else "default",
        codec=spec["codec"],
        codec_weights=spec["weights"],
        training="distilled",
    )
    torch.manual_seed(seed)
    start = None
    if init_from is not None:
        from ..predictors import create_predictor

        start = create_predictor(init_from)
        if start.config.backbone != config.backbone or start.config.downsample != config.downsample:
            raise ValueError(
                f"init_from {init_from}: its backbone/grid ({start.config.backbone}, 1/{start.config.downsample}) "
                f"differ from the targets' ({config.backbone}, 1/{config.downsample})"
            )
        config.channels, config.lambda_min, config.lambda_max = (
            start.config.channels,
            start.config.lambda_min,
            start.config.lambda_max,
        )
    model = FeatureFiLMPredictor(config)  # built once, after init_from has set its width and lambda range
    if start is not None:
        model.load_state_dict(start.decoder_state_dict(), strict=False)

    def load(es):
        out = []
        for e in es:
            f = Path(targets) / e["file"]
            try:
                out.append(torch.from_numpy(np.load(f)["logits"].astype(np.float32)))
            except Exception as err:  # zipfile / numpy / OS errors of a cut or foreign file
                raise TargetsError(
                    f"target map {f} is damaged ({type(err).__name__}): delete it and rerun make-targets to remake it"
                ) from None
        return torch.stack(out)

    t_train, t_val = load(train), load(val)  # (N, L, 1, gh, gw), read before any cache is written
    cache = feature_cache(targets, model, spec, train + val, data_root, log=log)
    L = t_train.shape[1]
    if L != len(lams):
        raise TargetsError(f"{targets}: maps hold {L} lambdas, targets.json names {len(lams)}")
    grid = tuple(t_train.shape[-2:])
    codes = model.lambda_code(torch.tensor(lams), L, torch.device("cpu"))  # (L,)

    def kl(pred, target_logits):
        p = torch.sigmoid(target_logits)
        ce = F.binary_cross_entropy_with_logits(pred, p, reduction="none")
        ent = F.binary_cross_entropy_with_logits(target_logits, p, reduction="none")
        return (ce - ent).flatten(1).mean(1)  # (B,)

    def batch_of(es_idx, imgs, flips, tgt):
        feats = _stack(cache, imgs, flips)
        feats = [f.repeat_interleave(L, 0) for f in feats]
        y = tgt[es_idx]  # (b, L, 1, gh, gw)
        y = torch.where(torch.tensor(flips).view(-1, 1, 1, 1, 1).bool(), y.flip(-1), y)
        return feats, codes.repeat(len(imgs)), y.reshape(-1, 1, *grid)

    @torch.no_grad()
    def evaluate():
        model.eval()
        kls, mae, level = [], [], []
        for s in range(0, len(val), 32):
            idx = list(range(s, min(len(val), s + 32)))
            feats, t, y = batch_of(idx, [val[i]["image"] for i in idx], [0] * len(idx), t_val)
            pred = model.decode(feats, t, grid)
            kls.append(kl(pred, y))
            d = torch.sigmoid(pred) - torch.sigmoid(y)
            mae.append(d.abs().flatten(1).mean(1))
            level.append(d.flatten(1).mean(1).abs())
        model.train()
        return float(torch.cat(kls).mean()), float(torch.cat(mae).mean()), float(torch.cat(level).mean())

    # what no image content can beat: each lambda's mean training map as a constant map (held-out KL)
    level = torch.sigmoid(t_train).mean(dim=(0, 2, 3, 4)).clamp(1e-4, 1 - 1e-4)  # (L,)
    const = torch.logit(level).view(1, L, 1, 1, 1).expand_as(t_val).reshape(-1, 1, *grid)
    kl_const = float(kl(const, t_val.reshape(-1, 1, *grid)).mean())

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    csv_path = out.with_name(out.name + ".log.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.perf_counter()
    model.train()

    def snapshot() -> dict:
        return {k: t.detach().clone() for k, t in model.decoder_state_dict().items()}

    v0 = evaluate()
    best = (v0[0], snapshot(), 0, v0)  # step 0 (the untrained decoder) is a candidate too
    rows.append(
        {"step": 0, "lr": 0.0, "train_kl": math.nan, "val_kl": v0[0], "val_map_mae": v0[1], "val_level_err": v0[2]}
    )
    log(
        f"distill: {len(train)} images x {L} lambdas to train on, {len(val)} held out; held-out KL at start {v0[0]:.4f}"
    )
    from tqdm import tqdm

    run_kl = []
    warmup = min(20, steps // 10)
    for step in tqdm(range(1, steps + 1), desc="distill", dynamic_ncols=True):
        cur = cosine_lr(step - 1, (step - 1) / steps, lr, warmup_steps=warmup, decay_start=0.6, final_lr=lr * 0.01)
        for g in opt.param_groups:
            g["lr"] = cur
        idx = rng.integers(0, len(train), batch_size).tolist()
        flips = rng.integers(0, 2, batch_size).tolist()
        feats, t, y = batch_of(idx, [train[i]["image"] for i in idx], flips, t_train)
        loss = kl(model.decode(feats, t, grid), y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run_kl.append(float(loss.detach()))
        if step % eval_every == 0 or step == steps:
            v = evaluate()
            rows.append(
                {
                    "step": step,
                    "lr": cur,
                    "train_kl": float(np.mean(run_kl)),
                    "val_kl": v[0],
                    "val_map_mae": v[1],
                    "val_level_err": v[2],
                }
            )
            run_kl = []
            if v[0] < best[0]:
                best = (v[0], snapshot(), step, v)
    minutes = (time.perf_counter() - t0) / 60
    model.load_state_dict(best[1], strict=False)
    import io

    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write(csv_path, text.getvalue().encode())  # written whole, as the checkpoint and its .json
    summary = {
        "targets": str(targets),
        "target_spec": spec,
        "n_train_images": len(train),
        "n_held_out_images": len(val),
        "lambdas": lams,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "best_step": best[2],
        "held_out_kl_start": v0[0],
        "held_out_kl_constant_per_lambda": kl_const,
        "init_from": init_from,
        "held_out_kl": best[3][0],
        "held_out_map_mae": best[3][1],
        "held_out_map_level_error": best[3][2],
        "train_minutes": minutes,
        "threads": torch.get_num_threads(),
    }
    meta = {
        "training": "distilled",
        "init_from": init_from,
        "steps": steps,
        "best_step": best[2],
        "n_train_images": len(train),
        "targets_weights": spec["weights"],
        "train_minutes": round(minutes, 2),
    }
    save_predictor(model, out, name or out.stem, meta=meta)
    atomic_write(out.with_name(out.name + ".json"), json.dumps(summary, indent=1).encode())
    if best[2] == 0:
        log("distill: note: no step beat the untrained decoder on the held-out images: its weights are the ones kept")
    elif best[3][0] >= kl_const:
        log(
            "distill: note: the kept weights do no better on the held-out images than each lambda's mean map "
            "(a uniform map): more targets are needed"
        )
    log(
        f"distill: kept step {best[2]} (held-out KL {best[3][0]:.4f} from {v0[0]:.4f}; each lambda's mean map "
        f"{kl_const:.4f}; map MAE {best[3][1]:.4f}); "
        f"{minutes:.1f} min -> {out}"
    )
    return summary
