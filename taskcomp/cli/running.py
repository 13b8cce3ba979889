"""Subcommands of the recipe runner: run (a recipe's whole experiment, resumable) and report (its tables, plot and
summary, printed in words)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from ..codec import resolve_name
from ..datasets import data_root
from ..outputs import OutputError, OutputPlan
from ..runner import load_recipe, run_recipe
from ..runner.recipe import resolve_recipe
from ..runner.report import report
from .common import apply_threads

__all__ = ["cmd_run", "cmd_report", "report_command", "bits_text", "interval_text"]


def cmd_run(a):
    """``taskcomp run``: a recipe's experiment into its run folder (:func:`taskcomp.runner.run_recipe`), then the
    ``taskcomp report`` command for its tables."""
    recipe = load_recipe(a.recipe)
    if a.codec:  # another codec for the recipe's whole run (e.g. a context codec: sft-small-ckbd)
        recipe = {**recipe, "codec": resolve_name(a.codec)}
        recipe.pop("checkpoint", None)
    if a.checkpoint:
        recipe = {**recipe, "checkpoint": a.checkpoint}
    for opt, v in (("--threads", a.threads), ("--batch-size", a.batch_size), ("--limit", a.limit)):
        if v is not None and v < 1:
            raise ValueError(f"{opt} must be >= 1, got {v}")
    apply_threads(a)
    out = Path(a.out or recipe.get("out", f"runs/{recipe['name']}"))
    _check_run_outputs(a, out)
    n = run_recipe(
        recipe, out, data_root(a.data_root), limit=a.limit, shard=a.shard, batch_size=a.batch_size, device=a.device
    )
    print(f"{n} new records in {out}; tables: {report_command(out, a.data_root)}")


def report_command(out, given_root=None) -> str:
    """The ``taskcomp report`` command ``run`` prints for its folder ``out``: with ``--data-root DIR`` when the run was
    given a data root other than the default one (report reads a detection run's COCO ground truth from it, and
    without it would look under the default root). Paths are shell-quoted."""
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


def bits_text(v) -> str:
    """A bpp saving against uniform at equal metric (signed %: positive = fewer bits) in words: ``X% fewer bits`` or,
    for a negative saving, ``X% more bits``."""
    return "n/a" if v is None else f"{v:.1f}% fewer bits" if v >= 0 else f"{-v:.1f}% more bits"


def interval_text(iv, fmt: str, negate: bool = False) -> str:
    """`` [95% CI LOW to HIGH over N images]`` of a :func:`taskcomp.runner.report.bootstrap_interval` dict ('' for None), in
    the convention of the words beside it: ``negate`` for a saving worded as ``X% more bits``, whose interval is then
    that of the extra bits (the saving's bounds negated, in ascending order)."""
    if not iv:
        return ""
    lo, hi = (-iv["high"], -iv["low"]) if negate else (iv["low"], iv["high"])
    return f" [95% CI {lo:{fmt}} to {hi:{fmt}} over {iv['n_images']} images]"


def cmd_report(a):
    """``taskcomp report``: a run's tables, plot and summary (:func:`taskcomp.runner.report.report`), the summary printed
    as JSON and in words (gain at equal bpp, bits saved at equal metric, with bootstrap intervals)."""
    apply_threads(a)
    _check_report_outputs(a)
    s = report(a.run_dir, a.out, max_bpp=a.max_bpp, data_root=a.data_root)
    print(json.dumps({k: v for k, v in s.items() if k not in ("comparisons", "definitions")}, indent=2))
    print(
        "Mean curve: the setting's metric and bpp averaged over the images, against the mean curve named after 'vs' "
        "(uniform maps; plain CRF for hevc_* / h264_*; gain at equal bpp, bits saved at equal metric). Per image: "
        "against each image's own curve of that method (median)."
    )

    pct = bits_text  # a bpp saving against uniform at equal metric, in words

    for name, c in s["comparisons"].items():
        gain_key = next(k for k in c if k.startswith("mean_curve_best_gain_points"))
        g, sv = c[gain_key], c["mean_curve_best_bpp_saving_percent"]

        def ci(key, fmt, negate=False):  # the headline's bootstrap 95% interval over images (bootstrap_interval)
            return interval_text(c.get(key), fmt, negate)

        print(
            f"{name}: mean curve, best setting: "
            + (
                f"{g:+.2f} points{ci('mean_curve_best_gain_points_ci95', '+.2f')} at equal bpp "
                f"({c['mean_curve_best_gain_setting']}, <= {a.max_bpp} bpp)"
                if g is not None
                else f"no setting at or below {a.max_bpp} bpp inside uniform's range"
            )
            + ", "
            + (
                f"{pct(sv)}{ci('mean_curve_best_bpp_saving_percent_ci95', '+.1f', sv < 0)} at equal "
                f"{c['metric']} "
                f"({c['mean_curve_best_bpp_saving_setting']})"
                if sv is not None
                else "no saving measurable (outside uniform's range)"
            )
        )
        per_image = c.get("per_image") or {}
        for p in c["points"]:
            pi = per_image.get(p["setting"])
            line = (
                f"    {p['setting']}: {p['bpp']:.4f} bpp; mean curve "
                + (f"{p['gain_points']:+.2f} points" if "gain_points" in p else "gain n/a")
                + f", {pct(p.get('bpp_saving_percent'))}"
            )
            if pi:
                line += (
                    f"; per image better/tied/worse/outside {pi['better']}/{pi['tied']}/{pi['worse']}/"
                    f"{pi['outside']}, beyond uniform's best {pi['beyond_uniform']}, median "
                    f"{pct(pi.get('bpp_saving_median_percent'))} over {pi['n_saving']} images"
                )
            print(line)
    for k, n in (s.get("incomplete_settings") or {}).items():
        print(f"warning: {k} has {n} of {s['n_images']} images: its means are not comparable with the others")
    if s.get("few_images_note"):
        print(s["few_images_note"])
    if s.get("records_outside_run"):
        print(f"{s['records_outside_run']} records of images outside the run's {s['n_images_planned']} were left out")
