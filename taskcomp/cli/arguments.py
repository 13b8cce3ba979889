"""What the ``taskcomp`` subcommands share on the command line: options added to several subcommands, the
defaults stated in their help (``ocr-map``'s, the demo's selection), the help formatter and the lazily imported
command handler. Imports no heavy library (torch, timm, ...), as :mod:`taskcomp.cli.parser`."""

from __future__ import annotations

import argparse
from importlib import import_module

__all__ = ["OCR_MAP_DEFAULTS", "DEMO_SELECTION_HELP"]


class _Command:
    """A subcommand's handler ``taskcomp.cli.MODULE.NAME(args)``, imported when it runs: the command modules
    import torch and the models at their top, and ``taskcomp --help`` must not (it took ~11 s on a loaded 2-core
    machine)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, a) -> None:
        getattr(import_module(f"{__package__}.{self.module}"), self.name)(a)


#: How the demo's bundled images were chosen (``demo --help``; the same as taskcomp.demo.SELECTION, kept here so
#: that building the parser imports nothing heavy).
DEMO_SELECTION_HELP = (
    "of the 24 Kodak images tried as candidates (each its centred square at 256 px; "
    "results/demo/candidates.jsonl), these 4 are every one whose class task-aware maps kept and "
    "uniform maps of the same real bpp lost; none went the other way. Over all 24 candidates: "
    "class kept by uniform maps 9/24 (38%), by task-aware maps 13/24 (54%)."
)

#: ocr-map's defaults: the measured best setting for documents (results/documents/README.md, session 32: maps made
#: at the receipt's own size, recogniser-only loss from the text-box mask, 3 steps, lambda 1, sft-small-doc: 14.3%
#: fewer bits than its uniform maps at equal CER on 21 SROIE receipts). ``max_side``: maps at the input's own size
#: up to a 2600-px long side (every receipt of the 50-receipt benchmark: the longest is 2594 px), larger inputs' maps
#: at 2600 px with a note (:func:`taskcomp.cli.mapping.ocr_working_image`), so a 12-MP phone photo does not run
#: everything at full size.
OCR_MAP_DEFAULTS = {
    "max_side": 2600,
    "init": "box-mask",
    "init_q": 0.25,
    "det_weight": 0.0,
    "rec_weight": 1.0,
    "steps": 3,
    "lambda": 1.0,
    "codec": "sft-small-doc",
}


def _add_threads_arg(p):
    """``--threads`` for a command that computes (shared by every such subcommand; applied by
    :func:`taskcomp.cli.common.apply_threads`, which :func:`~taskcomp.cli.common.device` calls)."""
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")


def _add_picture_args(p):
    p.add_argument(
        "--save-map",
        metavar="PATH",
        help="write the map: FILE.png is a picture to look at (8-bit colour, inferno colormap, with a "
        "colour bar for q on the fixed scale 0..1); FILE.npy (float32), FILE.tif or FILE.pgm "
        "(16-bit) is the exact map, which --qmap reads back; with several images a folder that "
        "gets both, STEM.png and STEM.npy (default: not written)",
    )
    p.add_argument(
        "--save-overlay",
        metavar="PATH",
        help="write the map blended over the image (as pytorch-grad-cam's show_cam_on_image), the "
        "image's size; a folder (STEM.png) for several images (default: not written)",
    )
    p.add_argument(
        "--save-decoded",
        metavar="PATH",
        help="write the decoded image of the written .tcz; a folder (STEM.png) for several images "
        "(default: not written)",
    )


def _add_iterate_args(p):
    """MapOptimizer's keep / lr_schedule, shared by the commands that optimise maps."""
    p.add_argument(
        "--keep",
        choices=["best", "last"],
        default="best",
        help="iterate kept per image: best (lowest objective seen; default) or last (the final step)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="Adam lr over the steps (default constant); cosine with --keep last makes maps "
        "(nearly) independent of batch size and thread count (results/throughput)",
    )
    p.add_argument(
        "--memory-format",
        choices=["auto", "channels_last", "contiguous"],
        default="auto",
        help="layout of the models during the steps: auto (default: channels_last on the CPU: 1.2-1.7x "
        "faster steps for classification and detection, within noise for text; results/map_speed), "
        "channels_last or contiguous",
    )
    _add_threads_arg(p)


def _add_codec_args(p):
    p.add_argument(
        "--codec",
        default=None,
        help="codec name (default: the --checkpoint's codec, else sft-small with its shipped weights)",
    )
    p.add_argument(
        "--checkpoint",
        help="codec checkpoint (taskcomp or published SFT format), path or URL "
        "(default: the shipped weights of --codec)",
    )
    _add_device_arg(p)


def _add_device_arg(p):
    p.add_argument(
        "--device",
        default="auto",
        help="auto (default: CUDA when available, cuda:LOCAL_RANK under torchrun), cpu, cuda or cuda:N; "
        "entropy coding always runs on the CPU",
    )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default as ``(default: ...)`` unless its help already states it; options whose
    default is None say in their help what happens without them."""

    def _get_help_string(self, action):
        h = action.help or ""
        if (
            "default" in h.lower()
            or action.required
            or any(action.default is v for v in (None, False, argparse.SUPPRESS))
        ):
            return h
        return super()._get_help_string(action)
