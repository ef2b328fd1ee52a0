"""What a training carries from step to step and from epoch to epoch: :class:`TrainState`.

The state lives inside the session for the whole ``fit`` (secret-shared under MPC): ``init``
builds it from the weights once, every epoch program takes it and returns the next one, and
at the end only its trained leaves are revealed (see :mod:`ppml_torch.train.programs`).

Under MPC its leaves start with the visibility an epoch gives them
(:func:`secret_optimizer_leaves`, :func:`start_secret`): SPU compiles per input visibility,
so a state that started public and came out of epoch 1 secret would compile epoch 2 again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class TrainState:
    """One training's state, a JAX pytree (leaves by torch name).

    Attributes:
      trainable: the leaves the optimizer trains, ``{torch name: array}``.
      fixed: the leaves training never changes (parameters in no param group or with
        ``requires_grad=False``, buffers), ``{torch name: array}``; never revealed.
      opt_state: the optax state of the mapped torch optimizer over ``trainable`` (momentum
        buffers, Adam's moments, step counts).  This is where the torch optimizer's own state
        and an LR schedule's counters go when ``fit`` carries them in from the optimizer and
        back out to it.
      buffers: leaves training updates without the optimizer, ``{torch name: array}`` (such
        as batch norm's running statistics); empty today: every buffer is in ``fixed``.
    """

    trainable: dict[str, Any]
    fixed: dict[str, Any]
    opt_state: Any
    buffers: dict[str, Any] = dataclasses.field(default_factory=dict)

    def tree_flatten(self) -> tuple[tuple[Any, ...], None]:
        return (self.trainable, self.fixed, self.opt_state, self.buffers), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: tuple[Any, ...]) -> TrainState:
        return cls(*children)


def secret_optimizer_leaves(tx: Any, train_struct: Any) -> tuple[bool, ...]:
    """Per leaf of ``tx``'s state, whether training makes it secret under MPC.

    A value computed from a secret is secret; SPU decides this per operation, as JAX's
    partial evaluation decides which outputs depend on "unknown" inputs.  So: the gradients and
    the trained weights are unknown (secret), and an optimizer-state leaf is secret once an
    update makes it depend on them (the moments do; step counts and ``beta ** t`` do not),
    repeated until nothing changes (a leaf may become secret through another one).
    """
    from jax._src.interpreters import partial_eval as pe

    opt_struct = jax.eval_shape(tx.init, train_struct)
    n_opt = len(jax.tree_util.tree_leaves(opt_struct))
    if not n_opt:
        return ()
    n_train = len(jax.tree_util.tree_leaves(train_struct))

    def update(grads: Any, opt: Any, params: Any) -> Any:
        return tx.update(grads, opt, params)[1]

    closed = jax.make_jaxpr(update)(train_struct, opt_struct, train_struct)
    secret = [False] * n_opt
    for _ in range(n_opt + 1):
        unknowns = [True] * n_train + secret + [True] * n_train
        _, _, out_unknown, _ = pe.partial_eval_jaxpr_nounits(closed, unknowns, instantiate=False)
        new = [a or bool(b) for a, b in zip(secret, out_unknown, strict=True)]
        if new == secret:
            break
        secret = new
    return tuple(secret)


def start_secret(opt_state: Any, secret: tuple[bool, ...], trainable: dict[str, Any]) -> Any:
    """``opt_state`` with the leaves marked in ``secret`` made secret from the start.

    ``t - t`` (``t`` an element of a trained leaf) is an exact secret zero: a local
    subtraction of shares, no communication; adding it changes no value.
    """
    if not any(secret):
        return opt_state
    t = jax.tree_util.tree_leaves(trainable)[0].reshape(-1)[0]
    zero = t - t
    leaves, treedef = jax.tree_util.tree_flatten(opt_state)
    leaves = [
        leaf + zero.astype(leaf.dtype) if s else leaf
        for leaf, s in zip(leaves, secret, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def secret_leaves(opt_state: Any, secret: tuple[bool, ...]) -> list[Any]:
    """The leaves of ``opt_state`` marked in ``secret`` (moments, buffers), in leaf order."""
    leaves = jax.tree_util.tree_leaves(opt_state)
    return [leaf for leaf, s in zip(leaves, secret, strict=True) if s]


def with_secret_leaves(opt_state: Any, secret: tuple[bool, ...], values: Any) -> Any:
    """``opt_state`` with its leaves marked in ``secret`` replaced by ``values`` (a carried
    torch optimizer's moments and buffers, secret-shared by their owner), in leaf order."""
    values = list(values)
    leaves, treedef = jax.tree_util.tree_flatten(opt_state)
    if len(values) != sum(secret):
        raise ValueError(f"{len(values)} carried leaves for {sum(secret)} secret ones")
    it = iter(values)
    out = [
        next(it).astype(leaf.dtype).reshape(leaf.shape) if s else leaf
        for leaf, s in zip(leaves, secret, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, out)
