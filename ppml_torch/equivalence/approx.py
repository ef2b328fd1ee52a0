"""The approximated ops a converted program runs, counted: what its default tolerance adds up."""

from __future__ import annotations

import collections
from typing import Any

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
