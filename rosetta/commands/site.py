"""``rosetta site``: the side-by-side reading page (four columns per concept) and the parity table."""

from __future__ import annotations

import argparse
import sys

from rosetta.commands import formatter

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


def run(args: argparse.Namespace) -> int:
    from rosetta.commands import UsageError
    from rosetta.site import RegionError, build_site, load_parity_json, quick_parity

    notes: list[str] = []
    records = None
    if args.parity_json:
        try:
            records = load_parity_json(args.parity_json)
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
