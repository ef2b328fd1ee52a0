"""ppml_torch/train/names.py: the torch name of every leaf of a converted model, both routes,
tied weights, and trained leaves loaded back into the module."""

from __future__ import annotations

import collections

import jax
import numpy as np
import torch
import torch.nn as nn

from ppml_torch.train.cache import conversions
from ppml_torch.train.names import Leaves, leaf_names, load_trained, torch_names_of
from tests.train.toy import tiny_mlp


def test_graph_route_names_are_the_state_dict_keys():
    module = tiny_mlp()
    model = conversions(module, "graph").get([((4, 6), np.float32)])
    assert leaf_names(model) == tuple(sorted(module.state_dict()))  # a flat dict's leaf order


def test_flax_route_names_follow_the_transposed_kernels():
    """Flax keeps ``Dense`` kernels as (in, out) and orders its leaves its own way (here
    ``Dense_0`` is torch's ``z``, ``Dense_1`` its ``a``): each leaf is named by where its value
    lands.  Catches names given by position (sorted torch names would call ``z``'s bias
    ``a.bias``)."""
    module = nn.Sequential(
        collections.OrderedDict(z=nn.Linear(6, 4), act=nn.ReLU(), a=nn.Linear(4, 1))
    )
    model = conversions(module, "flax").get([])
    names = leaf_names(model)
    state = module.state_dict()
    assert names == ("z.bias", "z.weight", "a.bias", "a.weight")
    for name, leaf in zip(names, jax.tree_util.tree_leaves(model.params), strict=True):
        want = tuple(state[name].shape)
        assert np.shape(leaf) == (want[::-1] if name.endswith("weight") else want), name


def test_a_tied_weight_feeds_both_torch_names():
    """nanoGPT's head is the token embedding: one Flax leaf, two torch names."""
    from ppml_torch.models.nanogpt import GPT, GPTConfig

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=2, n_embd=8))
    model = conversions(gpt, "flax").get([])
    names = leaf_names(model)
    wte = names.index("transformer.wte.weight")
    assert "lm_head.weight" not in names
    assert torch_names_of(model, {wte}) == {"transformer.wte.weight", "lm_head.weight"}


def test_split_and_merge_give_back_the_params():
    module = tiny_mlp()
    model = conversions(module, "flax").get([])
    leaves = Leaves.of(model, {"2.weight", "2.bias"})
    trained, fixed = leaves.split(model.params)
    assert set(trained) == {"2.weight", "2.bias"} and set(fixed) == {"0.weight", "0.bias"}
    merged = leaves.merge(trained, fixed)
    assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(model.params)
    for a, b in zip(
        jax.tree_util.tree_leaves(merged), jax.tree_util.tree_leaves(model.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_load_trained_changes_only_the_trained_names():
    """The revealed leaf (Flax layout) lands transposed under its torch name; every other entry
    stays the module's own, bit for bit."""
    module = tiny_mlp()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    cache = conversions(module, "flax")
    model = cache.get([])
    params = cache.params(model)
    kernel = np.arange(4, dtype=np.float32).reshape(4, 1)  # Dense kernel (in, out)
    load_trained(module, model, params, leaf_names(model), {"2.weight": kernel})
    after = module.state_dict()
    np.testing.assert_array_equal(after["2.weight"].numpy(), kernel.T)
    for k in ("0.weight", "0.bias", "2.bias"):
        assert torch.equal(after[k], before[k]), k


class Scaled(nn.Module):
    """An MLP with a float64 buffer (JAX runs it in 32 bits)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(6, 4), nn.Linear(4, 1)
        self.register_buffer("scale", torch.tensor([0.1], dtype=torch.float64))

    def forward(self, x):
        return self.b(torch.relu(self.a(x))) * self.scale.float()


def test_load_trained_leaves_other_entries_bit_for_bit():
    """A float64 buffer goes through the converted (32-bit) params as 0.10000000149: loading
    it back from them would change it.  Catches loading every torch name instead of the ones
    the trained leaves feed."""
    module = Scaled()
    cache = conversions(module, "graph")
    model = cache.get([((4, 6), np.float32)])
    params = cache.params(model)
    new = np.full((4, 6), 0.5, np.float32)
    load_trained(module, model, params, leaf_names(model), {"a.weight": new})
    assert module.scale.dtype == torch.float64 and module.scale.item() == 0.1
    np.testing.assert_array_equal(module.a.weight.detach().numpy(), new)
