"""What a check returns: one row per route x run, printed as a table."""

from __future__ import annotations

import dataclasses

from .tolerances import Tolerance

PASS, FAIL, SKIP, ERROR = "pass", "FAIL", "n/a", "error"


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """The worst element out of tolerance: output (pytree path), index, expected, got."""

    what: str  # "output" or "grad"
    path: str  # "['logits']", "[0]", "" for a bare tensor; torch name for gradients
    index: tuple[int, ...]
    expected: float
    got: float
    count: int  # elements out of tolerance in this leaf
    size: int

    def describe(self) -> str:
        where = f"{self.what}{self.path}" if self.what == "output" else f"grad[{self.path!r}]"
        return (
            f"{where}{list(self.index)}: expected {self.expected:.6g}, got {self.got:.6g} "
            f"({self.count} of {self.size} elements out of tolerance)"
        )


@dataclasses.dataclass(frozen=True)
class Row:
    """One route on one run.

    ``status``: ``pass``, ``FAIL`` (out of tolerance: ``mismatch`` says where), ``n/a`` (the
    route does not apply to this module: ``detail`` says why) or ``error`` (the conversion or
    the run raised: ``detail`` is the first line).  Errors are against torch eager.
    """

    route: str  # "graph", "flax", or "-" for the torch eager reference
    run: str
    status: str
    out_err: float | None = None
    grad_err: float | None = None
    tol: Tolerance | None = None
    grad_tol: Tolerance | None = None
    tol_how: str = ""
    compile_s: float | None = None
    run_s: float | None = None
    send_bytes: int | None = None
    detail: str = ""
    mismatch: Mismatch | None = None

    @property
    def ok(self) -> bool:
        return self.status in (PASS, SKIP)


def _e(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


@dataclasses.dataclass(frozen=True)
class EquivalenceReport:
    """Every row of a check, and the module and inputs it was made on.

    ``passed`` is true when no row failed or raised (routes that do not apply are not
    failures, but at least one route must have run).  ``str(report)`` is the table.
    """

    module: str
    inputs: str
    grads: bool
    rows: tuple[Row, ...]

    @property
    def passed(self) -> bool:
        ran = [r for r in self.rows if r.route != "-" and r.status in (PASS, FAIL)]
        return bool(ran) and all(r.ok for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def row(self, route: str, run: str) -> Row:
        """The row of ``route`` on ``run`` (``"spu:ABY3"`` finds ``spu:ABY3:FM64``)."""
        from ppml_torch.runners.runspec import parse_run

        names = {run, "*"} if run in ("*", "torch") else {str(parse_run(run)), "*"}
        for r in self.rows:
            if r.route == route and r.run in names:
                return r
        raise KeyError(f"no row for route {route!r} on run {run!r}")

    def table(self) -> str:
        head = ["route", "run", "result", "out err", "tol (atol/rtol)"]
        if self.grads:
            head += ["grad err", "grad tol"]
        head += ["compile", "run", "sent", "detail"]
        body = []
        for r in self.rows:
            line = [
                r.route,
                r.run,
                r.status,
                _e(r.out_err),
                "-" if r.tol is None else f"{r.tol.atol:.1e}/{r.tol.rtol:.0e}",
            ]
            if self.grads:
                line += [
                    _e(r.grad_err),
                    "-" if r.grad_tol is None else f"{r.grad_tol.atol:.1e}/{r.grad_tol.rtol:.0e}",
                ]
            line += [
                "-" if r.compile_s is None else f"{r.compile_s:.2f}s",
                "-" if r.run_s is None else f"{r.run_s:.2f}s",
                _bytes(r.send_bytes),
                r.mismatch.describe() if r.mismatch else r.detail,
            ]
            body.append(line)
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
        widths[-1] = 0
        fmt = lambda cells: "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))  # noqa: E731
        out = [f"{self.module} on {self.inputs}", fmt(head).rstrip()]
        out += [fmt(b).rstrip() for b in body]
        hows = {(r.run, r.tol_how) for r in self.rows if r.tol_how.startswith("base")}
        for run, how in sorted(hows):
            out.append(f"tolerance {run}: {how}")
        n_fail = len(self.failures)
        out.append(
            "all rows pass"
            if self.passed
            else f"{n_fail} row(s) failed"
            if n_fail
            else "no route could run"
        )
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()
