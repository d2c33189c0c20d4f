"""docs/notebooks/from-numpy-to-frameworks.ipynb runs from top to bottom, and is stored clean.

The notebook is committed without outputs (the suite executes it, so outputs would only go stale
and bloat diffs). It runs in a kernel of this interpreter: ipykernel's "python3" spec launches
``sys.executable``, the venv's Python under ``bash .ci/setup``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import require_framework

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "notebooks" / "from-numpy-to-frameworks.ipynb"
CELL_TIMEOUT_S = 60  # a stuck cell fails the test instead of hanging the suite


def test_notebook_is_stored_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    dirty = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not dirty, f"code cells {dirty} carry outputs: clear them before committing"


def test_notebook_runs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    for framework in ("torch", "tf", "chainer"):
        require_framework(framework)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    started = time.perf_counter()
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    seconds = time.perf_counter() - started
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for name in ("torch", "keras", "chainer"):
        assert f"{name:26s} agrees: True" in text, text
    assert "torch, softmax at the end  agrees: False" in text, text
    assert text.count(" True\n") >= 3  # the three save/load round trips
    assert seconds < 60, f"the notebook took {seconds:.0f} s"
