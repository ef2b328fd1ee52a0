"""torch MLP -> ``ppml_torch.models.mlp.MLP``: Linear layers with one kind of activation.

Accepted: an ``nn.Sequential`` or any module whose ``forward`` is a plain chain of
``nn.Linear`` (with bias) and activations -- modules (``nn.ReLU``, ``nn.Sigmoid``,
``nn.Tanh``, ``nn.GELU`` exact or tanh, ``nn.SiLU``) or functions (``F.relu``,
``torch.sigmoid``...).  ``nn.Identity`` and ``nn.Dropout`` are dropped (Dropout: the
Flax model has none, in training too).  The chain is read with ``torch.fx``, so the order
is the order ``forward`` runs, not the order the layers were registered.

Rules:
  * every hidden activation (between two Linear layers) is the same kind, or there is
    none at all (``identity``);
  * an activation after the last Linear is allowed and kept outside the Flax module:
    ``apply`` runs ``final_activation(MLP.apply(params, x))`` (``extras["final_activation"]``).

Weight map, layer ``i`` of the chain (torch name from the module, e.g. ``0.weight``)::

    <linear i>.weight (out, in)  ->  Dense_i/kernel (in, out)   transposed
    <linear i>.bias   (out,)     ->  Dense_i/bias   (out,)
"""

from __future__ import annotations

import operator
from itertools import pairwise
from typing import Any

import jax
import jax.numpy as jnp
import torch
import torch.nn as nn
import torch.nn.functional as F

from ppml_torch.models.mlp import ACTIVATIONS, MLP

from .common import WeightMap, WeightMapError, flax_shapes
from .registry import Family, Transfer

_DROPPED_MODULES = (nn.Identity, nn.Dropout)
_ACTIVATION_MODULES: dict[type, str] = {
    nn.ReLU: "relu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.SiLU: "silu",
    # nn.GELU: "gelu" or "gelu_tanh", from its ``approximate`` attribute
}
_ACTIVATION_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu",
    torch.relu: "relu",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    F.silu: "silu",
    # F.gelu: "gelu" or "gelu_tanh", from its ``approximate`` keyword
}
_ACTIVATION_METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}


def matches(module: nn.Module) -> bool:
    """Whether ``module`` is made of Linear layers and known activations only (a first
    look: :func:`weight_map` still reads the forward order)."""
    leaves = [m for m in module.modules() if not list(m.children())]
    return any(isinstance(m, nn.Linear) for m in leaves) and all(
        isinstance(m, (nn.Linear, nn.GELU, *_DROPPED_MODULES, *_ACTIVATION_MODULES)) for m in leaves
    )


def unknown_layers(module: nn.Module) -> list[tuple[str, str]]:
    """``(qualified name, type)`` of every leaf submodule the MLP map does not know."""
    known = (nn.Linear, nn.GELU, *_DROPPED_MODULES, *_ACTIVATION_MODULES)
    return [
        (name or "<root>", type(m).__name__)
        for name, m in module.named_modules()
        if not list(m.children()) and not isinstance(m, known)
    ]


def activation_of_module(m: nn.Module) -> str | None:
    """The activation name (models/mlp.py ACTIVATIONS) of an activation module, else None."""
    if isinstance(m, nn.GELU):
        return "gelu_tanh" if m.approximate == "tanh" else "gelu"
    for cls, name in _ACTIVATION_MODULES.items():
        if isinstance(m, cls):
            return name
    return None


