"""Where an equation of a traced program belongs: its module, its direction, its kind of work.

A profiled function marks its parts with ``jax.named_scope`` (metadata only: the compiled
program is the same):

* :func:`model_scope` around the model's ``apply``: inside it, the graph route's steps carry
  ``"<torch module path>: <class>"`` and ``"op:<ATen op>"``
  (``ppml_torch/converters/fx/program.py``), the Flax route's modules their own names;
* :func:`part_scope` around work outside every module: ``part_scope("loss")``,
  ``part_scope("argmax")``, ``part_scope("optimizer")`` give the rows ``(loss)``,
  ``(argmax)``, ``(optimizer)``.  What lies outside both is ``(outside modules)``.

Differentiation wraps scopes as ``jvp(...)`` (forward) and ``transpose(jvp(...))``
(backward): that is how the backward column is told from the forward one.

The kind of work (:data:`KINDS`) of an equation comes from, in order: a part named after a
kind (``part_scope("argmax")``), its ATen op (graph route), its module's class
(``LayerNorm``, ``GELU``, ``Embedding``...), then its JAX primitive.  So on the graph route
``aten._softmax`` is ``softmax`` whatever it lowers to, while the Flax route's inline softmax
shows as what it computes (``comparisons`` for the max, ``nonlinear`` for exp and the
division).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import jax

MODEL = "ppml:model"
PART = "ppml:part:"
OP = "op:"  # ppml_torch.converters.fx.program.OP_SCOPE (converters sit below this package)
OUTSIDE = "(outside modules)"

# the kinds of work, in the order reports list them
KINDS = (
    "matmul",
    "softmax",
    "GeLU",
    "LayerNorm",
    "argmax",
    "comparisons",
    "embedding",
    "nonlinear",
    "other",
)
LAYOUT = "layout"  # reshapes, transposes, slices: no communication; counted with a neighbour

_ATEN_KINDS = {
    "matmul": ("mm", "addmm", "bmm", "matmul", "linear", "baddbmm", "dot", "mv", "convolution"),
    "softmax": ("_softmax", "_log_softmax", "softmax", "log_softmax", "_safe_softmax"),
    "GeLU": ("gelu",),
    "LayerNorm": ("native_layer_norm", "layer_norm", "rms_norm", "_fused_rms_norm"),
    "argmax": ("argmax", "argmin"),
    "comparisons": (
        "relu", "maximum", "minimum", "max", "min", "amax", "amin", "clamp", "clamp_min",
        "clamp_max", "gt", "lt", "ge", "le", "eq", "ne", "sort", "topk", "abs", "sign",
        "hardtanh", "threshold", "leaky_relu", "relu6",
    ),
    "embedding": ("embedding", "embedding_dense_backward"),
}  # fmt: skip
_ATEN = {op: kind for kind, ops in _ATEN_KINDS.items() for op in ops}

_CLASS_KINDS = (  # module class name (lower case) contains -> kind
    ("layernorm", "LayerNorm"),
    ("rmsnorm", "LayerNorm"),
    ("gelu", "GeLU"),
    ("softmax", "softmax"),
    ("relu", "comparisons"),
    ("embed", "embedding"),
)

_PRIMITIVES = {
    "matmul": ("dot_general", "conv_general_dilated"),
    "argmax": ("argmax", "argmin"),
    "comparisons": (
        "max", "min", "gt", "ge", "lt", "le", "eq", "ne", "reduce_max", "reduce_min", "sort",
        "sign", "abs", "clamp", "reduce_precision",
    ),
    "nonlinear": (
        "exp", "exp2", "log", "log1p", "tanh", "logistic", "erf", "erf_inv", "rsqrt", "sqrt",
        "cbrt", "div", "rem", "pow", "sin", "cos", "tan", "atan2", "reciprocal",
    ),
    LAYOUT: (
        "reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims", "slice",
        "concatenate", "pad", "convert_element_type", "copy", "copy_p", "rev", "iota",
        "stop_gradient", "bitcast_convert_type", "dynamic_slice",
    ),
}  # fmt: skip
_PRIMITIVE = {p: kind for kind, prims in _PRIMITIVES.items() for p in prims}

_WRAPPER = re.compile(r"^(\w+)\((.*)\)$")
_FLAX_NAME = re.compile(r"^\w+$")


@contextlib.contextmanager
def model_scope() -> Iterator[None]:
    """Mark the model's part of a profiled function (around ``apply``)."""
    with jax.named_scope(MODEL):
        yield


