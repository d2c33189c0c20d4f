"""The side-by-side reading page: each concept's code in the four implementations, in four columns.

The code shown is cut out of the real source files by their named regions
(``# [rosetta:NAME]`` ... ``# [/rosetta:NAME]``, docs/conventions.md), so the page cannot drift
from the code. Highlighting is Pygments with its CSS inlined: one self-contained HTML file that
works offline. The page ends with the latest parity table (from ``rosetta parity --json`` or a
quick forward/gradient subset computed on the spot).

Rows are aligned across the four columns by step keys (docs/conventions.md, "Row alignment"):
a line ``# [step:KEY]`` inside a region starts step KEY, and a forward line ``x = a["NAME"] = ...``
starts step NAME by itself (taking the comments and ``if``/``with`` headers right above it along).
Every column gets blank rows so that each step starts on the same row in all four.

Links are relative, from the output folder to the repository it was built from
(``os.path.relpath``): a source file name links to ``../../torch_impl/cnn.py#L28`` and a
``NOTE(framework:SLUG)`` / ``NOTE(course:SLUG)`` tag to ``docs/porting.md#ANCHOR``, where ANCHOR is
GitHub's anchor of the ``## SLUG: title`` heading. They resolve while the page is read next to its
checkout (``file://``) and on a forge that serves the repository's files under the same tree.
The page embeds a small layout probe (a script that writes its measurements into the body's
``data-layout`` attribute); the tests read it back through headless Chromium.
"""

from __future__ import annotations

import html
import json
import os
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from rosetta.registry import FRAMEWORKS
from rosetta.weights import atomic_write_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent

# framework -> (package folder, column title), from the framework table
PACKAGES: dict[str, tuple[str, str]] = {name: (f.package, f.title) for name, f in FRAMEWORKS.items()}

# region name -> concept title, in page order (the course's chapter order). Every entry is a
# section of the page, and test_site checks each exists exactly once in each package.
REGIONS: dict[str, str] = {
    "activations": "Activations: ReLU and Sigmoid",
    "dense": "Affine (dense) layer",
    "loss": "Softmax with cross-entropy loss",
    "gradcheck": "Gradient check: numerical gradient (central difference) against backprop",
    "opt-sgd": "SGD step",
    "opt-momentum": "Momentum step",
    "opt-adagrad": "AdaGrad step",
    "opt-rmsprop": "RMSProp step",
    "opt-adam": "Adam step",
    "init": "Initialisation: He and Xavier (LeCun)",
    "batchnorm": "Batch normalisation",
    "dropout": "Dropout",
    "im2col": "im2col and col2im",
    "conv": "Convolution",
    "pool": "Max pooling",
    "mlp": "The MLP",
    "cnn": "The CNN",
    "deepcnn": "The deep CNN (the course's DeepConvNet)",
    "train-step": "The training step",
    "weight-loading": "Loading a weight file into a model",
}

# One line under a section's title where the NumPy column shows the course's algorithm but the
# reference runs a faster, bit-identical route by default.
ROUTE_NOTES: dict[str, str] = {
    "im2col": "NumPy column: the course's im2col/col2im (route=\"course\"). The reference runs "
              "route=\"fast\" by default: im2col_fast/col2im_fast in reference_numpy/util.py build the "
              "same matrix with one gather, bit-identical (parity_tests/test_reference_routes.py).",
    "conv": "NumPy column: route=\"course\" calls the course's im2col/col2im above; the default "
            "route=\"fast\" runs the same GEMMs on im2col_fast/col2im_fast, bit-identical.",
    "pool": "NumPy column: the course's im2col/argmax/col2im (route=\"course\"). The reference runs "
            "route=\"fast\" by default (strided views, the same maxima and gradients, bit-identical; "
            "MaxPooling._forward_fast in reference_numpy/layers.py).",
}

_OPEN = re.compile(r"^\s*#\s*\[rosetta:([A-Za-z0-9_-]+)\]\s*$")
_CLOSE = re.compile(r"^\s*#\s*\[/rosetta:([A-Za-z0-9_-]+)\]\s*$")
_STEP = re.compile(r"^\s*#\s*\[step:([A-Za-z0-9_.-]+)\]\s*$")
# A forward line ``x = a["conv1"] = ...`` names its own step: the activation's name.
_AUTO_STEP = re.compile(r"\ba\[\"([A-Za-z0-9_]+)\"\]\s*=")
_NOTE_TAG = re.compile(r"NOTE\((framework|course):([A-Za-z0-9_-]+)\)")
_HEADING = re.compile(r"^#{2,6}\s+([A-Za-z0-9_-]+):.*$", re.MULTILINE)


