"""The ``taskcomp`` command."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _cmd_train(a):
    from .train import TrainConfig, train

    cfg = TrainConfig.from_yaml(a.config, steps=a.steps, budget_minutes=a.budget_minutes, out=a.out)
    train(cfg, resume=a.resume, data=a.data)


def _cmd_export(a):
    from .train import export

    print(export(a.run_dir, a.output))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="taskcomp", description="Task-aware image compression with the SFT codec.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a codec from a YAML config")
    t.add_argument("--config", required=True)
    t.add_argument("--resume", action="store_true", help="continue OUT/last.pth where it stopped")
    t.add_argument("--steps", type=int)
    t.add_argument("--budget-minutes", type=float)
    t.add_argument("--out")
    t.add_argument("--data", help="training image folder (default: the config's, under the data root)")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("export-codec", help="export a training run's last state as a codec checkpoint")
    e.add_argument("run_dir")
    e.add_argument("-o", "--output")
    e.set_defaults(func=_cmd_export)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as e:
        if os.environ.get("TASKCOMP_DEBUG"):
            raise
        print(f"taskcomp {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
