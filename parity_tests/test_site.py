"""The side-by-side page (rosetta/site.py, ``rosetta site``): regions, build, errors, and an
end-to-end render in headless Chromium that checks the four columns are laid out side by side."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import require_all, require_framework

from rosetta.cli import main
from rosetta.site import (
    PACKAGES,
    REGIONS,
    RegionError,
    build_site,
    collect_regions,
    extract_region,
    load_parity_json,
    quick_parity,
    scan_package,
)

RECORDS = [
    {"model": "mlp", "framework": "torch", "dtype": "float64", "quantity": "logits", "tensor": "fc3",
     "max_abs_err": 1e-16, "max_rel_err": 2e-16, "tol": 1e-12, "passed": True},
    {"model": "cnn", "framework": "tf", "dtype": "float32", "quantity": "grad", "tensor": "fc1.W",
     "max_abs_err": 1e-3, "max_rel_err": 3e-4, "tol": 1e-5, "passed": False},
]


@pytest.mark.parametrize("framework", list(PACKAGES))
def test_every_region_exists_exactly_once(framework: str) -> None:
    found = scan_package(PACKAGES[framework][0])
    counts = {name: len(found.get(name, [])) for name in REGIONS}
    assert counts == dict.fromkeys(REGIONS, 1), f"{PACKAGES[framework][0]}: region counts {counts}"
    for name in REGIONS:
        region = extract_region(framework, name)
        assert region.code.strip(), f"{framework} region {name} is empty"
        assert "[rosetta:" not in region.code and "[/rosetta:" not in region.code


def _fake_root(tmp_path: Path, torch_source: str) -> Path:
    for framework, (package, _) in PACKAGES.items():
        (tmp_path / package).mkdir()
        body = torch_source if framework == "torch" else "".join(
            f"# [rosetta:{n}]\nx = 1  # {n}\n# [/rosetta:{n}]\n" for n in REGIONS)
        (tmp_path / package / "code.py").write_text(body)
    return tmp_path


def test_missing_region_names_package_and_region(tmp_path: Path) -> None:
    source = "".join(f"# [rosetta:{n}]\nx = 1\n# [/rosetta:{n}]\n" for n in REGIONS if n != "pool")
    root = _fake_root(tmp_path, source)
    with pytest.raises(RegionError, match=r"package 'torch_impl': region 'pool' not found"):
        collect_regions(root)


def test_unclosed_region_names_the_file(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, "# [rosetta:dense]\nx = 1\n")
    with pytest.raises(RegionError, match=r"torch_impl.*code\.py.*'dense'.*never closed"):
        collect_regions(root)


def test_duplicate_region_and_missing_package(tmp_path: Path) -> None:
    (tmp_path / "torch_impl").mkdir()
    (tmp_path / "torch_impl" / "a.py").write_text("# [rosetta:conv]\n1\n# [/rosetta:conv]\n")
    (tmp_path / "torch_impl" / "b.py").write_text("# [rosetta:conv]\n2\n# [/rosetta:conv]\n")
    with pytest.raises(RegionError, match=r"'conv' appears 2 times.*a\.py.*b\.py"):
        extract_region("torch", "conv", tmp_path)
    with pytest.raises(RegionError, match=r"package 'chainer_impl': no Python files"):
        extract_region("chainer", "conv", tmp_path)


def test_page_builds(tmp_path: Path) -> None:
    page = build_site(tmp_path / "site", RECORDS)
    text = page.read_text(encoding="utf-8")
    assert text.count('class="concept"') == len(REGIONS)
    assert text.count('class="impl"') == 4 * len(REGIONS)
    assert 'class="highlight"' in text and ".highlight .k" in text  # Pygments markup and its CSS
    assert not re.search(r"(src|href)=\"(https?:)?//", text), "the page must work offline"
    assert ">Linear<" in text and ">Dense<" in text and ">Conv2D<" in text  # highlighted tokens
    assert "3.0e-04 FAIL" in text and "2.0e-16 ok" in text


def test_parity_json_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_parity_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "records"}')
    with pytest.raises(ValueError, match="not a list of parity records"):
        load_parity_json(bad)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = tmp_path / "parity.json"
    records.write_text(json.dumps(RECORDS))
    assert main(["site", "--out", str(tmp_path / "a"), "--parity-json", str(records)]) == 0
    assert (tmp_path / "a" / "index.html").is_file()
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["site", "--out", str(tmp_path / "b"), "--parity-json", str(tmp_path / "missing.json")])
    assert exc.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_quick_parity_subset() -> None:
    require_framework("torch")
    records, notes = quick_parity(["torch"], models=("mlp",), dtypes=("float64",))
    assert records and not notes
    assert {r["quantity"] for r in records} >= {"logits", "loss", "grad", "grad_input"}
    assert all(r["passed"] for r in records), [r for r in records if not r["passed"]]


# --------------------------------------------------------------------------------------------
# End to end: the page in headless Chromium.

_PROBE = """<script>
window.addEventListener('load', () => {
  const cols = [...document.querySelectorAll('#dense .impl')].map(e => {
    const r = e.getBoundingClientRect();
    return [Math.round(r.left), Math.round(r.top), Math.round(r.width), Math.round(r.height)];
  });
  document.title = 'COLUMNS' + JSON.stringify(cols);
});
</script></body>"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        message = "chromium is not installed (apt-get install chromium): the page is not rendered"
        if require_all():
            pytest.fail(f"ROSETTA_REQUIRE_ALL=1 but {message}")
        pytest.skip(message)
    return path


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--window-size=1600,1200", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_page_renders_four_columns_in_chromium(tmp_path: Path) -> None:
    binary = _chromium()
    page = build_site(tmp_path / "site", RECORDS)
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE), encoding="utf-8")
    result = _run_chromium(binary, tmp_path / "profile", "--virtual-time-budget=3000", "--dump-dom",
                           probe.as_uri())
    match = re.search(r"<title>COLUMNS(.*?)</title>", result.stdout)
    assert match, f"no layout probe in chromium's DOM (rc {result.returncode}): {result.stderr[-2000:]}"
    cols = json.loads(html.unescape(match.group(1)))
    assert len(cols) == 4, cols
    lefts = [c[0] for c in cols]
    assert lefts == sorted(lefts) and len(set(lefts)) == 4, f"columns not side by side: {cols}"
    assert len({c[1] for c in cols}) == 1, f"columns not on one row: {cols}"
    assert all(c[2] > 250 and c[3] > 50 for c in cols), f"a column is too small to read: {cols}"

    shot = tmp_path / "page.png"
    result = _run_chromium(binary, tmp_path / "profile2", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), f"chromium wrote no screenshot (rc {result.returncode}): {result.stderr[-2000:]}"
    if os.environ.get("ROSETTA_SITE_SCREENSHOT"):
        shutil.copy(shot, os.environ["ROSETTA_SITE_SCREENSHOT"])
    from matplotlib.image import imread

    pixels = np.asarray(imread(shot))[..., :3]
    for left, top, width, height in cols:  # CSS px = screenshot px at device scale 1
        area = pixels[top + 30:min(top + height, pixels.shape[0]), left + 5:left + width - 5]
        assert area.size and float(np.mean(area < 0.5)) > 0.005, f"column at x={left} looks empty"
