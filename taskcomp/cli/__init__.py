"""The ``taskcomp`` command: :func:`main` parses the arguments (:mod:`taskcomp.cli.parser`) and runs the subcommand's
handler (:mod:`~taskcomp.cli.coding`: compress, decompress, demo, eval-codec; :mod:`~taskcomp.cli.mapping`: optimize,
ocr-map; :mod:`~taskcomp.cli.running`: run, report; :mod:`~taskcomp.cli.training`: train, train-predictor,
export-codec, widen-codec, plot-training). The handlers keep to arguments, files and printing; the work is the
library's (maps: :mod:`taskcomp.mapmaker`; results files: :mod:`taskcomp.batch`)."""

from __future__ import annotations

import os
import sys

from ..outputs import BatchError
from .arguments import DEMO_SELECTION_HELP, OCR_MAP_DEFAULTS, _HelpFormatter
from .parser import build_parser

__all__ = ["main", "build_parser", "OCR_MAP_DEFAULTS", "DEMO_SELECTION_HELP", "_HelpFormatter"]


def main(argv=None) -> int:
    """Run ``taskcomp ARGS`` (``argv``: the arguments, default ``sys.argv[1:]``) and return the exit status: 0 done;
    1 some inputs of a batch failed, the others done (one line per failure on stderr); 2 an error, one line on
    stderr (a missing extra such as PyAV for ``--format hevc`` too; ``TASKCOMP_DEBUG=1``: the traceback instead); 130 interrupted (Ctrl-C)."""
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
    except ImportError as e:  # only a missing extra (PyAV for --format hevc / h264) is the user's to mend
        std = sys.modules.get("taskcomp.codec.standard")  # not imported here: it would import torch at --help
        if std is None or not isinstance(e, std.MissingExtraError) or os.environ.get("TASKCOMP_DEBUG"):
            raise
        print(f"taskcomp {args.command}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError as e:  # an estimate refused before allocating, or a real shortage
        if os.environ.get("TASKCOMP_DEBUG"):
            raise
        print(f"taskcomp {args.command}: error: {e or 'out of memory'}", file=sys.stderr)
        return 2
    return 0
