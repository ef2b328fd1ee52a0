"""ppml_torch/models/flax_nanogpt_cache.py: the Flax cached GPT runs to_flax's params and equals
full recomputation (Flax and torch)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import ppml_torch
from ppml_torch.models import flax_nanogpt
from ppml_torch.models.flax_nanogpt_cache import CachedGPT
from tests.models.test_nanogpt_cache import CFG, tiny_gpt, tokens


def test_param_tree_is_flax_nanogpt_tree_with_kernels_out_in():
    """The same tree as flax_nanogpt.GPT (to_flax's params), every kernel read as (out, in),
    the position table cut to the cache's slots."""
    from ppml_torch.models.flax_nanogpt_cache import cut_positions, kernels_out_in

    init = jnp.zeros((1, 1), jnp.int32)
    plain = flax_nanogpt.GPT(CFG).init(jax.random.PRNGKey(0), init)
    model = CachedGPT(CFG, 6)
    z = jnp.zeros(model.cache_shape(1))
    cached = model.init(jax.random.PRNGKey(0), init, z, z, 0)
    want = cut_positions(kernels_out_in(plain), 6)
    assert jax.tree_util.tree_map(jnp.shape, cached) == jax.tree_util.tree_map(jnp.shape, want)
    assert want["params"]["transformer"]["wpe"]["embedding"].shape == (6, CFG.n_embd)
    wpe = plain["params"]["transformer"]["wpe"]["embedding"]
    assert wpe.shape == (CFG.block_size, CFG.n_embd)  # the input's own table is untouched
    assert np.array_equal(want["params"]["transformer"]["wpe"]["embedding"], wpe[:6])


def test_incremental_equals_full_recomputation():
    gpt = tiny_gpt()
    fm = ppml_torch.to_flax(gpt)
    model = CachedGPT(CFG, 10)
    idx = tokens(10)
    with torch.no_grad():
        want = gpt(idx).numpy()
    full_flax = np.asarray(fm.apply(fm.params, jnp.asarray(idx.numpy())))
    from ppml_torch.models.flax_nanogpt_cache import cut_positions, kernels_out_in

    params = cut_positions(kernels_out_in(fm.params), 10)  # what the cached model reads
    z = jnp.zeros(model.cache_shape(2))
    x = jnp.asarray(idx.numpy())
    lg, k, v = model.apply(params, x[:, :4], z, z, 0)
    errs = [np.abs(np.asarray(lg) - want[:, 3]).max()]
    step = jax.jit(model.apply)  # one compiled step for every position
    for t in range(4, 10):
        lg, k, v = step(params, x[:, t : t + 1], k, v, jnp.int32(t))
        errs.append(np.abs(np.asarray(lg) - want[:, t]).max())
        assert np.abs(np.asarray(lg) - full_flax[:, t]).max() < 1e-5
    assert max(errs) < 1e-5, errs
    assert step._cache_size() == 1


@pytest.mark.parametrize("T", [1, 3])
def test_attend_and_mix_equal_the_matrix_products(T):
    from ppml_torch.models.flax_nanogpt_cache import attend, mix

    rng = np.random.default_rng(T)
    q, k, v = (rng.normal(size=(2, 3, n, 8)).astype(np.float32) for n in (T, 5, 5))
    att = attend(jnp.asarray(q), jnp.asarray(k))
    np.testing.assert_allclose(np.asarray(att), q @ k.transpose(0, 1, 3, 2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(mix(att, jnp.asarray(v))), np.asarray(att) @ v, rtol=1e-5, atol=1e-5
    )


def test_softmax_rows_and_one_query_attention_equal_the_torch_twins():
    """The Flax functions compute what nanogpt_cache's torch ones compute (one reciprocal per
    row; masked slots exactly 0)."""
    from ppml_torch.models import nanogpt_cache as tw
    from ppml_torch.models.flax_nanogpt_cache import attend, mix, softmax_rows

    rng = np.random.default_rng(5)
    q, k, v = (rng.normal(size=(2, 4, n, 8)).astype(np.float32) for n in (1, 6, 6))
    visible = np.array([[True] * 4 + [False] * 2])
    att = np.asarray(attend(jnp.asarray(q), jnp.asarray(k)))
    p = np.asarray(softmax_rows(jnp.asarray(att), visible))
    t = torch.from_numpy
    want_att = tw.attend_one(t(q), t(k)).numpy()
    want_p = tw.softmax_rows(t(want_att), torch.from_numpy(visible)).numpy()
    np.testing.assert_allclose(att, want_att, atol=1e-5)
    np.testing.assert_allclose(p, want_p, atol=1e-6)
    assert not p[..., 4:].any()
    np.testing.assert_allclose(
        np.asarray(mix(jnp.asarray(p), jnp.asarray(v))),
        tw.mix_one(t(p), t(v)).numpy(),
        atol=1e-5,
    )
