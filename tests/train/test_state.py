"""ppml_torch/train/state.py: the training state is a pytree, and its optimizer leaves start
with the visibility an epoch gives them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from ppml_torch.train.optim import from_torch
from ppml_torch.train.state import TrainState, secret_optimizer_leaves, start_secret
from tests.train.toy import tiny_mlp


def test_secret_optimizer_leaves():
    """Which optimizer-state leaves training makes secret: the moments, not the counts."""
    module = tiny_mlp()
    train = {
        k: jax.ShapeDtypeStruct(tuple(v.shape), np.float32) for k, v in module.state_dict().items()
    }
    for opt, n_secret in [
        (torch.optim.SGD(module.parameters(), lr=0.1), 0),
        # one vector per param group (optim.py flattens each group's update)
        (torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9), 1),  # buffer; count public
        (torch.optim.Adam(module.parameters()), 2),  # mu, nu; beta powers public
    ]:
        tx = from_torch(opt, module).tx
        mask = secret_optimizer_leaves(tx, train)
        n_leaves = len(jax.tree_util.tree_leaves(jax.eval_shape(tx.init, train)))
        assert sum(mask) == n_secret, mask
        assert n_leaves > n_secret or n_secret == 0, n_leaves  # some leaves stay public


def test_state_is_a_pytree_that_jit_carries():
    """Every field is carried through a program (a field left out of the flattening would be
    lost or frozen by jit); ``buffers`` is empty unless training updates buffers."""
    state = TrainState({"w": jnp.ones(2)}, {"f": jnp.zeros(1)}, (jnp.zeros(2),))
    assert state.buffers == {}
    assert len(jax.tree_util.tree_leaves(state)) == 3
    out = jax.jit(lambda s: TrainState(
        {"w": s.trainable["w"] + 1}, s.fixed, (s.opt_state[0] + 2,), {"b": s.fixed["f"] + 3}
    ))(state)  # fmt: skip
    assert isinstance(out, TrainState)
    np.testing.assert_array_equal(out.trainable["w"], [2, 2])
    np.testing.assert_array_equal(out.opt_state[0], [2, 2])
    np.testing.assert_array_equal(out.buffers["b"], [3])


def test_start_secret_marks_exactly_the_secret_leaves_and_keeps_their_values():
    """The marked optimizer leaves depend on the trained weights (so SPU sees them secret from
    the start), the others do not, and no value changes.  Catches a mask applied to the wrong
    leaves, or a "zero" that is not one."""
    from jax._src.interpreters import partial_eval as pe

    train = {"w": jnp.array([0.5, -1.25])}
    opt = (jnp.array([1.0, 2.0]), jnp.array(3, jnp.int32), jnp.array([4.0, 5.0]))
    secret = (True, False, False)
    out = start_secret(opt, secret, train)
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(opt), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    closed = jax.make_jaxpr(lambda t, o: start_secret(o, secret, t))(train, opt)
    unknowns = [True] + [False] * 3  # the trained leaf is secret, the optimizer state public
    _, _, out_unknown, _ = pe.partial_eval_jaxpr_nounits(closed, unknowns, instantiate=False)
    assert tuple(bool(u) for u in out_unknown) == secret
    assert start_secret(opt, (False, False, False), train) is opt
