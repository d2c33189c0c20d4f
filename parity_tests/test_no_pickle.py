"""No pickle anywhere in the project's code: weights travel as safetensors, HDF5 or plain npz.

One documented exception: rosetta/course.py reads the course's own parameter files, which are
pickles. It never imports pickle: it decodes the opcodes with pickletools (which executes
nothing) and interprets only those of a dict of NumPy arrays; parity_tests/test_course_reader.py
proves that hostile files are refused. No other module may touch pickletools.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reference_numpy", "torch_impl", "tf_impl", "chainer_impl", "rosetta", "benchmarks")
FORBIDDEN = {
    "the pickle module": re.compile(r"^\s*(import|from)\s+c?pickle\b"),
    "np.load with pickle": re.compile(r"allow_pickle\s*=\s*True"),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"),
    "pickletools outside the course-file reader": re.compile(r"^\s*(import|from)\s+pickletools\b"),
}
# what -> the files allowed to match (the documented exceptions above)
EXCEPTIONS = {"pickletools outside the course-file reader": ("rosetta/course.py",)}


def code_lines() -> list[tuple[str, str]]:
    lines = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                code = line.split("#", 1)[0]
                if code.strip():
                    lines.append((f"{path.relative_to(ROOT)}:{number}", code))
    return lines


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_no_pickle(what: str) -> None:
    allowed = EXCEPTIONS.get(what, ())
    hits = [where for where, code in code_lines()
            if FORBIDDEN[what].search(code) and where.rsplit(":", 1)[0] not in allowed]
    assert not hits, f"{what} used at: {', '.join(hits)}"


def test_the_scan_sees_code() -> None:
    assert len(code_lines()) > 1000
    assert FORBIDDEN["np.load with pickle"].search("np.load(p, allow_pickle=True)")
    assert not FORBIDDEN["torch.load without weights_only=True"].search("torch.load(p, weights_only=True)")
    assert FORBIDDEN["the pickle module"].search("import pickle")
    assert not FORBIDDEN["the pickle module"].search("import pickletools")


def test_the_course_reader_is_the_one_exception() -> None:
    """rosetta/course.py imports pickletools (and nothing of pickle itself)."""
    source = (ROOT / "rosetta" / "course.py").read_text(encoding="utf-8")
    assert re.search(r"^import pickletools$", source, flags=re.M)
    assert not any(FORBIDDEN["the pickle module"].search(line) for line in source.splitlines())
