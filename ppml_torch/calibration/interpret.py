"""A small jaxpr interpreter that shows every equation's inputs and outputs to a recorder.

``jax.make_jaxpr`` traces a function into the program SPU will compile; :func:`run` evaluates
that program equation by equation in plaintext (each primitive bound eagerly, so the numbers
are JAX's own float32 numbers) and hands every equation that depends on the function's
arguments to ``record``.  Calls (``pjit``, ``custom_jvp_call``, ``custom_vjp_call_jaxpr``,
``closed_call``, ``remat``) are entered, loops (``scan``, ``while``) run iteration by
iteration and ``cond`` runs the branch taken, so nothing inside them is hidden.

Equations whose inputs are all constants (literals, closed-over arrays, or values computed
from them only) are evaluated but not recorded: XLA folds them before SPU sees the program,
so SPU never computes them in fixed point.  Their results are recorded where a later
equation uses them.

A small program without data-dependent control flow (``while``, ``cond``; at most
:data:`JIT_MAX_EQUATIONS` equations) is evaluated in ONE ``jax.jit`` that returns every
recorded value once (the same interpreter, traced): eager evaluation compiles one XLA kernel
per primitive and shape the first time it sees it (2.0 s for a small MLP's training step in
a fresh process, 0.43 s jitted); the numbers are the same.  Larger programs compile slower
jitted than eagerly, so they stay on the eager path.

Each recorded equation carries its *scope*: the name stack of the trace (``jax.named_scope``
of the graph route's steps, Flax module names of the Flax route), with the scopes of the
calls it sits in prefixed, joined by ``/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax import core

# call-like primitives and the parameter holding their body
_CALLS = {
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "remat": "jaxpr",
    "checkpoint": "jaxpr",
    "custom_lin": None,  # only appears under differentiation; bound as is
}

Recorder = Callable[[core.JaxprEqn, str, list[Any], list[bool], list[Any]], None]


def _join(outer: str, inner: str) -> str:
    if not outer:
        return inner
    if not inner:
        return outer
    return f"{outer}/{inner}"


def _split(closed: Any) -> tuple[core.Jaxpr, Sequence[Any]]:
    if isinstance(closed, core.ClosedJaxpr):
        return closed.jaxpr, closed.consts
    return closed, ()


def run(
    closed: core.ClosedJaxpr,
    args: Sequence[Any],
    record: Recorder,
    *,
    arg_is_const: Sequence[bool] | None = None,
    scope: str = "",
) -> list[Any]:
    """Evaluate ``closed`` on ``args`` (flat), calling ``record`` for every non-constant equation.

    ``record(eqn, scope, invals, in_const, outvals)``.
    """
    flags = list(arg_is_const) if arg_is_const is not None else [False] * len(args)
    if _jittable(closed.jaxpr):
        return _run_jitted(closed, list(args), flags, record, scope)
    outs, _ = _eval(closed.jaxpr, closed.consts, list(args), flags, record, scope)
    return outs


# the jitted path's limits: equations once scans are unrolled, and elements of all recorded
# values together (they are all outputs of the one program).  XLA's compile time grows
# quickly with the outputs: in a fresh process a small MLP's training step (about 80
# equations) took 0.43 s jitted against 2.0 s equation by equation, a nanoGPT fine-tune step
# (738 equations) 19.7 s jitted against 3.9 s.
JIT_MAX_EQUATIONS = 250
JIT_MAX_ELEMENTS = 2**26


def _jittable(jaxpr: core.Jaxpr) -> bool:
    budget = {"eqns": 0, "elements": 0}

    def walk(j: core.Jaxpr, times: int) -> bool:
        for eqn in j.eqns:
            name = eqn.primitive.name
            if name in ("while", "cond"):
                return False
            budget["eqns"] += times
            for v in eqn.outvars:
                budget["elements"] += times * int(np.prod(getattr(v.aval, "shape", ()) or (1,)))
            if name in _CALLS and _CALLS[name] and _CALLS[name] in eqn.params:
                if not walk(_split(eqn.params[_CALLS[name]])[0], times):
                    return False
            elif name == "scan":
                if not walk(_split(eqn.params["jaxpr"])[0], times * int(eqn.params["length"])):
                    return False
        return True

    return (
        walk(jaxpr, 1)
        and budget["eqns"] <= JIT_MAX_EQUATIONS
        and budget["elements"] <= JIT_MAX_ELEMENTS
    )


_JITTED: dict[tuple[Any, ...], tuple[Any, list[Any]]] = {}  # the last few programs, by text
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _run_jitted(
    closed: core.ClosedJaxpr, args: list[Any], flags: list[bool], record: Recorder, scope: str
) -> list[Any]:
    """:func:`_eval` traced into one ``jax.jit``; compiled once per program text (the same
    step calibrated twice, e.g. on two batches, compiles once)."""
    consts = [np.asarray(c) if not hasattr(c, "aval") else c for c in closed.consts]
    key = (
        _ADDRESS.sub("", str(closed.jaxpr)),  # thunks print their address: not the program
        tuple(flags),
        scope,
        tuple((np.shape(c), str(getattr(c, "dtype", type(c)))) for c in consts),
    )
    if key not in _JITTED:
        jaxpr, n_consts = closed.jaxpr, len(consts)
        # per recorded equation: (eqn, scope, in_const, where each input and output is), a
        # value being ("out", i) (the i-th output of the program: each traced value once) or
        # ("const", v) (a literal or constant, known at trace time)
        calls: list[tuple[core.JaxprEqn, str, list[bool], list[Any], list[Any]]] = []

        def traced(*a: Any) -> tuple[list[Any], list[Any]]:
            values: list[Any] = []
            index: dict[int, int] = {}
            calls.clear()

            def slot(v: Any) -> Any:
                if not isinstance(v, core.Tracer):
                    return ("const", v)
                if id(v) not in index:
                    index[id(v)] = len(values)
                    values.append(v)
                return ("out", index[id(v)])

            def collect(eqn: Any, where: str, invals: list, in_const: list, outs: list) -> None:
                calls.append(
                    (eqn, where, in_const, [slot(v) for v in invals], [slot(o) for o in outs])
                )

            outs, _ = _eval(jaxpr, a[:n_consts], list(a[n_consts:]), flags, collect, scope)
            return outs, values

        if len(_JITTED) >= 8:
            _JITTED.pop(next(iter(_JITTED)))
        _JITTED[key] = (jax.jit(traced), calls)
    fn, calls = _JITTED[key]
    outs, values = fn(*consts, *args)

    def value(s: Any) -> Any:
        return values[s[1]] if s[0] == "out" else s[1]

    for eqn, where, in_const, ins, eq_outs in calls:
        record(eqn, where, [value(v) for v in ins], in_const, [value(o) for o in eq_outs])
    return list(outs)


def _eval(
    jaxpr: core.Jaxpr,
    consts: Sequence[Any],
    args: list[Any],
    arg_const: list[bool],
    record: Recorder,
    scope: str,
) -> tuple[list[Any], list[bool]]:
    env: dict[core.Var, Any] = {}
    const: dict[core.Var, bool] = {}

    def read(v: Any) -> tuple[Any, bool]:
        if isinstance(v, core.Literal):
            return v.val, True
        return env[v], const[v]

    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v], const[v] = c, True
    for v, a, c in zip(jaxpr.invars, args, arg_const, strict=True):
        env[v], const[v] = a, c

    for eqn in jaxpr.eqns:
        pairs = [read(v) for v in eqn.invars]
        invals = [p[0] for p in pairs]
        in_const = [p[1] for p in pairs]
        where = _join(scope, str(eqn.source_info.name_stack))
        name = eqn.primitive.name
        if all(in_const):
            outs = _bind(eqn, invals)
            out_const = [True] * len(outs)
        elif name in _CALLS and _CALLS[name] and _CALLS[name] in eqn.params:
            body, body_consts = _split(eqn.params[_CALLS[name]])
            outs, out_const = _eval(body, body_consts, invals, in_const, record, where)
        elif name == "scan":
            outs = _scan(eqn, invals, in_const, record, where)
            out_const = [False] * len(outs)
        elif name == "while":
            outs = _while(eqn, invals, in_const, record, where)
            out_const = [False] * len(outs)
        elif name == "cond":
            index = int(np.asarray(invals[0]))
            branches = eqn.params["branches"]
            branch = branches[max(0, min(index, len(branches) - 1))]
            outs, out_const = _eval(
                branch.jaxpr, branch.consts, invals[1:], in_const[1:], record, where
            )
        else:
            outs = _bind(eqn, invals)
            out_const = [False] * len(outs)
            record(eqn, where, invals, in_const, outs)
        for v, o, c in zip(eqn.outvars, outs, out_const, strict=True):
            if not isinstance(v, core.DropVar):
                env[v], const[v] = o, c

    results = [read(v) for v in jaxpr.outvars]
    return [r[0] for r in results], [r[1] for r in results]


def _bind(eqn: core.JaxprEqn, invals: list[Any]) -> list[Any]:
    out = eqn.primitive.bind(*invals, **eqn.params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _scan(
    eqn: core.JaxprEqn, invals: list[Any], in_const: list[bool], record: Recorder, where: str
) -> list[Any]:
    p = eqn.params
    nc, ncarry, length = p["num_consts"], p["num_carry"], p["length"]
    if length == 0:
        return _bind(eqn, invals)
    body, body_consts = _split(p["jaxpr"])
    consts, carry, xs = invals[:nc], invals[nc : nc + ncarry], invals[nc + ncarry :]
    flags = in_const[:nc] + [False] * (len(invals) - nc)
    ys_steps: list[list[Any]] = []
    order = range(length - 1, -1, -1) if p["reverse"] else range(length)
    for i in order:
        out, _ = _eval(body, body_consts, consts + carry + [x[i] for x in xs], flags, record, where)
        carry, ys = out[:ncarry], out[ncarry:]
        ys_steps.append(ys)
    if p["reverse"]:
        ys_steps.reverse()
    ys = [jax.numpy.stack([step[j] for step in ys_steps]) for j in range(len(ys_steps[0]))]
    return list(carry) + ys


def _while(
    eqn: core.JaxprEqn, invals: list[Any], in_const: list[bool], record: Recorder, where: str
) -> list[Any]:
    p = eqn.params
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    cond, cond_consts = _split(p["cond_jaxpr"])
    body, body_consts = _split(p["body_jaxpr"])
    c_args, b_args, state = invals[:cn], invals[cn : cn + bn], invals[cn + bn :]
    c_flags = in_const[:cn] + [False] * len(state)
    b_flags = in_const[cn : cn + bn] + [False] * len(state)
    while True:
        (ok,), _ = _eval(cond, cond_consts, c_args + state, c_flags, record, where)
        if not bool(np.asarray(ok)):
            return state
        state, _ = _eval(body, body_consts, b_args + state, b_flags, record, where)
