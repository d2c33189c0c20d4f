"""The tags and the porting guide cover each other, both ways.

Every framework difference in the code is tagged ``# NOTE(framework:SLUG):`` and every deliberate
departure of the reference from the course ``# NOTE(course:SLUG):``, where SLUG is a section
``### SLUG: title`` of docs/porting.md (its groups are ``##`` headings). Every tag names an existing
section; every section has at
least one tag; no untagged ``NOTE(framework)`` is left.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("reference_numpy", "torch_impl", "tf_impl", "chainer_impl", "rosetta", "benchmarks",
           "parity_tests")
GUIDE = ROOT / "docs" / "porting.md"
TAG = re.compile(r"NOTE\((framework|course):([a-z0-9-]+)\)")
UNTAGGED = re.compile(r"NOTE\((framework|course)\)")


@functools.cache
def tags() -> list[tuple[str, str, str]]:
    """(file:line, namespace, slug) of every tag in the scanned folders."""
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == Path(__file__).name:
                continue
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                found += [(f"{path.relative_to(ROOT)}:{i}", m[1], m[2]) for m in TAG.finditer(line)]
    return found


def guide_slugs() -> list[str]:
    return re.findall(r"^### ([a-z0-9-]+): ", GUIDE.read_text(encoding="utf-8"), flags=re.M)


def test_every_tag_names_a_section() -> None:
    slugs = set(guide_slugs())
    assert slugs, "docs/porting.md has no '### slug: title' sections"
    unknown = [f"{where} NOTE({ns}:{slug})" for where, ns, slug in tags() if slug not in slugs]
    assert not unknown, f"tags naming no section of docs/porting.md: {unknown}"


def test_no_untagged_notes() -> None:
    untagged = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == Path(__file__).name:
                continue
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if UNTAGGED.search(line):
                    untagged.append(f"{path.relative_to(ROOT)}:{i}")
    assert not untagged, f"NOTE without a section slug: {untagged}"


def test_the_sections_are_unique() -> None:
    slugs = guide_slugs()
    assert len(slugs) == len(set(slugs)), sorted(s for s in slugs if slugs.count(s) > 1)


@pytest.mark.parametrize("slug", guide_slugs())
def test_section_has_a_tag(slug: str) -> None:
    assert any(s == slug for _, _, s in tags()), (
        f"no NOTE(framework:{slug}) or NOTE(course:{slug}) tag in {', '.join(SCANNED)}")


def test_the_checker_can_fail() -> None:
    """The tag pattern finds what it must: a made-up slug is not a section."""
    assert TAG.findall("# NOTE(framework:no-such-section): x") == [("framework", "no-such-section")]
    assert "no-such-section" not in guide_slugs()