def _chain(module: nn.Module) -> list[tuple[str, Any]]:
    """The forward pass as ``[("linear", qualname), ("act", kind), ...]`` in run order."""
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception as e:  # noqa: BLE001 - any tracing failure gets the same advice
        raise WeightMapError(
            f"to_flax: cannot read the forward pass of {type(module).__name__} with torch.fx "
            f"({type(e).__name__}: {e}); write it as nn.Sequential, or use the graph route "
            f"ppml_torch.convert(module, example_args)"
        ) from e
    steps: list[tuple[str, Any]] = []
    unknown: list[str] = []
    previous = None
    for node in graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                raise WeightMapError("to_flax: an MLP takes one input; this forward takes several")
            previous = node
            continue
        if node.op == "output":
            if node.args[0] is not previous:
                unknown.append(f"output is not the end of the chain ({node.args[0]})")
            break
        if node.op == "call_module":
            sub = module.get_submodule(node.target)
            if isinstance(sub, nn.Linear):
                step = ("linear", node.target)
            elif isinstance(sub, _DROPPED_MODULES):
                step = None
            elif (kind := activation_of_module(sub)) is not None:
                step = ("act", kind)
            else:
                unknown.append(f"{node.target} ({type(sub).__name__})")
                step = None
        elif node.op == "call_function" and node.target is F.gelu:
            approximate = node.kwargs.get("approximate", "none")
            step = ("act", "gelu_tanh" if approximate == "tanh" else "gelu")
        elif node.op == "call_function" and node.target in _ACTIVATION_FUNCTIONS:
            step = ("act", _ACTIVATION_FUNCTIONS[node.target])
        elif node.op == "call_method" and node.target in _ACTIVATION_METHODS:
            step = ("act", _ACTIVATION_METHODS[node.target])
        elif node.op == "call_function" and node.target in (F.dropout, operator.pos):
            step = None
        else:
            unknown.append(f"{node.op} {getattr(node.target, '__name__', node.target)}")
            step = None
        if not node.args or node.args[0] is not previous:
            unknown.append(f"{node.name} does not take the previous step's output")
        previous = node
        if step is not None:
            steps.append(step)
    if unknown:
        raise WeightMapError(
            f"to_flax: {type(module).__name__} is not a plain Linear/activation chain; "
            f"not supported: {'; '.join(unknown)}.  Supported: nn.Linear, "
            f"{', '.join(sorted(c.__name__ for c in _ACTIVATION_MODULES))}, GELU, Identity, "
            f"Dropout; otherwise use ppml_torch.convert (graph route)"
        )
    return steps


