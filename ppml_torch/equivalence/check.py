"""``check_equivalence``: a torch module against its conversions, in plaintext and under MPC."""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ppml_torch.errors import PpmlError
from ppml_torch.model import ROUTES
from ppml_torch.runners.plan import session_plan
from ppml_torch.runners.runspec import RunSpec, parse_runs
from ppml_torch.testing import Tolerance

from . import tolerances
from .report import ERROR, FAIL, PASS, SKIP, EquivalenceReport, Mismatch, Row

DEFAULT_RUNS = ("torch", "cpu", "spu:SEMI2K", "spu:ABY3")

ToleranceArg = float | Tolerance | Mapping[str, float | Tolerance] | None


class EquivalenceError(PpmlError, ValueError):
    """Bad arguments to a check (runs, routes, tolerance, example inputs); nothing ran."""


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
        ``atol`` and ``rtol`` on every MPC run; a :class:`~ppml_torch.testing.Tolerance`; or
        a mapping run spec -> either.  An element passes when
        ``|got - expected| <= atol + rtol * |expected|`` (gradients: ``rtol`` times the
        largest ``|expected|`` of the parameter, see :func:`compare`).
      example_kwargs: keyword inputs: tensors are inputs (owned by the input party), other
        values are fixed at conversion (``use_cache=False``); the flax route takes none.
      sessions: ``run -> Session`` to reuse open sessions (the pytest plugin's shared ones);
        default: each MPC run's session is opened for this call and closed after it.

    Under MPC the weights are the secret of the first party and the inputs of the second;
    outputs are revealed to every party for the comparison.

    Raises:
      EquivalenceError, ConfigError: bad runs, routes, tolerance or example inputs (one line,
        before any session starts).
    """
    import torch

    run_specs = _runs(runs)
    route_list = _routes(routes)
    tols = _tolerances(tolerance, run_specs)
    if not isinstance(module, torch.nn.Module):
        raise EquivalenceError(
            f"check_equivalence: expected a torch.nn.Module, got {type(module).__name__}"
        )
    name = type(module).__name__
    args, tensor_kw, fixed_kw = _inputs(example_inputs, example_kwargs, name)
    _check_dtypes(module, args, tensor_kw, name)

    # -- torch eager reference (also the check that the inputs fit the module) ----------------
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            ref_out = module(*args, **tensor_kw, **fixed_kw)
    except Exception as e:  # noqa: BLE001 - any failure here means the inputs do not fit
        raise EquivalenceError(
            f"the example inputs do not fit {name}: {type(e).__name__}: {_first(e)}"
        ) from None
    torch_s = time.perf_counter() - t0
    expected = flatten_outputs(ref_out, name, "torch")
    if not expected:
        raise EquivalenceError(f"{name} returns no tensor; nothing to compare")
    data = (
        tuple(_np(a) for a in args),
        {k: _np(v) for k, v in tensor_kw.items()},
    )
    reference = _TorchGrads(module, args, tensor_kw, fixed_kw) if grads else None

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
            cm, why = _convert(route, module, args, tensor_kw, fixed_kw)
            if cm is None:
                status = SKIP if why.startswith(_NOT_APPLICABLE) else ERROR
                rows.append(Row(route, "*", status, detail=why))  # one row: no run started
                continue
            approx = approximated_ops(cm, data)
            for run in mpc_runs:
                rows.append(
                    _run_one(
                        cm, route, run, session_for, data, fixed_kw, expected, reference,
                        tols.get(run), approx, name,
                    )
                )  # fmt: skip
    shapes = [_shape(a) for a in args] + [f"{k}={_shape(v)}" for k, v in tensor_kw.items()]
    return EquivalenceReport(name, f"({', '.join(shapes)})", bool(grads), tuple(rows))


# -- argument checks (all before any session) -----------------------------------------------


def _runs(runs: Iterable[str]) -> list[RunSpec]:
    if isinstance(runs, str):
        runs = runs.replace(",", " ").split()
    return parse_runs(list(runs))


def _routes(routes: Iterable[str]) -> list[str]:
    if isinstance(routes, str):
        routes = [routes]
    out = list(routes)
    bad = [r for r in out if r not in ROUTES]
    if bad or not out or len(set(out)) != len(out):
        raise EquivalenceError(
            f"routes={out!r}: give one or more of {', '.join(ROUTES)}, each once"
        )
    return out


def _one_tol(value: Any, where: str) -> Tolerance:
    if isinstance(value, Tolerance):
        atol, rtol = value.atol, value.rtol
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        atol = rtol = float(value)
    else:
        raise EquivalenceError(
            f"{where}: a tolerance is a positive number or a ppml_torch.testing.Tolerance, "
            f"got {type(value).__name__}"
        )
    for label, v in (("atol", atol), ("rtol", rtol)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise EquivalenceError(f"{where}: {label}={v!r} must be a positive finite number")
    return Tolerance(float(atol), float(rtol))


def _tolerances(tolerance: ToleranceArg, runs: Sequence[RunSpec]) -> dict[RunSpec, Tolerance]:
    if tolerance is None:
        return {}
    if isinstance(tolerance, Mapping):
        by_spec = {}
        for key, value in tolerance.items():
            spec = _runs([key])[0]
            if spec not in runs:
                raise EquivalenceError(
                    f"tolerance for run {key!r}, which is not among the runs "
                    f"({', '.join(map(str, runs))})"
                )
            by_spec[spec] = _one_tol(value, f"tolerance[{key!r}]")
        return by_spec
    tol = _one_tol(tolerance, "tolerance")
    return {r: tol for r in runs if r.is_mpc}


def _inputs(example_inputs: Any, example_kwargs: Mapping[str, Any] | None, name: str):
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


def _check_dtypes(module: Any, args: tuple, kw: Mapping[str, Any], name: str) -> None:
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


# -- conversion ---------------------------------------------------------------------------------

_NOT_APPLICABLE = "not applicable: "


def _convert(route: str, module: Any, args: tuple, tensor_kw: dict, fixed_kw: dict):
    """(ConvertedModel, "") or (None, one line saying why)."""
    import ppml_torch
    from ppml_torch.converters.flax import WeightMapError

    try:
        if route == "graph":
            return ppml_torch.convert(module, args, {**tensor_kw, **fixed_kw}), ""
        if tensor_kw or fixed_kw:
            return None, _NOT_APPLICABLE + "the flax route takes positional inputs only"
        return ppml_torch.to_flax(module), ""
    except WeightMapError as e:
        return None, _NOT_APPLICABLE + _first(e)
    except PpmlError as e:
        return None, _first(e)
    except Exception as e:  # noqa: BLE001 - a raw error is reported as such, in the row
        return None, f"raw {type(e).__name__} (not a converter message): {_first(e)}"


# jaxpr primitive -> the measured ATen op whose error stands for it (flax route)
_PRIMITIVE_OPS = {
    "exp": "aten.exp.default",
    "exp2": "aten.exp2.default",
    "expm1": "aten.expm1.default",
    "log": "aten.log.default",
    "log1p": "aten.log1p.default",
    "logistic": "aten.sigmoid.default",
    "tanh": "aten.tanh.default",
    "rsqrt": "aten.rsqrt.default",
    "sqrt": "aten.sqrt.default",
    "erf": "aten.erf.default",
    "sin": "aten.sin.default",
    "cos": "aten.cos.default",
    "pow": "aten.pow.Tensor_Tensor",
    "div": "aten.div.Tensor",
}


def approximated_ops(cm: Any, data: tuple) -> dict[str, int]:
    """Approximated op -> uses in the converted program (ATen ops of the graph route;
    for the flax route, the JAX primitives of ``apply`` mapped to the ATen op measured)."""
    from ppml_torch.converters.fx import registry

    program = cm.extras.get("program")
    if program is not None:
        table = registry.load()
        counts: dict[str, int] = collections.Counter()
        for step in program.steps:
            entry = table.get(step.op)
            if entry is not None and entry.status == "approximate-under-MPC":
                counts[entry.name] += 1
        return dict(counts)
    import jax

    args, kw = data
    jaxpr = jax.make_jaxpr(lambda p, a, k: cm.apply(p, *a, **k))(cm.params, args, kw)
    counts = collections.Counter()
    _walk(jaxpr.jaxpr, counts)
    return dict(counts)


def _walk(jaxpr: Any, counts: collections.Counter) -> None:
    from jax.core import ClosedJaxpr, Jaxpr, Literal

    for eqn in jaxpr.eqns:
        op = _PRIMITIVE_OPS.get(eqn.primitive.name)
        if op == "aten.div.Tensor" and isinstance(eqn.invars[1], Literal):
            op = None  # division by a constant: a multiplication, exact up to truncation
        if op:
            counts[op] += 1
        for v in eqn.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                if isinstance(sub, ClosedJaxpr):
                    _walk(sub.jaxpr, counts)
                elif isinstance(sub, Jaxpr):
                    _walk(sub, counts)


# -- one route on one run ---------------------------------------------------------------------


class _TorchGrads:
    """Torch gradients of sum(outputs at some paths) w.r.t. the parameters, cached per path set."""

    def __init__(self, module: Any, args: tuple, tensor_kw: dict, fixed_kw: dict):
        import torch

        self.params = {n: p for n, p in module.named_parameters() if p.requires_grad}
        with torch.enable_grad():
            self.out = flatten_outputs(
                module(*args, **tensor_kw, **fixed_kw), "", "torch", raw=True
            )
        self._cache: dict[tuple[str, ...], dict[str, np.ndarray]] = {}

    def grads(self, paths: Sequence[str]) -> dict[str, np.ndarray]:
        import torch

        key = tuple(sorted(paths))
        if key not in self._cache:
            total = sum(self.out[p].float().sum() for p in key if self.out[p].is_floating_point())
            names = list(self.params)
            got = (
                torch.autograd.grad(
                    total, [self.params[n] for n in names], allow_unused=True, retain_graph=True
                )
                if names
                else []
            )
            self._cache[key] = {
                n: (np.zeros(tuple(self.params[n].shape), np.float32) if g is None else g.numpy())
                for n, g in zip(names, got, strict=True)
            }
        return self._cache[key]


def _run_one(
    cm, route, run, session_for, data, fixed_kw, expected, reference, tol, approx, name
) -> Row:
    import jax
    import jax.numpy as jnp

    from ppml_torch.runners import wrap

    if tol is None:
        tol, how = tolerances.derive(run.protocol, run.field, approx)
    else:
        how = "given"
    grad_tol = None
    if reference is not None:
        grad_tol = (
            tol if how == "given" else tolerances.derive(run.protocol, run.field, approx, "grad")[0]
        )

    out_paths = list(expected)  # refined below if the route returns fewer outputs
    want_grads = reference is not None

    def scalar(out: Any) -> Any:
        flat = flatten_outputs(out, name, route)
        return sum(
            jnp.sum(flat[p].astype(jnp.float32))
            for p in out_paths
            if p in flat and jnp.issubdtype(flat[p].dtype, jnp.floating)
        )

    def forward(params: Any, inputs: Any) -> Any:
        a, k = inputs
        out = cm.apply(params, *a, **k, **fixed_kw)
        if not want_grads:
            return out
        leaves, treedef = jax.tree_util.tree_flatten(params)
        is_f = [jnp.issubdtype(x.dtype, jnp.floating) for x in leaves]

        def loss(floats: list[Any]) -> Any:
            it = iter(floats)
            full = [next(it) if f else x for x, f in zip(leaves, is_f, strict=True)]
            return scalar(
                cm.apply(jax.tree_util.tree_unflatten(treedef, full), *a, **k, **fixed_kw)
            )

        g = jax.grad(loss)([x for x, f in zip(leaves, is_f, strict=True) if f])
        it = iter(g)
        full = [next(it) if f else jnp.zeros_like(x) for x, f in zip(leaves, is_f, strict=True)]
        return out, jax.tree_util.tree_unflatten(treedef, full)

    has_params = bool(jax.tree_util.tree_leaves(cm.params))
    try:
        flat_got = flatten_outputs(
            jax.eval_shape(lambda p, d: cm.apply(p, *d[0], **d[1], **fixed_kw), cm.params, data),
            name,
            route,
        )
        common = [p for p in expected if p in flat_got]
        extra = [p for p in flat_got if p not in expected]
        note = ""
        if extra or not common:
            return Row(
                route, str(run), FAIL, tol=tol, tol_how=how,
                detail=f"outputs differ: torch gives {list(expected)}, {route} gives {list(flat_got)}",
            )  # fmt: skip
        if len(common) < len(expected):
            note = f"compared {', '.join(_path_label(p) for p in common)} only ({route} returns no more)"
        out_paths = common
        session = session_for(run)
        parties = session.parties
        if has_params:
            fn = wrap(session, forward, owners=(parties[0], parties[1]))
            result = fn(cm.params, data)
        else:
            fn = wrap(session, lambda d: forward(cm.params, d), owners=(parties[1],))
            result = fn(data)
        report = fn.last_report
    except Exception as e:  # noqa: BLE001 - the row says what went wrong
        return Row(
            route, str(run), ERROR, tol=tol, tol_how=how, detail=f"{type(e).__name__}: {_first(e)}"
        )

    out, g = result if want_grads else (result, None)
    got = flatten_outputs(out, name, route)
    out_err, mismatch = compare({p: expected[p] for p in common}, got, tol, "output")
    grad_err = None
    if want_grads:
        ref_g = reference.grads(common)
        got_g = {k: np.asarray(v) for k, v in cm.params_to_torch(g).items() if k in ref_g}
        grad_err, g_mis = compare(ref_g, got_g, grad_tol, "grad")
        mismatch = mismatch or g_mis
    comm = report.comm
    return Row(
        route,
        str(run),
        FAIL if mismatch else PASS,
        out_err=out_err,
        grad_err=grad_err,
        tol=tol,
        grad_tol=grad_tol,
        tol_how=how,
        compile_s=report.compile_s,
        run_s=report.run_s,
        send_bytes=None if comm is None else comm.send_bytes,
        detail=note,
        mismatch=mismatch,
    )


# -- outputs as {pytree path: array} --------------------------------------------------------------


def flatten_outputs(tree: Any, name: str, where: str, *, raw: bool = False) -> dict[str, Any]:
    """``{"['logits']": array, "[0]": array}``; a bare tensor has path ``""``.

    Dicts (HF ``ModelOutput``) by key, tuples and lists by index; ``None`` is skipped.
    ``raw`` keeps torch tensors as they are (for autograd), otherwise numpy/JAX arrays.
    """
    out: dict[str, Any] = {}

    def visit(x: Any, path: str) -> None:
        if x is None:
            return
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            if raw:
                out[path] = x
            elif hasattr(x, "detach"):
                out[path] = x.detach().cpu().numpy()
            else:
                out[path] = x
            return
        if isinstance(x, Mapping):
            for k, v in x.items():
                visit(v, f"{path}[{k!r}]")
            return
        if isinstance(x, (tuple, list)):
            for i, v in enumerate(x):
                visit(v, f"{path}[{i}]")
            return
        raise EquivalenceError(
            f"{name} ({where}) returns a {type(x).__name__} at output{path}; outputs must be "
            "tensors or tuples/lists/dicts of them (for HF models pass use_cache=False)"
        )

    visit(tree, "")
    return out


def _path_label(path: str) -> str:
    return f"output{path}"


def compare(
    expected: Mapping[str, Any], got: Mapping[str, Any], tol: Tolerance, what: str
) -> tuple[float, Mismatch | None]:
    """Largest absolute error over every path, and the worst element out of tolerance.

    Outputs: an element passes when ``|got - e| <= atol + rtol * |e|``.  Gradients (``what ==
    "grad"``) are sums over the batch, whose fixed-point error grows with the sum, not with
    each element: ``rtol`` there is relative to the largest ``|e|`` of the parameter.
    """
    worst = 0.0
    first: Mismatch | None = None
    for path, e in expected.items():
        e = np.asarray(e, np.float64)
        a = np.asarray(got[path], np.float64)
        if a.shape != e.shape:
            raise AssertionError(f"{what}{path}: shape {a.shape}, torch gives {e.shape}")
        if not e.size:
            continue
        diff = np.abs(a - e)
        diff = np.where(np.isnan(diff), np.inf, diff)
        worst = max(worst, float(diff.max()))
        scale = np.abs(e).max() if what == "grad" else np.abs(e)
        bad = diff > tol.atol + tol.rtol * scale
        if bad.any() and first is None:
            idx = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), e.shape)
            first = Mismatch(
                what, path, tuple(int(i) for i in idx), float(e[idx]), float(a[idx]),
                int(bad.sum()), int(e.size),
            )  # fmt: skip
    return worst, first


def _np(t: Any) -> np.ndarray:
    a = t.detach().cpu().numpy()
    return a.astype(np.int32) if a.dtype == np.int64 else a


def _shape(t: Any) -> str:
    return f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}"


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
