"""The side-by-side page (rosetta/site.py, ``rosetta site``): regions, row alignment, links, build,
errors, and an end-to-end render in headless Chromium at 1600 and 1024 px that checks the layout
probe embedded in the page (four columns side by side, aligned rows, no wrapped code line), and at
a phone's 390 px (the columns stacked, titles on screen, no wrapped line, no sideways page scroll)."""

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
    REPO_ROOT,
    ROUTE_NOTES,
    Region,
    RegionError,
    align_rows,
    build_site,
    collect_regions,
    extract_region,
    github_anchor,
    load_parity_json,
    porting_anchors,
    quick_parity,
    scan_package,
    split_steps,
)

# The course's building blocks: each must be a section of the page (a block dropped from REGIONS
# fails here; test_every_region_exists_exactly_once then checks every package marks it).
COURSE_BLOCKS = {
    "activations", "dense", "loss", "conv", "im2col", "pool", "batchnorm", "dropout",
    "opt-sgd", "opt-momentum", "opt-adagrad", "opt-rmsprop", "opt-adam", "init", "gradcheck",
    "train-step", "weight-loading", "mlp", "cnn", "deepcnn",
}

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


def test_every_course_block_has_a_section(tmp_path: Path) -> None:
    assert COURSE_BLOCKS <= set(REGIONS), f"sections missing: {sorted(COURSE_BLOCKS - set(REGIONS))}"
    text = build_site(tmp_path / "site", None).read_text(encoding="utf-8")
    for name in COURSE_BLOCKS:
        assert f'<section class="concept" id="{name}">' in text, name


def test_numpy_column_shows_the_course_route() -> None:
    im2col = extract_region("numpy", "im2col").code
    assert "def im2col(" in im2col and "def col2im(" in im2col and "_fast" not in im2col
    pool = extract_region("numpy", "pool").code
    assert "_forward_course" in pool and "im2col(" in pool and "np.argmax" in pool
    assert "def _forward_fast" not in pool and "def _backward_fast" not in pool
    assert "def numerical_gradient(" in extract_region("numpy", "gradcheck").code
    assert "(2 * h)" in extract_region("numpy", "gradcheck").code  # the central difference
    assert {"conv", "im2col", "pool"} <= set(ROUTE_NOTES)
    assert all('route="fast"' in note and "default" in note for note in ROUTE_NOTES.values())


def test_weight_loading_is_the_public_load() -> None:
    for framework in PACKAGES:
        code = extract_region(framework, "weight-loading").code
        assert code.startswith("def load_native("), (framework, code[:80])
        assert "assert " not in code, f"{framework}: the weight-loading section shows internal asserts"


def _region(framework: str, code: str) -> Region:
    return Region(framework, PACKAGES[framework][0], "demo", Path(f"{framework}.py"), 1, code)