class RegionError(ValueError):
    """A named region is missing, duplicated or malformed; the message names package, file, region."""


@dataclass(frozen=True)
class Region:
    """One named region cut out of a source file (marker lines of nested regions removed)."""

    framework: str
    package: str
    name: str
    path: Path  # relative to the repository root
    start_line: int  # 1-based line of the first code line
    code: str  # dedented; nested region markers removed, step markers kept
    line_numbers: tuple[int, ...] = ()  # 1-based source line of each line of ``code``


def scan_package(package: str, root: Path = REPO_ROOT) -> dict[str, list[Region]]:
    """Every region of every ``.py`` file of ``package`` (a folder under ``root``), by name.

    Raises RegionError for a missing package folder, a region opened and never closed, or a
    close marker without its open marker.
    """
    folder = root / package
    files = sorted(folder.glob("*.py")) if folder.is_dir() else []
    if not files:
        raise RegionError(f"package {package!r}: no Python files in {folder} (looked for the named "
                          f"regions '# [rosetta:NAME]' there)")
    framework = next((f for f, (p, _) in PACKAGES.items() if p == package), package)
    found: dict[str, list[Region]] = {}
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        rel = path.relative_to(root)
        open_at: dict[str, int] = {}
        for i, line in enumerate(lines):
            if m := _OPEN.match(line):
                if m.group(1) in open_at:
                    raise RegionError(f"package {package!r}, file {rel}: region {m.group(1)!r} opened "
                                      f"twice (lines {open_at[m.group(1)] + 1} and {i + 1})")
                open_at[m.group(1)] = i
            elif m := _CLOSE.match(line):
                name = m.group(1)
                if name not in open_at:
                    raise RegionError(f"package {package!r}, file {rel}: region {name!r} closed at "
                                      f"line {i + 1} but never opened")
                start = open_at.pop(name)
                body = [(j + 1, ln) for j, ln in enumerate(lines[start + 1:i], start + 1)
                        if not (_OPEN.match(ln) or _CLOSE.match(ln))]
                # dedent keeps the line count, so each line keeps its source line number
                texts = textwrap.dedent("\n".join(ln for _, ln in body)).split("\n")
                numbered = [(n, t) for (n, _), t in zip(body, texts, strict=True)]
                while numbered and not numbered[0][1].strip():
                    numbered.pop(0)
                while numbered and not numbered[-1][1].strip():
                    numbered.pop()
                first = numbered[0][0] if numbered else start + 2
                found.setdefault(name, []).append(Region(
                    framework, package, name, rel, first, "\n".join(t for _, t in numbered),
                    tuple(n for n, _ in numbered)))
        for name, start in open_at.items():
            raise RegionError(f"package {package!r}, file {rel}: region {name!r} opened at line "
                              f"{start + 1} and never closed ('# [/rosetta:{name}]' missing)")
    return found


def extract_region(framework: str, name: str, root: Path = REPO_ROOT) -> Region:
    """Region ``name`` of ``framework``'s package; RegionError unless it exists exactly once."""
    if framework not in PACKAGES:
        raise RegionError(f"unknown framework {framework!r}; choose one of: {', '.join(PACKAGES)}")
    package = PACKAGES[framework][0]
    regions = scan_package(package, root).get(name, [])
    if not regions:
        raise RegionError(f"package {package!r}: region {name!r} not found in any file of "
                          f"{package}/ (expected '# [rosetta:{name}]' ... '# [/rosetta:{name}]')")
    if len(regions) > 1:
        where = ", ".join(f"{r.path}:{r.start_line - 1}" for r in regions)
        raise RegionError(f"package {package!r}: region {name!r} appears {len(regions)} times ({where}); "
                          f"it must appear exactly once")
    return regions[0]


def collect_regions(root: Path = REPO_ROOT, names: Iterable[str] = REGIONS,
                    frameworks: Iterable[str] = PACKAGES) -> dict[str, dict[str, Region]]:
    """region name -> framework -> Region for every concept of the page (errors as above)."""
    return {name: {fw: extract_region(fw, name, root) for fw in frameworks} for name in names}


