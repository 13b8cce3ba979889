"""A codec's lambda(q) is part of what it is (issue 35): config, checkpoint, training loss, bf16 training."""

import pytest
import torch

from taskcomp.codec import SFTConfig, create_codec, lambda_of_q, save_codec
from taskcomp.codec.checkpoint import FORMAT
from taskcomp.codec.sft import LAMBDA_MAX, LAMBDA_MIN
from taskcomp.codec.zoo import CODEC_CONFIGS
from taskcomp.training.codec import rd_loss


def test_lowrate_codec_has_its_own_lambda_range():
    low, small = CODEC_CONFIGS["sft-small-lowrate"], CODEC_CONFIGS["sft-small"]
    assert (small.lambda_min, small.lambda_max) == (LAMBDA_MIN, LAMBDA_MAX)
    assert low.lambda_of_q(0.0) == pytest.approx(1.25e-4) and low.lambda_of_q(1.0) == pytest.approx(
        small.lambda_of_q(1.0)
    )
    q = torch.linspace(0, 1, 11)
    assert torch.all(low.lambda_of_q(q)[1:] > low.lambda_of_q(q)[:-1])  # still rises with q
    assert torch.allclose(small.lambda_of_q(q), lambda_of_q(q))  # the published 1e-3 * exp(4.382 q)
    with pytest.raises(ValueError, match="lambda_min"):
        SFTConfig(lambda_min=0.1, lambda_max=0.01)


def test_lambda_range_round_trips_through_the_checkpoint(tmp_path):
    model = create_codec("sft-small-lowrate", pretrained=False)
    save_codec(model, tmp_path / "low.pth", "sft-small-lowrate")
    loaded = create_codec("sft-small-lowrate", checkpoint=tmp_path / "low.pth")
    assert loaded.config == CODEC_CONFIGS["sft-small-lowrate"]
    assert loaded.config.lambda_min == 1.25e-4
    # A checkpoint of this layout with another lambda range is another codec: refused under sft-small's name.
    with pytest.raises(ValueError, match="sft-small-lowrate codec, not sft-small"):
        create_codec("sft-small", checkpoint=tmp_path / "low.pth")


def test_checkpoints_from_before_the_lambda_fields_load_with_the_published_range(tmp_path):
    model = create_codec("sft-small", pretrained=False)
    save_codec(model, tmp_path / "new.pth", "sft-small")
    ckpt = torch.load(tmp_path / "new.pth", weights_only=False)
    assert ckpt["format"] == FORMAT
    for k in ("lambda_min", "lambda_max"):
        ckpt["config"].pop(k, None)  # as every checkpoint written before issue 35
    torch.save(ckpt, tmp_path / "old.pth")
    loaded = create_codec("sft-small", checkpoint=tmp_path / "old.pth")
    assert loaded.config == CODEC_CONFIGS["sft-small"]


def test_training_loss_uses_the_codec_lambda():
    torch.manual_seed(0)
    small = create_codec("sft-small", pretrained=False).train()
    low = create_codec("sft-small-lowrate", pretrained=False).train()
    low.load_state_dict(small.state_dict())
    x, q = torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64)
    torch.manual_seed(1)
    loss_s, bpp_s, se_s = rd_loss(small, x, q, quantize="round")
    torch.manual_seed(1)
    loss_l, bpp_l, se_l = rd_loss(low, x, q, quantize="round")
    assert torch.equal(bpp_s, bpp_l) and torch.equal(se_s, se_l)
    # At q = 0 the distortion term is weighted 8x less (1.25e-4 instead of 1e-3).
    assert (loss_s - bpp_s).item() == pytest.approx(8 * (loss_l - bpp_l).item(), rel=1e-5)


@pytest.mark.parametrize("name", ["sft-small", "sft-small-ckbd"])
def test_bf16_autocast_runs_the_transforms_in_bf16_and_the_rate_model_in_float32(name):
    torch.manual_seed(0)
    model = create_codec(name, pretrained=False).train()
    seen = {}
    for mod in ("g_a14", "h_a0", "h_s", "g_s14"):
        getattr(model, mod).register_forward_hook(lambda m, i, o, mod=mod: seen.update({mod: o.dtype}) and None)
    x, q = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, q, quantize="mixed")
    assert seen == {"g_a14": torch.bfloat16, "h_a0": torch.float32, "h_s": torch.float32, "g_s14": torch.bfloat16}
    assert out["x_hat"].dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = rd_loss(model, x, q)
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_forward_keeps_the_model_dtype_without_autocast():
    model = create_codec("sft-small", pretrained=False).double().eval()
    x, q = torch.rand(1, 3, 64, 64, dtype=torch.float64), torch.rand(1, 1, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        out = model(x, q)
    assert out["x_hat"].dtype == torch.float64 and out["likelihoods"]["y"].dtype == torch.float64


def test_checkpoints_with_the_published_range_do_not_write_it(tmp_path):
    """So that sft-small checkpoints written now still load in versions without the lambda fields."""
    model = create_codec("sft-small", pretrained=False)
    save_codec(model, tmp_path / "s.pth", "sft-small")
    assert "lambda_min" not in torch.load(tmp_path / "s.pth", weights_only=False)["config"]


def test_shipped_lowrate_codec_codes_lower_at_q0_and_its_files_name_it(sample_128):
    from taskcomp.bitstream import BitstreamError, decode, encode
    from taskcomp.io import image_to_tensor

    low, small = create_codec("sft-small-lowrate"), create_codec("sft-small")
    assert low.config.lambda_min == 1.25e-4 and low.checkpoint_info["codec"] == "sft-small-lowrate"
    x = image_to_tensor(sample_128)
    q0 = torch.zeros_like(x[:, :1])
    with torch.inference_mode():
        data_low, data_small = encode(low, x, q0), encode(small, x, q0)
        assert len(data_low) < len(data_small)  # q = 0 reaches a lower rate
        assert decode(low, data_low).shape == x.shape
        with pytest.raises(BitstreamError, match="sft-small-lowrate"):
            decode(small, data_low)  # never silently decoded by another codec, which is named
        with pytest.raises(BitstreamError, match="sft-small"):
            decode(low, data_small)
