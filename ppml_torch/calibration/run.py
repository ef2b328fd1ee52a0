"""``calibrate``: run the program MPC will run, in plaintext on sample data, and measure it.

The model's ``apply`` (a :class:`~ppml_torch.model.ConvertedModel`, with the converter's
MPC-safe constants such as mask values) is traced with ``jax.make_jaxpr``, the trace that SPU
compiles, and evaluated equation by equation (:mod:`.interpret`).  Every equation's values
are recorded under its module (:mod:`.stats`), found from the trace's name stack: the graph
route's steps run under ``jax.named_scope("<torch module path>: <class>")``
(``converters/fx/program.py``), the Flax route's modules name their own scopes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import PpmlError
from ..model import ROUTES
from ..runners.config import DEFAULT_FIELD
from .report import CalibrationReport
from .stats import MASK_MAGNITUDE, MASK_SAFE, PRODUCTS, ModuleStats, analyse

_FLAX_NAME = re.compile(r"^\w+$")


class CalibrationInputError(PpmlError, ValueError):
    """Bad arguments to :func:`calibrate` (model, sample inputs, route)."""


def calibrate(
    model: Any,
    sample_inputs: Any,
    *,
    field: str = DEFAULT_FIELD,
    fraction_bits: int | None = None,
    protocol: str | None = None,
    runtime: Mapping[str, Any] | None = None,
    sample_kwargs: Mapping[str, Any] | None = None,
    route: str = "graph",
    index_lowering: str = "auto",
) -> CalibrationReport:
    """Measure a model's fixed-point range on sample data, before any MPC run.

    Args:
      model: a ``torch.nn.Module`` (converted here: ``ppml_torch.convert`` on the sample
        inputs for ``route="graph"``, ``ppml_torch.to_flax`` for ``route="flax"``) or a
        :class:`~ppml_torch.model.ConvertedModel`.
      sample_inputs: the positional inputs (a tuple, or one array/tensor): data the caller
        may see (the owner's own data, or public data of the same kind).  Their shapes are
        the converted program's shapes.  The calibration is only as good as this sample.
      field, fraction_bits: the setting to judge (default FM64 with its default fraction
        bits); the report can be re-judged under others (``describe``/``check`` take them).
      protocol, runtime: the SPU protocol (default SEMI2K) and settings whose defaults apply
        (e.g. ``fxp_exp_mode``); checked like a session's.
      sample_kwargs: keyword inputs of ``apply``.

    Returns:
      A :class:`~.report.CalibrationReport`; ``print(report.describe())`` for the table,
      ``report.check()`` to refuse a run that is predicted to overflow.

    Runs in plaintext only: nothing is secret-shared, no SPU runtime starts.
    """

    from ..model import ConvertedModel
    from ..runners.config import resolve

    knobs = dict(runtime or {})
    if fraction_bits is not None:
        knobs["fxp_fraction_bits"] = fraction_bits
    cfg = resolve("spu", protocol, field, runtime=knobs)  # one-line errors, before any work
    if route not in ROUTES:
        raise CalibrationInputError(f"unknown route {route!r}; use one of {', '.join(ROUTES)}")
    args = _as_tuple(sample_inputs)
    kwargs = dict(sample_kwargs or {})

    if isinstance(model, ConvertedModel):
        converted = model
    else:
        converted = _convert(model, args, kwargs, route, index_lowering)
    j_args = tuple(_to_jax_input(a, f"input {i}") for i, a in enumerate(args))
    j_kwargs = {k: _to_jax_input(v, f"input {k!r}") for k, v in kwargs.items()}

    return _measure(
        lambda p, a, k: converted.apply(p, *a, **k),
        converted.params,
        j_args,
        j_kwargs,
        cfg,
        route=converted.route,
        root_kind=_root_kind(converted),
        source=converted.source or type(model).__name__,
    )


def calibrate_function(
    fn: Callable[..., Any],
    sample_args: Any,
    *,
    field: str = DEFAULT_FIELD,
    fraction_bits: int | None = None,
    protocol: str | None = None,
    runtime: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> CalibrationReport:
    """:func:`calibrate` for any JAX function, e.g. a training step (forward and backward).

    ``fn(*sample_args)`` is traced and measured like a model's ``apply``; its arguments
    (weights included) are listed as inputs.  Equations are filed under the torch module
    path of the graph route's ``named_scope`` (``jvp(...)``/``transpose(...)`` of
    differentiation stripped, so a module's backward products count as its own) or under
    Flax module names; the rest under ``(root)``.
    """
    import jax

    from ..runners.config import resolve

    knobs = dict(runtime or {})
    if fraction_bits is not None:
        knobs["fxp_fraction_bits"] = fraction_bits
    cfg = resolve("spu", protocol, field, runtime=knobs)
    if not callable(fn):
        raise CalibrationInputError(
            f"calibrate_function: fn must be callable, got {type(fn).__name__}"
        )
    args = jax.tree_util.tree_map(lambda a: _to_jax_input(a, "an argument"), _as_tuple(sample_args))
    return _measure(
        lambda p, a, k: fn(*a),
        {},
        args,
        {},
        cfg,
        route="function",
        root_kind="",
        source=source or getattr(fn, "__name__", "function"),
    )


def _measure(
    fn: Callable[..., Any],
    params: Any,
    j_args: tuple,
    j_kwargs: dict,
    cfg: Any,
    *,
    route: str,
    root_kind: str,
    source: str,
) -> CalibrationReport:
    import jax

    from .interpret import run as run_jaxpr

    closed = jax.make_jaxpr(fn)(params, j_args, j_kwargs)
    leaves_with_path, _ = jax.tree_util.tree_flatten_with_path((params, j_args, j_kwargs))
    rec = _Recorder(route, root_kind)
    run_jaxpr(closed, [leaf for _, leaf in leaves_with_path], rec)
    # weights and inputs after the program, so the modules are listed in program order
    n_params = len(jax.tree_util.tree_leaves(params))
    for i, (path, leaf) in enumerate(leaves_with_path):
        if i < n_params:
            rec.param(route, path, leaf)
        else:
            rec.input(leaf)
    samples = [_describe(a) for a in jax.tree_util.tree_leaves((j_args, j_kwargs))]
    if len(samples) > 4:
        samples = [*samples[:3], f"... ({len(samples)} arrays)"]
    return CalibrationReport(
        source=source,
        route=route,
        field=cfg.field or DEFAULT_FIELD,
        fraction_bits=int(cfg.runtime["fxp_fraction_bits"]),
        protocol=cfg.protocol or "SEMI2K",
        runtime=dict(cfg.runtime),
        samples=", ".join(samples),
        inputs=rec.inputs,
        modules=list(rec.modules.values()),
    )


def _as_tuple(x: Any) -> tuple[Any, ...]:
    if isinstance(x, tuple):
        return x
    if isinstance(x, list):
        return tuple(x)
    return (x,)


def _convert(module: Any, args: tuple, kwargs: dict, route: str, index_lowering: str) -> Any:
    import torch

    if not isinstance(module, torch.nn.Module):
        raise CalibrationInputError(
            f"calibrate: expected a torch.nn.Module or a ConvertedModel, got {type(module).__name__}"
        )
    if route == "flax":
        from ..converters.flax import to_flax

        return to_flax(module)
    from ..converters.fx import convert

    t_args = tuple(_to_torch(a) for a in args)
    t_kwargs = {k: _to_torch(v) for k, v in kwargs.items()}
    return convert(module, t_args, t_kwargs, index_lowering=index_lowering)  # type: ignore[arg-type]


def _to_torch(x: Any) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        return torch.as_tensor(np.asarray(x))
    return x


def _to_jax_input(x: Any, what: str) -> Any:
    """numpy, 32-bit (JAX's), with a one-line error for a value 32 bits cannot hold."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray) and not hasattr(x, "__array__"):
        return x
    a = np.asarray(x)
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    elif a.dtype in (np.int64, np.uint64, np.uint32):
        if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
            raise CalibrationInputError(
                f"calibrate: {what} has integers outside the 32-bit range JAX uses; "
                "pass values that fit int32"
            )
        a = a.astype(np.int32)
    return a


def _describe(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype}{list(a.shape)}"
    return repr(a)


def _root_kind(converted: Any) -> str:
    source = str(converted.source or "")
    return source.split(" ")[0].rsplit(".", 1)[-1]


class _Recorder:
    """Receives every non-constant equation of the trace and files its values by module."""

    def __init__(self, route: str, root_kind: str):
        self.route = route
        self.root_kind = root_kind
        self.modules: dict[str, ModuleStats] = {}
        self.inputs = ModuleStats("(inputs)")

    # -- where ---------------------------------------------------------------------------------

    def locate(self, scope: str) -> tuple[str, str]:
        parts = [_unwrap(p) for p in scope.split("/") if p]
        graph = [p for p in parts if ": " in p]
        if graph:  # graph route: "<torch path>: <class>" (the innermost one)
            path, kind = graph[-1].rsplit(": ", 1)
            return path, kind
        if self.route == "graph":
            return "", self.root_kind
        names: list[str] = []
        # Flax: drop the root module's class name (a function's scopes are all its own)
        for p in parts[1:] if self.route == "flax" else parts:
            if _FLAX_NAME.match(p):
                names.append(p)
            elif "." in p:  # "attn.setup", "attn._split_heads": a method of module attn
                owner = p.split(".", 1)[0]
                if _FLAX_NAME.match(owner) and (not names or names[-1] != owner):
                    names.append(owner)
            # einsum specs and other labels are not modules
        return ".".join(names), ""

    def module(self, path: str, kind: str) -> ModuleStats:
        st = self.modules.get(path)
        if st is None:
            st = self.modules[path] = ModuleStats(path, kind)
        elif kind and not st.kind:
            st.kind = kind
        return st

    # -- leaves --------------------------------------------------------------------------------

    def param(self, route: str, path: Any, leaf: Any) -> None:
        keys = [_key_name(k) for k in path][1:]  # (params, args, kwargs)[0]
        if route == "graph":  # params are keyed by state_dict names
            name = keys[-1] if keys else ""
            module = name.rsplit(".", 1)[0] if "." in name else ""
        else:  # Flax: {"params": {"transformer": {...: {"kernel": ...}}}}
            module = ".".join(keys[1:-1])
        a = np.asarray(leaf)
        if not np.issubdtype(a.dtype, np.floating):
            return
        st = self.module(module, "")
        label = keys[-1] if route == "graph" else ".".join(keys[1:])
        st.add_tensor(analyse(a), f"weight {label}", product=False)

    def input(self, leaf: Any) -> None:
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.floating):  # integers (ids) are not fixed point in SPU
            t = analyse(a)
            self.inputs.add_tensor(t, "input", product=False)
            self.inputs.equations += 1
            self.inputs.nans(t.nan, "an input")  # MPC would see ordinary numbers
            self.inputs.misuse(t.saturated, "an input (clamped when shared)")

    # -- equations -----------------------------------------------------------------------------

    def __call__(self, eqn: Any, scope: str, invals: list, in_const: list, outs: list) -> None:
        name = eqn.primitive.name
        path, kind = self.locate(scope)
        st = self.module(path, kind)
        st.equations += 1
        float_out = [o for o in outs if _is_float(o)]
        if not float_out:
            return
        is_product = name in PRODUCTS and all(_is_float(v) for v in invals)
        if name == "integer_pow" and eqn.params.get("y") in (0, 1):
            is_product = False
        in_nan = any(_is_float(v) and bool(np.isnan(np.asarray(v)).any()) for v in invals)
        for o in float_out:
            t = analyse(o)
            st.add_tensor(t, name, product=is_product)
            if t.saturated and (is_product or name not in MASK_SAFE):
                st.misuse(t.saturated, name)
            if t.nan and not in_nan:
                st.nans(t.nan, name)
        if name in ("add", "sub", "add_any") and len(invals) == 2:
            st.misuse(_both_saturated(name, invals[0], invals[1]), f"{name} of two mask values")
        arg = np.asarray(invals[0]) if invals else None
        if name == "div":
            st.divisor(invals[1], "div")
            if not in_const[1]:  # a public divisor is a product by its reciprocal
                st.function_arg("divisor", invals[1], "div")
                st.dividend(invals[0], "div (its dividend)")
        elif name == "rsqrt":
            st.divisor(arg, "rsqrt")
        elif name == "integer_pow" and eqn.params.get("y", 1) < 0:
            st.divisor(arg, f"x**{eqn.params['y']}")
        if name in ("sqrt", "rsqrt"):
            st.domain(int(np.sum(arg < 0)), name)
            st.function_arg(name, arg, name)
        elif name == "log":
            st.domain(int(np.sum(arg <= 0)), name)
            st.function_arg("log", arg, name)
        elif name == "log1p":
            st.domain(int(np.sum(arg <= -1)), name)
        elif name == "exp" and arg is not None and arg.size:
            st.min_exp_arg = min(st.min_exp_arg, float(np.nanmin(arg)))


_WRAPPER = re.compile(r"^(?:\w+\()+(.*?)\)+$")


def _unwrap(part: str) -> str:
    """``transpose(jvp(fc1: Linear))`` -> ``fc1: Linear`` (the scopes of differentiation)."""
    m = _WRAPPER.match(part)
    return m.group(1) if m else part


def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _is_float(v: Any) -> bool:
    dtype = getattr(v, "dtype", None)
    if dtype is None:
        return isinstance(v, float)
    return np.issubdtype(np.dtype(dtype), np.floating)


def _both_saturated(name: str, a: Any, b: Any) -> int:
    """Elements where two mask-sized values are combined in the direction that wraps."""
    if not (_is_float(a) and _is_float(b)):
        return 0
    x, y = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    big = (np.abs(x) >= MASK_MAGNITUDE) & (np.abs(y) >= MASK_MAGNITUDE)
    if not big.any():
        return 0
    same = np.sign(x) == (np.sign(y) if name != "sub" else -np.sign(y))
    return int(np.sum(big & same))
