"""Quality maps, training loop (with resume), BD-rate and the evaluation pipeline on tiny inputs."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from taskcomp.bench.metrics import bd_rate
from taskcomp.maps import MapError, check_map, load_map, random_training_map, save_map


def test_random_training_maps_are_valid():
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = random_training_map(64, 96, rng)
        assert m.shape == (1, 1, 64, 96)
        assert float(m.min()) >= 0 and float(m.max()) <= 1 and torch.isfinite(m).all()


def test_map_io_roundtrip(tmp_path):
    m = torch.rand(1, 1, 20, 30)
    save_map(m, tmp_path / "m.npy")
    save_map(m, tmp_path / "m.png")
    assert torch.equal(load_map(tmp_path / "m.npy"), m)
    assert (load_map(tmp_path / "m.png") - m).abs().max() < 1e-4  # 16-bit PNG
    with pytest.raises(MapError, match="NaN"):
        check_map(torch.tensor([[float("nan")]]))


def test_bd_rate():
    r, d = np.array([0.1, 0.2, 0.4, 0.8]), np.array([28.0, 30.0, 32.0, 34.0])
    assert abs(bd_rate(r, d, r, d)) < 1e-9
    assert abs(bd_rate(r, d, r * 0.9, d) + 10) < 1e-6
    assert abs(bd_rate(r, d, r * 1.25, d) - 25) < 1e-6
    with pytest.raises(ValueError):
        bd_rate(r, d, r, d + 100)


def _noise_images(folder, n: int, shape: tuple[int, int], seed: int):
    """``n`` random RGB PNGs of ``shape`` (H, W) in ``folder``; returns the folder."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_train_two_steps_then_resume(tmp_path):
    from taskcomp.train import TrainConfig, train

    imgs = _noise_images(tmp_path / "imgs", 3, (80, 90), seed=0)
    cfg = TrainConfig(
        codec="sft-small", out=str(tmp_path / "run"), crop=64, batch_size=2, steps=2, checkpoint_every=1, threads=1
    )
    train(cfg, data=str(imgs), log=lambda *a: None)
    cfg.steps = 3
    path = train(cfg, resume=True, data=str(imgs), log=lambda *a: None)
    rows = (tmp_path / "run" / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3 and rows[-1].startswith("3,")
    from taskcomp.codec import create_codec
    from taskcomp.train import plot_training

    last = plot_training(tmp_path / "run", tmp_path / "curves.png", window=2)
    assert last["steps"] == 3 and (tmp_path / "curves.png").stat().st_size > 0
    model = create_codec("sft-small", checkpoint=path)
    assert model.checkpoint_info["meta"]["steps"] == 3
    with pytest.raises(FileExistsError):
        train(cfg, data=str(imgs), log=lambda *a: None)
    # A later run can start from an exported codec's weights (fresh optimiser).
    cfg2 = TrainConfig(
        codec="sft-small", out=str(tmp_path / "run2"), crop=64, batch_size=2, steps=0, threads=1, init_from=str(path)
    )
    path2 = train(cfg2, data=str(imgs), log=lambda *a: None)
    sd1, sd2 = create_codec(checkpoint=path).state_dict(), create_codec(checkpoint=path2).state_dict()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1 if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length")))


def test_train_stop_after_resumes_and_logs_the_monitor(tmp_path):
    from taskcomp.train import TrainConfig, train
    from taskcomp.training.codec import _read_logs, _read_val

    imgs = _noise_images(tmp_path / "imgs", 2, (70, 70), seed=1)
    val_img = _noise_images(tmp_path / "val", 1, (64, 64), seed=2) / "0.png"
    cfg = TrainConfig(
        codec="sft-small",
        out=str(tmp_path / "run"),
        crop=64,
        batch_size=1,
        steps=2,
        threads=1,
        val_every=1,
        val_images=[str(val_img)],
        val_q=[0.0, 1.0],
        stop_after_minutes=1e-9,
    )
    train(cfg, data=str(imgs), log=lambda *a: None)
    # Stopped before its first step, with its state saved: --resume takes it to the end.
    assert (tmp_path / "run" / "last.pth").is_file()
    assert (tmp_path / "run" / "log.csv").read_text().strip().count("\n") == 0
    cfg.stop_after_minutes = None
    train(cfg, resume=True, data=str(imgs), log=lambda *a: None)
    rows = (tmp_path / "run" / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2
    val = _read_val(tmp_path / "run", _read_logs(tmp_path / "run")[1])
    assert sorted(set(val["step"])) == [0, 1, 2] and sorted(set(val["q"])) == [0.0, 1.0]
    assert np.isfinite(val[["bpp", "psnr"]].to_numpy()).all()


def test_evaluate_and_summarize_tiny(tmp_path, codec, sample_128):
    from taskcomp.bench.codec_eval import check_roundtrip, evaluate, summarize

    p = tmp_path / "tiny.png"
    Image.fromarray(sample_128).save(p)
    out = tmp_path / "ev"
    recs = evaluate(codec, "sft-small", [p], out, baselines=("jpeg",), qualities=[0.0, 0.5, 1.0], log=lambda *a: None)
    n = len(recs)
    assert n == 3 + 4 + 12
    assert (
        len(evaluate(codec, "sft-small", [p], out, baselines=("jpeg",), qualities=[0.0, 0.5, 1.0], log=lambda *a: None))
        == n
    )  # resumed: nothing recomputed, nothing lost
    rt = check_roundtrip(out, [])
    assert len(rt) == 1 and rt[0]["equal"]
    s = summarize(recs, out, "sft-small", roundtrip=rt)
    _stale_roundtrip_file_is_remade(codec, p, out, n)
    doc = json.loads((out / "sft-small.json").read_text())
    assert doc["name"] == "sft-small" and {"bpp", "psnr-rgb", "ms-ssim-rgb"} <= set(doc["results"])
    assert {"sft-small vs jpeg", "sft-small vs sft-published"} <= set(s["bd_rate_psnr_percent"])
    # Each half of the half map is coded as a uniform map of its own q would code it: the map steers fully.
    assert s["half_map"]["max_abs_db_from_uniform"] < 1.0
    assert "psnr_left_minus_right_uniform_q0" in (out / "half_map.csv").read_text().splitlines()[0]
    assert (out / "rd_psnr.png").stat().st_size > 0
    # Not Kodak: no comparison with the published Kodak table, and the files say which images they cover.
    s = summarize(recs, out, "sft-small", dataset="tiny-set")
    assert s["images"] == "tiny-set (1 images)" and "sft-small vs sft-published" not in s["bd_rate_psnr_percent"]
    assert json.loads((out / "sft-small.json").read_text())["description"].startswith("tiny-set (1 images)")


def _stale_roundtrip_file_is_remade(codec, img, out, n):
    """A round-trip file of other weights (records copied from another folder) fails the check with one clear
    error, and the next evaluate() redoes just that point, so the check passes again."""
    from taskcomp.bench.codec_eval import check_roundtrip, evaluate
    from taskcomp.bitstream import pack, unpack

    tcz = out / "roundtrip" / "tiny.tcz"
    header, y, z = unpack(tcz.read_bytes())
    tcz.write_bytes(pack(dataclasses.replace(header, weights=bytes(8)), y, z))
    with pytest.raises(ValueError, match="round-trip check: .*weights 0000000000000000"):
        check_roundtrip(out, [])
    logged = []
    recs = evaluate(codec, "sft-small", [img], out, baselines=("jpeg",), qualities=[0.0, 0.5, 1.0], log=logged.append)
    assert len(recs) == n and f"{n - 1} of {n} points" in logged[0]
    assert unpack(tcz.read_bytes())[0].weights != bytes(8)
    assert check_roundtrip(out, [])[0]["equal"]
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == n + 1  # the redone point appended; the reader keeps the later line
    assert (
        len(
            evaluate(
                codec, "sft-small", [img], out, baselines=("jpeg",), qualities=[0.0, 0.5, 1.0], log=lambda *a: None
            )
        )
        == n
    )


def test_rd_loss_is_the_documented_objective():
    from taskcomp.codec import bits_from_likelihoods, create_codec, lambda_of_q
    from taskcomp.train import rd_loss

    model = create_codec("sft-small").eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    q = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 1, 64, 64)
    with torch.no_grad():
        loss, bpp, se = rd_loss(model, x, q, "round")
        out = model(x, q, quantize="round")
    ref_bpp = bits_from_likelihoods(out["likelihoods"]).mean() / 64**2
    ref = ref_bpp + 255.0**2 * (lambda_of_q(q) * (out["x_hat"] - x) ** 2).mean()
    assert torch.allclose(bpp, ref_bpp) and torch.allclose(loss, ref)
    assert se.shape == x.shape


def test_train_speed_bench_writes_its_table(tmp_path, monkeypatch):
    from taskcomp.bench import train_speed

    monkeypatch.setattr(
        train_speed, "DEFAULT_SETTINGS", [(1, 1, 64, 1, True), (1, 1, 64, 2, False), (2, 1, 64, 1, True)]
    )
    out = tmp_path / "speed.md"
    assert train_speed.main(["--out", str(out), "--repeats", "1"]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert "mpx_per_s" in rows[0] and len(rows) == 2 + 3


def test_plot_training_joins_stages(tmp_path):
    from taskcomp.train import plot_training
    from taskcomp.training.codec import _read_logs

    header = "step,wall_s,lr,loss,bpp,mse,psnr,aux,skipped\n"
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(header + "1,1.0,1e-4,3,0.7,0.01,20,1,0\n2,2.0,1e-4,2.5,0.7,0.01,20,1,0\n")
    b.write_text(header + "1,1.5,1e-4,2,0.6,0.01,21,1,0\n")
    df, starts, _ = _read_logs([a, b])
    assert list(df["step"]) == [1, 2, 3] and df["wall_s"].iloc[-1] == 3.5 and starts == [(2, 2.0)]
    last = plot_training([a, b], tmp_path / "c.png", window=1)
    assert last["steps"] == 3 and (tmp_path / "c.png").stat().st_size > 0


def test_large_crop_batches_come_from_the_big_photos(tmp_path):
    from taskcomp.datasets import DataError, TrainingPool
    from taskcomp.train import TrainConfig
    from taskcomp.training.codec import _Prefetcher

    _noise_images(tmp_path / "imgs", 3, (70, 70), seed=3)
    big = np.full((140, 150, 3), 200, np.uint8)
    Image.fromarray(big).save(tmp_path / "imgs" / "big.png")
    pool = TrainingPool(tmp_path / "imgs", 64)
    assert len(pool) == 4 and len(pool.at_least(128)) == 1
    rng = np.random.default_rng(0)
    assert pool.sample(2, rng).shape == (2, 64, 64, 3)
    crops = pool.sample(3, rng, 128)
    assert crops.shape == (3, 128, 128, 3) and (crops == 200).all()  # only the one big photo qualifies
    with pytest.raises(DataError):
        pool.sample(1, rng, 160)
    cfg = TrainConfig(crop=64, batch_size=2, large_crop=128, large_batch_size=1, large_every=2)
    pf = _Prefetcher(pool, cfg, rng, pin=False, depth=1)
    try:
        shapes = [tuple(pf.next()[0].shape) for _ in range(4)]
    finally:
        pf.close()
    assert shapes == [(2, 3, 64, 64), (1, 3, 128, 128)] * 2


class _TinyNet(torch.nn.Module):
    """A conv averaged by DDP and a ``quantiles`` parameter left out of it (as the codec's aux parameters)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3)
        self.quantiles = torch.nn.Parameter(torch.ones(3))

    def forward(self, x):
        return (self.conv(x) * self.quantiles.view(1, 3, 1, 1)).square().mean()


def _tiny_grads(net, seed):
    """``net``'s gradients on the input of ``seed``, without DDP."""
    x = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(seed)).contiguous(
        memory_format=torch.channels_last
    )
    net.zero_grad()
    net(x).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def _check_worker_group(rank, world, port, results):
    """One worker of test_workers_average_and_agree: returns what each DistGroup collective gave it."""
    import copy

    from taskcomp.training.distributed import worker_group as _worker_group

    with _worker_group(rank, world, port) as w:
        torch.manual_seed(0)
        net = _TinyNet().to(memory_format=torch.channels_last)
        expected = [_tiny_grads(copy.deepcopy(net), seed) for seed in range(world)]
        ddp = w.wrap(net, ignore=["quantiles"])
        x = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(rank)).contiguous(
            memory_format=torch.channels_last
        )
        ddp(x).backward()
        ddp_ok = {
            # DDP averages the conv's gradients over the ranks' inputs and keeps channels_last ...
            "conv": torch.allclose(
                net.conv.weight.grad, (expected[0]["conv.weight"] + expected[1]["conv.weight"]) / 2, atol=1e-6
            ),
            "channels_last": net.conv.weight.grad.is_contiguous(memory_format=torch.channels_last),
            # ... and leaves the ignored parameter's gradient this rank's own
            "ignored_own": torch.allclose(net.quantiles.grad, expected[rank]["quantiles"]),
            "ignored_differs": not torch.allclose(expected[0]["quantiles"], expected[1]["quantiles"]),
        }
        conv = torch.nn.Conv2d(2, 3, 3).to(memory_format=torch.channels_last)
        lin = torch.nn.Linear(4, 2)
        for p in [*conv.parameters(), *lin.parameters()]:
            p.grad = torch.full_like(p, float(rank + 1))
        lin.bias.grad = None  # a parameter without a gradient is left alone
        w.average_grads([*conv.parameters(), *lin.parameters()])
        torch.manual_seed(rank)
        model = torch.nn.Linear(3, 3)
        w.share_weights(model)
        results[rank] = {
            "grads": [p.grad.unique().tolist() for p in [*conv.parameters(), lin.weight]],
            "channels_last": conv.weight.grad.is_contiguous(memory_format=torch.channels_last),
            "bias_grad": lin.bias.grad,
            "lead": w.from_lead([float(rank), 7.0 + rank]),
            "any": (w.any(rank == 1), w.any(False)),
            "mean": w.mean([float(rank)]),
            "gather": w.gather(rank * 10),
            "weights": model.weight.detach().clone(),
            "digests": w.digests(model),
            "ddp": ddp_ok,
        }


