"""One per-op test body: run an ATen overload in torch and its lowering in JAX, compare.

A :class:`Case` names the overload and its arguments (torch tensors or plain values).
Values are compared with :func:`ppml_torch.testing.assert_close` (plaintext tolerance);
for differentiable cases ``jax.grad`` of ``sum(out * cotangent)`` is compared with torch
autograd for every float tensor argument listed in ``grad``.  Arguments listed in
``const`` reach the lowering as numpy arrays (folded constants, the public path);
the others as JAX arrays (values computed from inputs).  ``options`` are the
conversion's :class:`~ppml_torch.converters.fx.registry.LoweringOptions` (default:
convert's defaults), bound into the lowering as ``convert`` does; a lowering that declares
``used_outputs`` is told that every output is read.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from ppml_torch.converters.fx import registry
from ppml_torch.testing import assert_close

_gen = torch.Generator().manual_seed(0)


def randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen)


def positive(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=_gen) + 0.5


def unit(*shape: int) -> torch.Tensor:  # in (0.05, 0.95), e.g. probabilities
    return torch.rand(*shape, generator=_gen) * 0.9 + 0.05


def ints(high: int, *shape: int) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=_gen)


def bools(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=_gen) > 0.5


@dataclasses.dataclass
class Case:
    op: Any
    args: tuple
    kwargs: dict = dataclasses.field(default_factory=dict)
    grad: tuple[int, ...] = ()  # positions of float tensor args to differentiate
    const: tuple[int, ...] = ()  # positions passed as numpy constants
    label: str = ""
    grad_outputs: tuple[int, ...] | None = None  # outputs that get a cotangent (None: all float)
    options: dict = dataclasses.field(default_factory=dict)  # LoweringOptions fields

    @property
    def id(self) -> str:
        return registry.op_name(self.op) + (f"-{self.label}" if self.label else "")


def case(
    op: Any,
    *args: Any,
    grad: tuple[int, ...] = (0,),
    const: tuple[int, ...] = (),
    label: str = "",
    grad_outputs: tuple[int, ...] | None = None,
    options: dict | None = None,
    **kwargs: Any,
) -> Case:
    return Case(op, args, kwargs, grad, const, label, grad_outputs, dict(options or {}))


ONE_HOT = {"index_lowering": "one_hot"}


def primitives(fn: Any, *args: Any) -> set[str]:
    """Names of the JAX primitives ``fn(*args)`` runs, nested jaxprs (custom VJPs, jits) included."""

    def walk(jaxpr: Any) -> set[str]:
        names = set()
        for eqn in jaxpr.eqns:
            names.add(eqn.primitive.name)
            for v in eqn.params.values():
                for sub in v if isinstance(v, (list, tuple)) else [v]:
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        names |= walk(inner)
        return names

    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


def _to_jax(x: Any, as_const: bool) -> Any:
    if isinstance(x, torch.Tensor):
        a = x.detach().numpy()
        if a.dtype == np.int64:
            a = a.astype(np.int32)
        return a if as_const else jnp.asarray(a)
    if isinstance(x, (list, tuple)):
        return type(x)(_to_jax(v, as_const) for v in x)
    return x


def _flat(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def run(c: Case) -> None:
    lowering = registry.load()[c.op]
    assert lowering.fn is not None, f"{c.id} is refused, not lowered"
    fn = lowering.bind(registry.LoweringOptions(**c.options))
    expected = _flat(c.op(*c.args, **c.kwargs))
    if lowering.used_outputs:  # as if the graph read every output
        fn = functools.partial(fn, used_outputs=frozenset(range(len(expected))))
    jargs = [_to_jax(a, i in c.const) for i, a in enumerate(c.args)]
    actual = _flat(fn(*jargs, **c.kwargs))
    assert len(actual) == len(expected), (
        f"{c.id}: {len(actual)} outputs, torch gives {len(expected)}"
    )
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        e = e.detach().numpy()
        a = np.asarray(a)
        assert a.shape == e.shape, f"{c.id} output {i}: shape {a.shape}, torch {e.shape}"
        if e.dtype == np.bool_ or np.issubdtype(e.dtype, np.integer):
            np.testing.assert_array_equal(a.astype(e.dtype), e, err_msg=f"{c.id} output {i}")
        else:
            assert_close(a, e, what=f"{c.id} output {i}")
    if c.grad:
        _check_grad(c, fn, jargs)


def _check_grad(c: Case, fn: Any, jargs: list[Any]) -> None:
    targs = [
        a.detach().clone().requires_grad_(i in c.grad) if isinstance(a, torch.Tensor) else a
        for i, a in enumerate(c.args)
    ]
    outs = _flat(c.op(*targs, **c.kwargs))
    cots = [
        torch.randn(o.shape, generator=_gen)
        if o.is_floating_point() and (c.grad_outputs is None or n in c.grad_outputs)
        else None
        for n, o in enumerate(outs)
    ]
    loss = sum((o * t).sum() for o, t in zip(outs, cots, strict=True) if t is not None)
    loss.backward()

    def f(*diff):
        full = list(jargs)
        for pos, v in zip(c.grad, diff, strict=True):
            full[pos] = v
        res = _flat(fn(*full, **c.kwargs))
        return sum(jnp.sum(o * t.numpy()) for o, t in zip(res, cots, strict=True) if t is not None)

    grads = jax.grad(f, argnums=tuple(range(len(c.grad))))(*[jnp.asarray(jargs[p]) for p in c.grad])
    for pos, g in zip(c.grad, grads, strict=True):
        assert_close(np.asarray(g), targs[pos].grad.numpy(), what=f"{c.id} grad of arg {pos}")
