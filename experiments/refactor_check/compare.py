"""Compare two output folders of reference.sh file by file (issue 37: behaviour unchanged).

    python experiments/refactor_check/compare.py OUT_BEFORE OUT_AFTER

Binary files (.tcz, .png, .npy, .pth) must be byte-identical. JSON and JSON-lines files are compared after
dropping the fields that measure wall time or name the output folder (seconds, times, dates, paths); CSV and
markdown tables after dropping their timing columns; every other text file must be identical after the folder
names are replaced. Prints one line per difference and a
final count; exit 1 when anything differs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

VOLATILE = re.compile(
    r"(^|_| )(seconds|secs|time|times|date|started|finished|elapsed|wall|host|pid|created|updated|version|"
    r"per_image_s|s_per_image|minutes|duration|enc_s|dec_s|enc s|dec s|encode_s|decode_s)($|_| )"
)


def _scrub(v, roots):
    if isinstance(v, dict):
        return {k: _scrub(x, roots) for k, x in v.items() if not VOLATILE.search(str(k))}
    if isinstance(v, list):
        return [_scrub(x, roots) for x in v]
    if isinstance(v, str):
        for r in roots:
            v = v.replace(r, "<OUT>")
        return v
    return v


def _text(p: Path, roots) -> str:
    t = p.read_text(errors="replace")
    for r in roots:
        t = t.replace(r, "<OUT>")
    return t


def _table(p: Path, roots) -> str:
    """A CSV or markdown table without its timing columns (headers matching VOLATILE), as text."""
    rows = [line.split("," if p.suffix == ".csv" else "|") for line in _text(p, roots).splitlines()]
    header = next((r for r in rows if len(r) > 1), None)
    if header is None:
        return _text(p, roots)
    keep = [i for i, h in enumerate(header) if not VOLATILE.search(h.strip())]
    return "\n".join("|".join(r[i] for i in keep if i < len(r)) if len(r) == len(header) else "|".join(r) for r in rows)


def _json_lines(p: Path, roots):
    if p.suffix == ".json":
        return _scrub(json.loads(p.read_text()), roots)
    return [_scrub(json.loads(line), roots) for line in p.read_text().splitlines() if line.strip()]


def main(a: str, b: str) -> int:
    A, B = Path(a), Path(b)
    roots = sorted({str(A), str(A.resolve()), str(B), str(B.resolve())}, key=len, reverse=True)
    fa = {p.relative_to(A) for p in A.rglob("*") if p.is_file()}
    fb = {p.relative_to(B) for p in B.rglob("*") if p.is_file()}
    bad = 0
    for rel in sorted(fa ^ fb):
        print(f"only in {'before' if rel in fa else 'after'}: {rel}")
        bad += 1
    for rel in sorted(fa & fb):
        pa, pb = A / rel, B / rel
        if rel.suffix in (".json", ".jsonl"):
            same = _json_lines(pa, roots) == _json_lines(pb, roots)
        elif rel.suffix in (".csv", ".md"):
            same = _table(pa, roots) == _table(pb, roots)
        elif rel.suffix in (".yaml", ".txt", ".log"):
            same = _text(pa, roots) == _text(pb, roots)
        else:
            same = pa.read_bytes() == pb.read_bytes()
        if not same:
            print(f"differs: {rel}")
            bad += 1
    print(f"{len(fa & fb)} files compared, {bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
