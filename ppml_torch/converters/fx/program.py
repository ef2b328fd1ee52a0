"""Interpret an exported, core-ATen graph as a pure JAX function.

:func:`build` walks the graph once at convert time:

* placeholders become parameter slots (read from ``params`` by state_dict name),
  input slots (the module's tensor inputs) or constants (non-persistent buffers,
  lifted tensors, and non-tensor inputs fixed at conversion);
* every node whose inputs are all constants is evaluated right there with torch
  (exact torch semantics) and becomes a numpy constant: causal masks, position
  ids, ``arange``/``full``/comparisons on shapes never run in JAX, so never on
  secrets;
* every other node must have a lowering in the registry; missing and refused ops
  are collected and raised together, before any JAX work.  Lowerings that read
  conversion options (:class:`~ppml_torch.converters.fx.registry.LoweringOptions`,
  e.g. ``index_lowering``) get them bound here, so a program has one fixed form;
  lowerings that declare ``used_outputs`` get the outputs the graph reads;
* constants the steps read become numpy (:mod:`.constants`: masking fills made
  fixed-point safe).

:meth:`Program.run` then replays the remaining steps with JAX (and
:meth:`Program.run_with_updates` also returns the buffers the forward updates, when the
conversion kept them: batch norm's running statistics in training mode).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from ppml_torch.converters.fx import registry
from ppml_torch.converters.fx.constants import Ref, used_constants
from ppml_torch.converters.fx.dtypes import to_jnp
from ppml_torch.converters.fx.errors import ConversionError, UnsupportedOpError


class TensorMeta(tuple):
    """(shape, jnp dtype) that torch's trace recorded for a node's tensor result."""

    __slots__ = ()

    def __new__(cls, shape: tuple[int, ...], dtype: Any) -> TensorMeta:
        return super().__new__(cls, (shape, dtype))

    def __getnewargs__(self) -> tuple[Any, Any]:  # pickling (SecretFlow ships programs)
        return tuple(self)


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    op: Any
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    meta: Any  # TensorMeta, a tuple of them (multi-output ops), or None
    where: str

    def __reduce__(self):
        # torch's OpOverload objects do not pickle; SecretFlow ships converted programs to its
        # workers by pickling, so a step carries an ATen op by name ("aten.addmm.default")
        op = str(self.op) if isinstance(self.op, torch._ops.OpOverload) else self.op
        return (_step, (self.name, op, self.fn, self.args, self.kwargs, self.meta, self.where))


def _step(name, op, fn, args, kwargs, meta, where) -> Step:
    if isinstance(op, str):  # "aten.addmm.default"
        ns, packet, overload = op.split(".")
        op = getattr(getattr(getattr(torch.ops, ns), packet), overload)
    return Step(name, op, fn, args, kwargs, meta, where)


@dataclasses.dataclass(frozen=True)
class InputSlot:
    """One leaf of the flattened ``(args, kwargs)``: a tensor input or a fixed value."""

    name: str
    is_tensor: bool
    shape: tuple[int, ...] = ()
    dtype: Any = None
    value: Any = None  # the fixed value of a non-tensor leaf


@dataclasses.dataclass
class Program:
    param_slots: list[tuple[str, str]]  # (placeholder, params key)
    input_slots: list[InputSlot]
    constants: dict[str, Any]  # node name -> numpy array / Python value
    steps: list[Step]
    outputs: list[Any]  # Ref or constant, in flattened output order
    folded: list[str]  # names of the call_function nodes folded at convert time
    folded_ops: dict[str, int]  # op name -> count of folded nodes
    sanitized: list[str]  # constants whose -inf / finfo.min entries became MPC_FILL
    # (params key, Ref): buffers the forward updates (batch norm's running statistics in
    # training mode), when the conversion asked for them (buffer_updates="return")
    updates: list[tuple[str, Any]] = dataclasses.field(default_factory=list)

    def run(self, params: Mapping[str, Any], leaves: Sequence[Any]) -> list[Any]:
        """The user outputs, in flattened output order."""
        env = self._execute(params, leaves)
        return [_resolve(o, env, self.constants) for o in self.outputs]

    def run_with_updates(
        self, params: Mapping[str, Any], leaves: Sequence[Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """The user outputs and the updated buffers ``{params key: new value}``."""
        env = self._execute(params, leaves)
        outs = [_resolve(o, env, self.constants) for o in self.outputs]
        return outs, {k: _resolve(r, env, self.constants) for k, r in self.updates}

    def _execute(self, params: Mapping[str, Any], leaves: Sequence[Any]) -> dict[str, Any]:
        env: dict[str, Any] = {}
        for placeholder, key in self.param_slots:
            env[placeholder] = params[key]
        for slot, leaf in zip(self.input_slots, leaves, strict=True):
            if slot.is_tensor:
                env[slot.name] = leaf
        for step in self.steps:
            args = _resolve(step.args, env, self.constants)
            kwargs = _resolve(step.kwargs, env, self.constants)
            # the torch module path, then the ATen op, in the traced program's name stack
            # (ppml_torch.calibrate and ppml_torch.profile map each equation back to its module
            # and op with them; metadata only, same program)
            with jax.named_scope(step.where), jax.named_scope(registry.op_scope(step.op)):
                env[step.name] = _check_and_cast(step, step.fn(*args, **kwargs))
        return env


def _resolve(x: Any, env: dict[str, Any], constants: dict[str, Any]) -> Any:
    if isinstance(x, Ref):
        return env[x.name] if x.name in env else constants[x.name]
    if isinstance(x, (list, tuple)):
        return type(x)(_resolve(v, env, constants) for v in x)
    if isinstance(x, dict):
        return {k: _resolve(v, env, constants) for k, v in x.items()}
    return x


def _check_and_cast(step: Step, out: Any) -> Any:
    """Give the result torch's dtype (type promotion differs in corners) and check its shape."""
    if step.meta is None or out is None:
        return out
    if not isinstance(step.meta, TensorMeta):
        return tuple(  # None: an output the graph does not read (see registry used_outputs)
            _cast_one(step, o, m) if m is not None and o is not None else o
            for o, m in zip(out, step.meta, strict=True)
        )
    return _cast_one(step, out, step.meta)


