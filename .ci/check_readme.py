"""Run the README's walk-through as written and check that each command prints what it shows.

    python .ci/check_readme.py [--only SUBSTRING] [--keep-going]

Every ``$ ...`` line of the README's console blocks runs in bash from the repository root, in
order, with ``.venv/bin`` first on the PATH (what ``source .venv/bin/activate`` does) and the shared
data beside the checkout (``../shared``). The lines the README shows under a command must appear in
its output in the same order; a line ``...`` stands for any lines, a ``...`` inside a line for any
text, and durations (``7.1 s``) are not compared. Minutes of training: not part of the test suite
(parity_tests/test_readme.py checks what can be checked without running).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DURATION = re.compile(r"\d+(\.\d+)? s\b")


def steps(readme: str) -> list[tuple[str, list[str]]]:
    """(command, the output lines the README shows for it), in order."""
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:].strip(), []))
            elif out:
                out[-1][1].append(line)
    return out


def _pattern(shown: str) -> re.Pattern[str]:
    parts = [re.escape(DURATION.sub("<t>", p)) for p in shown.strip().split("...")]
    return re.compile(".*".join(parts).replace(re.escape("<t>"), r"\d+(\.\d+)? s"))


def missing_line(shown: list[str], printed: str) -> str | None:
    """The first shown line not found (in order) in ``printed``; None when all are."""
    lines = [line.rstrip() for line in printed.splitlines()]
    at = 0
    for want in shown:
        if not want.strip() or want.strip() == "..." or want.strip().startswith("... ("):
            continue
        pattern = _pattern(want)
        while at < len(lines) and not pattern.fullmatch(lines[at].strip()):
            at += 1
        if at == len(lines):
            return want
        at += 1
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run only the commands containing this text")
    parser.add_argument("--keep-going", action="store_true", help="run every command after a mismatch")
    args = parser.parse_args()
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    failed = 0
    for command, shown in steps((ROOT / "README.md").read_text()):
        if command.startswith("source ") or (args.only and args.only not in command):
            continue
        print(f"$ {command}", flush=True)
        result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True)
        printed = result.stdout + result.stderr
        miss = missing_line(shown, printed)
        if miss is None:
            print(f"  ok ({len([s for s in shown if s.strip()])} lines shown, exit {result.returncode})")
            continue
        failed += 1
        print(f"  MISMATCH: the README shows\n    {miss}\n  the command printed:", file=sys.stderr)
        print("\n".join(f"    {line}" for line in printed.splitlines()), file=sys.stderr)
        if not args.keep_going:
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
