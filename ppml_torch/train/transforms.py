"""The optax transformations torch has and optax 0.2.2 lacks: torch's SGD momentum and Adam.

:mod:`ppml_torch.train.optim` chains them per param group; they are pure JAX, so they run in
plaintext and under SPU alike.

* :func:`torch_momentum`: ``torch.optim.SGD``'s momentum buffer (dampening, nesterov), torch's
  first step included (the buffer starts as the gradient itself);
* :func:`torch_adam`: torch's Adam direction, in torch's arithmetic or in the fixed-point-safe
  form (rescaled moments, :func:`adam_moment_scale`);
* :func:`torch_group`: one param group's whole update (weight decay, momentum or Adam, the
  learning rate), as torch's ``step()`` computes it;
* :func:`scale_by_table`: a per-step learning rate (a torch LR scheduler's values,
  :mod:`ppml_torch.train.schedules`) as an optax schedule indexed by the step.

**Carried state** (``fit`` continues a torch optimizer that already stepped): ``fresh=False``
(momentum: torch already has a buffer, so the first step is not special) and
``start_step`` (Adam: the bias corrections continue from torch's ``step``).  Per-step tables
(a scheduler cycling the momentum or ``beta1``, as ``OneCycleLR`` does) are public
constants indexed by the state's ``count``: the steps this transformation has taken.

Every update runs under ``jax.named_scope`` names (``momentum``, ``adam_m``, ``adam_v``,
``adam_step``) so that calibration files their values under what they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "AdamState",
    "MomentumState",
    "TableState",
    "adam_moment_scale",
    "scale_by_table",
    "torch_adam",
    "torch_group",
    "torch_momentum",
]


def _at(table: np.ndarray | None, count: Any, default: float) -> Any:
    """``table[count]`` (a public constant indexed by a public count), or ``default``."""
    if table is None:
        return default
    return jnp.asarray(table, jnp.float32)[jnp.minimum(count, len(table) - 1)]


class MomentumState(NamedTuple):
    count: jax.Array  # steps taken by this transformation (int32 scalar)
    buf: Any  # torch's momentum_buffer, per leaf


def torch_momentum(
    momentum: float,
    dampening: float = 0.0,
    nesterov: bool = False,
    *,
    fresh: bool = True,
    momentum_table: np.ndarray | None = None,
) -> optax.GradientTransformation:
    """torch.optim.SGD's momentum on (weight-decayed) gradients, learning rate not applied.

    ``buf = g`` on torch's first step (undampened, as torch), then
    ``buf = momentum * buf + (1 - dampening) * g``; the update is ``g + momentum * buf``
    with ``nesterov``, else ``buf``.  ``fresh=False``: the buffer is carried in from a torch
    optimizer that already has one, so no step is a first step.  ``momentum_table``: the
    momentum of each step (a scheduler that cycles it).
    """

    def init(params: Any) -> MomentumState:
        return MomentumState(
            jnp.zeros([], jnp.int32), jax.tree_util.tree_map(jnp.zeros_like, params)
        )

    def update(updates: Any, state: MomentumState, params: Any = None) -> tuple[Any, MomentumState]:
        del params
        with jax.named_scope("momentum"):
            m = _at(momentum_table, state.count, momentum)
            first = (state.count == 0) if fresh else jnp.zeros([], bool)
            buf = jax.tree_util.tree_map(
                lambda g, b: jnp.where(first, g, m * b + (1.0 - dampening) * g),
                updates,
                state.buf,
            )
            if nesterov:
                out = jax.tree_util.tree_map(lambda g, b: g + m * b, updates, buf)
            else:
                out = buf
        return out, MomentumState(state.count + 1, buf)

    return optax.GradientTransformation(init, update)


class AdamState(NamedTuple):
    count: jax.Array  # steps taken by this transformation (int32 scalar)
    beta1_pow: jax.Array  # beta1 ** step (float32 scalar; products, no pow under MPC)
    beta2_pow: jax.Array
    mu: Any  # scale * m
    nu: Any  # scale**2 * v


def torch_adam(
    b1: float,
    b2: float,
    eps: float,
    *,
    scale: float = 1.0,
    eps_floor: float = 0.0,
    start_step: int = 0,
    beta1_table: np.ndarray | None = None,
    beta1_pow_table: np.ndarray | None = None,
    beta2_pow_table: np.ndarray | None = None,
) -> optax.GradientTransformation:
    """torch's Adam direction ``(m / bc1) / (sqrt(v) / sqrt(bc2) + eps)``, learning rate not applied.

    ``scale`` keeps the moments as ``s*m`` and ``s**2*v`` (``s = scale``) and divides by
    ``sqrt(s**2 v) / sqrt(bc2) + s*eps``: the same number in real arithmetic, but under fixed
    point ``(1 - b2) * (s*g)**2`` stays representable where ``(1 - b2) * g**2`` underflows.
    ``eps_floor`` raises ``s*eps`` to at least that value (under fixed point torch's
    ``eps=1e-8`` rounds to 0, and SPU's ``sqrt`` of a ``v`` of a few resolution steps is 0).
    ``scale=1, eps_floor=0`` is torch's arithmetic, operation for operation.  Bias
    corrections use running products ``b**t`` (no ``pow``, which fixed point would
    approximate), starting from ``b**start_step`` (torch's ``step`` of a carried state); the
    square root is taken before the bias correction, as torch does, which keeps its argument
    small in early steps.  ``beta1_table``: per step, ``beta1`` (a scheduler that cycles it);
    ``beta1_pow_table``/``beta2_pow_table``: per step, torch's ``beta ** step`` computed in
    float64 as torch does (``fit`` knows its steps: then a run of 5 epochs and runs of 2 and 3
    compute the same corrections; with a cycled ``beta1`` torch corrects with the current
    ``beta1`` to the power of the step, which no running product gives).
    """
    # (1 - b2) * (s g)^2 computed as (c g)^2 with c = s * sqrt(1 - b2): one product less to
    # truncate under fixed point.
    c2 = scale * math.sqrt(1.0 - b2)
    eps_s = max(eps * scale, eps_floor)
    torch_form = scale == 1.0

    def init(params: Any) -> AdamState:
        zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
        return AdamState(
            jnp.zeros([], jnp.int32),
            jnp.asarray(b1**start_step, jnp.float32),
            jnp.asarray(b2**start_step, jnp.float32),
            zeros(),
            zeros(),
        )

    def update(updates: Any, state: AdamState, params: Any = None) -> tuple[Any, AdamState]:
        del params
        beta1 = _at(beta1_table, state.count, b1)
        if beta1_pow_table is None:
            p1 = state.beta1_pow * b1
        else:
            p1 = _at(beta1_pow_table, state.count, 0.0)
        if beta2_pow_table is None:
            p2 = state.beta2_pow * b2
        else:
            p2 = _at(beta2_pow_table, state.count, 0.0)
        with jax.named_scope("adam_m"):
            mu = jax.tree_util.tree_map(
                lambda m, g: beta1 * m + ((1.0 - beta1) * scale) * g, state.mu, updates
            )
        with jax.named_scope("adam_v"):
            if torch_form:
                nu = jax.tree_util.tree_map(
                    lambda v, g: b2 * v + (1.0 - b2) * g * g, state.nu, updates
                )
            else:
                nu = jax.tree_util.tree_map(
                    lambda v, g: b2 * v + jnp.square(c2 * g), state.nu, updates
                )
        with jax.named_scope("adam_step"):
            bc1 = 1.0 - p1
            sqrt_bc2 = jnp.sqrt(1.0 - p2)
            out = jax.tree_util.tree_map(
                lambda m, v: (m / bc1) / (jnp.sqrt(v) / sqrt_bc2 + eps_s), mu, nu
            )
        return out, AdamState(state.count + 1, p1, p2, mu, nu)

    return optax.GradientTransformation(init, update)


def torch_group(
    kind: str,
    g: Mapping[str, Any],
    scale: float,
    eps_floor: float,
    start_step: int,
    tables: Mapping[str, np.ndarray | None],
    steps: int | None,
) -> optax.GradientTransformation:
    """One param group's update, as torch's ``step()`` computes it.  ``start_step``: the steps
    torch already took (a carried state); ``tables``: per-step ``lr`` and cycled ``momentum``
    (SGD) or ``beta1`` (Adam) of an LR scheduler, or ``None``."""
    lr, wd = g["lr"], g["weight_decay"]
    cycled = tables["momentum"]
    parts: list[optax.GradientTransformation] = []
    if kind == "SGD":
        if wd:
            parts.append(optax.add_decayed_weights(wd))
        if g["momentum"] or cycled is not None:
            parts.append(
                torch_momentum(
                    g["momentum"],
                    g["dampening"],
                    g["nesterov"],
                    fresh=start_step == 0,
                    momentum_table=cycled,
                )
            )
    else:
        decoupled = kind == "AdamW" or g.get("decoupled_weight_decay", False)
        if wd and not decoupled:
            parts.append(optax.add_decayed_weights(wd))
        b1, b2 = g["betas"]
        pow1 = pow2 = None
        if steps is not None or cycled is not None:  # torch: the current beta ** step
            n = len(cycled) if cycled is not None else steps
            k = start_step + 1 + np.arange(n, dtype=np.float64)
            pow1 = (cycled if cycled is not None else np.float64(b1)) ** k
            pow2 = np.float64(b2) ** k
        parts.append(
            torch_adam(
                b1,
                b2,
                g["eps"],
                scale=scale,
                eps_floor=eps_floor,
                start_step=start_step,
                beta1_table=cycled,
                beta1_pow_table=pow1,
                beta2_pow_table=pow2,
            )
        )
        if wd and decoupled:  # p - lr*(adam + wd*p) = p*(1 - lr*wd) - lr*adam, as torch
            parts.append(optax.add_decayed_weights(wd))
    if tables["lr"] is None:
        parts.append(optax.scale(-lr))
    else:
        parts.append(scale_by_table(-np.asarray(tables["lr"])))
    return optax.chain(*parts)


class TableState(NamedTuple):
    count: jax.Array  # steps taken (int32 scalar): the index into the table


def scale_by_table(table: np.ndarray) -> optax.GradientTransformation:
    """Multiply the update by ``table[count]``: an optax schedule of public per-step values
    (``-lr`` of each step of a torch LR scheduler); the last value holds past the end."""

    def init(params: Any) -> TableState:
        del params
        return TableState(jnp.zeros([], jnp.int32))

    def update(updates: Any, state: TableState, params: Any = None) -> tuple[Any, TableState]:
        del params
        factor = _at(table, state.count, 0.0)
        return jax.tree_util.tree_map(lambda u: factor * u, updates), TableState(state.count + 1)

    return optax.GradientTransformation(init, update)


def adam_moment_scale(field: str, fraction_bits: int) -> tuple[float, float]:
    """``(scale, eps_floor)`` of the MPC-safe Adam for a fixed-point setting.

    Both ends of the gradient range matter (docs/training.md, "Adam under fixed point"):
    ``s**2 v`` (up to ``(s*g)**2``) must stay inside SPU's ``sqrt`` range (measured: right up
    to 1e5 on FM64, 0 from 2e5; right up to 1e7 on FM128, 0 at 1e8), while
    ``(1 - b2) (s*g)**2`` must be many resolution steps for small gradients.  Measured
    choice: ``s = 2**8`` on FM64 (18 fraction bits; gradients of about 1e-3 to 1 in root
    mean square once ``v`` has converged), ``s = 2**10`` on FM128 (26 bits; about 4e-5 to 3).
    Other fraction bits: ``2**((bits - 2) // 2)`` on FM64, ``2**((bits - 6) // 2)`` on FM128.
    ``eps_floor``: on FM64 ``sqrt(32)`` resolution steps (0.011): SPU's ``sqrt`` returns 0
    for inputs of a few steps (and a truncation error can make ``v`` one step negative), so
    a parameter whose ``v`` is that small would see ``m`` divided by ``eps`` alone; 32 steps
    is where it is accurate to 1%.  In gradient units that is ``0.011 / s`` = 4e-5.  On FM128
    one step is enough (measured; ``sqrt(32)`` steps there cost accuracy).
    """
    if field.upper() == "FM128":
        return float(2 ** ((fraction_bits - 6) // 2)), 2.0**-fraction_bits
    return float(2 ** ((fraction_bits - 2) // 2)), math.sqrt(32.0 * 2.0**-fraction_bits)
