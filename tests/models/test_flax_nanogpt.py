"""ppml_torch/models/flax_nanogpt.py: the Flax GPT on its own (torch parity is in
tests/converters/flax/test_map_gpt2.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppml_torch.models.flax_nanogpt import GPT, causal_softmax
from ppml_torch.models.nanogpt import GPTConfig

CFG = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=16)


def _init(cfg: GPTConfig = CFG):
    model = GPT(cfg)
    return model, model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))


def test_parameter_names_mirror_torch():
    _, variables = _init()
    p = variables["params"]["transformer"]
    assert sorted(p) == ["h_0", "h_1", "ln_f", "wpe", "wte"]
    assert sorted(p["h_0"]) == ["attn", "ln_1", "ln_2", "mlp"]
    assert p["h_0"]["attn"]["c_attn"]["kernel"].shape == (16, 48)  # (in, out)
    assert "lm_head" not in variables["params"]  # tied to wte


def test_no_bias_config_has_no_biases():
    _, variables = _init(
        GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=8, bias=False)
    )
    names = [
        "/".join(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(variables)
    ]
    assert not [n for n in names if n.endswith("bias")]


def test_logits_are_causal():
    model, variables = _init()
    ids = np.arange(8, dtype=np.int32)[None] % 50
    changed = ids.copy()
    changed[0, 5] = 42  # a later token must not change earlier logits
    a = np.asarray(model.apply(variables, jnp.asarray(ids)))
    b = np.asarray(model.apply(variables, jnp.asarray(changed)))
    assert a.shape == (1, 8, 50)
    np.testing.assert_array_equal(a[:, :5], b[:, :5])
    assert np.abs(a[:, 5:] - b[:, 5:]).max() > 1e-4


def test_causal_softmax_equals_masked_softmax():
    att = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 6, 6)) * 4
    causal = jnp.tril(jnp.ones((6, 6), bool))[None, None]
    want = jax.nn.softmax(jnp.where(causal, att, jnp.finfo(att.dtype).min), axis=-1)
    got = causal_softmax(att, causal)
    assert float(jnp.abs(got - want).max()) < 1e-6
    assert float(jnp.abs(jnp.where(causal, 0.0, got)).max()) == 0.0  # masked: exactly 0


def test_too_long_sequence_is_rejected():
    model, variables = _init()
    with pytest.raises(ValueError, match="block_size 16"):
        model.apply(variables, jnp.zeros((1, 17), jnp.int32))