def test_rows_align_by_step() -> None:
    codes = {
        "numpy": 'def f(x):\n    # [step:forward]\n    y = g(x)\n    # [step:update]\n    h(y)\n    return y',
        "torch": 'def f(x):\n    z = 0\n    # [step:forward]\n    y = g(x)\n    y = y + 1\n'
                 '    # [step:backward]\n    y.backward()\n    # [step:update]\n    h(y)\n    return y',
        "tf": 'def f(x):\n    x = a["conv1"] = c(x)\n    # why bn\n    if bn:\n        x = a["bn1"] = b(x)\n'
              '    x = a["relu1"] = r(x)',
        "chainer": 'def f(x):\n    x = a["conv1"] = c(x)\n    x = contiguous(x)\n    x = a["relu1"] = r(x)',
    }
    rows = align_rows("demo", {fw: _region(fw, code) for fw, code in codes.items()})
    assert len({len(r) for r in rows.values()}) == 1, {fw: len(r) for fw, r in rows.items()}
    numpy_rows, torch_rows = rows["numpy"], rows["torch"]
    first = {fw: {key: i for i, (key, _, _) in reversed(list(enumerate(r)))} for fw, r in rows.items()}
    assert first["numpy"]["forward"] == first["torch"]["forward"] == first["tf"]["forward"]
    assert first["numpy"]["update"] == first["torch"]["update"]
    assert all(number is None for key, number, _ in numpy_rows if key == "backward")  # blank rows
    assert first["tf"]["relu1"] == first["chainer"]["relu1"]
    assert first["tf"]["bn1"] == first["chainer"]["bn1"]
    # the comment and the if header above the keyed line travel with it
    keyed = {fw: [i for i, (_, _, t) in enumerate(r) if 'a["' in t] for fw, r in rows.items()}
    assert keyed["tf"][0] == keyed["chainer"][0] and keyed["tf"][-1] == keyed["chainer"][-1]  # the lines
    bn_rows = [t.strip() for k, _, t in rows["tf"] if k == "bn1"]
    assert bn_rows == ["# why bn", "if bn:", 'x = a["bn1"] = b(x)']
    assert not any("[step:" in text for r in rows.values() for _, _, text in r)  # markers not shown
    assert torch_rows[0][2] == "def f(x):"


def test_steps_in_a_different_order_fail() -> None:
    regions = {fw: _region(fw, "# [step:a]\nx = 1\n# [step:b]\ny = 2") for fw in PACKAGES}
    regions["chainer"] = _region("chainer", "# [step:b]\ny = 2\n# [step:a]\nx = 1")
    with pytest.raises(RegionError, match="region 'demo': chainer has step 'a'"):
        align_rows("demo", regions)


def test_every_optimizer_marks_the_same_steps() -> None:
    # Each optimizer region (every ``opt-*`` of REGIONS, so a new one is covered) marks its steps
    # with ``# [step:KEY]`` in every package, the same keys in the same order: the rows align.
    optimizers = [name for name in REGIONS if name.startswith("opt-")]
    assert {"opt-sgd", "opt-momentum", "opt-adagrad", "opt-rmsprop", "opt-adam"} <= set(optimizers)
    for name, by_framework in collect_regions(names=optimizers).items():
        keys = {fw: [key for key, _ in split_steps(region) if key] for fw, region in by_framework.items()}
        assert keys["numpy"], f"{name}: the reference marks no '# [step:KEY]' lines"
        assert all(k == keys["numpy"] for k in keys.values()), f"{name}: step keys differ: {keys}"


def test_every_reference_is_a_link(tmp_path: Path) -> None:
    assert github_anchor("dense-layout: dense weight layout") == "dense-layout-dense-weight-layout"
    assert github_anchor("softmax-ce: from logits vs the course's `+1e-7`") == \
        "softmax-ce-from-logits-vs-the-courses-1e-7"
    anchors = porting_anchors()
    out = tmp_path / "deep" / "site"
    text = build_site(out, None).read_text(encoding="utf-8")
    porting = (REPO_ROOT / "docs" / "porting.md").read_text(encoding="utf-8")
    headings = {github_anchor(h) for h in re.findall(r"^#+ (.*)$", porting, flags=re.MULTILINE)}
    tags = re.findall(r'<a href="([^"#]*)#([^"]*)">NOTE\((framework|course):([a-z0-9-]+)\)</a>', text)
    assert len(tags) >= 30, "NOTE tags are not links"
    code = "".join(re.findall(r'<span class="ln"[^>]*>(.*?)</span>(?=<span class="ln|</div>)', text))
    assert "NOTE(" in code and "NOTE(framework:" not in re.sub(r"<a [^>]*>NOTE\([^<]*</a>", "", code), \
        "an unlinked NOTE tag"
    for href, anchor, _, slug in tags:
        assert (out / href).resolve() == (REPO_ROOT / "docs" / "porting.md").resolve(), href
        assert anchor == anchors[slug] and anchor in headings, (slug, anchor)
    sources = re.findall(r'<a class="src" href="([^"#]+)#L(\d+)">([^<:]+):(\d+)</a>', text)
    assert len(sources) == 4 * len(REGIONS)
    for href, line, name, line_shown in sources:
        assert (out / href).resolve() == (REPO_ROOT / name).resolve() and (REPO_ROOT / name).is_file()
        assert line == line_shown


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

