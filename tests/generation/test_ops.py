"""The exact MPC argmaxes (first_argmax, tree_argmax), the row-oriented linear layers and
approx=True."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ppml_torch.generation import GenerationError, generate, random_gpt2, torch_greedy
from ppml_torch.generation.ops import first_argmax, prefix_count, tree_argmax
from ppml_torch.models.flax_nanogpt_cache import gelu_piecewise as gelu_flax
from ppml_torch.models.nanogpt_cache import gelu_piecewise
from tests.sessions import get_session


def _with_ties(V: int, seed: int) -> np.ndarray:
    """(4, V) rows: random, a tie at the max (first and later), a tie at both ends, all equal."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, V)).astype(np.float32)
    if V > 1:
        x[1, [V // 3, V - 1]] = 9.0
        x[2, [0, V - 1]] = 9.0
    x[3] = 1.5
    return x


@pytest.mark.parametrize("V", [1, 2, 7, 512, 4099, 50257])
def test_prefix_count_and_first_argmax_equal_numpy(V):
    x = _with_ties(V, V)
    flags = (x > 0).astype(np.int32)
    np.testing.assert_array_equal(
        np.asarray(prefix_count(jnp.asarray(flags))), np.cumsum(flags, -1)
    )
    got = np.asarray(first_argmax(jnp.asarray(x)))
    np.testing.assert_array_equal(got, x.argmax(-1))  # numpy and torch: first of ties
    np.testing.assert_array_equal(got, torch.from_numpy(x).argmax(-1).numpy())


def _planted_ties(V: int, seed: int) -> np.ndarray:
    """(10, V) rows on a 2^-10 grid (exact in fixed point, so SPU holds the same ties): the
    maximum planted at several places per row, including neighbours, both ends, both sides of
    a power-of-two boundary, the odd one out of a round, and every 7th slot; all-equal rows."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(10, V)) * 1024) / 1024
    x[1] = np.round(rng.normal(size=V) * 4) / 4 - 8  # many equal values below the max, negative
    hot = [
        [],
        [V - 1],
        [V // 3, V - 1],
        [0, V - 1],
        [V // 2, V // 2 + 1],
        list(range(3, V, 7)),
        [V - 2, V - 1],
        [2 ** int(np.log2(max(V - 1, 1))) - 1, 2 ** int(np.log2(max(V - 1, 1)))],
    ]
    for r, cols in enumerate(hot):
        cols = [c for c in cols if 0 <= c < V]
        if cols:
            x[r, cols] = x[r].max() + 0.5
    x[8] = 1.5  # all equal
    x[9] = -3.25
    return x.astype(np.float32)


@pytest.mark.parametrize("V", [1, 2, 3, 5, 7, 8, 9, 37, 512, 4099, 50257])
def test_tree_argmax_equals_numpy_and_torch_with_planted_ties(V):
    x = _planted_ties(V, V)
    got = np.asarray(tree_argmax(jnp.asarray(x)))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, x.argmax(-1))  # numpy and torch: first of ties
    np.testing.assert_array_equal(got, torch.from_numpy(x).argmax(-1).numpy())
    np.testing.assert_array_equal(got, np.asarray(jnp.argmax(jnp.asarray(x), -1)))
    b = np.asarray(tree_argmax(jnp.asarray(x.reshape(2, 5, V))))  # any leading shape
    np.testing.assert_array_equal(b, x.argmax(-1).reshape(2, 5))


def test_tree_argmax_returns_the_given_ids_of_the_first_maximal_column():
    x = _planted_ties(37, 5)
    ids = np.sort(np.random.default_rng(0).choice(1000, 37, replace=False)).astype(np.int32)
    np.testing.assert_array_equal(np.asarray(tree_argmax(jnp.asarray(x), ids)), ids[x.argmax(-1)])
    with pytest.raises(ValueError, match="36 ids for 37 columns"):
        tree_argmax(jnp.asarray(x), ids[:-1])


@pytest.mark.parametrize("V", [2, 9, 37, 300])
def test_tree_argmax_under_aby3_equals_numpy_with_planted_ties(V):
    s = get_session("spu", "ABY3", "FM64")
    x = _planted_ties(V, V + 1)
    h = s.put(x, owner="alice")
    out = s.call(tree_argmax, h, name="tree_argmax")
    got = np.asarray(s.reveal(out, to="bob"))
    for k in (h, out):
        s.free(k)
    np.testing.assert_array_equal(got, x.argmax(-1))


def test_first_argmax_under_aby3_picks_the_first_of_ties():
    s = get_session("spu", "ABY3")
    x = _with_ties(37, 0)
    h = s.put(x, owner="alice")
    out = s.call(first_argmax, h, name="first_argmax")
    got = np.asarray(s.reveal(out, to="bob"))
    for k in (h, out):
        s.free(k)
    np.testing.assert_array_equal(got, x.argmax(-1))


def test_gelu_piecewise_is_within_2e_2_of_gpt2_gelu_and_the_twins_agree():
    x = torch.linspace(-8, 8, 20001, dtype=torch.float64)
    ref = torch.nn.functional.gelu(x, approximate="tanh")
    y = gelu_piecewise(x)
    err = (y - ref).abs().max().item()
    print(f"piecewise GeLU vs tanh GeLU: max |err| {err:.2e}")
    assert err < 2e-2
    assert (y - ref).abs()[x.abs() < 1].max() < 1e-2
    np.testing.assert_allclose(np.asarray(gelu_flax(jnp.asarray(x.numpy()))), y.numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def small():
    return random_gpt2(2, 32, 2, positions=32, seed=1, init_std=0.1)


@pytest.mark.parametrize("route", ["graph", "flax"])
def test_approx_runs_on_cpu_close_to_exact_and_refuses_a_non_bool(small, route):
    from ppml_torch.generation import Decoder

    s = get_session("cpu")
    prompt = [[5, 17, 300, 2]]
    ids_t, logits_t = torch_greedy(small, prompt, 3)
    errs = {}
    for approx in (False, True):
        d = Decoder(small, s, prompt_len=4, max_new_tokens=3, route=route, approx=approx)
        logits, _ = d.forced(prompt, ids_t[:, :-1])
        d.close()
        errs[approx] = float(np.abs(logits - logits_t).max())
    print(f"{route}: logits error exact {errs[False]:.1e}, approx {errs[True]:.1e}")
    assert errs[False] < 1e-4  # the (out, in) layout and the argmax are exact
    assert 1e-6 < errs[True] < 0.2  # the piecewise GeLU changes the numbers, a little
    g = generate(small, prompt, 3, session=s, route=route, approx=True)
    assert g.ids.shape == (1, 3)
    with pytest.raises(GenerationError, match="approx must be True or False"):
        generate(small, prompt, 3, session=s, route=route, approx="yes")


def test_every_argmax_gives_torchs_ids_under_aby3_and_a_bad_name_is_refused(small):
    s = get_session("spu", "ABY3")
    prompt = [[5, 17, 300, 2]]
    ids_t, _ = torch_greedy(small, prompt, 2)
    for how in ("first", "spu", "tree"):
        g = generate(small, prompt, 2, session=s, route="flax", argmax=how)
        np.testing.assert_array_equal(g.ids, ids_t)
    with pytest.raises(GenerationError, match="argmax 'max' is unknown"):
        generate(small, prompt, 2, session=s, route="flax", argmax="max")
