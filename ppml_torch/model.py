"""The one model container both conversion routes return.

Graph conversion (``ppml_torch.convert``) and Flax weight transfer
(``ppml_torch.to_flax``) each hand back a :class:`ConvertedModel`: a pytree of
JAX parameters plus a pure ``apply(params, *args, **kwargs)``.  Runners only
ever see this shape, so they never ask which route produced a model.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .dtypes import jax_dtype_name
from .errors import InputError

Params = Any  # a pytree of jax/numpy arrays

# The two conversion routes: graph conversion (``ppml_torch.convert``) and Flax weight transfer
# (``ppml_torch.to_flax``).  Every feature with a ``route=`` argument takes these.
ROUTES = ("graph", "flax")


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a converted model knows about one of its inputs (the arguments after ``params``).

    ``arg`` is the position (or keyword name) of the argument of ``apply`` and ``path`` the
    keys inside it (``()`` for a plain tensor).  ``shape``/``dtype`` (JAX dtype name) are
    those of the example the model was converted with (None: any).  ``index_size`` is set when
    the input is used as indices (token ids, class labels) into a table of that many entries;
    such ids must be integers in ``[0, index_size)``: torch raises for others, and under MPC
    they could not be checked once secret (the two ``index_lowering`` forms would differ).
    ``used_by`` names the ops and module paths that index with it.  ``index_ignore`` is a
    value the model masks out before indexing (a cross entropy's ``ignore_index``, e.g. -100):
    allowed besides the table's ids.
    """

    name: str
    arg: int | str
    path: tuple[int | str, ...] = ()
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    index_size: int | None = None
    used_by: str = ""
    index_ignore: int | None = None

    def locate(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[bool, Any]:
        """(found, value) of this input in an ``apply(params, *args, **kwargs)`` call."""
        if isinstance(self.arg, int):
            if self.arg >= len(args):
                return False, None
            value = args[self.arg]
        else:
            if self.arg not in kwargs:
                return False, None
            value = kwargs[self.arg]
        for k in self.path:
            try:
                value = value[k]
            except (KeyError, IndexError, TypeError):
                value = getattr(value, str(k), None)
                if value is None:
                    return False, None
        return True, value


def _is_traced(x: Any) -> bool:
    import jax

    return isinstance(x, jax.core.Tracer)


def _dtype_name(x: Any) -> str:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return jax_dtype_name(np.asarray(x).dtype)
    if hasattr(dtype, "is_floating_point"):  # a torch dtype
        return jax_dtype_name(str(dtype).removeprefix("torch."))
    return jax_dtype_name(dtype)


def check_ids(value: Any, size: int, where: str, ignore: int | None = None) -> None:
    """Refuse ids that are not integers or lie outside ``[0, size)`` (concrete values only);
    ``ignore`` is one more allowed value (masked out by the model before it indexes)."""
    name = _dtype_name(value)
    if not (name.startswith("int") or name.startswith("uint")):
        raise InputError(
            f"{where}: ids are {name}, they must be integers (float ids would be truncated); "
            "pass an integer array"
        )
    if _is_traced(value):
        return
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if ignore is not None:
        arr = arr[arr != ignore]
    if arr.size == 0:
        return
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= size:
        bad = lo if lo < 0 else hi
        also = "" if ignore is None else f", or be {ignore} (ignored)"
        raise InputError(
            f"{where}: id {bad} is outside the table of {size} entries (ids must lie in "
            f"[0, {size - 1}]{also}; torch raises for it, MPC would return a wrong row); fix or "
            "drop it"
        )


def _check_values(spec: InputSpec, value: Any, where: str) -> None:
    """The value checks of one input: ids inside their table, then the dtype."""
    if spec.index_size is not None:
        check_ids(
            value, spec.index_size, f"{where} (ids used by {spec.used_by})", spec.index_ignore
        )
    if spec.dtype is not None:
        dtype = _dtype_name(value)
        if dtype != spec.dtype:
            raise InputError(
                f"{where} is {dtype}, the model was converted with {spec.dtype}: pass "
                f"{spec.dtype} (64-bit counts as 32-bit)"
            )


@dataclasses.dataclass(frozen=True, eq=False)
class ConvertedModel:
    """A torch model made runnable by JAX and SPU.

    Attributes:
      params: the weights as a pytree of JAX arrays.  Graph route: a flat dict
        keyed by the torch ``state_dict`` names.  Flax route: the Flax tree.
      apply_fn: pure ``apply_fn(params, *args, **kwargs)``; jit-able and
        differentiable with ``jax.grad``.
      params_to_torch: maps a ``params`` pytree (possibly trained) to numpy
        arrays keyed by the torch ``state_dict`` names.
      route: ``"graph"`` or ``"flax"``.
      source: a short human-readable description of where the model came from
        (e.g. the torch class name).
    """

    params: Params
    apply_fn: Callable[..., Any]
    params_to_torch: Callable[[Params], Mapping[str, np.ndarray]]
    route: str
    source: str = ""
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    inputs: tuple[InputSpec, ...] = ()

    def apply(self, params: Params, *args: Any, **kwargs: Any) -> Any:
        """Run the model on ``params``: the function runners trace and compile.

        ``params`` must have the converted keys, shapes and dtypes, and the inputs the shapes
        and dtypes of the conversion's example (checked from abstract values, so this also
        holds under ``jax.jit``/``jax.grad`` and SPU compilation); concrete ids are checked
        against their table (see :meth:`check_inputs`).
        """
        self.check_params(params)
        self.check_inputs(*args, **kwargs)
        return self.apply_fn(params, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Plaintext convenience: ``apply`` with the converted weights."""
        if self.__dict__.get("_shipped"):
            raise InputError(
                f"{self._name}: this copy was shipped to SecretFlow's workers without its "
                "weights (they stay with their owner); call apply(params, ...) with the weights "
                "put into the session"
            )
        self.check_inputs(*args, **kwargs)
        return self.apply_fn(self.params, *args, **kwargs)

    # -- checks --------------------------------------------------------------------------------
    @functools.cached_property
    def _param_specs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        import jax

        leaves = jax.tree_util.tree_flatten_with_path(self.params)[0]
        return {jax.tree_util.keystr(p): (tuple(np.shape(x)), _dtype_name(x)) for p, x in leaves}

    def check_params(self, params: Params) -> None:
        """One-line :class:`~ppml_torch.errors.InputError` if ``params`` differ from the
        converted ones in keys, shapes or dtypes (64-bit arrays count as their 32-bit type).
        Reads only shapes and dtypes: works on tracers."""
        import jax

        expected = self._param_specs
        given = {
            jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
        }
        missing = [k for k in expected if k not in given]
        extra = [k for k in given if k not in expected]
        if missing or extra:
            raise InputError(
                f"{self._name}.apply: params keys differ from the converted ones: "
                f"missing {_few(missing)}, extra {_few(extra)}; pass the params pytree of the "
                "converted model (cm.params or its trained copy)"
            )
        for k, (shape, dtype) in expected.items():
            x = given[k]
            got_shape, got_dtype = tuple(np.shape(x)), _dtype_name(x)
            if got_shape != shape or got_dtype != dtype:
                raise InputError(
                    f"{self._name}.apply: param {k} is {got_dtype}{list(got_shape)}, "
                    f"the converted model has {dtype}{list(shape)}; pass arrays of that shape "
                    "and dtype"
                )

    def check_inputs(self, *args: Any, **kwargs: Any) -> None:
        """The owner-side check of the inputs (the arguments after ``params``) before sharing.

        Shapes and dtypes must be those of the conversion's example; ids used as indices must
        be integers inside their table (values are checked when concrete, i.e. on the owner's
        side before ``put``, and in plaintext calls).  Called by ``apply``, by ``wrap`` for a
        model's ``apply``, and by training/generation before their inputs are shared.
        """
        for spec in self.inputs:
            found, value = spec.locate(args, kwargs)
            if not found:
                continue
            where = f"{self._name}: input {spec.name!r}"
            if spec.shape is not None:
                shape = tuple(np.shape(value))
                if shape != spec.shape:
                    raise InputError(
                        f"{where} has shape {shape}, the model was converted for {spec.shape}: "
                        "shapes are static, convert again with example inputs of the shape you "
                        "will run"
                    )
            _check_values(spec, value, where)

    def check_input(self, arg: int | str, value: Any, where: str) -> None:
        """:meth:`check_inputs`' checks but the shape, for one input given in pieces (a party's
        rows or columns of it, assembled inside a program where its ids are secret): ids
        inside their table and the dtype.  ``arg``: the position or keyword of the input."""
        for spec in self.inputs:
            if spec.arg == arg and not spec.path:
                _check_values(spec, value, f"{where}, input {spec.name!r} of {self._name}")

    @property
    def _name(self) -> str:
        return self.source.split(" ")[0].rsplit(".", 1)[-1] or "ConvertedModel"

    def state_dict(self, params: Params | None = None) -> dict[str, torch.Tensor]:  # noqa: F821
        """Torch tensors under the torch names, for ``load_state_dict(strict=True)``.

        ``params`` defaults to the converted weights; pass trained ones to move them
        back.  Values are copied bit for bit (no dtype change).
        """
        import torch

        arrays = self.params_to_torch(self.params if params is None else params)
        return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}

    def __repr__(self) -> str:
        import jax

        n = sum(
            int(np.prod(getattr(x, "shape", np.shape(x))))
            for x in jax.tree_util.tree_leaves(self.params)
        )
        return f"ConvertedModel(route={self.route!r}, source={self.source!r}, parameters={n})"


# -- shipping a model inside a program (SecretFlow's workers) -----------------------------------

# extras that are not part of the program: torch's ExportedProgram does not survive pickling
# (torch 2.13 re-traces its GraphModule on load and fails), and it holds the weights
NOT_SHIPPED = ("exported_program",)


def shipping_state(model: ConvertedModel) -> dict[str, Any]:
    """What a program that uses ``model`` needs of it on another process: ``apply_fn``, the
    checks, ``params_to_torch``, the extras but :data:`NOT_SHIPPED`; ``params`` travel as
    shapes and dtypes only (``jax.ShapeDtypeStruct``).

    A program calls ``model.apply(params, ...)`` with the params as its input, so the weights
    are never needed there; shipping them would hand a party's private weights in plaintext to
    whichever process compiles the program.  :func:`from_shipping_state` rebuilds the model.
    """
    import jax

    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}
    fields["params"] = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(tuple(np.shape(x)), np.dtype(x.dtype)), model.params
    )
    fields["extras"] = {k: v for k, v in model.extras.items() if k not in NOT_SHIPPED}
    return {"fields": fields, "param_specs": model._param_specs}


def from_shipping_state(state: dict[str, Any]) -> ConvertedModel:
    """The model :func:`shipping_state` describes: ``apply`` and its checks work as in the
    original; calling it with its own weights (``model(x)``) is refused in one line."""
    model = ConvertedModel(**state["fields"])
    model.__dict__["_param_specs"] = state["param_specs"]  # the cached_property, precomputed
    model.__dict__["_shipped"] = True
    return model


def _few(keys: list[str], n: int = 5) -> str:
    """``['a'], ['b']`` (pytree key strings), at most ``n`` of them, or ``none``."""
    if not keys:
        return "none"
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")