def test_workers_average_and_agree():
    import torch.multiprocessing as mp

    from taskcomp.training.distributed import free_port as _free_port

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_check_worker_group, args=(2, _free_port(), results), nprocs=2, join=True)
        r = dict(results)
    for rank in (0, 1):
        assert r[rank]["grads"] == [[1.5]] * 3  # mean of 1 and 2
        assert r[rank]["channels_last"] and r[rank]["bias_grad"] is None
        assert r[rank]["lead"] == [0.0, 7.0] and r[rank]["any"] == (True, False)
        assert r[rank]["mean"] == [0.5] and r[rank]["gather"] == [0, 10]
        assert r[rank]["ddp"] == {"conv": True, "channels_last": True, "ignored_own": True, "ignored_differs": True}
    assert torch.equal(r[0]["weights"], r[1]["weights"])
    assert r[0]["digests"] == r[1]["digests"] and r[0]["digests"][0] == r[0]["digests"][1]


def test_train_with_two_workers_then_resume_with_one(tmp_path):
    from taskcomp.codec import create_codec
    from taskcomp.train import TrainConfig, train

    imgs = _noise_images(tmp_path / "imgs", 3, (70, 80), seed=4)
    cfg = TrainConfig(
        codec="sft-small",
        out=str(tmp_path / "run"),
        crop=64,
        batch_size=1,
        steps=2,
        checkpoint_every=1,
        threads=1,
        workers=2,
    )
    path = train(cfg, data=str(imgs))  # two processes through torch's launcher (the torchrun path)
    st = torch.load(tmp_path / "run" / "last.pth", weights_only=False)
    assert st["step"] == 2 and len(st["rng_workers"]) == 2
    # After their DDP steps on different crops the ranks hold identical parameters.
    assert len(st["param_digests"]) == 2 and st["param_digests"][0] == st["param_digests"][1]
    assert st["rng_workers"][0][0] == st["rng"]  # worker 0's stream is the one a one-process resume reads
    assert st["rng_workers"][0][0] != st["rng_workers"][1][0]  # the workers draw different crops
    assert create_codec(checkpoint=path).checkpoint_info["meta"]["workers"] == 2
    with pytest.raises(FileExistsError):  # checked before any worker starts
        train(cfg, data=str(imgs))
    cfg.workers, cfg.steps = 1, 3
    train(cfg, resume=True, data=str(imgs), log=lambda *a: None)
    rows = (tmp_path / "run" / "log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]


def test_torchrun_trains_and_resumes_a_one_process_run(tmp_path):
    """``python -m torch.distributed.run --nproc_per_node 2 -m taskcomp train`` (what torchrun runs) continues a
    one-process run with two ranks: rank 1 gets fresh random streams, the ranks stay in step, rank 0 alone
    prints, and its first line names the device."""
    import subprocess
    import sys

    from taskcomp.cli import main

    imgs = _noise_images(tmp_path / "imgs", 3, (70, 80), seed=6)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"codec: sft-small\nout: {tmp_path / 'run'}\ncrop: 64\nbatch_size: 1\nthreads: 1\ncheckpoint_every: 1\n"
    )
    assert main(["train", "--config", str(cfg), "--data", str(imgs), "--steps", "1", "--device", "cpu"]) == 0
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "taskcomp",
            "train",
            "--config",
            str(cfg),
            "--data",
            str(imgs),
            "--steps",
            "3",
            "--resume",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("taskcomp train: device cpu") and "x 2 processes (gloo" in lines[0]
    assert sum(line.startswith("taskcomp train: device") for line in lines) == 1  # rank 1 prints nothing
    assert lines[-1].startswith("done: 3 steps")
    st = torch.load(tmp_path / "run" / "last.pth", weights_only=False)
    assert st["step"] == 3 and len(st["rng_workers"]) == 2 and st["param_digests"][0] == st["param_digests"][1]
    assert st["rng_workers"][0][0] != st["rng_workers"][1][0]
    rows = (tmp_path / "run" / "log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]


def test_train_command_errors_are_one_line(tmp_path, capfd):
    """A failing worker of ``taskcomp train --workers 2`` and a device that is not there each give one error
    line and exit status 2."""
    from taskcomp.cli import main

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("codec: sft-small\ncrop: 64\nbatch_size: 1\nsteps: 1\nthreads: 1\n")
    argv = ["train", "--config", str(cfg), "--out", str(tmp_path / "bad"), "--data", str(tmp_path / "no-such-folder")]
    assert main(argv + ["--workers", "2"]) == 2
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("taskcomp train: error: a training worker failed: image folder not found")
    if not torch.cuda.is_available():
        assert main(argv + ["--device", "cuda"]) == 2
        err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "CUDA is not available" in err[0]


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    from pathlib import Path

    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and not fields.get("State", "").startswith("Z"):
            out.append(int(status.parent.name))
    return out


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        state = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state.split()[1]


@pytest.mark.skipif(not __import__("pathlib").Path("/proc/self/status").is_file(), reason="needs /proc")
def test_killed_training_leaves_no_workers_behind(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    imgs = _noise_images(tmp_path / "imgs", 2, (70, 70), seed=5)
    code = (
        "from taskcomp.train import TrainConfig, train\n"
        f"train(TrainConfig(codec='sft-small', out={str(tmp_path / 'run')!r}, crop=64, batch_size=1, "
        f"steps=10**6, threads=1, workers=2), data={str(imgs)!r})\n"
    )
    # Started as a shell starts a background job (SIGINT ignored): torch's own parent-death signal for spawned
    # workers is SIGINT, which then does nothing.
    # the killed launcher cannot remove its temporary config folder: keep it inside this test's folder
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (tmp_path / "run" / "config.yaml").is_file():
            time.sleep(0.5)
        workers = [p for p in _children(proc.pid) if _alive(p)]
        assert len(workers) >= 2, "the training workers did not start"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.5)
        assert not any(_alive(p) for p in workers)
    finally:
        proc.kill()
        for p in workers + _children(proc.pid):
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_summary_locates_the_gap_to_the_published_curve(tmp_path):
    """A codec spending 1.5x the published bits at the published PSNRs is +50% at every q (and BD +50%)."""
    from taskcomp.bench.codec_eval import summarize
    from taskcomp.bench.published import PUBLISHED_SFT_KODAK

    pub = PUBLISHED_SFT_KODAK["results"]
    recs = [
        {
            "image": "a.png",
            "method": "sft-small",
            "setting": f"q={0.1 * i:.1f}",
            "q": round(0.1 * i, 1),
            "bpp": 1.5 * b,
            "bpp_est": 1.5 * b,
            "psnr": d,
            "ms_ssim": 0.9,
            "enc_s": 0.1,
            "dec_s": 0.1,
        }
        for i, (b, d) in enumerate(zip(pub["bpp"], pub["psnr-rgb"]))
    ]
    s = summarize(recs, tmp_path, "sft-small")
    by_q = s["bpp_over_published_at_equal_psnr_percent_by_q"]
    assert len(by_q) == 11 and all(v == pytest.approx(50.0, abs=0.1) for v in by_q.values())
    assert s["bd_rate_psnr_percent"]["sft-small vs sft-published"] == pytest.approx(50.0, abs=0.1)
    assert "Extra bits over the published SFT model" in (tmp_path / "rd_table.md").read_text()