def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        message = "chromium is not installed (apt-get install chromium): the page is not rendered"
        if require_all():
            pytest.fail(f"ROSETTA_REQUIRE_ALL=1 but {message}")
        pytest.skip(message)
    return path


def _run_chromium(binary: str, profile: Path, width: int, *args: str) -> subprocess.CompletedProcess[str]:
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},2000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


# Headless Chromium (156 here) keeps its window at least 500 px wide: with --window-size=390 the
# screenshot is 390 px but the DOM that --dump-dom hands back (and the probe measured) was laid out
# at 500 px, so the numbers would not describe the picture. A phone width is therefore rendered in
# an iframe of that width in a window of the same width: the iframe is its own viewport (media
# queries, innerWidth), and the page's probe posts its report to this frame, which puts it on its
# own body for --dump-dom. Screenshot and probe then both see 390 px.
PHONE_FRAME = """<!DOCTYPE html><html><head><meta charset="utf-8">
<style>body {{ margin: 0; }} iframe {{ border: 0; display: block; }}</style>
<script>addEventListener('message', e => {{
  document.body.dataset.layout = JSON.stringify(e.data); }});</script>
</head><body><iframe src="{src}" width="{width}" height="2000"></iframe></body></html>
"""


def _render(binary: str, page: Path, tmp_path: Path, width: int, framed: bool = False) -> tuple[dict, Path]:
    """One Chromium run: the screenshot and the DOM with the page's layout probe (body data-layout);
    ``framed``: the page inside an iframe ``width`` px wide (for widths under Chromium's minimum)."""
    shot = tmp_path / f"page-{width}.png"
    target = page
    if framed:
        target = page.with_name(f"frame-{width}.html")
        target.write_text(PHONE_FRAME.format(src=page.name, width=width), encoding="utf-8")
    result = _run_chromium(binary, tmp_path / f"profile-{width}", width, "--virtual-time-budget=3000",
                           f"--screenshot={shot}", "--dump-dom", target.as_uri())
    match = re.search(r'data-layout="([^"]*)"', result.stdout)
    assert match, f"no layout probe in chromium's DOM (rc {result.returncode}): {result.stderr[-2000:]}"
    assert shot.is_file(), f"chromium wrote no screenshot (rc {result.returncode}): {result.stderr[-2000:]}"
    if os.environ.get("ROSETTA_SITE_SCREENSHOT"):
        shutil.copy(shot, f"{os.environ['ROSETTA_SITE_SCREENSHOT']}-{width}.png")
    return json.loads(html.unescape(match.group(1))), shot


def _assert_readable(layout: dict, width: int) -> None:
    """What every width shares: no wrapped code row, all titles on screen, no sideways page scroll."""
    assert layout["width"] == width, layout["width"]
    assert set(layout["sections"]) == set(REGIONS)
    # every code row exactly one line high: no code line wraps
    assert layout["lineHeight"] > 0 and layout["rows"] > 1000, layout["rows"]
    assert not layout["wrapped"], f"wrapped code lines (section, line, height): {layout['wrapped']}"
    # h1, every h2 and nav link, every column's framework name: the text lies inside the viewport
    # (and the name inside its title bar, not cut by the ellipsis)
    assert layout["texts"] >= 5 * len(REGIONS), layout["texts"]
    assert not layout["offscreen"], \
        f"text outside the viewport (what, left, right, limit): {layout['offscreen']}"
    # long code lines scroll inside their column; the page itself never scrolls sideways
    assert not layout["codeOverflow"], f"code boxes wider than their column: {layout['codeOverflow']}"
    assert layout["scrollWidth"] <= width + 1, f"the page scrolls sideways: {layout['scrollWidth']} > {width}"