def transfer(module: nn.Module) -> Transfer:
    """The key map, the Flax shapes, the Flax ``MLP`` and the spec (widths, activations);
    ``apply`` runs the final activation, if any, after the Flax module."""
    unknown = unknown_layers(module)
    if unknown:
        raise WeightMapError(
            f"to_flax: no Flax mapping for these submodules of {type(module).__name__}: "
            + ", ".join(f"{n} ({t})" for n, t in unknown)
            + ".  The MLP map knows nn.Linear, ReLU, Sigmoid, Tanh, GELU, SiLU, Identity, "
            "Dropout; for other layers use ppml_torch.convert (graph route)"
        )
    steps = _chain(module)
    linears = [name for op, name in steps if op == "linear"]
    if not linears:
        raise WeightMapError(f"to_flax: {type(module).__name__} has no nn.Linear")

    # activations between Linear i and i+1 (hidden) and after the last one (final)
    gaps: list[list[str]] = [[] for _ in linears]
    layer = -1
    for op, arg in steps:
        if op == "linear":
            layer += 1
        elif layer < 0:
            raise WeightMapError(f"to_flax: activation {arg!r} before the first nn.Linear")
        else:
            gaps[layer].append(arg)
    if any(len(g) > 1 for g in gaps):
        raise WeightMapError(
            f"to_flax: several activations in a row: {[g for g in gaps if len(g) > 1]}"
        )
    hidden = [g[0] if g else "identity" for g in gaps[:-1]]
    if len(set(hidden)) > 1:
        raise WeightMapError(
            "to_flax: MLP needs one kind of hidden activation, found "
            + ", ".join(f"{a} after {n}" for a, n in zip(hidden, linears[:-1], strict=True))
        )
    activation = hidden[0] if hidden else "relu"  # unused with a single Linear
    final = gaps[-1][0] if gaps[-1] else None

    layers = [module.get_submodule(name) for name in linears]
    no_bias = [
        name or "<root>" for name, lin in zip(linears, layers, strict=True) if lin.bias is None
    ]
    if no_bias:
        raise WeightMapError(
            f"to_flax: MLP's Dense layers all have a bias; nn.Linear without one: {no_bias}"
        )
    chain_breaks = [
        f"{a}.out_features={x.out_features} != {b}.in_features={y.in_features}"
        for (a, b), (x, y) in zip(pairwise(linears), pairwise(layers), strict=True)
        if x.out_features != y.in_features
    ]
    if chain_breaks:
        raise WeightMapError(f"to_flax: Linear widths do not chain: {chain_breaks}")
    widths = [layers[0].in_features] + [lin.out_features for lin in layers]

    flax_mlp = MLP(features=tuple(widths[1:]), activation=activation)
    pairs: dict[str, tuple[str, ...]] = {}
    transposed = set()
    for i, name in enumerate(linears):
        prefix = f"{name}." if name else ""  # "" for a bare nn.Linear
        pairs[prefix + "weight"] = (f"Dense_{i}", "kernel")
        pairs[prefix + "bias"] = (f"Dense_{i}", "bias")
        transposed.add(prefix + "weight")
    wmap = WeightMap(pairs, frozenset(transposed), what=type(module).__name__)
    shapes = flax_shapes(
        lambda: flax_mlp.init(jax.random.PRNGKey(0), jnp.zeros((1, widths[0]), jnp.float32))
    )
    mlp_spec = {
        "family": "mlp",
        "widths": widths,
        "activation": activation if len(widths) > 2 else "identity",
        "final_activation": final,
    }
    final_fn = ACTIVATIONS[final] if final else None

    def apply_fn(params: Any, x: jax.Array) -> jax.Array:
        y = flax_mlp.apply(params, x)
        return final_fn(y) if final_fn is not None else y

    return Transfer(
        weight_map=wmap,
        flax_shapes=shapes,
        apply_fn=apply_fn,
        spec=mlp_spec,
        source=type(module).__name__,
        extras={"flax_module": flax_mlp},
    )


def explain(module: nn.Module) -> str:
    """Why the MLP family does not take ``module``: the layers it does not know."""
    listed = ", ".join(f"{n} ({t})" for n, t in unknown_layers(module))
    return f"layers no map knows: {listed}" if listed else "it has no nn.Linear"


TORCH_ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "identity": nn.Identity,
}


def build(spec: dict[str, Any]) -> nn.Sequential:
    """``nn.Sequential(Linear, act, Linear, ..., [final act])``; names ``0.weight``, ``2.weight``..."""
    widths, layers = spec.get("widths"), []
    if (
        not isinstance(widths, list)
        or len(widths) < 2
        or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)
    ):
        raise WeightMapError(
            f"MLP spec: widths must be at least two positive integers (inputs, ..., outputs), "
            f"got {widths!r}"
        )
    acts = {"activation": spec.get("activation", "relu")}
    if spec.get("final_activation") is not None:
        acts["final_activation"] = spec["final_activation"]
    bad = {k: v for k, v in acts.items() if v not in TORCH_ACTIVATIONS}
    if bad:
        raise WeightMapError(
            f"MLP spec: unknown {', '.join(f'{k} {v!r}' for k, v in bad.items())}; "
            f"choose one of {', '.join(TORCH_ACTIVATIONS)}"
        )
    for i, (a, b) in enumerate(pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(TORCH_ACTIVATIONS[acts["activation"]]())
    if spec.get("final_activation"):
        layers.append(TORCH_ACTIVATIONS[spec["final_activation"]]())
    return nn.Sequential(*layers)


FAMILY = Family(
    name="mlp",
    torch_model="MLPs of nn.Linear + one activation kind",
    flax_model="ppml_torch.models.mlp.MLP",
    matches=matches,
    transfer=transfer,
    build=build,
    explain=explain,
)
