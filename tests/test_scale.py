"""Scale-out: devices, rank environments, the rank split and merge of a recipe run, and batched maps."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch


def test_resolve_device_and_errors(monkeypatch):
    from taskcomp.devices import DeviceError, resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "tpu:0"):
        with pytest.raises(DeviceError, match="device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_process_group_env_torchrun_slurm_single():
    from taskcomp.devices import process_group_env

    assert process_group_env({}).world == 1
    e = process_group_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
    assert (e.rank, e.world, e.local_rank, e.source) == (3, 8, 1, "torchrun")
    e = process_group_env({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "2"})
    assert (e.rank, e.world, e.source) == (3, 4, "slurm-array")
    with pytest.raises(ValueError, match="outside"):
        process_group_env({"RANK": "2", "WORLD_SIZE": "2"})
    # --array=1-15:2 (8 tasks): task 7 is the 4th; torchrun ranks inside an array task split its share.
    arr = {
        "SLURM_ARRAY_TASK_ID": "7",
        "SLURM_ARRAY_TASK_COUNT": "8",
        "SLURM_ARRAY_TASK_MIN": "1",
        "SLURM_ARRAY_TASK_STEP": "2",
    }
    assert (process_group_env(arr).rank, process_group_env(arr).world) == (3, 8)
    e = process_group_env({**arr, "RANK": "1", "WORLD_SIZE": "2"})
    assert (e.rank, e.world, e.source) == (7, 16, "slurm-array+torchrun") and e.is_torchrun
    assert process_group_env({**arr, "RANK": "1", "WORLD_SIZE": "2"}, slurm_array=False).world == 2
    with pytest.raises(ValueError, match="regular array"):
        process_group_env({**arr, "SLURM_ARRAY_TASK_ID": "4"})


def test_rank_split_covers_every_item_once_for_any_world_size():
    from taskcomp.runner.run import shard_items, spread

    items = list(range(1000))
    picked = spread(items, 20)
    assert len(set(picked)) == 20 and picked[0] == 0 and picked[-1] == 999
    for world in (1, 2, 3, 7):
        shards = [shard_items(picked, r, world) for r in range(world)]
        assert sorted(sum(shards, [])) == sorted(picked)
    with pytest.raises(ValueError, match="limit"):
        spread(items, 0)


def test_batched_maps_match_single_image_maps(codec, sample_rgb):
    """Images of different sizes sharing one padded size, optimised in one batch, give each the map and bpp it
    gets alone (float noise only); same-size images batch through collate_contexts."""
    from taskcomp.io import image_to_tensor
    from taskcomp.objectives import create_objective
    from taskcomp.optimize import MapOptimizer, collate_contexts, pad_batch

    clf = create_objective("classification")
    crops = [sample_rgb[:100, :120], sample_rgb[40:128, 30:150], sample_rgb[128:256, 128:256]]
    xs = [image_to_tensor(np.ascontiguousarray(c)) for c in crops]
    ctxs = [clf.prepare(x) for x in xs]
    opt = MapOptimizer(codec, clf, lam=0.5, steps=3, lr=0.3, init_q=0.2, downsample=8)
    alone = [opt.run(x, c) for x, c in zip(xs, ctxs)]
    xb, sizes = pad_batch(xs)
    assert xb.shape[-2:] == (128, 128) and sizes[:2] == [(100, 120), (88, 120)]
    batched = opt.run(xb, ctxs, sizes=sizes)
    for i, r in enumerate(alone):
        m = batched.map_of(i)
        assert m.shape == r.qmap.shape
        # Step 0 (same initial map): the same rate up to float noise, so each image codes as alone.
        b_alone = [l["bpp"] for l in r.log if l["step"] == 0][0]
        b_batch = [l["bpp"] for l in batched.log if l["step"] == 0 and l["image"] == i][0]
        assert abs(b_batch / b_alone - 1) < 1e-4
        # Later steps: float noise flips a few rounded latents (straight-through), which moves gradients by a
        # few percent, and Adam's first steps are nearly sign steps; maps stay close on average.
        assert (m - r.qmap).abs().mean() < 1e-2
    # Same size: a plain batch with collated contexts.
    same = opt.run(torch.cat([xs[2], xs[2]]), collate_contexts([ctxs[2], ctxs[2]]))
    assert (same.qmap[0] - alone[2].qmap[0]).abs().mean() < 1e-2
    with pytest.raises(ValueError, match="with and without"):
        collate_contexts([{"label": None}, {"label": torch.tensor([1])}])


def test_torchrun_two_ranks_equal_one_process_and_merged_report(tmp_path, data_root):
    """`torchrun --nproc_per_node 2 -m taskcomp run` writes one record file per rank; together they hold the
    same records (same .tcz sizes, same predictions) as one process, and rank 0 writes the merged report."""
    import yaml

    recipe = {
        "name": "tiny",
        "data": "imagenet-sample",
        "preprocess": {"resize": 73, "crop": 64},
        "objective": {"name": "classification"},
        "eval_models": ["tf_efficientnet_lite0"],
        "methods": {
            "uniform": {"q": [0.5]},
            "task_aware": {"lambda": [1.0], "steps": 1, "downsample": 16},
            "jpeg": {"quality": [50]},
        },
    }
    rpath = tmp_path / "tiny.yaml"
    rpath.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "TASKCOMP_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    common = ["run", str(rpath), "--limit", "3", "--threads", "1", "--device", "cpu"]
    one = subprocess.run(
        [sys.executable, "-m", "taskcomp", *common, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(29500 + os.getpid() % 1000),
            "-m",
            "taskcomp",
            *common,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "two").glob("records*.jsonl"))
    assert files == ["records.shard0of2.jsonl", "records.shard1of2.jsonl"]

    def records(d):
        out = {}
        for p in d.glob("records*.jsonl"):
            for line in p.read_text().splitlines():
                r = json.loads(line)
                out[(r["image"], r["method"], r["setting"])] = (round(r["bpp"], 9), r["top1/tf_efficientnet_lite0"])
        return out

    a, b = records(tmp_path / "one"), records(tmp_path / "two")
    assert len(a) == 9 and a == b
    assert (tmp_path / "two" / "table.csv").is_file()  # rank 0's merged report
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["n_images"] == 3


def test_optimize_several_images_writes_one_file_and_map_each(tmp_path, sample_rgb, capsys):
    """`taskcomp optimize A B FOLDER -o OUT` codes every image (batched by padded size) into OUT/STEM.tcz and its
    map into --save-map FOLDER; each file decodes at its image's size; -o naming a file is a one-line error."""
    from PIL import Image

    from taskcomp.bitstream import unpack
    from taskcomp.cli import main

    src = tmp_path / "imgs"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(np.ascontiguousarray(sample_rgb[:96, :112])).save(src / "a.png")
    Image.fromarray(np.ascontiguousarray(sample_rgb[100:200, 20:120])).save(src / "sub" / "b.png")
    Image.fromarray(np.ascontiguousarray(sample_rgb[:200, :180])).save(tmp_path / "c.png")
    out, maps = tmp_path / "out", tmp_path / "maps"
    rc = main(
        [
            "optimize",
            str(src),
            str(tmp_path / "c.png"),
            "-o",
            str(out),
            "--save-map",
            str(maps),
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert text.splitlines()[0].startswith("taskcomp optimize: device cpu")
    sizes = {"a": (112, 96), "b": (100, 100), "c": (180, 200)}
    for stem, (w, h) in sizes.items():
        header = unpack((out / f"{stem}.tcz").read_bytes())[0]
        assert (header.width, header.height) == (w, h)
        # a folder of maps gets the exact map (STEM.npy) and a picture of it with a colour bar (STEM.png)
        assert np.load(maps / f"{stem}.npy").shape == (h, w) and Image.open(maps / f"{stem}.png").mode == "RGB"
    assert "3 maps" in text and "per map" in text
    rc = main(["optimize", str(src), "-o", str(tmp_path / "x.tcz"), "--steps", "1", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "-o must be a folder" in err and len(err.strip().splitlines()) == 1
