"""The .tcz container, compress/decompress round trips, and device-/thread-independent decoding."""

import base64
import copy
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from taskcomp.bitstream import BitstreamError, Header, decode, encode, pack, unpack
from taskcomp.codec import create_codec
from taskcomp.codec.exact import SUM_BOUND, ExactHyperDecoder, exact_hyper_decoder, indexes_from_scales
from taskcomp.io import image_to_tensor, tensor_to_image


def test_pack_unpack_roundtrip():
    h = Header("sft-small", bytes(range(8)), 1000, 3)
    data = pack(h, b"y" * 300, b"zz")
    h2, y, z = unpack(data)
    assert (h2, y, z) == (h, b"y" * 300, b"zz")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"", "empty"),
        (lambda d: b"GIF89a" + d[6:], "bad magic"),
        (lambda d: d[:-10], "truncated"),
        (lambda d: d[:3], "truncated"),
        (lambda d: d[:20] + bytes([d[20] ^ 1]) + d[21:], "checksum"),
        (lambda d: d + b"\0", "checksum"),
        (lambda d: d[:4] + b"\x07" + d[5:], "version"),
    ],
)
def test_bad_containers_are_rejected(mutate, message):
    data = pack(Header("sft-small", bytes(8), 64, 64), b"y" * 50, b"z" * 10)
    with pytest.raises(BitstreamError, match=message):
        unpack(mutate(data))


@pytest.mark.parametrize("size, version", [((1, 1), 2), ((5, 9), 2), ((64, 64), 2), ((70, 130), 2), ((70, 130), 1)])
def test_roundtrip_matches_forward_reconstruction(codec, sample_rgb, size, version):
    """Version 1 (float coding path) decodes exactly to forward(quantize="round"); version 2 (exact coding
    parameters, float64 synthesis) to within one 8-bit step on a few values."""
    h, w = size
    img = np.ascontiguousarray(sample_rgb[:h, :w])
    x = image_to_tensor(img)
    q = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        data, lik = encode(codec, x, q, return_likelihoods=True, version=version)
        dec = decode(codec, data)
        fwd = codec(x, q, quantize="round")
    assert data[4] == version and unpack(data)[0].version == version
    assert dec.shape == (1, 3, h, w)
    a, b = tensor_to_image(dec).astype(int), tensor_to_image(fwd["x_hat"]).astype(int)
    if version == 1:
        assert np.array_equal(a, b)
    else:
        assert np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01
    est_bits = sum(float((-torch.log2(l)).sum()) for l in lik.values())
    assert len(data) * 8 > est_bits * 0.9  # the file can't be much smaller than its entropy


def test_file_from_other_weights_is_rejected(codec, sample_128):
    other = create_codec("sft-small", pretrained=False)
    x = image_to_tensor(sample_128)
    with torch.inference_mode():
        data = encode(other, x, torch.full((1, 1, 128, 128), 0.5))
    with pytest.raises(BitstreamError, match="made with codec"):
        decode(codec, data)


def test_file_from_retired_shipped_weights_says_where_they_are(codec, sample_128, monkeypatch):
    from taskcomp.bitstream import Header, pack, unpack
    from taskcomp.codec import zoo

    with torch.inference_mode():
        data = encode(codec, image_to_tensor(sample_128), torch.full((1, 1, 128, 128), 0.5))
    header, y, z = unpack(data)
    old_id = bytes(8)  # stands for weights the package shipped before
    monkeypatch.setitem(zoo.RETIRED_WEIGHTS, old_id.hex(), "old weights: `git show abc:w.pth`")
    with pytest.raises(BitstreamError, match="git show abc:w.pth"):
        decode(codec, pack(Header(header.codec, old_id, header.width, header.height), y, z))


def test_oversized_image_is_refused_before_coding(codec):
    x = torch.zeros(1, 3, 1, 70_000)  # wider than the container's 65536 px limit
    with pytest.raises(ValueError, match="too large"):
        encode(codec, x, torch.zeros(1, 1, 1, 70_000))


# ---------------------------------------------------------------- version 1 files
# Made by taskcomp before version 2 (commit 23c66db), shipped sft-small weights a2bd4bf504947ac7: the
# parrots sample's crop [100:148, 60:124] under a left-to-right 0..1 gradient map.
V1_FILE = base64.b64decode(
    "VENaiQEJc2Z0LXNtYWxsor1L9QSUesdAMOQBNFLNlMGSg0cEnqW9tuRRezOvptTEOgOZBSEnSqzze+kYpagE3jH/i/BZLGExlcXiF+hmTEHe"
    "4m9B/sQDeX5KLiCdAfnPNKIF1Jbf7sIpwFZPRV7RL756k4SKoPT4PPYgK3MC9lDzXi6Nj3oLwH2sMBz6fnbggBrNEaLXqqN9hZ7Fxlt8NVgX"
    "VUwK2HEJjNv1ScLFfyCuGdQz1QkjFZ3AOIX0HWRRF0XfeNmokrgwU5D8e4wlBGWBvBk/0OLnhMP8ao8RJOBcrrSCCKLotE9pjeIZdvkWuUk2"
    "hWVqCxshw2zgToKlBIHOZnM6AAAAieBo9Fc5rJo4AKxXdA+jqBBcLI5dx+bxighMu+D/W/NAgn+gu5N8DMr+qILstWZW"
)


