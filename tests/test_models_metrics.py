"""Task models (Grad-CAM on token models, models given as modules or checkpoints), the codec's deterministic
eval forward, and metric honesty (MS-SSIM below its size limit, CER, IoU, BD-rate against a reference)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from taskcomp.objectives import Objective, create_objective, grad_cam

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"


# ---------------------------------------------------------------- 05-cam-vit: Grad-CAM on token models
@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return create_objective("saliency", model="vit_tiny_patch16_224", pretrained=False)


def test_saliency_on_vit_gives_a_cam_in_the_image_frame(vit):
    from taskcomp.io import image_to_tensor, load_image

    case = CASES / "05-cam-vit" / "photo13.png"
    x = image_to_tensor(load_image(case)) if case.is_file() else torch.rand(1, 3, 96, 140)
    ctx = vit.prepare(x)  # an IndexError inside Grad-CAM before
    cam = ctx["cam"]
    assert cam.shape == (1, 1, *x.shape[-2:])
    assert torch.isfinite(cam).all() and 0 <= cam.min() and cam.max() <= 1
    assert cam.std() > 0.01  # the patch tokens got gradient: not a constant map


def test_vit_cam_agrees_with_pytorch_grad_cam_reshape_transform(vit):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from taskcomp.objectives.saliency import default_cam_layer

    model = vit.cls.model
    inp = torch.rand(1, 3, 224, 224)
    layer = default_cam_layer(model)
    assert layer is model.blocks[-1].norm1  # class-token model: the last block's output has no patch gradient
    ours, idx = grad_cam(model, inp, layer)

    def reshape(t):  # pytorch-grad-cam's ViT tutorial
        return t[:, 1:, :].reshape(t.size(0), 14, 14, t.size(2)).permute(0, 3, 1, 2)

    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        ref = cam(input_tensor=inp.requires_grad_(True), targets=[ClassifierOutputTarget(int(idx[0]))])
    assert np.corrcoef(ours[0].detach().numpy().ravel(), ref[0].ravel())[0, 1] >= 0.99


def test_gradcam_init_of_the_map_optimiser_on_a_vit(codec, vit):
    from taskcomp.optimize import MapOptimizer

    x = torch.rand(1, 3, 64, 96)
    res = MapOptimizer(codec, vit.cls, lam=1.0, steps=1, init="gradcam", downsample=8).run(x)
    assert res.qmap.shape == (1, 1, 64, 96) and torch.isfinite(res.qmap).all()


@pytest.mark.parametrize("name", ["deit_tiny_distilled_patch16_224", "mixer_s16_224", "swin_tiny_patch4_window7_224"])
def test_grad_cam_on_prefix_token_mixer_and_nhwc_models(name):
    import timm

    from taskcomp.objectives.saliency import default_cam_layer

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    if name.startswith("mixer"):  # timm initialises the mixer's head to zero: no gradient at all
        torch.nn.init.normal_(model.head.weight, std=0.02)
    cam, _ = grad_cam(model, torch.rand(1, 3, 224, 224), default_cam_layer(model))
    assert cam.shape == (1, 224, 224) and torch.isfinite(cam).all() and cam.std() > 0.01


def test_grad_cam_on_a_layer_without_a_grid_is_a_one_line_error(vit):
    model = vit.cls.model
    with pytest.raises(ValueError, match=r"Grad-CAM layer head outputs \(1, 1000\)") as e:
        grad_cam(model, torch.rand(1, 3, 224, 224), model.head)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- 06-ocr-size: output at the input's size
class _CheapText(Objective):
    """Stands in for the (slow) easyocr objective: squared error to the original, no text boxes (an objective with
    nothing of its own: no starting maps, something to keep)."""

    device = torch.device("cpu")

    def to(self, device):
        return self

    def prepare(self, x, **_):
        return {"x": x.detach(), "images": [{"boxes": []}]}

    def loss(self, x_hat, ctx):
        return ((x_hat - ctx["x"]) ** 2).flatten(1).mean(1)

    def evaluate(self, x_dec, ctx):
        return [{"mse": float(((x_dec - ctx["x"]) ** 2).mean())}]


@pytest.mark.parametrize("rate", [["--lambda", "10"], ["--target-bpp", "0.6"]])
def test_ocr_map_codes_the_input_size_and_counts_its_pixels(tmp_path, monkeypatch, capsys, rate):
    import re

    from PIL import Image

    import taskcomp.objectives as objectives
    from taskcomp.cli import main

    page = np.full((72, 176, 3), 255, np.uint8)
    page[10:18, 8:150] = page[30:38, 8:120] = page[50:58, 8:160] = 0  # three "lines of text"
    Image.fromarray(page).save(tmp_path / "doc.png")
    monkeypatch.setattr(objectives, "create_objective", lambda name, **kw: _CheapText())
    out = tmp_path / "d.tcz"
    assert (
        main(
            [
                "ocr-map",
                str(tmp_path / "doc.png"),
                "--max-side",
                "88",
                *rate,
                "--steps",
                "1",
                "--device",
                "cpu",
                "--init",
                "constant",  # the stand-in objective has no text boxes for the default box-mask start
                "-o",
                str(out),
                "--save-map",
                str(tmp_path / "m.npy"),
            ]
        )
        == 0
    )
    printed = float(re.search(r"([0-9.]+) bpp, map in", capsys.readouterr().out).group(1))
    assert printed == pytest.approx(8 * out.stat().st_size / (176 * 72), abs=1e-4)  # the input's pixels
    assert main(["decompress", str(out), "-o", str(tmp_path / "d.png"), "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "d.png").size == (176, 72)
    assert np.load(tmp_path / "m.npy").squeeze().shape == (72, 176)
    if rate[0] == "--target-bpp":
        assert printed == pytest.approx(0.6, rel=0.03)


def test_runner_records_say_the_coded_and_the_input_size(tmp_path):
    import types

    from PIL import Image

    from taskcomp.runner.tasks import TextTask, _input_size

    Image.fromarray(np.full((60, 200, 3), 255, np.uint8)).save(tmp_path / "r.png")
    item = {"id": "r", "path": tmp_path / "r.png"}
    arr = TextTask.load(types.SimpleNamespace(pre={"max_side": 100}), item)  # the recipe's working resolution
    assert arr.shape[:2] == (30, 100)
    assert _input_size(item) == {"input_width": 200, "input_height": 60}


# ---------------------------------------------------------------- the codec's forward: CompressAI's convention
def test_codec_forward_is_deterministic_in_eval_mode_and_noisy_in_training(codec):
    torch.manual_seed(0)
    x, q = torch.rand(1, 3, 64, 96), torch.full((1, 1, 64, 96), 0.5)
    assert not codec.training
    with torch.no_grad():
        a, b = codec(x, q), codec(x, q)
        r = codec(x, q, quantize="round")
        assert torch.equal(a["x_hat"], b["x_hat"]) and torch.equal(a["x_hat"], r["x_hat"])
        for k in ("y", "z"):
            assert torch.equal(a["likelihoods"][k], b["likelihoods"][k])
        codec.train()
        try:
            c, d = codec(x, q), codec(x, q)  # training mode: noise ("mixed") unless told otherwise
        finally:
            codec.eval()
    assert not torch.equal(c["likelihoods"]["y"], d["likelihoods"]["y"])


# ---------------------------------------------------------------- models: a name, a module or a checkpoint
def test_classification_takes_a_module_a_name_or_a_checkpoint(tmp_path):
    import timm

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False)
    obj = create_objective("classification", model=net)
    assert obj.model is net and obj.model_name == "test_resnet" and not net.training
    x = torch.rand(1, 3, 80, 100)
    ref = obj.prepare(x)["ref_logits"]
    torch.save(net.state_dict(), tmp_path / "mine.pth")
    from_ckpt = create_objective("classification", model="test_resnet", checkpoint_path=tmp_path / "mine.pth")
    assert torch.allclose(from_ckpt.prepare(x)["ref_logits"], ref)
    # any classifier module, timm or not
    plain = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5)
    )
    obj = create_objective("classification", model=plain)
    ctx = obj.prepare(x, label=4)
    assert obj.loss(x, ctx).shape == (1,)
    with pytest.raises(ValueError, match="label 5 out of range 0..4"):
        obj.prepare(x, label=5)
    sal = create_objective("saliency", model=timm.create_model("test_vit", pretrained=False))
    assert sal.prepare(x)["cam"].shape == (1, 1, 80, 100)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda tmp: dict(model="test_resnet", checkpoint_path=tmp / "none.pth"), "checkpoint not found"),
        (lambda tmp: dict(model="test_vit", checkpoint_path=tmp / "resnet.pth"), "does not load into timm test_vit"),
        (lambda tmp: dict(model=torch.nn.Conv2d(3, 8, 3)), r"outputs \(1, 8, \d+, \d+\) for one image"),
        (lambda tmp: dict(model=torch.nn.Linear(4, 2)), "fails on a"),
        (lambda tmp: dict(model=3), "timm model name or an nn.Module"),
        (lambda tmp: dict(modle="lite0"), "unexpected keyword argument 'modle'"),
    ],
)
def test_wrong_classifiers_are_one_line_value_errors(tmp_path, make, match):
    import timm

    torch.save(timm.create_model("test_resnet", pretrained=False).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match=match) as e:
        create_objective("classification", **make(tmp_path))
    assert "\n" not in str(e.value)


def test_detector_and_classifier_are_not_interchangeable():
    import timm
    from ultralytics import YOLO

    from taskcomp.objectives.detection import default_detector_path

    yolo = YOLO(str(default_detector_path()))
    det = create_objective("detection", model=yolo)  # a YOLO object, as a path would be
    assert det.names == {0: "Normal", 1: "Fall"}
    with pytest.raises(ValueError, match="ultralytics model, not a classifier") as e:
        create_objective("classification", model=yolo.model)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="not an ultralytics model") as e:
        create_objective("detection", model=timm.create_model("test_resnet", pretrained=False))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="not both"):
        create_objective("detection", model=yolo, checkpoint_path=default_detector_path())


# ---------------------------------------------------------------- metric honesty
def test_ms_ssim_is_missing_below_its_size_limit_not_ssim_under_its_name(tmp_path):
    import json

    from pytorch_msssim import ms_ssim as reference

    from taskcomp.bench.codec_eval import summarize
    from taskcomp.bench.metrics import MS_SSIM_MIN_SIDE, ms_ssim

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    noisy = np.clip(small + rng.normal(0, 8, small.shape), 0, 255).astype(np.uint8)
    assert MS_SSIM_MIN_SIDE == 161 and np.isnan(ms_ssim(small, noisy))
    big = rng.integers(0, 256, (161, 170, 3), dtype=np.uint8)
    big2 = np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8)
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float()  # noqa: E731
    assert ms_ssim(big, big2) == pytest.approx(float(reference(t(big), t(big2), data_range=255.0)))
    # a mean over a mix of small and large images is missing too, JSON says null, the table says n/a
    recs = [
        {
            "image": im,
            "method": "jpeg",
            "setting": f"quality={qq}",
            "quality": qq,
            "bpp": 0.1 * qq,
            "psnr": 25 + qq,
            "ms_ssim": v,
            "enc_s": 0.1,
            "dec_s": 0.1,
        }
        for qq in (1, 2)
        for im, v in (("a", 0.9), ("b", float("nan")))
    ]
    summarize(recs, tmp_path, "sft-small", dataset="mine")
    assert json.loads((tmp_path / "jpeg.json").read_text())["results"]["ms-ssim-rgb"] == [None, None]
    assert "n/a (< 161 px)" in (tmp_path / "rd_table.md").read_text()


def test_bd_rate_agrees_with_the_bjontegaard_package():
    bjontegaard = pytest.importorskip("bjontegaard")  # the [test] extra
    from taskcomp.bench.metrics import bd_rate
    from taskcomp.bench.published import PUBLISHED_SFT_KODAK

    r = np.array(PUBLISHED_SFT_KODAK["results"]["bpp"])
    d = np.array(PUBLISHED_SFT_KODAK["results"]["psnr-rgb"])
    rng = np.random.default_rng(0)
    for _ in range(3):
        r2, d2 = r * np.exp(rng.normal(0.2, 0.1, len(r))), np.sort(d + rng.normal(0, 0.3, len(d)))
        ref = bjontegaard.bd_rate(r, d, r2, d2, method="pchip", require_matching_points=False)
        assert bd_rate(r, d, r2, d2) == pytest.approx(ref, abs=0.01)  # percent
    assert bd_rate(r, d, r * 1.5, d) == pytest.approx(50.0, abs=1e-6)


def test_cer_and_iou_come_from_libraries():
    from taskcomp.objectives.detection import box_iou
    from taskcomp.objectives.text import cer

    assert cer("kitten", "sitting") == pytest.approx(3 / 6)
    assert cer("", "") == 0.0 and cer("", "x") == 1.0 and cer("abc", "") == 1.0
    assert cer("Total 12.50", "Tota1 12.5O") == pytest.approx(2 / 11)
    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 5, 5]])
    b = torch.tensor([[5.0, 0, 15, 10], [5, 5, 5, 5], [20, 20, 30, 30]])
    iou = box_iou(a, b)
    expected = torch.tensor([[50 / 150, 0, 0], [0, 0, 0]])  # an empty box overlaps nothing, itself included
    assert iou.shape == (2, 3) and torch.allclose(iou, expected)


def test_hub_weights_fail_fast_without_a_network(monkeypatch):
    """A timm classifier whose weights are neither offline nor cached fails at once, in one line, when the hub is
    unreachable (huggingface_hub would otherwise retry for about a minute), and offline mode is restored."""
    import time

    from huggingface_hub import constants

    import taskcomp.task_models as w

    before = constants.HF_HUB_OFFLINE
    monkeypatch.setattr(w, "_hub_reachable", lambda *a, **k: False)
    t0 = time.perf_counter()
    try:
        w.create_classifier("resnet10t", pretrained=True)
    except w.ModelError as e:
        assert "hub is unreachable" in str(e) and "\n" not in str(e)
    else:
        pytest.skip("resnet10t's weights are cached on this machine")
    assert time.perf_counter() - t0 < 15
    assert constants.HF_HUB_OFFLINE == before
