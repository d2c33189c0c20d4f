"""Run the benchmark and write benchmarks/results.json and benchmarks/results.md.

``python benchmarks/run.py [rosetta bench options]``: a thin wrapper around ``rosetta bench``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from rosetta.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "--json", str(HERE / "results.json"), "--markdown", str(HERE / "results.md"),
                   *sys.argv[1:]]))
