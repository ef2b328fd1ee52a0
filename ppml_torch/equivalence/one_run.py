"""One route of a check on one run: the conversion, the torch reference, the row.

Under MPC the weights are the secret of the session's first party and the inputs of its
second (:func:`ppml_torch.runners.roles.roles`); outputs (and gradients) are revealed to
every party for the comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ppml_torch.errors import PpmlError
from ppml_torch.runners.roles import roles
from ppml_torch.runners.runspec import RunSpec

from .outputs import compare, flatten_outputs
from .report import ERROR, FAIL, PASS, Row
from .tolerances import Tolerance, derive

NOT_APPLICABLE = "not applicable: "


def convert(route: str, module: Any, args: tuple, tensor_kw: dict, fixed_kw: dict):
    """(ConvertedModel, "") or (None, one line saying why)."""
    from ppml_torch.converters.flax import WeightMapError, to_flax
    from ppml_torch.converters.fx import convert as graph_convert

    try:
        if route == "graph":
            return graph_convert(module, args, {**tensor_kw, **fixed_kw}), ""
        if tensor_kw or fixed_kw:
            return None, NOT_APPLICABLE + "the flax route takes positional inputs only"
        return to_flax(module), ""
    except WeightMapError as e:
        return None, NOT_APPLICABLE + first_line(e)
    except PpmlError as e:
        return None, first_line(e)
    except Exception as e:  # noqa: BLE001 - a raw error is reported as such, in the row
        return None, f"raw {type(e).__name__} (not a converter message): {first_line(e)}"


class TorchGrads:
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


@dataclasses.dataclass(frozen=True)
class Case:
    """What every route and run of one check is compared with: torch eager's outputs (and
    its gradients, ``reference``), the example inputs as numpy ``(args, kwargs)`` and the
    keyword settings fixed at conversion."""

    name: str  # the module's class name, for messages
    data: tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]
    fixed_kw: dict[str, Any]
    expected: dict[str, Any]  # output path -> torch eager's array
    reference: TorchGrads | None  # None: outputs only


def run_one(
    cm: Any,
    route: str,
    run: RunSpec,
    *,
    case: Case,
    session_for: Callable[[RunSpec], Any],
    tol: Tolerance | None,
    approx: Mapping[str, int],
) -> Row:
    """``cm`` (the ``route`` conversion) on ``run`` against torch: one row.  ``tol``: the
    given tolerance, ``None`` to derive it from ``approx`` (the approximated ops it uses)."""
    import jax
    import jax.numpy as jnp

    from ppml_torch.runners import wrap

    data, fixed_kw, expected, reference, name = (
        case.data, case.fixed_kw, case.expected, case.reference, case.name,
    )  # fmt: skip

    if tol is None:
        tol, how = derive(run.protocol, run.field, approx)
    else:
        how = "given"
    grad_tol = None
    if reference is not None:
        grad_tol = tol if how == "given" else derive(run.protocol, run.field, approx, "grad")[0]

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
            note = (
                f"compared {', '.join(f'output{p}' for p in common)} only ({route} returns no more)"
            )
        out_paths = common
        session = session_for(run)
        r = roles(session.parties)  # the weights are the first party's, the inputs the second's
        if has_params:
            fn = wrap(session, forward, owners=(r.weights, r.data))
            result = fn(cm.params, data)
        else:
            fn = wrap(session, lambda d: forward(cm.params, d), owners=(r.data,))
            result = fn(data)
        report = fn.last_report
    except Exception as e:  # noqa: BLE001 - the row says what went wrong
        return Row(
            route,
            str(run),
            ERROR,
            tol=tol,
            tol_how=how,
            detail=f"{type(e).__name__}: {first_line(e)}",
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


def as_numpy(t: Any) -> np.ndarray:
    a = t.detach().cpu().numpy()
    return a.astype(np.int32) if a.dtype == np.int64 else a


def shape_of(t: Any) -> str:
    return f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}"


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
