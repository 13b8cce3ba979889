"""Device checks for a machine with a GPU (``scripts/gpu_check.sh`` runs this; < 5 minutes).

1. Cross-device decoding (issue 20, item 2). For a few images (the first ``--limit`` Kodak images under the
   data root, else the bundled sample) and quality levels: encode with the codec on the GPU and on the CPU,
   decode every file on both, and check that each file decodes to the same 8-bit image on both devices
   (.tcz version 2: exact coding parameters, float64 synthesis). Also reports whether GPU- and CPU-encoded
   bytes agree (not guaranteed: the analysis transform is float32), the largest float difference between the
   two decodes, what the old version-1 float path does across devices (for contrast: index mismatches
   corrupt it), and the time of each step.
2. One batched shard of the ImageNet recipe's task-aware method on the device, batch 16 and batch 1: maps
   per second of each (``batched_shard_check``).

Exit status 1 if any version-2 file decodes differently on the two devices or the batched shard misses records,
0 otherwise.

Usage: python scripts/gpu_check.py [--limit 3] [--q 0.2 1.0] [--device cuda] [--images FILE_OR_DIR ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

import torch


def _images(args) -> list[Path]:
    from taskcomp.datasets import DataError, kodak_paths, list_images

    if args.images:
        out = []
        for p in map(Path, args.images):
            out += list_images(p) if p.is_dir() else [p]
        return out[: args.limit]
    try:
        return kodak_paths()[: args.limit]
    except DataError:
        return [Path(str(resources.files("taskcomp") / "samples" / "parrots_256.png"))]


def _timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def cross_device_check(args) -> bool:
    """Encode on each device, decode on each device; True when every version-2 file decodes identically."""
    from taskcomp.bitstream import decode, encode
    from taskcomp.codec import create_codec
    from taskcomp.devices import describe_device, resolve_device
    from taskcomp.io import image_to_tensor, load_image, tensor_to_image

    gpu = resolve_device(args.device)  # "cpu" for a dry run: both sides on the CPU
    cpu = torch.device("cpu")
    codecs = {"gpu": create_codec(args.codec, device=gpu), "cpu": create_codec(args.codec, device=cpu)}
    devs = {"gpu": gpu, "cpu": cpu}
    print(f"cross-device decoding: {args.codec} on {describe_device(gpu)} and {describe_device(cpu)}")
    print(
        f"{'image':<16}{'q':>5}{'ver':>4}  {'enc on':<7}{'bytes':>8}  {'same bytes':<11}"
        f"{'8-bit values differing (gpu vs cpu decode)':<44}{'max float diff':>15}  times (s)"
    )
    ok = True
    for path in _images(args):
        img = load_image(path)
        x = image_to_tensor(img)
        for q in args.q:
            for version in (2, 1):
                files, times = {}, []
                for where, codec in codecs.items():
                    xd = x.to(devs[where])
                    with torch.inference_mode():
                        files[where], t = _timed(
                            lambda: encode(codec, xd, torch.full_like(xd[:, :1], q), version=version)
                        )
                    times.append(f"enc-{where} {t:.2f}")
                for enc_on, data in files.items():
                    dec = {}
                    for where, codec in codecs.items():
                        try:
                            with torch.inference_mode():
                                out, t = _timed(lambda: decode(codec, data))
                            dec[where] = out.cpu()
                            times.append(f"dec-{where} {t:.2f}")
                        except Exception as e:  # a version-1 file may fail to decode on the other device
                            dec[where] = None
                            times.append(f"dec-{where} failed ({type(e).__name__})")
                    if dec["gpu"] is None or dec["cpu"] is None:
                        n_diff, fdiff = "decode failed", float("nan")
                        same = False
                    else:
                        a, b = tensor_to_image(dec["gpu"]), tensor_to_image(dec["cpu"])
                        n_diff = int((a != b).sum())
                        fdiff = float((dec["gpu"] - dec["cpu"]).abs().max())
                        same = n_diff == 0
                    if version == 2 and not same:
                        ok = False
                    print(
                        f"{path.name[:15]:<16}{q:>5.2f}{version:>4}  {enc_on:<7}{len(data):>8}  "
                        f"{str(files['gpu'] == files['cpu']):<11}{str(n_diff):<44}{fdiff:>15.3g}  " + ", ".join(times),
                        flush=True,
                    )
                    times = []
    print("cross-device decoding (version 2):", "OK, identical images" if ok else "FAILED: images differ")
    return ok


def batched_shard_check(args) -> bool:
    """One shard of the ImageNet recipe's task-aware method on the device, batched (``--shard-batch``, 16) and
    one image at a time, on ``--shard-images`` imagenet-sample images; prints maps per second of each and checks
    that every record was written. Needs the data root (``--data-root`` / $TASKCOMP_DATA); skipped without it."""
    import json
    import tempfile

    import yaml

    from taskcomp.datasets import DataError, data_root
    from taskcomp.runner import run_recipe

    if args.shard_images < 1:
        print("batched shard: skipped (--shard-images 0)")
        return True
    try:
        root = data_root(args.data_root)
    except DataError as e:
        print(f"batched shard: skipped ({e})")
        return True
    base = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "recipes" / "imagenet_classification.yaml").read_text()
    )
    ta = dict(base["methods"]["task_aware"], **{"lambda": [0.1]})
    recipe = {**base, "name": "gpu_check_shard", "methods": {"task_aware": ta}}
    ok = True
    for batch, n in ((1, max(2, args.shard_images // 4)), (args.shard_batch, args.shard_images)):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            t0 = time.perf_counter()
            n_new = run_recipe(recipe, out, root, limit=n, batch_size=batch, device=args.device, log=lambda *a: None)
            wall = time.perf_counter() - t0
            recs = [json.loads(l) for p in out.glob("records*.jsonl") for l in p.read_text().splitlines()]
            busy = sum(r["seconds"] for r in recs)
            top1 = sum(r["top1/tf_efficientnet_lite0"] for r in recs) / max(1, len(recs))
            print(
                f"batched shard on {args.device}: batch {batch}, {n_new} maps, {n_new / busy:.2f} maps/s "
                f"(busy {busy:.1f} s, wall {wall:.1f} s with model loading), mean bpp "
                f"{sum(r['bpp'] for r in recs) / max(1, len(recs)):.4f}, top-1 {top1:.3f}"
            )
            ok &= n_new == n == len(recs)
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", default="sft-small")
    ap.add_argument("--device", default="cuda", help="the GPU (cuda, cuda:N); cpu: a dry run of the script")
    ap.add_argument("--images", nargs="*", help="image files or folders (default: Kodak, else the sample)")
    ap.add_argument("--limit", type=int, default=3, help="at most this many images")
    ap.add_argument("--q", type=float, nargs="+", default=[0.2, 1.0], help="uniform quality levels")
    ap.add_argument("--data-root", help="data root for the batched recipe shard (default: $TASKCOMP_DATA)")
    ap.add_argument("--shard-images", type=int, default=32, help="images in the batched recipe shard")
    ap.add_argument("--shard-batch", type=int, default=16, help="batch size of the batched recipe shard")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available() and args.device != "cpu":
        print("no CUDA device here: nothing to check (--device cpu for a dry run)", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = False
    results = [cross_device_check(args)]
    results.append(batched_shard_check(args))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