# --------------------------------------------------------------------------------------------
# The parity table.


def load_parity_json(path: str | Path) -> list[dict[str, object]]:
    """The records written by ``rosetta parity --json``; ValueError with the path when unreadable."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"parity JSON {p} does not exist "
                         f"(write it with: rosetta parity --json {p})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"parity JSON {p} is not readable JSON: {exc}") from None
    keys = {"model", "framework", "dtype", "quantity", "tensor", "max_rel_err", "tol", "passed"}
    if not isinstance(data, list) or not all(isinstance(r, dict) and keys <= set(r) for r in data):
        raise ValueError(f"parity JSON {p} is not a list of parity records (as written by "
                         f"rosetta parity --json): each needs {sorted(keys)}")
    return data


def quick_parity(frameworks: Sequence[str] | None = None, models: Sequence[str] = ("mlp", "cnn"),
                 dtypes: Sequence[str] = ("float64", "float32"),
                 progress: Callable[[str], None] | None = None) -> tuple[list[dict[str, object]], list[str]]:
    """Forward and gradient parity (rosetta.parity.check_forward / check_grads) for each installed
    port: (records as dicts, notes on the ports that were skipped)."""
    from rosetta.adapters import PORTS, FrameworkNotInstalled, adapter_class
    from rosetta.parity import check_forward, check_grads

    records: list[dict[str, object]] = []
    notes: list[str] = []
    for framework in frameworks or PORTS:
        try:
            adapter_class(framework)
        except FrameworkNotInstalled as exc:
            notes.append(str(exc))
            continue
        for model in models:
            for dtype in dtypes:
                if progress:
                    progress(f"{framework} {model} {dtype}")
                checked = [*check_forward(model, framework, dtype), *check_grads(model, framework, dtype)]
                records += [record.as_dict() for record in checked]
    return records, notes


def parity_table_html(records: Sequence[Mapping[str, object]]) -> str:
    """Worst relative error per (model, framework, dtype) x quantity, as an HTML table."""
    worst: dict[tuple[str, str, str, str], Mapping[str, object]] = {}
    for r in records:
        key = (str(r["model"]), str(r["framework"]), str(r["dtype"]), str(r["quantity"]))
        ratio = float(r["max_rel_err"]) / float(r["tol"])  # type: ignore[arg-type]
        old = worst.get(key)
        if old is None or ratio > float(old["max_rel_err"]) / float(old["tol"]):  # type: ignore[arg-type]
            worst[key] = r
    if not worst:
        return "<p>No parity records.</p>"
    quantities = list(dict.fromkeys(k[3] for k in worst))
    rows = list(dict.fromkeys(k[:3] for k in worst))
    head = "".join(f"<th>{html.escape(q)}</th>" for q in quantities)
    body = []
    for row in rows:
        cells = []
        for q in quantities:
            r = worst.get((*row, q))
            if r is None:
                cells.append("<td>-</td>")
                continue
            ok = bool(r["passed"])
            mark, verdict = ("\u2713", "ok") if ok else ("\u2717", "FAIL")  # text, not only colour
            cells.append(f'<td class="{"ok" if ok else "fail"}" title="{html.escape(str(r["tensor"]))}">'
                         f'{mark} {float(r["max_rel_err"]):.1e} {verdict}</td>')  # type: ignore[arg-type]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "".join(cells) + "</tr>")
    n_failed = sum(1 for r in records if not r["passed"])
    return (f'<p>{len(records)} tensors compared, {n_failed} out of tolerance. Each cell: the largest '
            f'relative error max|a - ref| / max|ref| of that kind (hover for the tensor).</p>'
            f'<div class="scroll-x"><table class="parity"><thead><tr><th>model</th><th>framework</th>'
            f'<th>dtype</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


# --------------------------------------------------------------------------------------------
# Row alignment.

Row = tuple[str, int | None, str]  # (step key, source line or None for a blank row, code text)


def split_steps(region: Region) -> list[tuple[str, list[tuple[int, str]]]]:
    """``region``'s lines as ``(step key, [(source line, text), ...])`` blocks, in order.

    A ``# [step:KEY]`` line (dropped from the page) starts block KEY; a ``x = a["NAME"] = ...``
    line starts block NAME and takes the comment lines and block headers (``if ...:``) right above
    it along, so a NOTE stays on its line's row. Lines before the first key are block "".
    """
    numbers = region.line_numbers or tuple(range(region.start_line,
                                                  region.start_line + region.code.count("\n") + 1))
    blocks: list[tuple[str, list[tuple[int, str]]]] = [("", [])]
    seen: set[str] = set()
    for number, text in zip(numbers, region.code.split("\n"), strict=True):
        key = None
        if m := _STEP.match(text):
            key = m.group(1)
        elif (m := _AUTO_STEP.search(text)) and m.group(1) not in seen:
            key = m.group(1)
        if key is not None and key in seen:
            raise RegionError(f"{region.path}: region {region.name!r} has step {key!r} twice "
                              f"(line {number})")
        if key is None:
            blocks[-1][1].append((number, text))
            continue
        seen.add(key)
        carried: list[tuple[int, str]] = []
        if not _STEP.match(text):
            indent = len(text) - len(text.lstrip())
            previous = blocks[-1][1]
            while previous and _leads_into(previous[-1][1], indent):
                carried.insert(0, previous.pop())
        blocks.append((key, carried if _STEP.match(text) else [*carried, (number, text)]))
    return [(k, lines) for k, lines in blocks if lines or k]


_CARRIED_HEADERS = ("if ", "elif ", "else:", "with ", "for ")  # not def/class: those open the region


def _leads_into(text: str, indent: int) -> bool:
    """A comment line, or an ``if``/``with``/``for`` header indented less than the keyed line."""
    stripped = text.strip()
    if stripped.startswith("#"):
        return True
    return (stripped.startswith(_CARRIED_HEADERS) and stripped.endswith(":")
            and len(text) - len(text.lstrip()) < indent)


def merge_step_order(name: str, orders: Mapping[str, Sequence[str]]) -> list[str]:
    """The union of the columns' step keys, keeping each column's order; RegionError when two
    columns order the same steps differently (rows could not align)."""
    merged: list[str] = [""]  # the lines before the first step (the def line) come first everywhere
    for framework, keys in orders.items():
        position = 0
        for key in keys:
            if key in merged:
                index = merged.index(key)
                if index < position:
                    raise RegionError(f"region {name!r}: {framework} has step {key!r} after "
                                      f"{merged[position - 1]!r}, another column has it before")
                position = index + 1
            else:
                merged.insert(position, key)
                position += 1
    return merged


def align_rows(name: str, by_framework: Mapping[str, Region]) -> dict[str, list[Row]]:
    """Each column's rows, padded with blank rows so every step starts on the same row: the
    comments carried above a keyed line are padded above, so the keyed lines themselves align."""
    steps = {fw: split_steps(region) for fw, region in by_framework.items()}
    order = merge_step_order(name, {fw: [k for k, _ in blocks] for fw, blocks in steps.items()})
    as_dict = {fw: dict(blocks) for fw, blocks in steps.items()}

    def lead(key: str, lines: Sequence[tuple[int, str]]) -> int:
        # the lines above the keyed line (comments, headers); 0 for a [step:KEY] block
        keyed = [i for i, (_, t) in enumerate(lines) if (m := _AUTO_STEP.search(t)) and m.group(1) == key]
        return keyed[0] if keyed else 0

    rows: dict[str, list[Row]] = {fw: [] for fw in by_framework}
    for key in order:
        leads = {fw: lead(key, blocks.get(key, [])) for fw, blocks in as_dict.items()}
        top = max(leads.values())
        bottom = max(len(blocks.get(key, [])) - leads[fw] for fw, blocks in as_dict.items())
        for fw, blocks in as_dict.items():
            lines = blocks.get(key, [])
            rows[fw] += [(key, None, "")] * (top - leads[fw])
            rows[fw] += [(key, number, text) for number, text in lines]
            rows[fw] += [(key, None, "")] * (bottom - (len(lines) - leads[fw]))
    return rows


# --------------------------------------------------------------------------------------------
# Links.


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def porting_anchors(root: Path = REPO_ROOT) -> dict[str, str]:
    """SLUG -> the anchor of its ``## SLUG: title`` heading in docs/porting.md."""
    path = root / "docs" / "porting.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    return {m.group(1): github_anchor(m.group(0).lstrip("#")) for m in _HEADING.finditer(text)}


