"""Every section of docs/porting.md is referenced by at least one ``NOTE(framework)`` comment in
the four packages or rosetta/: by its slug, or by the regex mapped to it below (the notes predate
the slugs).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("reference_numpy", "torch_impl", "tf_impl", "chainer_impl", "rosetta")
GUIDE = ROOT / "docs" / "porting.md"

# slug -> a regex one NOTE(framework) block must match (case-insensitive)
NOTE_PATTERNS: dict[str, str] = {
    "dense-layout": r"\(out, in\)",
    "conv-layout": r"HWIO|OIHW",
    "flatten-order": r"flatten",
    "same-padding": r"\"same\"|padding",
    "keras-loss-float32": r"returns float32|losses? .*float32",
    "momentum-form": r"b <- momentum \* b \+ g",
    "adagrad": r"eps=1e-10|initial_accumulator|Keras: 0\.1",
    "rmsprop": r"rho ``alpha``|rho \"alpha\"|eps_inside_sqrt",
    "adam": r"Adam divides by|after\s+the bias correction|alpha_t is lr_t",
    "keras-float32-hparams": r"learning rate as a float32",
    "bn-momentum": (r"momentum = 1 - bn_momentum|weights the \*batch\* statistic"
                    r"|decay is the contract's momentum"),
    "bn-eps": r"eps default 2e-5|epsilon=1e-3",
    "bn-running-var": r"biased moving_variance",
    "dropout-scaling": r"mask already scaled",
    "dropout-masks": r"draws (its|the) mask",
    "label-dtypes": r"int32 labels",
    "chainer-cover-all": r"cover_all",
}

def note_blocks() -> list[tuple[str, str]]:
    """(file:line, text) of every NOTE(framework): the line plus its continuation lines (comment
    lines that follow, or a docstring paragraph)."""
    blocks = []
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for i, line in enumerate(lines):
                # ``NOTE(framework): ...`` or ``NOTE(framework:SLUG): ...``
                if "NOTE(framework" not in line:
                    continue
                text = [line.split("NOTE(framework", 1)[1]]
                in_comment = "#" in line.split("NOTE(framework", 1)[0]
                for nxt in lines[i + 1:i + 6]:
                    s = nxt.strip()
                    if "NOTE(framework" in s or not s:
                        break
                    if in_comment and not s.startswith("#"):
                        break
                    if not in_comment and s.startswith(('"""', "'''")):
                        break
                    text.append(s.lstrip("# "))
                blocks.append((f"{path.relative_to(ROOT)}:{i + 1}", " ".join(text)))
    return blocks


def guide_slugs() -> list[str]:
    return re.findall(r"^## ([a-z0-9-]+): ", GUIDE.read_text(encoding="utf-8"), flags=re.M)


def covering(slug: str) -> list[str]:
    pattern = re.compile(NOTE_PATTERNS.get(slug, re.escape(slug)), re.I)
    return [where for where, text in note_blocks() if slug in text or pattern.search(text)]


def test_every_section_is_mapped() -> None:
    slugs = set(guide_slugs())
    assert slugs, "docs/porting.md has no '## slug: title' sections"
    stale = set(NOTE_PATTERNS) - slugs
    assert not stale, f"patterns for sections the guide no longer has: {sorted(stale)}"


@pytest.mark.parametrize("slug", guide_slugs())
def test_section_has_a_note(slug: str) -> None:
    pattern = NOTE_PATTERNS.get(slug, slug)
    assert covering(slug), (f"no NOTE(framework) comment names section {slug!r} or matches "
                            f"{pattern!r} in {', '.join(SCANNED)}")