def _assert_column_has_ink(shot: Path, width: int, cols: list[list[float]]) -> None:
    from matplotlib.image import imread

    pixels = np.asarray(imread(shot))[..., :3]
    assert pixels.shape[1] == width, pixels.shape
    for left, top, col_width, height in cols:
        # CSS px = screenshot px at device scale 1
        top, left = int(top), int(left)
        if top + 60 > pixels.shape[0]:
            continue  # below the screenshot (stacked columns run past its 2000 px)
        area = pixels[top + 40:min(top + int(height), pixels.shape[0]), left + 5:left + int(col_width) - 5]
        assert area.size and float(np.mean(area < 0.5)) > 0.005, f"column at x={left}, y={top} looks empty"


@pytest.mark.parametrize("width", [1600, 1024])
def test_page_renders_four_columns_in_chromium(tmp_path: Path, width: int) -> None:
    binary = _chromium()
    page = build_site(tmp_path / "site", RECORDS)
    layout, shot = _render(binary, page, tmp_path, width)
    _assert_readable(layout, width)
    for name, cols in layout["sections"].items():
        assert len(cols) == 4, (name, cols)
        lefts = [c[0] for c in cols]
        assert lefts == sorted(lefts) and len(set(lefts)) == 4, f"{name}: columns not side by side: {cols}"
        assert len({c[1] for c in cols}) == 1, f"{name}: columns not on one row: {cols}"
        assert all(c[2] > (300 if width >= 1600 else 200) and c[3] > 50 for c in cols), \
            f"{name}: a column is too small to read: {cols}"
        assert cols[-1][0] + cols[-1][2] <= width, f"{name}: the last column runs off the page: {cols}"
    # every row of every section at the same height in all four columns, within 1 px
    assert not layout["misaligned"], f"rows not aligned (section, row, tops): {layout['misaligned']}"
    _assert_column_has_ink(shot, width, layout["sections"]["loss"])


PHONE = 390  # CSS px of a common phone (iPhone 12 to 15); rendered framed, see PHONE_FRAME
# A parity table as wide as ``rosetta parity``'s (one column per quantity), far wider than a phone:
# it must scroll inside its own box, not make the page scroll sideways.
WIDE_RECORDS = [{**RECORDS[0], "model": model, "framework": framework, "quantity": quantity}
                for model in ("mlp", "cnn") for framework in ("torch", "tf", "chainer")
                for quantity in ("activation", "logits", "loss", "grad", "grad_input", "optimizer",
                                 "trajectory", "batchnorm")]


def test_page_stacks_on_a_phone_in_chromium(tmp_path: Path) -> None:
    binary = _chromium()
    page = build_site(tmp_path / "site", RECORDS + WIDE_RECORDS)
    layout, shot = _render(binary, page, tmp_path, PHONE, framed=True)
    _assert_readable(layout, PHONE)
    for name, cols in layout["sections"].items():
        assert len(cols) == 4, (name, cols)
        for i, (left, top, col_width, height) in enumerate(cols):
            # one column across the page: at the body's left margin, nearly the viewport wide
            assert 0 <= left <= 20 and col_width >= PHONE - 2 * 20, \
                f"{name}: column {i} not full width: {cols}"
            assert height > 50, f"{name}: column {i} too small to read: {cols}"
            if i:
                above = cols[i - 1]
                assert top >= above[1] + above[3], f"{name}: column {i} not below column {i - 1}: {cols}"
    # a phone screen holds code: many boxes have lines longer than 390 px, and they scroll inside
    assert layout["scrolling"] > len(REGIONS), layout["scrolling"]
    _assert_column_has_ink(shot, PHONE, layout["sections"]["activations"])