def _href(target: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(target, out_dir)).as_posix()


# --------------------------------------------------------------------------------------------
# The page.

LINE_PX = 16  # one code row; the layout probe checks every row is exactly this high

PAGE_CSS = f"""
/* mobile browsers inflate text they guess is too small (iOS in landscape): the code rows would grow
   past LINE_PX and the layout probe's numbers would not be what a phone shows */
html {{ -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }}
body {{ font-family: system-ui, sans-serif; margin: 0 16px 32px; color: #1d1d1f; background: #fff; }}
h1 {{ font-size: 22px; margin: 16px 0 4px; }}
h2 {{ font-size: 17px; margin: 28px 0 6px; border-bottom: 1px solid #ccc; padding-bottom: 3px; }}
h2 code {{ font-size: 12px; color: #666; font-weight: normal; }}
p.route {{ font-size: 13px; margin: 0 0 8px; color: #5a4500; background: #fff8e0; padding: 3px 6px; }}
nav a {{ margin-right: 10px; font-size: 13px; display: inline-block; }}
.columns {{ display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 10px; }}
.impl {{ border: 1px solid #d0d0d0; border-radius: 4px; min-width: 0; background: #fafafa; }}
.impl h3 {{ font-size: 13px; margin: 0; padding: 5px 8px; background: #e8eef6; height: 34px;
           border-bottom: 1px solid #d0d0d0; white-space: nowrap; overflow: hidden;
           text-overflow: ellipsis; }}
.impl .src {{ font-weight: normal; font-size: 11px; display: block; overflow: hidden;
             text-overflow: ellipsis; }}
.impl .highlight {{ margin: 0; overflow-x: auto; background: #fafafa; }}
.impl .code {{ margin: 0; padding: 6px 8px 6px 0; font: 12px/{LINE_PX}px ui-monospace, "DejaVu Sans Mono",
              Menlo, Consolas, monospace; width: max-content; min-width: 100%; box-sizing: border-box; }}
.impl .ln {{ display: block; white-space: pre; min-height: {LINE_PX}px; line-height: {LINE_PX}px; }}
.impl .ln::before {{ content: attr(data-n); display: inline-block; width: 3.2em; padding-right: 8px;
                    text-align: right; color: #999; user-select: none; }}
.impl .ln.pad {{ background: repeating-linear-gradient(135deg, #fafafa 0 6px, #f1f1f1 6px 7px); }}
.impl .ln a {{ color: inherit; text-decoration: underline dotted; }}
/* one column per quantity makes the table wider than a phone: it scrolls in its own box, the page
   does not, and a cell never breaks inside its number */
div.scroll-x {{ overflow-x: auto; }}
table.parity {{ border-collapse: collapse; font-size: 12px; }}
table.parity td, table.parity th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right;
                                    white-space: nowrap; }}
td.ok {{ background: #e6f4e6; }} td.fail {{ background: #f8d7d7; font-weight: bold; }}
@media (max-width: 1100px) {{ body {{ margin: 0 8px 24px; }} .columns {{ gap: 6px; }}
  .impl .code {{ font-size: 11px; }} .impl .ln::before {{ width: 2.6em; padding-right: 5px; }} }}
/* a phone: one column under the other, so rows cannot align and the blank rows only cost height;
   the code goes back to 12px (11px monospace is too small to read there, and long lines scroll
   sideways anyway), and the nav links become tap targets (about 28px high, apart) instead of a
   block of 13px underlined text where a thumb hits the line above */
@media (max-width: 760px) {{ .columns {{ grid-template-columns: minmax(0, 1fr); gap: 8px; }}
  .impl .ln.pad {{ display: none; }} .impl .code {{ font-size: 12px; }}
  nav {{ display: flex; flex-wrap: wrap; gap: 6px; }}
  nav a {{ margin: 0; font-size: 14px; padding: 5px 8px; background: #e8eef6; border-radius: 4px;
          text-decoration: none; }} }}
"""

