"""The arguments of a check, all checked before any session starts (one-line errors)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ppml_torch.errors import PpmlError
from ppml_torch.model import ROUTES
from ppml_torch.runners.runspec import RunSpec, parse_runs

from .tolerances import Tolerance

ToleranceArg = float | Tolerance | Mapping[str, float | Tolerance] | None


class EquivalenceError(PpmlError, ValueError):
    """Bad arguments to a check (runs, routes, tolerance, example inputs); nothing ran."""


def runs_of(runs: Iterable[str]) -> list[RunSpec]:
    if isinstance(runs, str):
        runs = runs.replace(",", " ").split()
    return parse_runs(list(runs))


def routes_of(routes: Iterable[str]) -> list[str]:
    if isinstance(routes, str):
        routes = [routes]
    out = list(routes)
    bad = [r for r in out if r not in ROUTES]
    if bad or not out or len(set(out)) != len(out):
        raise EquivalenceError(
            f"routes={out!r}: give one or more of {', '.join(ROUTES)}, each once"
        )
    return out


def _one_tolerance(value: Any, where: str) -> Tolerance:
    if isinstance(value, Tolerance):
        atol, rtol = value.atol, value.rtol
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        atol = rtol = float(value)
    else:
        raise EquivalenceError(
            f"{where}: a tolerance is a positive number or a ppml_torch.equivalence.tolerances.Tolerance, "
            f"got {type(value).__name__}"
        )
    for label, v in (("atol", atol), ("rtol", rtol)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise EquivalenceError(f"{where}: {label}={v!r} must be a positive finite number")
    return Tolerance(float(atol), float(rtol))


def tolerances_of(tolerance: ToleranceArg, runs: Sequence[RunSpec]) -> dict[RunSpec, Tolerance]:
    if tolerance is None:
        return {}
    if isinstance(tolerance, Mapping):
        by_spec = {}
        for key, value in tolerance.items():
            spec = runs_of([key])[0]
            if spec not in runs:
                raise EquivalenceError(
                    f"tolerance for run {key!r}, which is not among the runs "
                    f"({', '.join(map(str, runs))})"
                )
            by_spec[spec] = _one_tolerance(value, f"tolerance[{key!r}]")
        return by_spec
    tol = _one_tolerance(tolerance, "tolerance")
    return {r: tol for r in runs if r.is_mpc}


def split_inputs(example_inputs: Any, example_kwargs: Mapping[str, Any] | None, name: str):
    import torch

    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)):
        raise EquivalenceError(
            f"example_inputs of {name} must be a tensor or a tuple of tensors, got "
            f"{type(example_inputs).__name__}"
        )
    for i, a in enumerate(example_inputs):
        if not isinstance(a, torch.Tensor):
            raise EquivalenceError(
                f"example input #{i} of {name} is a {type(a).__name__}; positional inputs must "
                "be tensors (fixed settings go to example_kwargs)"
            )
    tensor_kw, fixed_kw = {}, {}
    for k, v in dict(example_kwargs or {}).items():
        (tensor_kw if isinstance(v, torch.Tensor) else fixed_kw)[k] = v
    return tuple(example_inputs), tensor_kw, fixed_kw


def check_dtypes(module: Any, args: tuple, kw: Mapping[str, Any], name: str) -> None:
    import torch

    for where, t in [*((f"input #{i}", a) for i, a in enumerate(args)), *kw.items()]:
        if t.dtype == torch.float64:
            raise EquivalenceError(
                f"{name} {where} is float64; JAX runs float32 here: pass .float() inputs"
            )
        if t.dtype == torch.int64 and t.numel() and t.abs().max() > 2**31 - 1:
            raise EquivalenceError(f"{name} {where} has int64 values that do not fit int32")
    wide = [k for k, v in module.state_dict().items() if v.dtype == torch.float64]
    if wide:
        raise EquivalenceError(
            f"{name} has float64 weights ({wide[0]}, ...); JAX runs float32: call module.float()"
        )