def test_version_1_file_from_before_still_decodes_with_the_float_path(codec, sample_rgb):
    header = unpack(V1_FILE)[0]
    if header.weights != bytes.fromhex(codec.checkpoint_info["hash"][:16]):
        pytest.skip("the shipped weights changed since the version-1 fixture was made")
    assert (header.version, header.width, header.height) == (1, 64, 48)
    x = image_to_tensor(np.ascontiguousarray(sample_rgb[100:148, 60:124]))
    q = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 1, 48, 64).contiguous()
    with torch.inference_mode():
        dec = tensor_to_image(decode(codec, V1_FILE))
        fwd = tensor_to_image(codec(x, q, quantize="round")["x_hat"])
        # The same payload read as version 2 (exact coding parameters) decodes differently: the version byte
        # really selects the path.
        as_v2 = pack(Header(header.codec, header.weights, 64, 48, 2), *unpack(V1_FILE)[1:])
        dec_v2 = tensor_to_image(decode(codec, as_v2))
    assert np.array_equal(dec, fwd)
    assert not np.array_equal(dec_v2, dec)


# ---------------------------------------------------------------- exact coding parameters
@pytest.fixture(scope="module")
def z_hats(codec, sample_rgb):
    """z_hat of the 256x256 sample at q = 0.2 and 1.0, (1, 64, 4, 4) each."""
    x = image_to_tensor(sample_rgb)
    out = []
    with torch.inference_mode():
        for q in (0.2, 1.0):
            c = codec.compress(x, torch.full((1, 1, 256, 256), q))
            out.append(codec.entropy_bottleneck.decompress(c["strings"][1], c["shape"]))
    return out


def test_exact_h_s_is_close_to_the_float_h_s(codec, z_hats):
    gc = codec.gaussian_conditional
    ex = exact_hyper_decoder(codec.h_s)
    for z in z_hats:
        with torch.inference_mode():
            fl = codec.h_s(z).double()
        e = ex(z)
        assert e.dtype == torch.float64 and e.shape == fl.shape == (1, 256, 16, 16)
        err = (e - fl).abs()
        assert float(err.max()) < 1e-3 and float(err.mean()) < 2e-5
        idx_e = indexes_from_scales(e[:, :128], gc.scale_table, gc.lower_bound_scale.bound)
        idx_f = gc.build_indexes(fl[:, :128].float())
        assert (idx_e != idx_f).float().mean() < 1e-3  # a few scales sit within 1e-4 of a table threshold


def test_exact_h_s_is_bit_identical_across_threads_orders_and_algorithms(codec, z_hats):
    ex = ExactHyperDecoder(codec.h_s)
    for layer_bits in ex.weight_bits:  # the invariant the exactness rests on, per output channel
        assert int(layer_bits.min()) >= 8
    for kind, w, b, bits, _ in [op for op in ex.ops if op[0] != "act"]:
        out_dim = 1 if kind == "deconv" else 0
        wsum = w.abs().transpose(0, out_dim).reshape(w.shape[out_dim], -1).sum(1)
        assert float((wsum * ex.limit + b.abs()).max()) < SUM_BOUND

    # A permuted twin: z's channels and the first layer's outputs reordered, so both convolutions sum in
    # another order. Exact arithmetic gives the same bits; float32 does not.
    gen = torch.Generator().manual_seed(1)
    perm0, perm1 = torch.randperm(64, generator=gen), torch.randperm(128, generator=gen)
    twin = copy.deepcopy(codec.h_s)
    with torch.no_grad():
        twin[0].weight.copy_(codec.h_s[0].weight[perm0][:, perm1])
        twin[0].bias.copy_(codec.h_s[0].bias[perm1])
        twin[2].weight.copy_(codec.h_s[2].weight[perm1])
    ex_twin = ExactHyperDecoder(twin)
    extreme = torch.full((1, 64, 3, 5), 1e4)  # clamped to +-256: the worst case the bound covers
    extreme[:, ::2] = -1e4
    threads = torch.get_num_threads()
    try:
        for z in [*z_hats, extreme]:
            torch.set_num_threads(1)
            one = ex(z)
            torch.set_num_threads(2)
            two = ex(z)
            ref = ex(z, reference=True)  # int64, tap by tap
            permuted = ex_twin(z[:, perm0])
            for other in (two, ref, permuted):
                assert torch.equal(one, other)
        with torch.inference_mode():
            assert not torch.equal(codec.h_s(z_hats[1]), twin(z_hats[1][:, perm0]))
    finally:
        torch.set_num_threads(threads)