# Measures the layout once loaded and writes it into <body data-layout>, so a headless browser's
# --dump-dom hands the test the numbers: per section the four columns' boxes, the rows whose tops
# differ across columns, every code row that is not exactly one line high (a wrapped line), the
# document's scroll width (a horizontal page scroll), the text of headings, column titles and nav
# links that lies outside the viewport, and how many code boxes scroll sideways. Inside an iframe
# it also posts the report to the parent: headless Chromium will not lay a window out narrower
# than 500 px, so the test renders phone widths in an iframe of that width and reads it there.
LAYOUT_PROBE = """<script>
window.addEventListener('load', () => {
  const round = v => Math.round(v * 10) / 10;
  const vw = document.documentElement.clientWidth;
  const report = {width: window.innerWidth, lineHeight: 0, sections: {}, misaligned: [], wrapped: [],
                  rows: 0, scrollWidth: document.documentElement.scrollWidth, offscreen: [], texts: 0,
                  scrolling: 0, codeOverflow: []};
  // the extent of an element's text itself (a Range), not of its box: clipped or overflowing
  // text (ellipsis, a long word) shows up here and not in the box's rectangle
  const textBox = node => {
    const range = document.createRange();
    range.selectNodeContents(node);
    return range.getBoundingClientRect();
  };
  const visible = (what, node, clip) => {
    const r = textBox(node);
    const right = Math.min(vw, clip ? clip.right : vw), left = Math.max(0, clip ? clip.left : 0);
    report.texts += 1;
    if (r.width === 0 || r.left < left - 0.5 || r.right > right + 0.5) {
      report.offscreen.push([what, round(r.left), round(r.right), round(right)]);
    }
  };
  for (const h of document.querySelectorAll('h1, h2, nav a')) visible(h.textContent.slice(0, 40), h);
  for (const section of document.querySelectorAll('section.concept')) {
    const impls = [...section.querySelectorAll('.impl')];
    report.sections[section.id] = impls.map(e => {
      const r = e.getBoundingClientRect();
      return [round(r.left), round(r.top + window.scrollY), round(r.width), round(r.height)];
    });
    for (const e of impls) {
      // the framework name (the title's first text node) must show whole inside the title bar
      const h3 = e.querySelector('h3'), cs = getComputedStyle(h3), box = h3.getBoundingClientRect();
      const inner = {left: box.left + parseFloat(cs.paddingLeft),
                     right: box.right - parseFloat(cs.paddingRight)};
      visible(section.id + ' ' + e.dataset.framework, h3.firstChild, inner);
      const scroller = e.querySelector('.highlight');
      if (scroller.scrollWidth > scroller.clientWidth + 1) report.scrolling += 1;
      if (scroller.getBoundingClientRect().right > e.getBoundingClientRect().right + 0.5) {
        report.codeOverflow.push([section.id, e.dataset.framework]);
      }
    }
    const cols = impls.map(e => [...e.querySelectorAll('.ln')]);
    const n = Math.max(...cols.map(c => c.length));
    for (let i = 0; i < n; i++) {
      const tops = cols.map(c => c[i] ? round(c[i].getBoundingClientRect().top) : null);
      const known = tops.filter(t => t !== null);
      if (known.length !== cols.length || Math.max(...known) - Math.min(...known) > 1) {
        report.misaligned.push([section.id, i, tops]);
      }
    }
    for (const c of cols) {
      for (const ln of c) {
        const style = getComputedStyle(ln);
        if (style.display === 'none') continue;  // blank rows are hidden once columns stack
        const lh = parseFloat(style.lineHeight);
        report.lineHeight = lh;
        report.rows += 1;
        const h = ln.getBoundingClientRect().height;
        if (Math.abs(h - lh) > 0.5) report.wrapped.push([section.id, ln.dataset.n, round(h)]);
      }
    }
  }
  report.misaligned = report.misaligned.slice(0, 20);
  report.wrapped = report.wrapped.slice(0, 20);
  report.offscreen = report.offscreen.slice(0, 20);
  document.body.dataset.layout = JSON.stringify(report);
  if (window.parent !== window) window.parent.postMessage(report, '*');
});
</script>"""


