"""ppml_torch/converters/flax/hf_gpt2.py and nanogpt.py: GPT-2 torch <-> Flax, both families."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax_cases import assert_state_dicts_equal, tiny_hf_gpt2, tiny_nanogpt, token_ids

from ppml_torch.converters.flax import WeightMapError, from_flax, to_flax
from ppml_torch.models.nanogpt import GPT

FAMILIES = {"hf_gpt2": tiny_hf_gpt2, "nanogpt": tiny_nanogpt}


def _torch_logits(module, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = module(torch.from_numpy(ids).long())
    return (out.logits if hasattr(out, "logits") else out).numpy()


def _flax_logits(cm, ids: np.ndarray, params=None) -> np.ndarray:
    out = cm.apply(cm.params if params is None else params, jnp.asarray(ids))
    return np.asarray(out["logits"] if isinstance(out, dict) else out)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_logits_match_torch(family):
    module = FAMILIES[family]()
    cm = to_flax(module)
    assert cm.route == "flax" and cm.extras["spec"]["family"] == family
    ids = token_ids()
    want, got = _torch_logits(module, ids), _flax_logits(cm, ids)
    assert got.shape == want.shape == (2, 11, 100)
    err = float(np.abs(got - want).max())
    assert err < 1e-5, f"{family}: max |flax - torch| = {err}"


def test_output_structures_hf_dict_nanogpt_array():
    ids = jnp.asarray(token_ids(T=4))
    hf = to_flax(tiny_hf_gpt2())
    assert set(hf(ids)) == {"logits"}
    assert isinstance(to_flax(tiny_nanogpt())(ids), jnp.ndarray)


def test_hf_attention_mask_is_passed_through():
    module = tiny_hf_gpt2()
    cm = to_flax(module)
    ids = token_ids(T=6)
    mask = np.ones_like(ids)
    mask[:, :2] = 0  # left padding
    with torch.no_grad():
        want = module(
            torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask)
        ).logits.numpy()
    got = np.asarray(cm(jnp.asarray(ids), jnp.asarray(mask))["logits"])
    err = np.abs(got[:, 2:] - want[:, 2:]).max()  # padded positions are meaningless in both
    assert err < 1e-5


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_round_trip_is_bit_exact_and_loads_strict(family):
    module = FAMILIES[family]()
    cm = to_flax(module)
    sd = cm.state_dict()
    assert_state_dicts_equal(sd, module.state_dict())  # includes the tied lm_head.weight
    target = FAMILIES[family](seed=7)
    assert not torch.equal(
        target.state_dict()["transformer.wte.weight"], sd["transformer.wte.weight"]
    )
    from_flax(cm, target)
    assert_state_dicts_equal(target.state_dict(), module.state_dict())
    assert (
        target.lm_head.weight.data_ptr() == target.transformer.wte.weight.data_ptr()
    )  # still tied


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_conv1d_and_linear_transposes(family):
    module = FAMILIES[family]()
    cm = to_flax(module)
    wmap = cm.extras["weight_map"]
    w = module.state_dict()["transformer.h.0.mlp.c_fc.weight"].numpy()
    path = wmap.pairs["transformer.h.0.mlp.c_fc.weight"]
    node = cm.params["params"]
    for k in path:
        node = node[k]
    np.testing.assert_array_equal(np.asarray(node), w.T)
    assert len(wmap.transposed) == 4 * 2  # four per block, two blocks
    assert wmap.tied == {"lm_head.weight": "transformer.wte.weight"}


def test_nanogpt_and_hf_share_weights_through_flax():
    """HF checkpoint -> nanoGPT (torch) -> Flax nanoGPT gives HF's logits."""
    hf = tiny_hf_gpt2()
    gpt = GPT.from_hf_state_dict(hf.state_dict(), GPT.config_from_hf(hf.config.to_dict())).eval()
    ids = token_ids()
    err = np.abs(_flax_logits(to_flax(gpt), ids) - _torch_logits(hf, ids)).max()
    assert err < 1e-5


@pytest.mark.parametrize(
    "family, wrong, listed",
    [
        ("hf_gpt2", dict(n_embd=48), "transformer/wte/embedding: (100, 48) vs (100, 32)"),
        ("hf_gpt2", dict(vocab_size=120), "transformer/wte/embedding: (120, 32) vs (100, 32)"),
        ("nanogpt", dict(n_embd=48), "transformer/h_0/attn/c_attn/kernel: (48, 144) vs (32, 96)"),
        ("nanogpt", dict(n_layer=3), "missing in Flax params (12): transformer/h_2/"),
    ],
)
def test_from_flax_config_mismatch_lists_keys_and_copies_nothing(family, wrong, listed):
    cm = to_flax(FAMILIES[family]())
    target = FAMILIES[family](seed=3, **wrong)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightMapError) as e:
        from_flax(cm.params, target)
    assert listed in str(e.value)
    assert str(e.value).startswith(f"from_flax({cm.extras['weight_map'].what}): ")
    assert "nothing was copied" in str(e.value)
    assert_state_dicts_equal(target.state_dict(), before)


def test_head_count_mismatch_needs_the_spec():
    """n_head changes no shape: bare params cannot show it, the ConvertedModel's spec does."""
    cm = to_flax(tiny_nanogpt())
    with pytest.raises(WeightMapError, match=r"config\.n_head: 2 vs 4"):
        from_flax(cm, tiny_nanogpt(n_head=4))


def test_untied_hf_model_maps_lm_head_separately():
    module = tiny_hf_gpt2(tie_word_embeddings=False)
    with torch.no_grad():
        module.lm_head.weight.add_(0.5)
    cm = to_flax(module)
    assert cm.extras["weight_map"].pairs["lm_head.weight"] == ("lm_head", "kernel")
    ids = token_ids()
    assert np.abs(_flax_logits(cm, ids) - _torch_logits(module, ids)).max() < 1e-5
    assert_state_dicts_equal(cm.state_dict(), module.state_dict())


def test_hf_config_flax_cannot_compute_is_rejected():
    with pytest.raises(WeightMapError, match="scale_attn_by_inverse_layer_idx"):
        to_flax(tiny_hf_gpt2(scale_attn_by_inverse_layer_idx=True))


def test_tied_weights_that_differ_are_rejected():
    from ppml_torch.converters.flax import hf_gpt2

    module = tiny_hf_gpt2()
    t = hf_gpt2.FAMILY.transfer(module)
    sd = dict(module.state_dict())
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1
    with pytest.raises(WeightMapError, match="tied to transformer.wte.weight"):
        t.weight_map.torch_to_flax(sd, t.flax_shapes)


def _with_saved_mask_buffers(module):
    """Make the causal-mask buffers persistent, as transformers before 4.36 saved them."""
    for block in module.transformer.h:
        block.attn.register_buffer("bias", block.attn.bias, persistent=True)
    return module


def test_saved_mask_buffers_are_skipped_and_kept():
    module = _with_saved_mask_buffers(tiny_hf_gpt2())
    assert "transformer.h.0.attn.bias" in module.state_dict()
    cm = to_flax(module)
    plain = to_flax(tiny_hf_gpt2())  # same Flax tree as a module without the buffers
    assert jax.tree_util.tree_structure(cm.params) == jax.tree_util.tree_structure(plain.params)
    target = _with_saved_mask_buffers(tiny_hf_gpt2(seed=5))
    mask = target.transformer.h[0].attn.bias.clone()
    from_flax(cm, target)
    assert_state_dicts_equal(target.state_dict(), module.state_dict())
    assert torch.equal(target.transformer.h[0].attn.bias, mask)
