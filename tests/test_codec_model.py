"""The SFT model: layout, published checkpoint format, quantisation modes, gradients."""

import torch

from taskcomp.codec import SFTCodec, SFTConfig, bits_from_likelihoods, create_codec, lambda_of_q
from taskcomp.codec.checkpoint import taskcomp_to_published
from taskcomp.io import image_to_tensor


def test_paper_config_matches_published_parameter_count():
    assert sum(p.numel() for p in SFTCodec(SFTConfig()).parameters()) == 27_574_979


def test_lambda_of_q():
    assert abs(lambda_of_q(0.0) - 1e-3) < 1e-12
    assert abs(lambda_of_q(1.0) - 1e-3 * 2.718281828459045**4.382) < 1e-9
    assert torch.allclose(lambda_of_q(torch.tensor([0.0, 1.0])), torch.tensor([1e-3, 0.0800]), atol=1e-4)


def test_published_format_loads_with_identical_outputs(tmp_path):
    torch.manual_seed(0)
    ref = SFTCodec(SFTConfig()).eval()
    ref.update()
    sd = taskcomp_to_published(ref.state_dict())
    assert any(k.startswith("entropy_bottleneck._matrices.") for k in sd)
    assert not any(k.startswith("entropy_bottleneck.matrices.") for k in sd)
    path = tmp_path / "published.pth.tar"
    torch.save({"itr": 123, "model": sd, "optimizer": {}, "aux_optimizer": {}}, path)

    loaded = create_codec("sft-paper", checkpoint=path)
    assert loaded.checkpoint_info["meta"]["itr"] == 123
    x, q = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        a, b = ref(x, q, quantize="round"), loaded(x, q, quantize="round")
        assert torch.equal(a["x_hat"], b["x_hat"])
        assert torch.equal(a["likelihoods"]["y"], b["likelihoods"]["y"])
        sa, sb = ref.compress(x, q), loaded.compress(x, q)
    assert sa["strings"] == sb["strings"]


def test_forward_shapes_any_size(codec):
    for h, w in [(1, 1), (17, 70), (64, 128)]:
        out = codec(torch.rand(2, 3, h, w), torch.rand(2, 1, h, w), quantize="round")
        assert out["x_hat"].shape == (2, 3, h, w)
        assert set(out["likelihoods"]) == {"y", "z"}


def _rate_dist(codec, x, q, mode):
    out = codec(x, q.expand(1, 1, *x.shape[-2:]), quantize=mode)
    bpp = bits_from_likelihoods(out["likelihoods"]).sum() / x.shape[-1] / x.shape[-2]
    mse = ((out["x_hat"] - x) ** 2).mean()
    return bpp, mse


def test_ste_gives_map_gradient_and_round_gives_none(codec, sample_128):
    x = image_to_tensor(sample_128)
    q = torch.full((1, 1, 128, 128), 0.5, requires_grad=True)
    out = codec(x, q, quantize="ste")
    bits = bits_from_likelihoods(out["likelihoods"]).sum()
    (g_rate,) = torch.autograd.grad(bits, q)
    assert g_rate.abs().sum() > 0
    # Straight-through values equal hard rounding.
    hard = codec(x, q.detach(), quantize="round")
    assert torch.allclose(out["x_hat"], hard["x_hat"], atol=1e-5)
    # CompressAI-style hard rounding: the rate reaches the map only through z's and y's scales; the
    # reconstruction gets no gradient through the rounded latents at all.
    q2 = q.detach().clone().requires_grad_(True)
    out_r = codec(x, q2, quantize="round")
    y_only = out_r["x_hat"].sum()
    (g_round,) = torch.autograd.grad(y_only, q2, allow_unused=True)
    assert g_round is None or g_round.abs().sum() == 0


def test_ste_gradient_sign_matches_finite_difference(codec, sample_128):
    """d(rate)/dq > 0 and d(mse)/dq < 0, by straight-through autograd and by real-rounding differences."""
    x = image_to_tensor(sample_128)
    for q0 in (0.3, 0.7):
        q = torch.tensor(q0, requires_grad=True)
        bpp, mse = _rate_dist(codec, x, q.view(1, 1, 1, 1), "ste")
        (g_bpp,) = torch.autograd.grad(bpp, q, retain_graph=True)
        (g_mse,) = torch.autograd.grad(mse, q)
        h = 0.1
        with torch.no_grad():
            bp, mp = _rate_dist(codec, x, torch.tensor(q0 + h).view(1, 1, 1, 1), "round")
            bm, mm = _rate_dist(codec, x, torch.tensor(q0 - h).view(1, 1, 1, 1), "round")
        fd_bpp, fd_mse = (bp - bm) / (2 * h), (mp - mm) / (2 * h)
        assert fd_bpp > 0 and g_bpp > 0, (q0, float(fd_bpp), float(g_bpp))
        assert fd_mse < 0 and g_mse < 0, (q0, float(fd_mse), float(g_mse))


def test_rate_rises_with_quality(codec, sample_128):
    x = image_to_tensor(sample_128)
    with torch.inference_mode():
        rates = [float(_rate_dist(codec, x, torch.tensor(q).view(1, 1, 1, 1), "round")[0]) for q in (0.0, 0.5, 1.0)]
    assert rates[0] < rates[1] < rates[2], rates


