"""Every section of docs/porting.md is referenced by at least one ``NOTE(framework)`` comment in
the four packages or rosetta/: by its slug, or by the regex mapped to it below (the notes predate
the slugs). A section without a note is listed in MISSING_NOTES with the file where one belongs;
its test is a strict xfail, so adding the note turns it into a failure that asks to drop the entry.
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

# slug -> where a NOTE(framework) belongs (none exists yet; the ports are not this file's to edit)
MISSING_NOTES: dict[str, str] = {
    "maxpool-ties": "reference_numpy/layers.py (MaxPooling: first maximum wins a tie, as torch/TF/Chainer)",
    "softmax-ce": "tf_impl/layers.py (softmax_cross_entropy: from logits; Keras: from_logits=False)",
    "sgd-lr": "torch_impl/optimizers.py (SGD: torch's lr defaults to 1e-3)",
    "eps-amplification": "rosetta/parity.py (CONDITIONED_HPARAMS: round-off amplified by lr / eps)",
    "bn-initial-var": "reference_numpy/layers.py (BatchNormalization: running_var starts at 1, course at 0)",
    "bn-4d-axes": "torch_impl/cnn.py / reference_numpy/layers.py (per channel on 4-D, course per activation)",
    "init-defaults": "torch_impl/mlp.py, tf_impl/mlp.py, chainer_impl/mlp.py (framework initializers "
                     "replaced by rosetta.weights.init_params)",
    "keras-training-flag": "tf_impl/mlp.py and tf_impl/cnn.py (forward: training= passed to every layer)",
    "course-relu-grad": "reference_numpy/layers.py (Relu: x > 0, gradient 0 at 0; course relu_grad: 1)",
    "course-relu-inplace": "reference_numpy/layers.py (Relu.backward: dout * mask, course mutates dout)",
}


def note_blocks() -> list[tuple[str, str]]:
    """(file:line, text) of every NOTE(framework): the line plus its continuation lines (comment
    lines that follow, or a docstring paragraph)."""
    blocks = []
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for i, line in enumerate(lines):
                if "NOTE(framework)" not in line:
                    continue
                text = [line.split("NOTE(framework)", 1)[1]]
                in_comment = "#" in line.split("NOTE(framework)", 1)[0]
                for nxt in lines[i + 1:i + 6]:
                    s = nxt.strip()
                    if "NOTE(framework)" in s or not s:
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
    unmapped = slugs - set(NOTE_PATTERNS) - set(MISSING_NOTES)
    assert not unmapped, f"sections with neither a note pattern nor a MISSING_NOTES entry: {sorted(unmapped)}"
    stale = (set(NOTE_PATTERNS) | set(MISSING_NOTES)) - slugs
    assert not stale, f"entries for sections the guide no longer has: {sorted(stale)}"
    assert not set(NOTE_PATTERNS) & set(MISSING_NOTES)


@pytest.mark.parametrize("slug", sorted(NOTE_PATTERNS))
def test_section_has_a_note(slug: str) -> None:
    assert covering(slug), (f"no NOTE(framework) comment matches section {slug!r} "
                            f"(pattern {NOTE_PATTERNS[slug]!r}) in {', '.join(SCANNED)}")


@pytest.mark.parametrize("slug", sorted(MISSING_NOTES))
def test_missing_note_is_still_missing(slug: str) -> None:
    """A section known to lack a note: once one is added (slug in a NOTE(framework) comment or a
    pattern in NOTE_PATTERNS), move it from MISSING_NOTES to NOTE_PATTERNS."""
    found = covering(slug)
    if not found:
        pytest.xfail(f"section {slug!r} has no NOTE(framework) yet; one belongs in {MISSING_NOTES[slug]}")
    pytest.fail(f"section {slug!r} is now covered by {found}: move it out of MISSING_NOTES")
