"""The profile of one program: per torch module and per kind of work, with network estimates.

Figures (all parties summed, as the session reports them): ``bytes`` sent, ``sends`` (send
actions) and ``seconds`` (the slowest party's wall time).  ``report.total_*`` are the whole
program's, measured by the session in one run; each :class:`PartCost` is one part run as its
own program (:mod:`.program`).  Bytes and sends of the parts are measured and add up to the
whole's (``report.agreement``); their times are each part's SPU execution time (the slowest
party's), scaled by one factor (``report.time_scale``) so that they add up to the whole's
measured time: the share of each part is measured, the sum is the whole's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputFileError, PpmlError
from .network import NETWORKS, Network, Terms, as_network, part_terms
from .scopes import KINDS


class ProfileError(PpmlError, ValueError):
    """Bad input to ``profile``: a run without MPC, a module path that does not exist, ..."""


@dataclasses.dataclass(frozen=True)
class Cost:
    bytes: int = 0
    sends: int = 0
    seconds: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.bytes + other.bytes, self.sends + other.sends, self.seconds + other.seconds
        )


@dataclasses.dataclass(frozen=True)
class PartCost:
    """One part of the program (one module's work of one kind, one direction), measured.

    ``party_bytes``/``party_sends``: each party's figures (in-process SPU logs them without
    the party's name: sorted, not in party order).  ``seconds`` is ``measured_s`` times the
    report's time scale.
    """

    row: str
    path: str | None
    module_kind: str
    kind: str
    backward: bool
    cost: Cost
    measured_s: float
    party_bytes: tuple[int, ...]
    party_sends: tuple[int, ...]
    equations: int


@dataclasses.dataclass(frozen=True)
class Row:
    """One torch module (``path``; ``""`` the whole model) or a part outside every module
    (``"(loss)"``, ``"(argmax)"``, ``"(outside modules)"``).

    ``forward``/``backward``: the module with everything inside it; ``own_forward``/
    ``own_backward``: only what no child module holds (a leaf's own is all of it).  The
    rows' own figures add up to the report's totals.
    """

    path: str
    kind: str
    depth: int
    forward: Cost
    backward: Cost
    own_forward: Cost
    own_backward: Cost
    share: float  # of the total time
    has_children: bool

    @property
    def bytes(self) -> int:
        return self.forward.bytes + self.backward.bytes

    @property
    def sends(self) -> int:
        return self.forward.sends + self.backward.sends

    @property
    def seconds(self) -> float:
        return self.forward.seconds + self.backward.seconds

    @property
    def own(self) -> Cost:
        return self.own_forward + self.own_backward

    @property
    def is_module(self) -> bool:
        return not self.path.startswith("(")

    @property
    def label(self) -> str:
        """The row's name in tables: a parent's own work is marked so."""
        name = self.path or "(model)"
        if self.has_children:
            name = f"{name[:-1]}, own work)" if name == "(model)" else f"{name} (own work)"
        return name


@dataclasses.dataclass(frozen=True)
class Estimate:
    """:meth:`ProfileReport.estimate`: the program's time on ``network``, in three terms."""

    network: Network
    terms: Terms
    rows: dict[str, Terms]  # own figures per row path

    @property
    def seconds(self) -> float:
        return self.terms.seconds

    def describe(self) -> str:
        t = self.terms
        return (
            f"{self.network.describe()}: {t.seconds:.3f} s = compute {t.compute_s:.3f} s + "
            f"transfer {t.transfer_s:.3f} s + latency {t.latency_s:.3f} s"
        )


@dataclasses.dataclass(frozen=True)
class Measured:
    """One program run: bytes and sends (all parties), run time, per-party figures."""

    cost: Cost
    compile_s: float
    party_bytes: tuple[int, ...]
    party_sends: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ProfileReport:
    source: str
    session: str
    route: str
    grads: bool
    parties: tuple[str, ...]
    whole: Measured
    parts: tuple[PartCost, ...]
    parts_compile_s: float
    time_scale: float
    module_kinds: dict[str, str]

    # -- totals ----------------------------------------------------------------------------
    @property
    def total_bytes(self) -> int:
        return self.whole.cost.bytes

    @property
    def total_sends(self) -> int:
        return self.whole.cost.sends

    @property
    def total_seconds(self) -> float:
        return self.whole.cost.seconds

    @property
    def agreement(self) -> tuple[float, float]:
        """(bytes, sends) of the parts summed, over the whole program's (1.0: equal)."""
        b = sum(p.cost.bytes for p in self.parts)
        s = sum(p.cost.sends for p in self.parts)
        return (b / self.total_bytes if self.total_bytes else float(b == 0)), (
            s / self.total_sends if self.total_sends else float(s == 0)
        )

    # -- rows --------------------------------------------------------------------------------
    @property
    def rows(self) -> list[Row]:
        """One row per module path (parents included; ``""`` the whole model) and per part
        outside every module, in program order."""
        return _rows(self.parts, self.module_kinds, self.total_seconds)

    @property
    def leaves(self) -> list[Row]:
        """The rows holding work of their own, costliest (time) first: they add up to the
        totals."""
        own = [r for r in self.rows if r.own.bytes or r.own.sends or r.own.seconds]
        return sorted(own, key=lambda r: (-r.own.seconds, -r.own.bytes))

    def row(self, path: str) -> Row:
        """The row of a module path; a path the profile does not hold is a one-line error."""
        rows = {r.path: r for r in self.rows}
        if path not in rows:
            modules = [p for p in rows if p]
            near = [p for p in modules if path and (path in p or p in path)][:4]
            hint = f"; near: {', '.join(near)}" if near else ""
            raise ProfileError(
                f"no module {path!r} in this profile of {self.source}{hint} "
                f"({len(modules)} rows; '' is the whole model)"
            )
        return rows[path]

    def kinds(self) -> dict[str, tuple[Cost, Cost]]:
        """Kind of work (:data:`~.scopes.KINDS`) -> (forward, backward), in that order."""
        out: dict[str, list[Cost]] = {k: [Cost(), Cost()] for k in KINDS}
        for p in self.parts:
            out.setdefault(p.kind, [Cost(), Cost()])[int(p.backward)] += p.cost
        return {
            k: (f, b) for k, (f, b) in out.items() if f.bytes or f.seconds or b.bytes or b.seconds
        }

    # -- network ------------------------------------------------------------------------------
    def estimate(
        self, network: str | Network | float = "lan", rtt_s: float | None = None
    ) -> Estimate:
        """The program's time between machines: ``"lan"``, ``"wan"``, ``"puma-lan"`` or
        ``estimate(bandwidth_bits_per_s, rtt_s)`` (model: :mod:`.network`)."""
        net = as_network(network, rtt_s)
        total, rows = Terms(), {}
        for p in self.parts:
            t = part_terms(p.cost.seconds, p.party_bytes, p.party_sends, net)
            total += t
            rows[p.row] = rows.get(p.row, Terms()) + t
        return Estimate(net, total, rows)

    # -- text -------------------------------------------------------------------------------
    def __str__(self) -> str:
        return self.describe()

    def describe(
        self,
        top: int | None = 20,
        networks: Sequence[str | Network] = ("lan", "wan"),
        under: str | None = None,
    ) -> str:
        """The table: the rows with work of their own, costliest first (``top`` of them; None:
        all), then per kind of work, then network estimates.  ``under``: only that module's
        rows (its own and those inside it)."""
        nets = [as_network(n) for n in networks]
        leaves = self.leaves
        if under is not None:
            self.row(under)
            leaves = [r for r in leaves if _inside(r.path, under)]
        est = [self.estimate(n) for n in nets]
        ab, asend = self.agreement
        w = self.whole
        lines = [
            f"profile of {self.source} ({self.route} route) on {self.session}"
            + (", forward and backward" if self.grads else ""),
            f"whole program: {_size(self.total_bytes)} sent in {self.total_sends} sends "
            f"(all {len(self.parties)} parties), {self.total_seconds:.3f} s (slowest party), "
            f"compiled in {w.compile_s:.2f} s",
            f"{len(self.parts)} parts, each run as its own program: bytes {ab:.1%} and sends "
            f"{asend:.1%} of the whole's; times scaled by {self.time_scale:.2f} to add up to it",
        ]
        if under is not None:
            r = self.row(under)
            lines.append(
                f"module {under or '(model)'} ({r.kind or '-'}): {_size(r.bytes)} sent in {r.sends} "
                f"sends, {r.seconds:.4f} s, {r.share:.0%} of the time"
            )
        lines += [""] + _table(self, leaves[:top] if top else leaves, est)
        if top and len(leaves) > top:
            lines.append(f"... {len(leaves) - top} more rows (describe(top=None) lists all)")
        lines += [""] + _kind_table(self)
        lines += ["", "network estimates (model: ppml_torch/profiling/network.py):"]
        lines += [f"  {e.describe()}" for e in est]
        return "\n".join(lines)

    def plot(self, path: str | Path, top: int = 20) -> Path:
        """A PNG bar chart of the costliest rows (time and bytes); returns the path."""
        from .plot import bar_chart

        out = Path(path)
        if out.suffix.lower() != ".png":
            raise ProfileError(f"plot: {out} does not end in .png; give a .png file name")
        if not out.parent.is_dir():
            raise InputFileError(f"plot: folder {out.parent} does not exist; create it first")
        bar_chart(self, out, top)
        return out


def _inside(path: str, under: str) -> bool:
    if path.startswith("("):
        return False
    return under == "" or path == under or path.startswith(under + ".")


def _size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def _pct(x: float, total: float) -> str:
    return f"{x / total:.0%}" if total else "-"


def _table(rep: ProfileReport, rows: list[Row], est: list[Estimate]) -> list[str]:
    head = ["module", "kind"]
    if rep.grads:
        head += ["sent fwd", "sent bwd", "share", "sends", "time fwd", "time bwd", "share"]
    else:
        head += ["sent", "share", "sends", "time", "share"]
    head += [e.network.name for e in est]
    body = []
    for r in rows:
        o = r.own
        cells = [r.label, r.kind or "-"]
        if rep.grads:
            cells += [_size(r.own_forward.bytes), _size(r.own_backward.bytes)]
        else:
            cells += [_size(o.bytes)]
        cells += [_pct(o.bytes, rep.total_bytes), str(o.sends)]
        if rep.grads:
            cells += [f"{r.own_forward.seconds:.4f}s", f"{r.own_backward.seconds:.4f}s"]
        else:
            cells += [f"{o.seconds:.4f}s"]
        cells += [_pct(o.seconds, rep.total_seconds)]
        cells += [f"{e.rows.get(r.path, Terms()).seconds:.3f}s" for e in est]
        body.append(cells)
    return _format(head, body)


def _kind_table(rep: ProfileReport) -> list[str]:
    est = rep.estimate("wan")
    wan: dict[str, float] = {}
    for p in rep.parts:
        wan[p.kind] = (
            wan.get(p.kind, 0.0)
            + part_terms(p.cost.seconds, p.party_bytes, p.party_sends, est.network).seconds
        )
    head = ["kind of work", "sent", "share", "sends", "time", "share", "wan"]
    body = []
    for kind, (f, b) in rep.kinds().items():
        c = f + b
        body.append(
            [
                kind,
                _size(c.bytes),
                _pct(c.bytes, rep.total_bytes),
                str(c.sends),
                f"{c.seconds:.4f}s",
                _pct(c.seconds, rep.total_seconds),
                f"{wan.get(kind, 0.0):.3f}s",
            ]
        )
    return _format(head, body)


def _format(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    lines = []
    for i, cells in enumerate([head, *body]):
        out = [
            c.ljust(w) if j < 2 else c.rjust(w)
            for j, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        lines.append("  ".join(out).rstrip())
        if i == 0:
            lines.append("-" * len(lines[-1]))
    return lines


def _rows(parts: Sequence[PartCost], module_kinds: dict[str, str], total_s: float) -> list[Row]:
    order: list[str] = []
    acc: dict[str, dict[str, Any]] = {}

    def slot(path: str) -> dict[str, Any]:
        if path not in acc:
            acc[path] = {"f": Cost(), "b": Cost(), "of": Cost(), "ob": Cost(), "kids": False}
            order.append(path)
        return acc[path]

    for p in parts:
        d = "b" if p.backward else "f"
        if p.path is None:  # outside the model
            s = slot(p.row)
            s[d] += p.cost
            s["o" + d] += p.cost
            continue
        chain = _ancestors(p.path)
        for i, path in enumerate(chain):
            s = slot(path)
            s[d] += p.cost
            if i < len(chain) - 1:
                s["kids"] = True
        slot(p.path)["o" + d] += p.cost
        if p.module_kind and not module_kinds.get(p.path):
            module_kinds = {**module_kinds, p.path: p.module_kind}
    rows = []
    for path in order:
        s = acc[path]
        total = s["f"].seconds + s["b"].seconds
        depth = 0 if path.startswith("(") or not path else path.count(".") + 1
        rows.append(
            Row(
                path,
                module_kinds.get(path, ""),
                depth,
                s["f"],
                s["b"],
                s["of"],
                s["ob"],
                total / total_s if total_s else 0.0,
                s["kids"],
            )
        )
    return rows


def _ancestors(path: str) -> list[str]:
    """``"h.0.attn"`` -> ``["", "h", "h.0", "h.0.attn"]``."""
    if not path:
        return [""]
    parts = path.split(".")
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


__all__ = ["NETWORKS", "Cost", "Estimate", "PartCost", "ProfileError", "ProfileReport", "Row"]