def _code_lines(code: str) -> list[str]:
    """Pygments HTML of ``code``, one string per line (nowrap output closes every span per line)."""
    formatter = HtmlFormatter(nowrap=True)
    out = highlight(code, PythonLexer(stripnl=False, ensurenl=True), formatter)
    lines = out.split("\n")
    return lines[:code.count("\n") + 1]


def _link_notes(line_html: str, porting_href: str, anchors: Mapping[str, str]) -> str:
    def link(m: re.Match[str]) -> str:
        anchor = anchors.get(m.group(2))
        href = f"{porting_href}#{anchor}" if anchor else porting_href
        return f'<a href="{html.escape(href)}">{m.group(0)}</a>'

    return _NOTE_TAG.sub(link, line_html)


def render_column(framework: str, region: Region, rows: Sequence[Row], out_dir: Path,
                  root: Path = REPO_ROOT, anchors: Mapping[str, str] | None = None) -> str:
    """One column: the header with the linked source file, then one ``.ln`` element per row."""
    anchors = porting_anchors(root) if anchors is None else anchors
    shown = [(number, text) for _, number, text in rows if number is not None and not _STEP.match(text)]
    highlighted = dict(zip([n for n, _ in shown], _code_lines("\n".join(t for _, t in shown)),
                           strict=True))
    porting_href = _href(root / "docs" / "porting.md", out_dir)
    body = []
    for key, number, _ in rows:
        step = html.escape(key, quote=True)
        if number is None or number not in highlighted:
            body.append(f'<span class="ln pad" data-step="{step}" data-n=""></span>')
        else:
            line = _link_notes(highlighted[number], porting_href, anchors)
            body.append(f'<span class="ln" data-step="{step}" data-n="{number}">{line}</span>')
    src = f"{region.path.as_posix()}:{region.start_line}"
    href = f"{_href(root / region.path, out_dir)}#L{region.start_line}"
    return (f'<div class="impl" data-framework="{framework}"><h3>{html.escape(PACKAGES[framework][1])}'
            f'<a class="src" href="{html.escape(href)}">{html.escape(src)}</a></h3>'
            f'<div class="highlight"><div class="code">{"".join(body)}</div></div></div>')


