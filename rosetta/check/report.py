"""The check's report: every comparison, the first divergence and its diagnosis, as text or JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rosetta.check.diagnose import Diagnosis

GUIDE = "docs/porting.md"


@dataclass
class Comparison:
    quantity: str
    name: str
    port_name: str
    error: float
    tol: float
    ok: bool
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "quantity": self.quantity,
            "name": self.name,
            "port": self.port_name,
            "error": None if math.isinf(self.error) else self.error,
            "tolerance": self.tol,
            "ok": self.ok,
            "note": self.note,
        }


@dataclass
class PassResult:
    mode: str
    rows: list[Comparison]
    diagnosis: Diagnosis | None

    @property
    def ok(self) -> bool:
        return self.diagnosis is None and all(r.ok for r in self.rows)


@dataclass
class CheckReport:
    reference: str
    port: str
    dtype: str
    input_shape: tuple[int, ...]
    mapping: list[str]
    problems: list[str]
    notes: list[str]
    passes: list[PassResult] = field(default_factory=list)
    port_errors: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def add_pass(self, mode: str, rows: list[Comparison], diagnosis: Diagnosis | None) -> None:
        self.passes.append(PassResult(mode, rows, diagnosis))

    @property
    def ok(self) -> bool:
        return not self.problems and self.error is None and all(p.ok for p in self.passes)

    @property
    def diagnosis(self) -> Diagnosis | None:
        """The first divergence's diagnosis (eval pass first, then train, then the steps)."""
        return next((p.diagnosis for p in self.passes if p.diagnosis is not None), None)

    @property
    def first_failure(self) -> tuple[str, Comparison] | None:
        for p in self.passes:
            for r in p.rows:
                if not r.ok:
                    return p.mode, r
        return None

    def format(self, verbose: bool = False) -> str:
        lines = [
            f"check {self.port} port against {self.reference} reference, {self.dtype}, "
            f"input {self.input_shape}"
        ]
        lines.append("weights copied into the port:")
        lines += [f"  {m}" for m in self.mapping] or ["  (none)"]
        for p in self.problems:
            lines.append(f"  cannot transfer: {p}")
        for n in self.notes:
            lines.append(f"note: {n}")
        if self.error:
            lines.append(f"error: {self.error}")
        for p in self.passes:
            bad = [r for r in p.rows if not r.ok]
            worst: dict[str, float] = {}
            for r in p.rows:
                worst[r.quantity] = max(worst.get(r.quantity, 0.0), r.error)
            summary = "  ".join(f"{q} {_e(v)}" for q, v in worst.items())
            lines.append(
                f"{p.mode:<6} {'ok   ' if p.ok else 'PARTS'}  {len(p.rows)} compared, "
                f"{len(bad)} part  (largest: {summary})"
            )
            shown = p.rows if verbose else [r for r in p.rows if not r.ok or r.note][:8]
            for r in shown:
                port = f" / port {r.port_name}" if r.port_name not in (r.name, "") else ""
                extra = f"  {r.note}" if r.note else ""
                lines.append(
                    f"    {r.quantity:<10} {r.name}{port}: {_e(r.error)} "
                    f"(tolerance {r.tol:.0e}) {'ok' if r.ok else 'PARTS'}{extra}"
                )
            if p.diagnosis is not None:
                d = p.diagnosis
                lines.append(f"  first divergence: {d.where}")
                lines.append(f"  cause: {d.cause}")
                if d.slug:
                    lines.append(f"  porting guide: {GUIDE}#{d.slug}")
                if d.detail:
                    lines.append(f"  {d.detail}")
        for e in self.port_errors:
            lines.append(f"the port raised in {e}")
        lines.append(
            (
                "agree: every compared tensor is within the tolerance table"
                if self.ok
                else "PARTS: see the first divergence above"
            )
            + f"  ({self.seconds:.2f} s)"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "reference": self.reference,
            "port": self.port,
            "dtype": self.dtype,
            "input_shape": list(self.input_shape),
            "mapping": self.mapping,
            "problems": self.problems,
            "notes": self.notes,
            "error": self.error,
            "port_errors": self.port_errors,
            "diagnosis": None if self.diagnosis is None else self.diagnosis.to_dict(),
            "passes": [
                {
                    "mode": p.mode,
                    "ok": p.ok,
                    "rows": [r.to_dict() for r in p.rows],
                    "diagnosis": None if p.diagnosis is None else p.diagnosis.to_dict(),
                }
                for p in self.passes
            ],
            "seconds": self.seconds,
        }


def _e(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.1e}"
