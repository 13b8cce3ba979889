"""Subcommands that code images with a fixed map: compress, decompress, eval-codec (the rate-distortion benchmark)
and demo."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch

from ..bench.codec_eval import CRFS, QUALITIES, STANDARD_METHODS, check_roundtrip, evaluate, summarize
from ..bench.metrics import bpp_of_bytes, psnr
from ..bitstream import BitstreamError, decode, decoded_array, encode, unpack
from ..codec import create_codec, list_codecs, shipped_checkpoint
from ..codec.standard import (
    MissingExtraError,
    StandardCodecError,
    base_crf,
    decode_standard,
    encode_standard,
    format_of_path,
    require_pyav,
)
from ..datasets import kodak_paths
from ..demo import TASK_FILES, demo_task
from ..io import atomic_write, image_to_tensor, load_image, save_image, tensor_to_image
from ..maps import check_map, half_map, load_map, uniform_map
from ..outputs import BatchFailures, OutputPlan, check_suffix
from ..runner.run import spread
from .common import (
    IMAGE_ERRORS,
    apply_threads,
    check_format_suffix,
    device,
    format_args,
    format_suffix,
    image_args,
    load_codec,
    outputs,
)

__all__ = ["cmd_compress", "cmd_decompress", "cmd_eval_codec", "cmd_demo"]


def cmd_compress(a):
    """``taskcomp compress``: each image coded under a uniform ``--quality`` or the ``--qmap`` file, one .tcz each
    (``--format hevc`` / ``h264``: one raw HEVC / H.264 stream each, the map steering the QP of each 16x16 block at
    ``--crf``, :func:`taskcomp.codec.standard.encode_standard`)."""
    if a.quality is not None and not 0.0 <= a.quality <= 1.0:
        raise ValueError(f"--quality must lie in [0, 1], got {a.quality}")
    fmt, crf, chroma = format_args(a)
    if fmt != "tcz" and (a.codec or a.checkpoint):
        raise ValueError(f"--codec and --checkpoint choose the .tcz codec; --format {fmt} codes with FFmpeg's encoder")
    one = len(a.image) == 1 and not os.path.isdir(a.image[0])
    images = [Path(a.image[0])] if one else image_args(a.image)  # one file: load_image says what is wrong
    out = Path(a.output)
    if one and not out.is_dir() and out.suffix:
        dests = [out]
    else:  # -o FOLDER (an existing folder, or a name without suffix): FOLDER/STEM.tcz per image
        dests = [p[0] for p in outputs(images, a.output, None, suffix=format_suffix(fmt))]
    plan = OutputPlan()
    for p in images:
        plan.add_input(p, f"the input image {p}")
    plan.add_input(a.qmap, f"the --qmap file {a.qmap}")
    if a.checkpoint and os.path.isfile(a.checkpoint):
        plan.add_input(a.checkpoint, f"the --checkpoint file {a.checkpoint}")
    for d in dests:
        plan.add_output(d, "-o")
    plan.check()  # an output on an input is said first, then a name that contradicts the content
    if dests == [out]:
        check_format_suffix(out, fmt, "-o")
    given = None if a.qmap is None else load_map(a.qmap)
    if fmt == "tcz":
        dev = device(a)
        codec = load_codec(a, dev)
    else:
        apply_threads(a)
    failures = BatchFailures(len(images), single=one)
    for src, dst in zip(images, dests):
        try:
            img = load_image(src)
            H, W = img.shape[:2]
            qmap = uniform_map(H, W, a.quality) if given is None else check_map(given, size=(H, W))
            if fmt == "tcz":
                with torch.inference_mode():
                    data = encode(codec, image_to_tensor(img).to(dev), qmap.to(dev))
                how = ""
            elif given is None:  # a uniform level is plain CRF: crf - 18.97 (q - 0.5)
                data, info = encode_standard(img, None, crf=base_crf(crf, a.quality), fmt=fmt, chroma=chroma)
            else:
                data, info = encode_standard(img, qmap, crf=crf, fmt=fmt, chroma=chroma)
            if fmt != "tcz":
                how = f", {fmt} crf {info['crf']:.2f}, chroma {_chroma_name(info['chroma'])}"
            atomic_write(dst, data)
        except IMAGE_ERRORS as e:
            failures.note(src, e)
            continue
        print(f"{dst}: {len(data)} bytes, {8 * len(data) / (H * W):.4f} bpp ({W}x{H}){how}")
    failures.raise_if_any()


def _chroma_name(chroma: str) -> str:
    """``"420"`` -> ``"4:2:0"``."""
    return ":".join(chroma)


def cmd_decompress(a):
    """``taskcomp decompress``: each .tcz decoded to an image, with the codec its header names when shipped; an
    HEVC / H.264 stream (named by its suffix, :func:`taskcomp.codec.standard.format_of_path`) with FFmpeg's
    decoder."""
    srcs = [Path(p) for p in a.input]
    for src in srcs:
        if not src.is_file():
            raise FileNotFoundError(f"no such file: {src}")
    out = Path(a.output)
    if len(srcs) > 1 and out.suffix and not out.is_dir():
        raise ValueError("with several inputs, -o must be a folder (a path without a suffix)")
    dests = [out / f"{src.stem}.png" if len(srcs) > 1 or out.is_dir() or not out.suffix else out for src in srcs]
    plan = OutputPlan()
    for src in srcs:
        plan.add_input(src, f"the input {src}")
    if a.checkpoint and os.path.isfile(a.checkpoint):
        plan.add_input(a.checkpoint, f"the --checkpoint file {a.checkpoint}")
    for d in dests:
        plan.add_output(d, "-o")
    plan.check()
    if dests[0] == out:
        check_suffix(out, "image", "-o")
    if any(format_of_path(src) for src in srcs):
        require_pyav()  # a missing extra is said before any work
    # HEVC / H.264 streams alone need no device: FFmpeg decodes them on the CPU
    dev = device(a) if not all(format_of_path(src) for src in srcs) else apply_threads(a)
    codecs: dict = {}

    def codec_for(data: bytes):
        # Without --codec/--checkpoint, the codec the file names in its header, when its weights ship with the
        # package (a file made with --codec sft-small-doc decodes without repeating it); else the default.
        name = a.codec
        if name is None and a.checkpoint is None:
            named = unpack(data)[0].codec
            name = named if named in list_codecs() and shipped_checkpoint(named) else None
        if name not in codecs:
            codecs[name] = create_codec(name, checkpoint=a.checkpoint, device=dev)
        return codecs[name]

    failures = BatchFailures(len(srcs), what="file", single=len(srcs) == 1)
    for src, dst in zip(srcs, dests):
        try:
            fmt = format_of_path(src)
            if fmt is not None:  # an HEVC / H.264 stream
                try:
                    arr = decode_standard(src.read_bytes(), fmt)
                except StandardCodecError as e:
                    raise StandardCodecError(f"{src}: {e}") from None
                save_image(arr, dst)
                print(f"{dst}: {arr.shape[1]}x{arr.shape[0]}")
                continue
            try:
                data = src.read_bytes()
                codec = codec_for(data)  # made outside inference mode: its buffers must stay ordinary tensors
                with torch.inference_mode():
                    x_hat = decode(codec, data, synthesis=a.synthesis)
            except BitstreamError as e:
                raise BitstreamError(f"{src}: {e}") from None
            save_image(decoded_array(x_hat, data), dst)  # one channel when the source was grayscale
        except IMAGE_ERRORS as e:  # several inputs: one bad file does not stop the others
            failures.note(src, e)
            continue
        print(f"{dst}: {x_hat.shape[-1]}x{x_hat.shape[-2]}")
    failures.raise_if_any()


def cmd_eval_codec(a):
    """``taskcomp eval-codec``: the codec's rate-distortion curve (and JPEG / WebP / HEVC / H.264 intra) on Kodak or
    given images, with a round-trip check in a fresh process (:mod:`taskcomp.bench.codec_eval`)."""
    torch.set_flush_denormal(True)
    known = ["sft", "jpeg", "webp", *STANDARD_METHODS]
    methods = [m.strip() for m in (a.methods or "sft,jpeg,webp,hevc").split(",") if m.strip()]
    unknown = set(methods) - set(known)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {', '.join(known)}")
    if a.methods is None:
        try:
            require_pyav()
        except MissingExtraError:
            methods.remove("hevc")
            print('eval-codec: PyAV (the "hevc" extra) is missing: HEVC left out of the default methods')
    crfs = CRFS
    if a.crfs is not None:
        try:
            crfs = sorted({float(v) for v in a.crfs.split(",") if v.strip()})
        except ValueError:
            raise ValueError(f"--crfs takes comma-separated numbers in [0, 51], got {a.crfs!r}") from None
        if not crfs or not all(0.0 <= v <= 51.0 for v in crfs):
            raise ValueError(f"--crfs takes comma-separated numbers in [0, 51], got {a.crfs!r}")
    codec = load_codec(a, device(a))
    name = codec.checkpoint_info.get("codec", a.codec)
    if a.images:
        images = image_args(a.images)
        parents = {p.parent.resolve() for p in images}
        dataset = "/".join(parents.pop().parts[-2:]) if len(parents) == 1 else "own images"
    else:
        images, dataset = kodak_paths(a.data_root), "Kodak"
    if a.limit is not None:
        images = spread(images, a.limit)  # the same --limit as `run`: N images spread evenly over the set
    out = Path(a.out)
    baselines = tuple(m for m in ("jpeg", "webp", *STANDARD_METHODS) if m in methods)
    qualities = QUALITIES
    if a.qualities is not None:
        try:
            qualities = sorted({round(float(v), 4) for v in a.qualities.split(",") if v.strip()})
        except ValueError:
            raise ValueError(f"--qualities takes comma-separated numbers in [0, 1], got {a.qualities!r}") from None
        if not qualities or not all(0.0 <= v <= 1.0 for v in qualities):
            raise ValueError(f"--qualities takes comma-separated numbers in [0, 1], got {a.qualities!r}")
    records = evaluate(
        codec if "sft" in methods else None,
        name,
        images,
        out,
        baselines=baselines,
        qualities=qualities,
        maps=not a.no_maps,
        crfs=crfs,
    )
    if "sft" not in methods:
        print(f"{len(records)} baseline records in {out / 'records.jsonl'}")
        return
    codec_args = (["--codec", a.codec] if a.codec else []) + ["--device", a.device]
    codec_args += ["--checkpoint", a.checkpoint] if a.checkpoint else []
    rt = check_roundtrip(out, codec_args)
    meta = codec.checkpoint_info.get("meta", {})
    title = (
        f"codec {name}, weights {str(codec.checkpoint_info.get('hash'))[:16]}, "
        f"{meta.get('steps', '?')} training steps ({meta.get('train_minutes', '?')} min)"
    )
    s = summarize(records, out, name, roundtrip=rt, title=title, dataset=dataset)
    print(json.dumps(s, indent=2))


#: The demo's codec table: uniform maps q = 0..1 and a half/half map (each written as NAME.tcz and NAME.png).
_DEMO_MAPS = ("q=0.00", "q=0.25", "q=0.50", "q=0.75", "q=1.00", "left1-right0")


def _demo_stem(name: str) -> str:
    """The file stem of a demo map's files ("q=0.25" -> "q025")."""
    return name.replace("=", "").replace(".", "")


