"""``rosetta site``: the side-by-side reading page (four columns per concept) and the parity table."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from rosetta.commands import UsageError, formatter

EPILOG = """examples:
  rosetta site --out build/site                              # quick forward/grad parity on the spot
  rosetta parity --json parity.json && rosetta site --out build/site --parity-json parity.json
  rosetta site --out build/site --no-parity                  # code only, instant
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("site", help="write the side-by-side HTML page of the four implementations",
                       description="Cut every named region (# [rosetta:NAME]) out of the four packages, "
                       "highlight it with Pygments and lay the four implementations side by side in "
                       "one self-contained HTML page (no network needed), with the latest parity table.",
                       epilog=EPILOG, formatter_class=formatter())
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write index.html into")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--parity-json", metavar="PATH",
                       help="records written by `rosetta parity --json` (default: run a quick "
                       "forward/gradient parity subset now)")
    group.add_argument("--no-parity", action="store_true", help="leave the parity table out")
    return p


RECORD_TYPES = {"model": str, "framework": str, "dtype": str, "quantity": str, "tensor": str,
                "max_rel_err": (int, float), "tol": (int, float), "passed": bool}


def read_parity_json(path: str) -> list[dict[str, object]]:
    """``load_parity_json`` with every failure as one ValueError naming the file: unreadable,
    nested too deep, or a record whose fields have the wrong types."""
    from rosetta.site import load_parity_json

    if Path(path).is_dir():
        raise ValueError(f"parity JSON {path} is a folder, not a file")
    try:
        records = load_parity_json(path)
    except RecursionError:
        raise ValueError(f"parity JSON {path} is nested too deeply to read") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"parity JSON {path} is not UTF-8 text ({exc})") from None
    for i, record in enumerate(records):
        for key, kind in RECORD_TYPES.items():
            value = record[key]
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                expected = kind.__name__ if isinstance(kind, type) else "a number"
                raise ValueError(f"parity JSON {path}: record {i} field {key!r} is {value!r}, expected "
                                 f"{expected}")
    return records


def check_folder(out: str) -> None:
    """``--out`` must be a folder index.html can be written into (checked before any work)."""
    from rosetta.weights import check_writable

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "--out is a file, not a folder", out)
    check_writable(folder / "index.html", "--out")


def run(args: argparse.Namespace) -> int:
    from rosetta.site import RegionError, build_site, quick_parity

    check_folder(args.out)
    notes: list[str] = []
    records = None
    if args.parity_json:
        try:
            records = read_parity_json(args.parity_json)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    elif not args.no_parity:
        records, notes = quick_parity(
            progress=lambda s: print(f"  checking {s} ...", file=sys.stderr, flush=True))
        for note in notes:
            print(f"rosetta site: skipped: {note}", file=sys.stderr)
    try:
        page = build_site(args.out, records, notes=notes)
    except RegionError as exc:
        print(f"rosetta site: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {page}")
    return 0
