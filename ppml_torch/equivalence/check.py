"""``check_equivalence``: a torch module against its conversions, in plaintext and under MPC.

Files: :mod:`.inputs` (the arguments, checked before any session), :mod:`.one_run` (one route
on one run: conversion, torch reference, the row), :mod:`.approx` (the approximated ops a
program uses), :mod:`.outputs` (outputs by path and their comparison), :mod:`.tolerances`,
:mod:`.report` (the rows and the table).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ppml_torch.model import ROUTES
from ppml_torch.runners.plan import session_plan
from ppml_torch.runners.runspec import RunSpec

from .approx import approximated_ops
from .inputs import (
    EquivalenceError,
    ToleranceArg,
    check_dtypes,
    routes_of,
    runs_of,
    split_inputs,
    tolerances_of,
)
from .one_run import (
    NOT_APPLICABLE,
    Case,
    TorchGrads,
    as_numpy,
    convert,
    first_line,
    run_one,
    shape_of,
)
from .outputs import flatten_outputs
from .report import ERROR, PASS, SKIP, EquivalenceReport, Row

__all__ = ["DEFAULT_RUNS", "EquivalenceError", "check_equivalence"]

DEFAULT_RUNS = ("torch", "cpu", "spu:SEMI2K", "spu:ABY3")


def check_equivalence(
    module: Any,
    example_inputs: Any,
    *,
    runs: Iterable[str] = DEFAULT_RUNS,
    routes: Iterable[str] = ROUTES,
    grads: bool = False,
    tolerance: ToleranceArg = None,
    example_kwargs: Mapping[str, Any] | None = None,
    sessions: Callable[[RunSpec], Any] | None = None,
) -> EquivalenceReport:
    """Convert ``module`` by every route, run it on every run, compare with torch eager.

    Args:
      module: a ``torch.nn.Module``, checked in its current train/eval mode.
      example_inputs: a tensor or a tuple of tensors (positional inputs); their shapes are
        the converted program's shapes.  int64 inputs run as int32 (refused if a value does
        not fit); float64 is refused (JAX runs float32: pass ``.float()`` inputs and module).
      runs: run specs (``torch``, ``cpu``, ``spu:SEMI2K``, ``spu:ABY3:FM128``,
        ``secretflow:SEMI2K``; see :mod:`ppml_torch.runners.runspec`).  ``torch`` adds the row of the
        torch eager reference itself (its time); the reference is always computed.
      routes: ``graph`` (:func:`ppml_torch.convert`) and/or ``flax``
        (:func:`ppml_torch.to_flax`, for the families it knows).  A route that does not apply
        gets a row saying why; the other routes still run.
      grads: also compare the gradients of ``sum(outputs)`` w.r.t. every parameter (under
        MPC: ``jax.grad`` inside the SPU program).
      tolerance: ``None`` (default): derived per run from the measured errors of the
        approximated ops the converted program uses (:mod:`.tolerances`).  A number: that
        ``atol`` and ``rtol`` on every MPC run; a :class:`~.tolerances.Tolerance`; or
        a mapping run spec -> either.  An element passes when
        ``|got - expected| <= atol + rtol * |expected|`` (gradients: ``rtol`` times the
        largest ``|expected|`` of the parameter, see :func:`.outputs.compare`).
      example_kwargs: keyword inputs: tensors are inputs (owned by the input party), other
        values are fixed at conversion (``use_cache=False``); the flax route takes none.
      sessions: ``run -> Session`` to reuse open sessions (the pytest plugin's shared ones);
        default: each MPC run's session is opened for this call and closed after it.

    Under MPC the weights are the secret of the session's first party and the inputs of its
    second (:func:`ppml_torch.runners.roles.roles`); outputs are revealed to every party for
    the comparison.

    Raises:
      EquivalenceError, ConfigError: bad runs, routes, tolerance or example inputs (one line,
        before any session starts).
    """
    import torch

    run_specs = runs_of(runs)
    route_list = routes_of(routes)
    tols = tolerances_of(tolerance, run_specs)
    if not isinstance(module, torch.nn.Module):
        raise EquivalenceError(
            f"check_equivalence: expected a torch.nn.Module, got {type(module).__name__}"
        )
    name = type(module).__name__
    args, tensor_kw, fixed_kw = split_inputs(example_inputs, example_kwargs, name)
    check_dtypes(module, args, tensor_kw, name)

    # -- torch eager reference (also the check that the inputs fit the module) ----------------
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            ref_out = module(*args, **tensor_kw, **fixed_kw)
    except Exception as e:  # noqa: BLE001 - any failure here means the inputs do not fit
        raise EquivalenceError(
            f"the example inputs do not fit {name}: {type(e).__name__}: {first_line(e)}"
        ) from None
    torch_s = time.perf_counter() - t0
    expected = flatten_outputs(ref_out, name, "torch")
    if not expected:
        raise EquivalenceError(f"{name} returns no tensor; nothing to compare")
    data = (
        tuple(as_numpy(a) for a in args),
        {k: as_numpy(v) for k, v in tensor_kw.items()},
    )
    reference = TorchGrads(module, args, tensor_kw, fixed_kw) if grads else None
    case = Case(name, data, fixed_kw, expected, reference)

    rows: list[Row] = []
    if any(r.is_torch for r in run_specs):
        rows.append(
            Row("-", "torch", PASS, run_s=torch_s, detail="reference: torch eager (float32)")
        )
    mpc_runs = [r for r in run_specs if not r.is_torch]
    opened: dict[RunSpec, Any] = {}
    stack = contextlib.ExitStack()  # closes the sessions this call opened, and only those

    def session_for(run: RunSpec) -> Any:
        if sessions is not None:
            return sessions(run)
        if run not in opened:
            opened[run] = stack.enter_context(session_plan(str(run)).borrow())
        return opened[run]

    with stack:
        for route in route_list:
            cm, why = convert(route, module, args, tensor_kw, fixed_kw)
            if cm is None:
                status = SKIP if why.startswith(NOT_APPLICABLE) else ERROR
                rows.append(Row(route, "*", status, detail=why))  # one row: no run started
                continue
            approx = approximated_ops(cm, data)
            for run in mpc_runs:
                rows.append(
                    run_one(
                        cm, route, run, case=case, session_for=session_for, tol=tols.get(run),
                        approx=approx,
                    )
                )  # fmt: skip
    shapes = [shape_of(a) for a in args] + [f"{k}={shape_of(v)}" for k, v in tensor_kw.items()]
    return EquivalenceReport(name, f"({', '.join(shapes)})", bool(grads), tuple(rows))
