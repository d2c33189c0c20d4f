"""The side-by-side reading page: each concept's code in the four implementations, in four columns.

The code shown is cut out of the real source files by their named regions
(``# [rosetta:NAME]`` ... ``# [/rosetta:NAME]``, docs/conventions.md), so the page cannot drift
from the code. Highlighting is Pygments with its CSS inlined: one self-contained HTML file that
works offline. The page ends with the latest parity table (from ``rosetta parity --json`` or a
quick forward/gradient subset computed on the spot).
"""

from __future__ import annotations

import html
import json
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

# region name -> concept title, in page order
REGIONS: dict[str, str] = {
    "dense": "Dense (affine) layer",
    "conv": "Convolution",
    "pool": "Max pooling",
    "loss": "Softmax cross-entropy loss",
    "opt-sgd": "SGD step",
    "opt-momentum": "Momentum step",
    "opt-adagrad": "AdaGrad step",
    "opt-rmsprop": "RMSProp step",
    "opt-adam": "Adam step",
    "mlp": "The MLP",
    "cnn": "The CNN",
    "deepcnn": "The deep CNN (the course's DeepConvNet)",
    "train-step": "The training step",
    "weight-loading": "Loading the canonical weights",
}

_OPEN = re.compile(r"^\s*#\s*\[rosetta:([A-Za-z0-9_-]+)\]\s*$")
_CLOSE = re.compile(r"^\s*#\s*\[/rosetta:([A-Za-z0-9_-]+)\]\s*$")


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
    code: str


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
                body = [ln for ln in lines[start + 1:i] if not (_OPEN.match(ln) or _CLOSE.match(ln))]
                code = textwrap.dedent("\n".join(body)).strip("\n")
                found.setdefault(name, []).append(Region(framework, package, name, rel, start + 2, code))
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
            cells.append(f'<td class="{"ok" if ok else "fail"}" title="{html.escape(str(r["tensor"]))}">'
                         f'{float(r["max_rel_err"]):.1e} {"ok" if ok else "FAIL"}</td>')  # type: ignore[arg-type]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "".join(cells) + "</tr>")
    n_failed = sum(1 for r in records if not r["passed"])
    return (f'<p>{len(records)} tensors compared, {n_failed} out of tolerance. Each cell: the largest '
            f'relative error max|a - ref| / max|ref| of that kind (hover for the tensor).</p>'
            f'<table class="parity"><thead><tr><th>model</th><th>framework</th><th>dtype</th>{head}'
            f'</tr></thead><tbody>{"".join(body)}</tbody></table>')


# --------------------------------------------------------------------------------------------
# The page.

PAGE_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 16px 32px; color: #1d1d1f; background: #fff; }
h1 { font-size: 22px; margin: 16px 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ccc; padding-bottom: 3px; }
nav a { margin-right: 10px; font-size: 13px; }
.columns { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 10px; }
.impl { border: 1px solid #d0d0d0; border-radius: 4px; min-width: 0; background: #fafafa; }
.impl h3 { font-size: 13px; margin: 0; padding: 5px 8px; background: #e8eef6;
           border-bottom: 1px solid #d0d0d0; }
.impl .src { font-weight: normal; font-size: 11px; color: #555; display: block; }
.impl .highlight { margin: 0; overflow-x: auto; }
.impl pre { margin: 0; padding: 6px 8px; font-size: 11.5px; line-height: 1.35;
            white-space: pre-wrap; overflow-wrap: anywhere; }
.impl .linenos, .impl .lineno { color: #999; }
table.parity { border-collapse: collapse; font-size: 12px; }
table.parity td, table.parity th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td.ok { background: #e6f4e6; } td.fail { background: #f8d7d7; font-weight: bold; }
"""


def render_page(regions: Mapping[str, Mapping[str, Region]], parity_html: str, title: str) -> str:
    """The complete HTML document."""
    formatter = HtmlFormatter(style="default", cssclass="highlight")
    lexer = PythonLexer()
    sections = []
    for name, by_framework in regions.items():
        columns = []
        for framework, region in by_framework.items():
            fmt = HtmlFormatter(style="default", cssclass="highlight", linenos="inline",
                                linenostart=region.start_line)
            code = highlight(region.code, lexer, fmt)
            columns.append(
                f'<div class="impl" data-framework="{framework}"><h3>{html.escape(PACKAGES[framework][1])}'
                f'<span class="src">{html.escape(str(region.path))}:{region.start_line}</span></h3>'
                f'{code}</div>')
        sections.append(f'<section class="concept" id="{name}"><h2>{html.escape(REGIONS.get(name, name))} '
                        f'<code>[rosetta:{html.escape(name)}]</code></h2>'
                        f'<div class="columns">{"".join(columns)}</div></section>')
    nav = " ".join(f'<a href="#{n}">{html.escape(REGIONS.get(n, n))}</a>' for n in regions)
    css = PAGE_CSS + formatter.get_style_defs(".highlight")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{html.escape(title)}</title>'
            f'<style>{css}</style></head><body><h1>{html.escape(title)}</h1>'
            f'<p>Each concept in the four implementations, cut out of the source files by their named '
            f'regions. Differences between frameworks are marked <code>NOTE(framework:SLUG)</code> and '
            f'explained in docs/porting.md.</p><nav>{nav} <a href="#parity">Parity table</a></nav>'
            f'{"".join(sections)}<section id="parity"><h2>Parity against the NumPy reference</h2>'
            f'{parity_html}</section></body></html>\n')


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
    atomic_write_bytes(page, render_page(regions, parity_html, title).encode("utf-8"))
    return page