def _cast_one(step: Step, out: Any, meta: TensorMeta) -> Any:
    shape, dtype = meta
    if tuple(jnp.shape(out)) != shape:
        raise AssertionError(
            f"lowering of {registry.op_name(step.op)} (node {step.name}, {step.where}) returned shape "
            f"{tuple(jnp.shape(out))}, torch gives {shape}: fix it in "
            f"{registry.family_file(registry.LOWERINGS[step.op].family)}"
        )
    out = jnp.asarray(out)
    return out if out.dtype == dtype else out.astype(dtype)


def _meta_of(val: Any) -> Any:
    if isinstance(val, torch.Tensor):
        return TensorMeta(tuple(int(s) for s in val.shape), to_jnp(val.dtype))
    if isinstance(val, (list, tuple)):
        return tuple(_meta_of(v) for v in val)
    return None


def module_path(node: torch.fx.Node, root: str) -> str:
    """``transformer.h.0.attn: GPT2Attention`` from the node's nn_module_stack."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return root
    path, kind = list(stack.values())[-1]
    kind_name = str(getattr(kind, "__name__", kind)).rsplit(".", 1)[-1]
    return f"{path or root}: {kind_name}" if path else root


def _map_nodes(x: Any, fn: Callable[[torch.fx.Node], Any]) -> Any:
    if isinstance(x, torch.fx.Node):
        return fn(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_map_nodes(v, fn) for v in x)
    if isinstance(x, dict):
        return {k: _map_nodes(v, fn) for k, v in x.items()}
    return x


def _node_inputs(x: Any) -> list[torch.fx.Node]:
    found: list[torch.fx.Node] = []
    _map_nodes(x, found.append)
    return found


def build(
    ep: ExportedProgram,
    *,
    param_key: Mapping[str, str],
    example_leaves: Sequence[Any],
    root: str,
    options: registry.LoweringOptions,
    buffer_updates: bool = False,
) -> Program:
    """Turn ``ep`` (already decomposed) into a :class:`Program`.

    Args:
      param_key: torch state_dict name -> the params key the program reads it from
        (tied weights map to one canonical key).
      example_leaves: the flattened example ``(args, kwargs)``, in export's order.
      root: the module's class name, for messages.
      options: the conversion's lowering choices, bound into the lowerings that read them.
      buffer_updates: keep the buffers the forward updates (batch norm's running statistics
        in training mode) as :attr:`Program.updates` instead of refusing the module.
    """
    sig = ep.graph_signature
    slots = _placeholders(ep, param_key, example_leaves, root)
    nodes = _lower_nodes(ep, registry.load(), slots.torch_consts, root, options)
    _raise_problems(nodes.problems, ep, root, buffer_updates)
    outputs = _outputs(nodes.output_node, len(sig.user_outputs), slots.torch_consts, root)
    updates = _updates(ep, nodes.output_node, param_key)
    read = ([(st.args, st.kwargs) for st in nodes.steps], outputs, [r for _, r in updates])
    constants, sanitized = used_constants(read, slots.torch_consts)
    return Program(
        slots.param_slots,
        slots.input_slots,
        constants,
        nodes.steps,
        outputs,
        nodes.folded,
        nodes.folded_ops,
        sanitized,
        updates,
    )


@dataclasses.dataclass
class _Slots:
    """What the graph's placeholders become (step 1 of :func:`build`)."""

    param_slots: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    input_slots: list[InputSlot] = dataclasses.field(default_factory=list)
    # node name -> torch value (constants, fixed inputs, and later the folded nodes)
    torch_consts: dict[str, Any] = dataclasses.field(default_factory=dict)