def test_exact_h_s_is_rebuilt_when_the_weights_change():
    c = create_codec("sft-small", pretrained=False)
    first = exact_hyper_decoder(c.h_s)
    assert exact_hyper_decoder(c.h_s) is first
    z = torch.randn(1, 64, 2, 2, generator=torch.Generator().manual_seed(0))
    before = first(z)
    sd = {k: v.clone() for k, v in c.state_dict().items()}
    sd["h_s.4.bias"] += 1.0
    c.load_state_dict(sd)
    second = exact_hyper_decoder(c.h_s)
    assert second is not first
    assert torch.allclose(second(z), before + 1.0, atol=1e-5)


# ---------------------------------------------------------------- decoding in other processes
_WORKER = textwrap.dedent("""
    import sys, numpy as np, torch
    torch.set_num_threads(int(sys.argv[1]))
    synthesis = sys.argv[2] if len(sys.argv) > 2 else None
    from pathlib import Path
    from taskcomp.bitstream import decode, encode
    from taskcomp.codec import create_codec
    from taskcomp.io import image_to_tensor, load_image
    codec = create_codec("sft-small")
    print("ready", torch.get_num_threads(), flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        with torch.inference_mode():
            if cmd == "enc":  # enc IMAGE OUT.tcz: the image under a left-to-right 0..1 gradient map
                x = image_to_tensor(load_image(args[0]))
                H, W = x.shape[-2:]
                q = torch.linspace(0, 1, W).view(1, 1, 1, W).expand(1, 1, H, W).contiguous()
                Path(args[1]).write_bytes(encode(codec, x, q))
            elif cmd == "dec":  # dec IN.tcz OUT.npy: the decoded float32 image
                np.save(args[1], decode(codec, Path(args[0]).read_bytes(), synthesis=synthesis).numpy())
        print("ok", flush=True)
""")


def _workers(threads: list[int], extra: list[str] = ()) -> list[subprocess.Popen]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(t), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for t in threads
    ]
    for p, t in zip(procs, threads):
        line = p.stdout.readline()
        assert line.split() == ["ready", str(t)], p.stderr.read()[-2000:]
    return procs


def _ask(procs: list[subprocess.Popen], cmds: list[str]) -> None:
    for p, c in zip(procs, cmds):  # all at once: the workers run in parallel
        p.stdin.write(c + "\n")
        p.stdin.flush()
    for p in procs:
        assert p.stdout.readline().strip() == "ok", p.stderr.read()[-2000:]


def test_encode_and_decode_with_other_thread_counts_in_other_processes(codec, sample_128, tmp_path):
    """A file encoded in another process with 1 thread decodes here with 2 threads, and a file encoded here
    with 2 threads decodes there with 1: identical images (bit for bit, also before 8-bit rounding); and the
    two files are byte-identical.

    With ``synthesis="float32"`` the two decodes differ (most float values of this crop; a few 8-bit values on
    Kodak images)."""
    from taskcomp.io import save_image

    src, a, b = tmp_path / "crop.png", tmp_path / "enc1.tcz", tmp_path / "enc2.tcz"
    save_image(sample_128, src)
    threads = torch.get_num_threads()
    (worker,) = procs = _workers([1])
    try:
        worker.stdin.write(f"enc {src} {a}\n")  # the worker encodes while this process does
        worker.stdin.flush()
        torch.set_num_threads(2)
        x = image_to_tensor(sample_128)
        q = torch.linspace(0, 1, 128).view(1, 1, 1, 128).expand(1, 1, 128, 128).contiguous()
        with torch.inference_mode():
            b.write_bytes(encode(codec, x, q))
        assert worker.stdout.readline().strip() == "ok", worker.stderr.read()[-2000:]
        _ask(procs, [f"dec {b} {tmp_path / 'enc2_dec1.npy'}"])
        with torch.inference_mode():
            x12 = decode(codec, a.read_bytes()).numpy()
    finally:
        torch.set_num_threads(threads)
        worker.stdin.close()
        worker.wait(timeout=60)
    x21 = np.load(tmp_path / "enc2_dec1.npy")
    assert x12.shape == (1, 3, 128, 128)
    assert np.array_equal(x12, x21)
    assert np.array_equal(tensor_to_image(torch.from_numpy(x12)), tensor_to_image(torch.from_numpy(x21)))
    # Not a format guarantee (the analysis transform is float32), but measured: this crop's nearest
    # rounding decision is 1.4e-4 from a tie, > 10x the encoder's thread-count noise (< 1e-5).
    assert a.read_bytes() == b.read_bytes()


def test_gpu_check_script_dry_run_on_the_cpu(sample_128, tmp_path, capsys):
    """scripts/gpu_check.py with ``--device cpu`` (both sides on the CPU): codecs made with a device argument
    encode and decode, and the script reports identical version-2 images."""
    import importlib.util
    from pathlib import Path

    from taskcomp.io import save_image

    save_image(sample_128, tmp_path / "crop.png")
    path = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (
        mod.main(["--device", "cpu", "--images", str(tmp_path / "crop.png"), "--q", "0.5", "--shard-images", "0"]) == 0
    )
    out = capsys.readouterr().out
    assert "OK, identical images" in out and out.count("crop.png") == 4  # 2 versions x 2 encoding sides