def cmd_demo(a):
    """Compress the bundled sample with the shipped codec at a few maps (real and estimated bpp), then compare
    task-aware with uniform maps at the same real bpp on the bundled demo images (:func:`taskcomp.demo.demo_task`)."""
    if a.label is not None and not a.image:
        raise ValueError("--label is the class of --image; the bundled demo images are classified label-free")
    src = Path(a.image) if a.image else Path(str(resources.files("taskcomp") / "samples" / "parrots_256.png"))
    out = Path(a.out)
    plan = OutputPlan()  # e.g. demo --image taskcomp-demo/task_aware.png would be overwritten by the demo
    plan.add_input(src, f"the --image file {src}")
    if a.checkpoint and os.path.isfile(a.checkpoint):
        plan.add_input(a.checkpoint, f"the --checkpoint file {a.checkpoint}")
    for name in _DEMO_MAPS:
        plan.add_output(out / f"{_demo_stem(name)}.tcz", "--out")
        plan.add_output(out / f"{_demo_stem(name)}.png", "--out")
    if not a.no_task:
        for name in TASK_FILES:
            plan.add_output(out / name, "--out")
    plan.check()
    img = load_image(src)
    H, W = img.shape[:2]
    dev = device(a)
    codec = load_codec(a, dev)
    info = codec.checkpoint_info
    print(f"codec {info.get('codec')} (weights {str(info.get('hash'))[:16]}), image {src.name} {W}x{H}")
    print(f"{'map':<14}{'bytes':>8}{'real bpp':>10}{'est bpp':>10}{'PSNR dB':>9}")
    x = image_to_tensor(img).to(dev)
    maps = {
        name: (half_map(H, W, 1.0, 0.0) if name == "left1-right0" else uniform_map(H, W, float(name[2:]))).to(dev)
        for name in _DEMO_MAPS
    }
    for name, qmap in maps.items():
        with torch.inference_mode():
            data, lik = encode(codec, x, qmap, return_likelihoods=True)
            dec = tensor_to_image(decode(codec, data))
        est = sum(float((-torch.log2(l)).sum()) for l in lik.values()) / (H * W)
        stem = _demo_stem(name)
        atomic_write(out / f"{stem}.tcz", data)
        save_image(dec, out / f"{stem}.png")
        print(f"{name:<14}{len(data):>8}{bpp_of_bytes(len(data), H, W):>10.4f}{est:>10.4f}{psnr(img, dec):>9.2f}")
    if not a.no_task:
        demo_task(codec, out, image=src if a.image else None, label=a.label, lam=a.lam)
    print(f"files in {out}/")
