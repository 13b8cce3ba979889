"""Task models (Grad-CAM on token models, models given as modules or checkpoints), the codec's deterministic
eval forward, and metric honesty (MS-SSIM below its size limit, CER, IoU, BD-rate against a reference)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from taskcomp.objectives import create_objective, grad_cam

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


@pytest.mark.parametrize("name", ["deit_tiny_distilled_patch16_224", "mixer_s16_224",
                                  "swin_tiny_patch4_window7_224"])
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