def test_half_storage_codes_exactly_like_the_rounded_model(tmp_path):
    from taskcomp.codec import save_codec

    torch.manual_seed(0)
    model = create_codec("sft-small", pretrained=False)
    h32 = save_codec(model, tmp_path / "f32.pth", "sft-small")
    h16 = save_codec(model, tmp_path / "f16.pth", "sft-small", half=True)  # rounds `model` in place
    assert h32 != h16
    assert (tmp_path / "f16.pth").stat().st_size < 0.6 * (tmp_path / "f32.pth").stat().st_size
    loaded = create_codec("sft-small", checkpoint=tmp_path / "f16.pth")
    assert loaded.checkpoint_info["hash"] == h16
    x, q = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        assert model.compress(x, q)["strings"] == loaded.compress(x, q)["strings"]


def test_widening_keeps_the_function_and_lets_new_channels_learn(codec, sample_128):
    import dataclasses

    import pytest

    from taskcomp.bitstream import decode, encode
    from taskcomp.codec.widen import widen_codec

    cfg = dataclasses.replace(codec.config, channels=tuple(c + 8 for c in codec.config.channels), M=codec.config.M + 16)
    wide = widen_codec(codec, cfg)
    assert wide.config == cfg and wide.g_a0.out_channels == codec.g_a0.out_channels + 8
    x = image_to_tensor(sample_128)
    for level in (0.0, 1.0):
        q = torch.full((1, 1, 128, 128), level)
        with torch.inference_mode():
            a, b = codec(x, q, quantize="round"), wide(x, q, quantize="round")
        assert (a["x_hat"] - b["x_hat"]).abs().max() < 1e-5
        # 16 new latent channels x 64 positions, each a zero under mean 0 and the smallest scale: < 0.01 bit
        assert 0 <= float(bits_from_likelihoods(b["likelihoods"]) - bits_from_likelihoods(a["likelihoods"])) < 0.01
        da, db = encode(codec, x, q), encode(wide, x, q)
        assert abs(len(db) - len(da)) <= 4
        assert (decode(codec, da) - decode(wide, db)).abs().max() < 1e-5  # float summation order only

    # The new channels' producers get a gradient (their readers' weights are random), so training grows them.
    wide.train()
    out = wide(x, torch.full((1, 1, 128, 128), 0.8), quantize="mixed")
    ((out["x_hat"] - x) ** 2).mean().backward()
    assert wide.g_a0.weight.grad[codec.g_a0.out_channels :].abs().sum() > 0
    assert wide.g_a12.weight.grad[codec.config.M :].abs().sum() > 0

    with pytest.raises(ValueError, match="shrink"):
        widen_codec(codec, dataclasses.replace(codec.config, M=codec.config.M - 1))
    with pytest.raises(ValueError, match="Z"):
        widen_codec(codec, dataclasses.replace(codec.config, Z=codec.config.Z + 8))


def test_new_channel_masks_and_boosted_step(codec, sample_128):
    import dataclasses

    from taskcomp.codec.widen import new_channel_masks, widen_codec
    from taskcomp.train import NewChannelBoost, optimizer_step, rd_loss, split_params

    cfg = dataclasses.replace(codec.config, channels=tuple(c + 8 for c in codec.config.channels), M=codec.config.M + 16)
    wide = widen_codec(codec, cfg)
    masks = new_channel_masks(wide, codec.config)
    old = dict(codec.named_parameters())
    for key, p in wide.named_parameters():
        kept = p.detach()[~masks[key]] if key in masks else p.detach().flatten()
        # The elements not marked new are exactly the old parameter's (h_s.4's old means moved, so compare sums).
        assert kept.numel() == old[key].numel() and torch.allclose(kept.sum(), old[key].detach().sum(), atol=1e-4)
    assert "g_a12.weight" in masks and "h_s.4.bias" in masks and "entropy_bottleneck.quantiles" not in masks

    # One Adam step with the new elements' update x4 moves them 4x as far as the same step without, and the rest
    # exactly as far.
    x, q = image_to_tensor(sample_128), torch.full((1, 1, 128, 128), 0.7)
    steps = []
    for scale in (1.0, 4.0):
        model = widen_codec(codec, cfg).train()
        main, aux = split_params(model)
        opt, aux_opt = torch.optim.Adam(main, lr=1e-3), torch.optim.Adam(aux, lr=1e-3)
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        torch.manual_seed(0)
        loss = rd_loss(model, x, q, "mixed")[0]
        optimizer_step(model, loss, opt, aux_opt, main, 1.0, boost=NewChannelBoost(model, codec.config, scale))
        steps.append({k: v.detach() - before[k] for k, v in model.named_parameters()})
    for key, mask in masks.items():
        a, b = steps[0][key], steps[1][key]
        assert torch.allclose(b[~mask], a[~mask], atol=1e-7)
        assert torch.allclose(b[mask], 4 * a[mask], atol=1e-6)
    assert steps[0]["g_a12.weight"][masks["g_a12.weight"]].abs().sum() > 0  # the new elements did move