def render_page(regions: Mapping[str, Mapping[str, Region]], parity_html: str, title: str,
                out_dir: str | Path = ".", root: Path = REPO_ROOT) -> str:
    """The complete HTML document; links are relative to ``out_dir``, where it will be written."""
    out = Path(out_dir).resolve()
    anchors = porting_anchors(root)
    sections = []
    for name, by_framework in regions.items():
        rows = align_rows(name, by_framework)
        columns = [render_column(fw, region, rows[fw], out, root, anchors)
                   for fw, region in by_framework.items()]
        note = f'<p class="route">{html.escape(ROUTE_NOTES[name])}</p>' if name in ROUTE_NOTES else ""
        sections.append(f'<section class="concept" id="{name}"><h2>{html.escape(REGIONS.get(name, name))} '
                        f'<code>[rosetta:{html.escape(name)}]</code></h2>{note}'
                        f'<div class="columns">{"".join(columns)}</div></section>')
    nav = " ".join(f'<a href="#{n}">{html.escape(REGIONS.get(n, n))}</a>' for n in regions)
    css = PAGE_CSS + HtmlFormatter(style="default").get_style_defs(".highlight")
    porting = html.escape(_href(root / "docs" / "porting.md", out))
    conventions = html.escape(_href(root / "docs" / "conventions.md", out))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{html.escape(title)}</title>'
            f'<style>{css}</style></head><body><h1>{html.escape(title)}</h1>'
            f'<p>Each concept in the four implementations, cut out of the source files by their named '
            f'regions (<a href="{conventions}">docs/conventions.md</a>). The same step sits on the same '
            f'row in every column; hatched rows are steps a framework needs no line for. Differences '
            f'between frameworks are tagged <code>NOTE(framework:SLUG)</code> and explained in '
            f'<a href="{porting}">docs/porting.md</a>; every tag links to its section.</p>'
            f'<nav>{nav} <a href="#parity">Parity table</a></nav>'
            f'{"".join(sections)}<section id="parity"><h2>Parity against the NumPy reference</h2>'
            f'{parity_html}</section>{LAYOUT_PROBE}</body></html>\n')


def build_site(out_dir: str | Path, parity_records: Sequence[Mapping[str, object]] | None = None,
               root: Path = REPO_ROOT, notes: Sequence[str] = (),
               title: str = "mnist-rosetta: four implementations side by side") -> Path:
    """Write ``index.html`` into ``out_dir`` (created) and return its path.

    ``parity_records``: dicts as written by ``rosetta parity --json`` (None: no table).
    """
    regions = collect_regions(root)
    if parity_records is None:
        parity_html = "<p>No parity results given (run <code>rosetta parity --json PATH</code>).</p>"
    else:
        parity_html = parity_table_html(parity_records)
    parity_html += "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    atomic_write_bytes(page, render_page(regions, parity_html, title, out, root).encode("utf-8"))
    return page
