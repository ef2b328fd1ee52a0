"""``convert``: torch module -> :class:`~ppml_torch.model.ConvertedModel` through the graph.

``torch.export`` captures the module (in whatever train/eval mode it is in),
``run_decompositions`` lowers it to core ATen (keeping
``scaled_dot_product_attention`` whole, see below), and
:mod:`~ppml_torch.converters.fx.program` interprets the graph with the JAX
lowerings of :mod:`~ppml_torch.converters.fx.ops`.

Conventions (what differs from calling the torch module):

* **Parameters.** ``params`` is a flat dict of JAX arrays keyed by the module's
  ``state_dict`` names (parameters and persistent buffers).  Non-persistent buffers
  (e.g. HF GPT-2's causal mask) and lifted constants are constants of the program.
  64-bit tensors run as 32-bit (JAX x64 is off), and ``state_dict(params)`` casts
  them back to their torch dtype.  Integer buffers (BatchNorm's ``num_batches_tracked``)
  stay integer: differentiate with ``jax.grad(..., allow_int=True)`` or leave them out.
* **Tied weights** (GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``): params
  hold every name, but the program reads the tied tensor from ONE canonical key, the
  first of the group in ``state_dict`` order (``transformer.wte.weight``).  Gradients
  therefore land on the canonical key only, and ``state_dict(params)`` writes the
  canonical value under every name of the group, so ``load_state_dict`` keeps the tie.
  ``extras["tied"]`` lists the groups.
* **Inputs.** Shapes are static: apply inputs must have the shapes of the example
  inputs, and their dtypes too (64-bit counting as 32-bit; an int input where the example
  was float is an error, not a cast).  Tensor-valued arguments (positional or keyword) are
  inputs of ``apply`` and must be passed every time.  Non-tensor arguments
  (``use_cache=False``, ``return_dict=True``, ...) are fixed at conversion: they may
  be omitted at apply time, and passing a different value is an error.
* **Outputs.** A tensor, or tuples/lists/dicts of tensors, rebuilt with JAX arrays;
  HF ``ModelOutput`` objects come back as plain dicts of their tensor fields.
* **Attention.** ``scaled_dot_product_attention`` is not decomposed (torch's
  decomposition of it fails for HF GPT-2, and the whole op lets the lowering mask
  without -inf constants, which fixed point cannot hold).
* **Indices from inputs** (token ids, class labels; secret under MPC) are gathered
  with ``index_lowering="take"`` (a gather, as Flax does) or ``"one_hot"`` (a one-hot
  matmul); the choice changes the MPC cost, not the result (see
  :class:`~ppml_torch.converters.fx.registry.LoweringOptions`).  Constant indices
  (positions, masks) are folded or gathered publicly either way.  Inputs used as ids are
  recorded with their table size (``cm.inputs``, ``extras["index_inputs"]``; see
  :mod:`~ppml_torch.converters.fx.indices`); ``cm.check_inputs`` (run by ``apply`` on
  concrete values and by ``wrap`` before sharing) refuses non-integer ids and ids outside
  ``[0, size)``, where the two forms would differ.
* **Buffers the forward updates** (batch norm's running statistics in training mode) make
  the module impure: refused by default (``buffer_updates="refuse"``, the message says what
  to do).  With ``buffer_updates="return"``, ``apply`` returns ``(outputs, updates)``:
  ``updates`` maps each updated buffer's ``state_dict`` key (``bn.running_mean``,
  ``bn.running_var``, ``bn.num_batches_tracked``) to its new value, computed as torch does;
  ``extras["buffer_updates"]`` lists the keys.  The outputs use the batch statistics.
* **Batch norm folded** (``fold_batch_norm=True``, inference): an eval-mode batch norm right
  after a convolution is folded into its weights in plaintext at conversion (no rsqrt and no
  product under MPC; :mod:`~ppml_torch.converters.fx.fold`): params get ``...@folded`` keys
  and do not map back to the module (``extras["folded_batch_norms"]`` lists the pairs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np
import torch
import torch.utils._pytree as pytree

from ppml_torch.converters.fx.dtypes import to_numpy
from ppml_torch.converters.fx.errors import ConversionError
from ppml_torch.converters.fx.export import export
from ppml_torch.converters.fx.fold import fold_batch_norm as fold
from ppml_torch.converters.fx.indices import index_inputs
from ppml_torch.converters.fx.program import Program, build
from ppml_torch.converters.fx.registry import IndexLowering, LoweringOptions
from ppml_torch.dtypes import jax_dtype_name
from ppml_torch.errors import InputError
from ppml_torch.model import ConvertedModel, InputSpec

BufferUpdates = Literal["refuse", "return"]
BUFFER_UPDATES: tuple[BufferUpdates, ...] = ("refuse", "return")


def convert(
    module: torch.nn.Module,
    example_args: tuple[Any, ...],
    example_kwargs: Mapping[str, Any] | None = None,
    *,
    index_lowering: IndexLowering = "auto",
    buffer_updates: BufferUpdates = "refuse",
    fold_batch_norm: bool = False,
) -> ConvertedModel:
    """Convert ``module`` into params plus a pure JAX ``apply`` (see the module docstring)."""
    options = LoweringOptions(index_lowering=index_lowering)  # checks the value first
    if buffer_updates not in BUFFER_UPDATES:
        raise ValueError(
            f"buffer_updates={buffer_updates!r}: choose one of {', '.join(map(repr, BUFFER_UPDATES))}"
        )
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"convert: expected a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(example_args, tuple):
        raise TypeError(
            f"convert: example_args must be a tuple of the module's positional inputs, e.g. (x,); "
            f"got {type(example_args).__name__}"
        )
    kwargs = dict(example_kwargs or {})
    root = type(module).__name__
    for leaf in pytree.tree_leaves((example_args, kwargs)):
        if isinstance(leaf, (np.ndarray, jnp.ndarray)) or hasattr(leaf, "__jax_array__"):
            raise TypeError(
                f"convert: example inputs must be torch tensors (or plain Python values); got a "
                f"{type(leaf).__name__}: wrap it with torch.as_tensor(np.asarray(x))"
            )

    state = module.state_dict(keep_vars=True)
    param_key, tied = _tie_groups(state)

    ep = export(module, example_args, kwargs, root)

    in_spec = ep.call_spec.in_spec
    kw_order = list(_children(in_spec)[1].context) if in_spec.num_children == 2 else []
    ordered = {k: kwargs[k] for k in kw_order}
    leaves, spec = pytree.tree_flatten((example_args, ordered))
    if spec != in_spec:
        raise ConversionError(f"{root}: unexpected input structure from torch.export: {in_spec}")
    _check_out_spec(ep.call_spec.out_spec, root)

    missing = sorted(
        s.target
        for s in ep.graph_signature.input_specs
        if s.target is not None
        and s.kind.name in ("PARAMETER", "BUFFER")
        and s.persistent is not False
        and s.target not in param_key
    )
    if missing:
        raise ConversionError(f"{root}: graph weights not in module.state_dict(): {missing}")

    program = build(
        ep,
        param_key=param_key,
        example_leaves=leaves,
        root=root,
        options=options,
        buffer_updates=buffer_updates == "return",
    )

    # jnp.array copies: jnp.asarray may alias the module's memory on CPU, and a later in-place
    # update of the torch weights (optimizer.step, load_state_dict) would change the params
    params = {k: jnp.array(to_numpy(v)) for k, v in state.items()}
    torch_dtypes = {k: v.dtype for k, v in state.items()}
    expected = list(state)
    folded: list = []
    if fold_batch_norm:  # a plaintext transform of the weights, here (see .fold)
        program, numpy_params, folded = fold(program, params)
        params = {k: jnp.array(v) for k, v in numpy_params.items()}
        expected = list(params)

    out_spec = ep.call_spec.out_spec  # not `ep`: apply_fn must pickle (SecretFlow ships it)
    # apply_fn reads the example's structure and fixed values, never its tensors' data: those
    # may be a party's private inputs, and apply_fn travels to SecretFlow's workers
    ex_args, ex_kwargs = pytree.tree_map_only(
        torch.Tensor, lambda t: t.detach().to("meta"), (example_args, ordered)
    )

    def apply_fn(params: Mapping[str, Any], *args: Any, **kw: Any) -> Any:
        _check_keys(params, expected, root, "apply")
        flat = _flatten_inputs(program, in_spec, ex_args, ex_kwargs, args, kw, root)
        if buffer_updates == "return":
            outs, updates = program.run_with_updates(params, flat)
            return _rebuild(out_spec, iter(outs)), updates
        return _rebuild(out_spec, iter(program.run(params, flat)))

    def params_to_torch(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if folded:
            raise ConversionError(
                f"{root}: converted with fold_batch_norm=True, for inference: the folded "
                "weights do not map back to the module's; convert without it to train"
            )
        _check_keys(params, expected, root, "state_dict")
        return {k: _to_torch_numpy(params[param_key[k]], torch_dtypes[k]) for k in expected}

    specs = _input_specs(program, (example_args, ordered), ep, root)

    return ConvertedModel(
        params=params,
        apply_fn=apply_fn,
        params_to_torch=params_to_torch,
        route="graph",
        source=f"{type(module).__module__}.{type(module).__qualname__} "
        f"({'train' if module.training else 'eval'} mode)",
        extras={
            "exported_program": ep,
            "program": program,
            "folded_nodes": len(program.folded),
            "folded_ops": dict(program.folded_ops),
            "tied": tied,
            "options": dataclasses.asdict(options),
            "inputs": [s.name for s in program.input_slots if s.is_tensor],
            "fixed_inputs": {s.name: s.value for s in program.input_slots if not s.is_tensor},
            "index_inputs": {s.name: s.index_size for s in specs if s.index_size is not None},
            "buffer_updates": [k for k, _ in program.updates],
            "folded_batch_norms": folded,
        },
        inputs=specs,
    )


def _input_specs(program: Program, example: Any, ep: Any, root: str) -> tuple[InputSpec, ...]:
    """One :class:`InputSpec` per tensor input: where it sits in ``apply``'s arguments, its
    example shape and dtype, and the table it indexes (if any, see :mod:`.indices`)."""
    paths = [p for p, _ in pytree.tree_flatten_with_path(example)[0]]
    tensor_names = {s.name for s in program.input_slots if s.is_tensor}
    indexed = index_inputs(ep.graph, tensor_names, root)
    specs = []
    for slot, path in zip(program.input_slots, paths, strict=True):
        if not slot.is_tensor:
            continue
        keys = [getattr(k, "idx", getattr(k, "key", getattr(k, "name", None))) for k in path]
        size, used = indexed.get(slot.name, (None, ""))
        specs.append(
            InputSpec(
                name=slot.name,
                arg=keys[1],
                path=tuple(keys[2:]),
                shape=slot.shape,
                dtype=jax_dtype_name(slot.dtype),
                index_size=size,
                used_by=used,
            )
        )
    return tuple(specs)


# --- conversion helpers -------------------------------------------------------------------------


def _tie_groups(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, str], list[list[str]]]:
    """state_dict name -> canonical name (first of its tie group), and the groups of >1 names."""
    first: dict[Any, str] = {}
    groups: dict[str, list[str]] = {}
    param_key: dict[str, str] = {}
    for name, t in state.items():
        ident = (
            (
                t.untyped_storage().data_ptr(),
                t.storage_offset(),
                tuple(t.shape),
                t.stride(),
                t.dtype,
            )
            if t.numel() > 0
            else ("empty", name)
        )
        canon = first.setdefault(ident, name)
        param_key[name] = canon
        groups.setdefault(canon, []).append(name)
    return param_key, [g for g in groups.values() if len(g) > 1]


def _children(spec: Any) -> list[Any]:
    return list(spec.children()) if hasattr(spec, "children") else list(spec.children_specs)


_OK_CONTAINERS = (tuple, list, dict, type(None))


def _check_out_spec(spec: Any, root: str) -> None:
    if spec.is_leaf():
        return
    t = spec.type
    if not (issubclass(t, _OK_CONTAINERS) or (issubclass(t, tuple) and hasattr(t, "_fields"))):
        raise ConversionError(
            f"{root} returns a {t.__module__}.{t.__qualname__}; outputs must be tensors, or "
            "tuples/lists/dicts of tensors (HF ModelOutput is fine): return those instead"
        )
    for child in _children(spec):
        _check_out_spec(child, root)


def _rebuild(spec: Any, it: Any) -> Any:
    if spec.is_leaf():
        return next(it)
    kids = [_rebuild(c, it) for c in _children(spec)]
    t = spec.type
    if t is type(None):
        return None
    if issubclass(t, dict):  # dict, OrderedDict, HF ModelOutput -> plain dict
        return dict(zip(spec.context, kids, strict=True))
    if issubclass(t, tuple) and hasattr(t, "_fields"):
        return t(*kids)
    if issubclass(t, list):
        return kids
    return tuple(kids)


# --- apply-time helpers -------------------------------------------------------------------------


def _check_keys(params: Any, expected: list[str], root: str, what: str) -> None:
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{root}.{what}: params must be the flat dict keyed by state_dict names; "
            f"got {type(params).__name__}"
        )
    missing = [k for k in expected if k not in params]
    extra = sorted(k for k in params if k not in set(expected))
    if missing or extra:
        raise InputError(
            f"{root}.{what}: params keys differ from the state_dict: missing {missing[:5]}, "
            f"extra {extra[:5]}; pass the converted params (cm.params or a trained copy)"
        )


def _flatten_inputs(
    program: Program,
    in_spec: Any,
    example_args: tuple,
    example_kwargs: dict[str, Any],
    args: tuple,
    kwargs: dict[str, Any],
    root: str,
) -> list[Any]:
    if len(args) > len(example_args):
        raise TypeError(
            f"{root}.apply: {len(args)} positional inputs given, the conversion had {len(example_args)}"
        )
    args = list(args)
    for i in range(len(args), len(example_args)):
        if pytree.tree_any(lambda x: isinstance(x, torch.Tensor), example_args[i]):
            raise TypeError(f"{root}.apply: missing positional input #{i} (a tensor at conversion)")
        args.append(example_args[i])
    unknown = sorted(set(kwargs) - set(example_kwargs))
    if unknown:
        raise TypeError(
            f"{root}.apply: keyword inputs {unknown} were not given at conversion; the program "
            f"takes {sorted(example_kwargs)} (convert again with them in example_kwargs)"
        )
    merged = {}
    for k, example in example_kwargs.items():
        if k in kwargs:
            merged[k] = kwargs[k]
        elif pytree.tree_any(lambda x: isinstance(x, torch.Tensor), example):
            raise TypeError(f"{root}.apply: missing keyword input {k!r} (a tensor at conversion)")
        else:
            merged[k] = example
    leaves, spec = pytree.tree_flatten((tuple(args), merged))
    if spec != in_spec:
        raise ValueError(
            f"{root}.apply: inputs have structure {spec}, the conversion had {in_spec}"
        )
    out: list[Any] = []
    for slot, leaf in zip(program.input_slots, leaves, strict=True):
        if slot.is_tensor:
            if isinstance(leaf, torch.Tensor):
                leaf = leaf.detach().cpu().numpy()
            if not hasattr(leaf, "shape"):
                leaf = np.asarray(leaf)
            if tuple(leaf.shape) != slot.shape:
                raise InputError(
                    f"{root}.apply: input {slot.name!r} has shape {tuple(leaf.shape)}, the program was "
                    f"exported for {slot.shape}: shapes are static, convert again with example "
                    "inputs of the shape you will run"
                )
            got, want = jax_dtype_name(leaf.dtype), jax_dtype_name(slot.dtype)
            if got != want:
                raise InputError(
                    f"{root}.apply: input {slot.name!r} is {got}, the program was exported for "
                    f"{want}: pass {want} (64-bit counts as 32-bit)"
                )
            leaf = jnp.asarray(leaf)
            out.append(leaf if leaf.dtype == slot.dtype else leaf.astype(slot.dtype))
        else:
            if (
                isinstance(leaf, (torch.Tensor, np.ndarray))
                or hasattr(leaf, "shape")
                or leaf != slot.value
            ):
                raise ValueError(
                    f"{root}.apply: {slot.name!r} was fixed to {slot.value!r} at conversion; got "
                    f"{leaf!r}. Non-tensor arguments are part of the program: convert again with "
                    "the value you need"
                )
            out.append(leaf)
    return out


def _to_torch_numpy(value: Any, dtype: torch.dtype) -> np.ndarray:
    arr = np.asarray(value)
    try:
        target = torch.empty((), dtype=dtype).numpy().dtype
    except TypeError:  # bfloat16 has no numpy dtype
        return arr
    return arr.astype(target, copy=False)