@contextlib.contextmanager
def part_scope(name: str) -> Iterator[None]:
    """Mark work outside every module: its row is ``(name)``; a name in :data:`KINDS` (e.g.
    ``"argmax"``) is also its kind."""
    with jax.named_scope(PART + name):
        yield


def is_layout(primitive: str) -> bool:
    """Reshapes, transposes, broadcasts, slices, casts: data movement, no arithmetic."""
    return _PRIMITIVE.get(primitive) == LAYOUT


def unwrap(part: str) -> tuple[str, bool]:
    """``transpose(jvp(fc1: Linear))`` -> (``fc1: Linear``, backward=True)."""
    backward = False
    m = _WRAPPER.match(part)
    while m:
        backward = backward or m.group(1) == "transpose"
        part = m.group(2)
        m = _WRAPPER.match(part)
    return part, backward


class Place:
    """Module path, module class, row name, direction and kind of one equation."""

    __slots__ = ("backward", "kind", "module_kind", "path", "row")

    def __init__(self, row: str, path: str | None, module_kind: str, backward: bool, kind: str):
        self.row = row  # "" the root, "h.0.attn", or "(loss)"
        self.path = path  # the module path, None outside the model
        self.module_kind = module_kind
        self.backward = backward
        self.kind = kind


def place(scope: str, primitive: str, flax_kinds: dict[str, str], root_kind: str) -> Place:
    """Where the equation of ``primitive`` with name stack ``scope`` belongs.

    ``flax_kinds`` maps Flax module paths (``"transformer.h_0.ln_1"``) to their classes,
    recorded while tracing; ``root_kind`` is the model's class.
    """
    parts, backward = [], False
    for raw in scope.split("/"):
        if raw:
            p, b = unwrap(raw)
            parts.append(p)
            backward = backward or b
    aten = next((p[len(OP) :] for p in reversed(parts) if p.startswith(OP)), None)
    part = next((p[len(PART) :] for p in reversed(parts) if p.startswith(PART)), None)
    if MODEL in parts:
        inner = [p for p in parts[parts.index(MODEL) + 1 :] if not p.startswith(OP)]
        path, module_kind = _module(inner, flax_kinds, root_kind)
        row = path
    else:
        path, module_kind = None, ""
        row = f"({part})" if part else OUTSIDE
    return Place(row, path, module_kind, backward, _kind(part, aten, module_kind, primitive))


def _module(inner: list[str], flax_kinds: dict[str, str], root_kind: str) -> tuple[str, str]:
    graph = [p for p in inner if ": " in p]
    if graph:  # graph route: the innermost "<torch path>: <class>"
        path, kind = graph[-1].rsplit(": ", 1)
        return path, kind
    names: list[str] = []
    for p in inner[1:]:  # the first scope is the root module's own (its class name)
        if _FLAX_NAME.match(p):
            names.append(p)
        elif "." in p:  # "attn.setup", "wte.attend": a method of module attn / wte
            owner = p.split(".", 1)[0]
            if _FLAX_NAME.match(owner) and (not names or names[-1] != owner):
                names.append(owner)
    path = ".".join(names)
    return path, flax_kinds.get(path, root_kind if not path else "")


def _kind(part: str | None, aten: str | None, module_kind: str, primitive: str) -> str:
    if part in KINDS:
        return part
    if aten is not None:
        name = aten.split(".")[1] if aten.count(".") >= 1 else aten
        if name in _ATEN:
            return _ATEN[name]
    low = module_kind.lower()
    for key, kind in _CLASS_KINDS:
        if key in low:
            return kind
    return _PRIMITIVE.get(primitive, "other")
