"""A traced program cut into parts, each a program of its own: one module's work of one kind.

SPU compiles a whole program into one pphlo function and totals its profile per op kind, so
the cost of a module cannot be read from one run.  Instead the function is traced once
(``jax.make_jaxpr``, as SPU's frontend traces it), calls are inlined (``pjit``,
``custom_jvp_call``, ...), every equation is given its :class:`~.scopes.Place`, and each
maximal run of equations with the same row, direction and kind becomes a :class:`Part`:
a function of the values it reads, returning the values later parts read.  Run one after
the other in a session, the parts compute what the whole program computes, and each run's
cost is the part's.

Equations whose inputs are all constants are computed here, in plaintext, and enter the parts
as constants: the session folds them before SPU sees a program (``runners/compile.py``), so
the whole program never computes them under MPC either.  Equations whose results nothing
uses are dropped, as XLA drops them from the whole program.  Loops and conditionals stay
whole (one equation, one part).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax import core

from .scopes import LAYOUT, Place, is_layout, place

# call-like primitives and the parameter holding their body: inlined
_CALLS = {
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "remat": "jaxpr",
    "checkpoint": "jaxpr",
}


@dataclasses.dataclass(frozen=True)
class Const:
    """A value known when tracing (a literal, a closed-over array, or computed from them)."""

    value: Any


Ref = Any  # an int (a value computed under MPC) or a Const


@dataclasses.dataclass
class Op:
    eqn: core.JaxprEqn
    ins: list[Ref]
    outs: list[int | None]  # None: a dropped output
    scope: str  # the name stack, calls' scopes prefixed
    place: Place | None = None


@dataclasses.dataclass
class Part:
    """Consecutive equations of one row, direction and kind, run as one program.

    ``inputs``: the value ids it reads (program inputs or earlier parts' outputs);
    ``outputs``: the ids it computes that later parts, or the program's outputs, read.
    """

    index: int
    row: str
    path: str | None
    module_kind: str
    backward: bool
    kind: str
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]

    @property
    def primitives(self) -> list[str]:
        return [op.eqn.primitive.name for op in self.ops]

    def function(self) -> Callable[..., tuple[Any, ...]]:
        """``f(*values)`` -> the part's outputs, in order (``values`` as in ``inputs``)."""
        ops, inputs, outputs = self.ops, self.inputs, self.outputs

        def part(*values: Any) -> tuple[Any, ...]:
            env = dict(zip(inputs, values, strict=True))
            for op in ops:
                invals = [r.value if isinstance(r, Const) else env[r] for r in op.ins]
                outs = _bind(op.eqn, invals)
                for o, v in zip(op.outs, outs, strict=True):
                    if o is not None:
                        env[o] = v
            return tuple(env[o] for o in outputs)

        part.__name__ = f"part{self.index}"
        return part


@dataclasses.dataclass
class Cut:
    """A traced program as parts: ``n_inputs`` flat inputs (ids ``0..n_inputs-1``)."""

    n_inputs: int
    parts: list[Part]
    outputs: list[Ref]  # the program's flat outputs


def cut(
    closed: core.ClosedJaxpr,
    module_kinds: dict[str, str] | None = None,
    root_kind: str = "",
    weights: dict[int, str] | None = None,
) -> Cut:
    """Inline, fold constants, drop dead equations, place and group ``closed``'s equations.

    ``module_kinds``: module path -> class name; ``weights``: input index -> the module path
    owning that input (a weight), for :func:`_to_weight_owner`.
    """
    n = len(closed.jaxpr.invars)
    flat = _Flattener(n)
    outs = flat.walk(closed.jaxpr, closed.consts, list(range(n)), "")
    ops = _live(flat.ops, outs)
    kinds = module_kinds or {}
    for op in ops:
        op.place = place(op.scope, op.eqn.primitive.name, kinds, root_kind)
    _to_weight_owner(ops, weights or {}, kinds)
    _merge_layout(ops)
    return Cut(n, _group(ops, outs), outs)


def _to_weight_owner(ops: list[Op], weights: dict[int, str], kinds: dict[str, str]) -> None:
    """Work on a module's weights done by one of its parents counts as that module's.

    A parent may use a child's weights without calling the child (the cached GPT multiplies
    by each ``Linear``'s weight in its own ``forward``, in the layout SPU runs fastest): the
    trace then places the product in the parent.  An equation reading a weight (directly, or
    through reshapes and transposes of it) of a module below its own is moved to that module.
    """
    origin = dict(weights)
    for op in ops:
        p = op.place
        owners = [origin[r] for r in op.ins if isinstance(r, int) and r in origin]
        if owners and is_layout(op.eqn.primitive.name) and len(op.ins) == 1:
            for o in op.outs:
                if o is not None:
                    origin[o] = owners[0]
        below = [m for m in owners if p.path is not None and _strictly_below(m, p.path)]
        if below:
            p.path = p.row = below[0]
            p.module_kind = kinds.get(below[0], "")


def _strictly_below(path: str, parent: str) -> bool:
    return path != parent and (parent == "" or path.startswith(parent + "."))


class _Flattener:
    def __init__(self, n_inputs: int) -> None:
        self.ops: list[Op] = []
        self.n_values = n_inputs  # ids 0..n_inputs-1 are the program's inputs

    def new(self) -> int:
        self.n_values += 1
        return self.n_values - 1

    def walk(self, jaxpr: core.Jaxpr, consts: Sequence[Any], args: list[Ref], scope: str):
        env: dict[core.Var, Ref] = {}

        def read(v: Any) -> Ref:
            if isinstance(v, core.Literal):
                return Const(v.val)
            return env[v]

        for v, c in zip(jaxpr.constvars, consts, strict=True):
            env[v] = Const(c)
        for v, a in zip(jaxpr.invars, args, strict=True):
            env[v] = a
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            where = _join(scope, str(eqn.source_info.name_stack))
            name = eqn.primitive.name
            body_key = _CALLS.get(name)
            if all(isinstance(r, Const) for r in ins):
                outs: list[Ref] = [Const(_concrete(v)) for v in _bind(eqn, [r.value for r in ins])]
            elif body_key and body_key in eqn.params:
                body = eqn.params[body_key]
                inner, inner_consts = (
                    (body.jaxpr, body.consts) if isinstance(body, core.ClosedJaxpr) else (body, ())
                )
                outs = self.walk(inner, inner_consts, ins, where)
            else:
                ids = [None if isinstance(v, core.DropVar) else self.new() for v in eqn.outvars]
                self.ops.append(Op(eqn, ins, ids, where))
                outs = list(ids)
            for v, o in zip(eqn.outvars, outs, strict=True):
                if not isinstance(v, core.DropVar):
                    env[v] = o
        return [read(v) for v in jaxpr.outvars]


def _join(outer: str, inner: str) -> str:
    return f"{outer}/{inner}" if outer and inner else outer or inner


def _bind(eqn: core.JaxprEqn, invals: list[Any]) -> list[Any]:
    subfuns, params = eqn.primitive.get_bind_params(eqn.params)
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _concrete(v: Any) -> Any:
    return np.asarray(v) if hasattr(v, "shape") else v


def _live(ops: list[Op], outputs: list[Ref]) -> list[Op]:
    """The equations some output depends on, in order."""
    needed = {r for r in outputs if isinstance(r, int)}
    kept: list[Op] = []
    for op in reversed(ops):
        if any(o in needed for o in op.outs if o is not None) or op.eqn.effects:
            kept.append(op)
            needed.update(r for r in op.ins if isinstance(r, int))
    kept.reverse()
    return kept


def _merge_layout(ops: list[Op]) -> None:
    """Reshapes, transposes and slices take the kind of the work next to them in the same row
    and direction (the previous op, else the next), so they do not cut a part in two."""
    nxt: list[str | None] = [None] * len(ops)
    after: tuple[str, bool, str] | None = None
    for i in range(len(ops) - 1, -1, -1):
        p = ops[i].place
        if p.kind != LAYOUT:
            after = (p.row, p.backward, p.kind)
        nxt[i] = after[2] if after and after[:2] == (p.row, p.backward) else None
    prev: Place | None = None
    for i, op in enumerate(ops):
        p = op.place
        if p.kind == LAYOUT:
            if prev is not None and (prev.row, prev.backward) == (p.row, p.backward):
                p.kind = prev.kind
            else:
                p.kind = nxt[i] or "other"
        prev = p


def _group(ops: list[Op], outputs: list[Ref]) -> list[Part]:
    parts: list[Part] = []
    for op in ops:
        p = op.place
        key = (p.row, p.backward, p.kind)
        last = parts[-1] if parts else None
        if last is None or (last.row, last.backward, last.kind) != key:
            last = Part(len(parts), p.row, p.path, p.module_kind, p.backward, p.kind, [], [], [])
            parts.append(last)
        last.ops.append(op)
    _sink(parts, outputs)
    _wire(parts, outputs)
    return parts


def _is_bool_cast(op: Op) -> bool:
    if op.eqn.primitive.name != "convert_element_type" or len(op.ins) != 1:
        return False
    return np.dtype(op.eqn.invars[0].aval.dtype) == np.bool_


def _is_constant_scaling(op: Op) -> bool:
    """``x * c``, ``x / c`` or ``-x`` with ``c`` a constant: one fixed-point truncation."""
    name = op.eqn.primitive.name
    if name == "neg":
        return True
    if name == "mul":
        return sum(isinstance(r, Const) for r in op.ins) == 1
    return name == "div" and isinstance(op.ins[1], Const) and not isinstance(op.ins[0], Const)


def _sink(parts: list[Part], outputs: list[Ref]) -> None:
    """Move to the part that reads it what SPU would fold into the reader in one program.

    * A cast of a secret boolean to a number: in one program SPU multiplies by the boolean
      directly (a one-hot matrix times a secret: the cast disappears into a mixed-type
      product); left behind it would be a conversion of its own and a full fixed-point
      product after it (measured: 5% more bytes on a tiny GPT-2's gradient under ABY3).
      Every reading part gets its own copy; the boolean crosses instead.
    * A scaling by a constant read by one other part only: XLA folds ``(x * a) * b`` into one
      product, one truncation (differentiation leaves such pairs across the forward and the
      backward: the homework's loss, 2 of 90 sends).

    Each copy goes before its first reader, with the reader's place.
    """
    made: dict[int, tuple[int, Op]] = {}
    readers: dict[int, set[int]] = {}
    for part in parts:
        for op in part.ops:
            for o in op.outs:
                if o is not None:
                    made[o] = (part.index, op)
            for r in op.ins:
                if isinstance(r, int):
                    readers.setdefault(r, set()).add(part.index)
    returned = {r for r in outputs if isinstance(r, int)}

    def movable(r: int, reader: int) -> Op | None:
        where, op = made.get(r, (reader, None))
        if op is None or where == reader:
            return None
        if _is_bool_cast(op):
            return op
        if _is_constant_scaling(op) and r not in returned and readers[r] == {reader}:
            return op
        return None

    next_id = 1 + max(made, default=0)
    for part in parts:
        copies: dict[int, int] = {}  # moved op's output id -> its copy's id in this part
        new_ops: list[Op] = []
        for op in part.ops:
            for k, r in enumerate(op.ins):
                src = movable(r, part.index) if isinstance(r, int) else None
                if src is None:
                    continue
                if r not in copies:
                    copies[r] = next_id
                    new_ops.append(Op(src.eqn, list(src.ins), [next_id], src.scope, op.place))
                    next_id += 1
                op.ins[k] = copies[r]
            new_ops.append(op)
        part.ops = new_ops
    # drop what nothing reads any more (the moved ops' originals)
    while True:
        read = returned | {r for p in parts for op in p.ops for r in op.ins if isinstance(r, int)}
        dropped = False
        for part in parts:
            keep = [
                op
                for op in part.ops
                if op.eqn.effects or any(o in read for o in op.outs if o is not None)
            ]
            dropped = dropped or len(keep) != len(part.ops)
            part.ops = keep
        if not dropped:
            break
    parts[:] = [p for p in parts if p.ops]
    for i, p in enumerate(parts):
        p.index = i


def _wire(parts: list[Part], outputs: list[Ref]) -> None:
    """Each part's inputs (read from outside it) and outputs (read later, or returned)."""
    made_in: dict[int, int] = {}
    readers: dict[int, set[int]] = {}
    for part in parts:
        for op in part.ops:
            for r in op.ins:
                if isinstance(r, int):
                    readers.setdefault(r, set()).add(part.index)
            for o in op.outs:
                if o is not None:
                    made_in[o] = part.index
    returned = {r for r in outputs if isinstance(r, int)}
    for part in parts:
        seen: set[int] = set()
        for op in part.ops:
            for r in op.ins:
                if isinstance(r, int) and made_in.get(r) != part.index and r not in seen:
                    seen.add(r)
                    part.inputs.append(r)
        part.outputs = sorted(
            o
            for o, where in made_in.items()
            if where == part.index
            and (o in returned or any(i != part.index for i in readers.get(o, ())))
        )
