"""ppml_torch/train/transforms.py: torch's momentum and Adam as optax transformations, with a
carried start and per-step tables."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ppml_torch.testing import Tolerance, assert_close
from ppml_torch.train.transforms import scale_by_table, torch_adam, torch_momentum


def test_scaled_adam_is_adam_in_plaintext() -> None:
    """The MPC-safe form (rescaled moments) is the same arithmetic: plaintext agrees."""
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(7,)), jnp.float32)}
    plain, scaled = torch_adam(0.9, 0.999, 1e-8), torch_adam(0.9, 0.999, 1e-8, scale=1024.0)
    s1, s2 = plain.init(params), scaled.init(params)
    for _ in range(5):
        g = {"w": jnp.asarray(rng.normal(size=(7,)) * 1e-2, jnp.float32)}
        u1, s1 = plain.update(g, s1)
        u2, s2 = scaled.update(g, s2)
        assert_close(u2, u1, tol=Tolerance(atol=1e-6, rtol=1e-5))


def test_adam_started_at_a_step_continues_its_bias_corrections() -> None:
    """Adam started at step 3 with the moments of 3 steps gives step 4 of a run from 0 (a
    start that forgets the step would correct as if at step 1: catches ``start_step`` not
    reaching the bias corrections); per-step power tables give the same step."""
    rng = np.random.default_rng(1)
    grads = [{"w": jnp.asarray(rng.normal(size=(4,)), jnp.float32)} for _ in range(4)]
    params = {"w": jnp.zeros(4)}
    run = torch_adam(0.9, 0.99, 1e-8)
    s = run.init(params)
    for g in grads[:3]:
        _, s = run.update(g, s)
    want, _ = run.update(grads[3], s)
    for later in (
        torch_adam(0.9, 0.99, 1e-8, start_step=3),
        torch_adam(
            0.9, 0.99, 1e-8, start_step=3,
            beta1_pow_table=0.9 ** np.array([4.0]), beta2_pow_table=0.99 ** np.array([4.0]),
        ),
    ):  # fmt: skip
        s2 = later.init(params)._replace(mu=s.mu, nu=s.nu)
        got, _ = later.update(grads[3], s2)
        assert_close(got, want, tol=Tolerance(atol=1e-6, rtol=1e-5))
    fresh = torch_adam(0.9, 0.99, 1e-8).init(params)._replace(mu=s.mu, nu=s.nu)
    wrong, _ = run.update(grads[3], fresh)
    assert float(jnp.abs(wrong["w"] - want["w"]).max()) > 1e-2


def test_carried_momentum_has_no_first_step() -> None:
    """torch's first SGD step puts the gradient itself in the buffer; a buffer carried in
    from torch is blended (``fresh=False``)."""
    g = {"w": jnp.ones(2)}
    fresh, carried = torch_momentum(0.5), torch_momentum(0.5, fresh=False)
    buf = {"w": jnp.full(2, 4.0)}
    u_fresh, _ = fresh.update(g, fresh.init(g)._replace(buf=buf))
    u_carried, _ = carried.update(g, carried.init(g)._replace(buf=buf))
    np.testing.assert_allclose(u_fresh["w"], 1.0)  # the gradient: a first step
    np.testing.assert_allclose(u_carried["w"], 0.5 * 4.0 + 1.0)


def test_tables_index_by_the_step() -> None:
    """``scale_by_table`` and a momentum table read the value of the step they are at (the
    last value holds past the end)."""
    t = scale_by_table(np.array([1.0, 2.0, 3.0]))
    s = t.init({"w": jnp.ones(1)})
    got = []
    for _ in range(4):
        u, s = t.update({"w": jnp.ones(1)}, s)
        got.append(float(u["w"][0]))
    assert got == [1.0, 2.0, 3.0, 3.0]
    m = torch_momentum(0.0, momentum_table=np.array([0.0, 0.5]))
    s = m.init({"w": jnp.zeros(1)})
    u, s = m.update({"w": jnp.ones(1)}, s)  # first step: buf = g
    u, s = m.update({"w": jnp.ones(1)}, s)  # momentum 0.5: 0.5 * 1 + 1
    assert float(u["w"][0]) == 1.5
