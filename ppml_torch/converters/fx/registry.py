"""The one registry of ATen -> JAX lowerings, keyed per ATen overload.

Family files in :mod:`ppml_torch.converters.fx.ops` register into it::

    lower, refuse = registry.family("elementwise")

    @lower(aten.add.Tensor)
    def add(x, y, alpha=1): ...

    @lower(aten.exp.default, mpc="exp is a polynomial approximation under SPU")
    def exp(x): ...

    refuse(aten.bernoulli.default, reason="random op ...")

A lowering receives the node's arguments with tensors already replaced by JAX
arrays (values computed from inputs or weights) or numpy arrays (constants
folded at convert time, public under MPC), in ATen's positional/keyword form,
and returns an array or a tuple of arrays.  ``mpc=`` marks a lowering that is
exact in float but only approximate under fixed-point MPC; the note lands in
the op table (:mod:`ppml_torch.converters.fx.table`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

Status = Literal["supported", "approximate-under-MPC", "unsupported"]
STATUSES: tuple[Status, ...] = ("supported", "approximate-under-MPC", "unsupported")
FAMILIES = ("elementwise", "reductions", "linalg", "shapes", "nn")


@dataclasses.dataclass(frozen=True)
class Lowering:
    """One registry entry: an ATen overload, its JAX function (None if refused) and status."""

    op: Any  # torch._ops.OpOverload
    fn: Callable[..., Any] | None
    family: str
    status: Status
    note: str = ""
    # check(*args, **kwargs) -> refusal reason or None, run at convert time on the node's
    # arguments (tensors appear as fx Nodes): refuses e.g. dropout with p > 0 in training mode.
    check: Callable[..., str | None] | None = None

    @property
    def name(self) -> str:
        return op_name(self.op)


LOWERINGS: dict[Any, Lowering] = {}


def op_name(op: Any) -> str:
    """``torch.ops.aten.add.Tensor`` -> ``"aten.add.Tensor"``; other callables by their name."""
    if type(op).__name__ == "OpOverload":
        return str(op)
    module = getattr(op, "__module__", None)
    qual = getattr(op, "__qualname__", None) or getattr(op, "__name__", None)
    return f"{module}.{qual}" if module and qual else str(op)


def _register(entry: Lowering) -> None:
    if entry.op in LOWERINGS:
        raise ValueError(
            f"{entry.name} is registered twice ({LOWERINGS[entry.op].family}, {entry.family})"
        )
    LOWERINGS[entry.op] = entry


def family(name: str) -> tuple[Callable[..., Any], Callable[..., None]]:
    """The ``lower`` decorator and ``refuse`` function of one family file."""
    if name not in FAMILIES:
        raise ValueError(f"unknown op family {name!r}; choose one of {FAMILIES}")

    def lower(
        *ops: Any,
        mpc: str | None = None,
        note: str = "",
        check: Callable[..., str | None] | None = None,
    ) -> Callable[..., Any]:
        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            for op in ops:
                status: Status = "approximate-under-MPC" if mpc else "supported"
                text = mpc if not note else (f"{mpc}; {note}" if mpc else note)
                _register(Lowering(op, fn, name, status, text or "", check))
            return fn

        return wrap

    def refuse(*ops: Any, reason: str) -> None:
        for op in ops:
            _register(Lowering(op, None, name, "unsupported", reason))

    return lower, refuse


def load() -> dict[Any, Lowering]:
    """Import every family file (filling the registry) and return the registry."""
    from ppml_torch.converters.fx import ops  # noqa: F401  (registers on import)

    return LOWERINGS


def family_file(fam: str) -> str:
    return f"ppml_torch/converters/fx/ops/{fam}.py"