def _placeholders(
    ep: ExportedProgram, param_key: Mapping[str, str], example_leaves: Sequence[Any], root: str
) -> _Slots:
    """Placeholders -> parameter slots, input slots (tensor or fixed value) and constants."""
    sig = ep.graph_signature
    slots = _Slots()
    user_specs = [s for s in sig.input_specs if s.kind == InputKind.USER_INPUT]
    if len(user_specs) != len(example_leaves):
        raise ConversionError(
            f"{root}: torch.export saw {len(user_specs)} inputs but the example (args, kwargs) "
            f"flatten to {len(example_leaves)} leaves; pass inputs as tensors or plain Python values"
        )
    user_leaf = {s.arg.name: leaf for s, leaf in zip(user_specs, example_leaves, strict=True)}
    for spec in sig.input_specs:
        name = spec.arg.name
        if spec.kind == InputKind.PARAMETER or (spec.kind == InputKind.BUFFER and spec.persistent):
            slots.param_slots.append((name, param_key[spec.target]))
        elif spec.kind in (InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            slots.torch_consts[name] = ep.constants[spec.target]
        elif spec.kind == InputKind.USER_INPUT:
            leaf = user_leaf[name]
            if isinstance(leaf, torch.Tensor):
                slots.input_slots.append(
                    InputSlot(name, True, tuple(leaf.shape), to_jnp(leaf.dtype))
                )
            else:
                slots.input_slots.append(InputSlot(name, False, value=leaf))
                slots.torch_consts[name] = leaf
        else:
            raise ConversionError(
                f"{root}: unsupported graph input kind {spec.kind.name} ({name}); "
                "custom objects and tokens cannot be converted"
            )
    return slots


@dataclasses.dataclass
class _Nodes:
    """What the graph's other nodes become (step 2 of :func:`build`)."""

    steps: list[Step] = dataclasses.field(default_factory=list)
    folded: list[str] = dataclasses.field(default_factory=list)
    folded_ops: dict[str, int] = dataclasses.field(default_factory=dict)
    problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (kind, message)
    output_node: torch.fx.Node | None = None


def _lower_nodes(
    ep: ExportedProgram,
    lowerings: Mapping[Any, registry.Lowering],
    torch_consts: dict[str, Any],
    root: str,
    options: registry.LoweringOptions,
) -> _Nodes:
    """Fold constant nodes (into ``torch_consts``), look up lowerings, collect problems."""
    out = _Nodes()
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            out.output_node = node
            continue
        if node.op != "call_function":
            out.problems.append(
                ("missing", f"graph node {node.op} {node.target} ({module_path(node, root)})")
            )
            continue
        where = module_path(node, root)
        entry = lowerings.get(node.target)
        problem = _refusal(entry, node, where)
        if problem:
            out.problems.append(("refused", problem))
            continue
        if all(n.name in torch_consts for n in _node_inputs((node.args, node.kwargs))):
            _fold(node, torch_consts, out)
            continue
        if node.target is operator.getitem:
            fn: Callable[..., Any] = operator.getitem
            meta = None
        elif entry is None:
            out.problems.append(
                (
                    "missing",
                    f"no JAX lowering for {registry.op_name(node.target)} (used by {where}); "
                    f"add one in {registry.family_hint()}",
                )
            )
            continue
        else:
            fn = entry.bind(options)
            if entry.used_outputs:
                read = frozenset(u.args[1] for u in node.users if u.target is operator.getitem)
                fn = functools.partial(fn, used_outputs=read)
            meta = _meta_of(node.meta.get("val"))
        out.steps.append(
            Step(
                node.name,
                node.target,
                fn,
                _map_nodes(tuple(node.args), lambda n: Ref(n.name)),
                _map_nodes(dict(node.kwargs), lambda n: Ref(n.name)),
                meta,
                where,
            )
        )
    return out


def _refusal(entry: registry.Lowering | None, node: torch.fx.Node, where: str) -> str | None:
    """Why the registry refuses this node (a refused op, or its check on the arguments)."""
    if entry is None:
        return None
    if entry.fn is None:
        return f"{entry.name} is not supported under MPC (used by {where}): {entry.note}"
    if entry.check is not None:
        reason = entry.check(*node.args, **node.kwargs)
        if reason:
            return f"{entry.name} is refused (used by {where}): {reason}"
    return None


def _fold(node: torch.fx.Node, torch_consts: dict[str, Any], out: _Nodes) -> None:
    """Evaluate a node whose inputs are all constants with torch, now (it never runs in JAX)."""
    args = _map_nodes(node.args, lambda n: torch_consts[n.name])
    kwargs = _map_nodes(node.kwargs, lambda n: torch_consts[n.name])
    with torch.no_grad():
        torch_consts[node.name] = node.target(*args, **kwargs)
    out.folded.append(node.name)
    label = registry.op_name(node.target)
    out.folded_ops[label] = out.folded_ops.get(label, 0) + 1


def _raise_problems(
    problems: list[tuple[str, str]], ep: ExportedProgram, root: str, buffer_updates: bool
) -> None:
    """Missing and refused ops first (together, one line), then state mutation (non-user outputs;
    buffer updates are kept when the conversion asked for them).

    Refused ops are reported first: they explain a mutation better.
    """
    if problems:
        first = problems[0][1]
        others = sorted({m for _, m in problems[1:]} - {first})
        raise UnsupportedOpError(first + (" (also: " + "; ".join(others) + ")" if others else ""))
    kept = (OutputKind.USER_OUTPUT,) + ((OutputKind.BUFFER_MUTATION,) if buffer_updates else ())
    mutated = [s for s in ep.graph_signature.output_specs if s.kind not in kept]
    if mutated:
        names = ", ".join(f"{s.target} ({s.kind.name})" for s in mutated)
        buffers = all(s.kind == OutputKind.BUFFER_MUTATION for s in mutated)
        raise ConversionError(
            f"{root} mutates state during forward: {names}. The converted program is a pure "
            + (
                "function; for batch norm in training mode convert with "
                "buffer_updates='return' (apply then also returns the new running statistics), "
                "or call module.eval() first"
                if buffers
                else "function; remove the in-place update of inputs"
            )
        )


def _updates(
    ep: ExportedProgram, output_node: torch.fx.Node | None, param_key: Mapping[str, str]
) -> list[tuple[str, Any]]:
    """(params key, Ref) of every buffer the forward updates, in the graph's order."""
    assert output_node is not None
    specs = ep.graph_signature.output_specs
    values = list(output_node.args[0])
    return [
        (param_key[s.target], Ref(v.name))
        for s, v in zip(specs, values, strict=True)
        if s.kind == OutputKind.BUFFER_MUTATION
    ]


def _outputs(
    output_node: torch.fx.Node | None, n_user: int, torch_consts: dict[str, Any], root: str
) -> list[Any]:
    """The user outputs (the last ``n_user`` of the output node) as refs; tensors only."""
    assert output_node is not None
    flat_out = list(output_node.args[0])[-n_user:] if n_user else []
    outputs: list[Any] = []
    for i, o in enumerate(flat_out):
        if isinstance(o, torch.fx.Node):
            val = o.meta.get("val")
            if o.name not in torch_consts and not isinstance(val, torch.Tensor):
                raise ConversionError(
                    f"{root}: output #{i} is a {type(val).__name__}, not a tensor; return tensors, "
                    "or tuples/lists/dicts of tensors"
                )
            outputs.append(Ref(o.name))
        else:
            raise ConversionError(
                f"{root}: output #{i} is the constant {o!r}, not a tensor; return tensors, or "
                "tuples/lists/dicts of tensors (fixed values are not outputs of an MPC program)"
            )
    return outputs
