"""ppml_torch/model.py: a ``ConvertedModel`` shipped inside a program (SecretFlow's workers).

SecretFlow compiles a program in a Ray worker, so the function (and every ``ConvertedModel``
it uses, e.g. through ``cm.apply``) is pickled there.  The secretflow runner ships a model as
:func:`~ppml_torch.model.shipping_state`: no weights, no torch ``ExportedProgram``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import torch.nn as nn

from ppml_torch.errors import InputError
from ppml_torch.model import ConvertedModel, from_shipping_state, shipping_state
from ppml_torch.train.cache import conversions

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")


def tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 1))


@pytest.fixture
def shipping():
    """Ray's pickler, shipping ConvertedModels as the secretflow runner registers it."""
    from ray import cloudpickle

    def reducer(model):
        return from_shipping_state, (shipping_state(model),)

    dispatch = cloudpickle.CloudPickler.dispatch
    before = dispatch.get(ConvertedModel)  # an open secretflow session (a shared one) has one
    dispatch[ConvertedModel] = reducer
    try:
        yield cloudpickle
    finally:
        if before is None:
            dispatch.pop(ConvertedModel, None)
        else:
            dispatch[ConvertedModel] = before


def test_torch_exported_program_does_not_unpickle():
    """Why the ExportedProgram is left out: torch 2.13 re-traces its GraphModule on load and
    fails (``_ModuleStackTracer`` needs ``scope_root``); this failed ``fit``'s graph route on
    secretflow.  If torch fixes it, this test says so (and the exclusion may go)."""
    from ray import cloudpickle

    module = tiny_mlp()  # the cache holds it weakly
    cm = conversions(module, "graph").get([((5, 6), "float32")])
    data = cloudpickle.dumps(cm.extras["exported_program"])
    with pytest.raises(TypeError, match="scope_root"):
        cloudpickle.loads(data)


@pytest.mark.parametrize("route", ["graph", "flax"])
def test_shipped_model_applies_like_the_original_without_its_weights(shipping, route):
    module = tiny_mlp()
    cm = conversions(module, route).get([((5, 6), "float32")])
    x = np.random.default_rng(0).uniform(-1, 1, (5, 6)).astype(np.float32)
    apply = shipping.loads(shipping.dumps(cm.apply))  # a bound method: the model travels
    shipped = apply.__self__
    assert shipped is not cm and "exported_program" not in shipped.extras
    assert all(
        isinstance(p, jax.ShapeDtypeStruct) for p in jax.tree_util.tree_leaves(shipped.params)
    )
    np.testing.assert_array_equal(
        np.asarray(apply(cm.params, x)), np.asarray(cm.apply(cm.params, x))
    )
    assert jax.eval_shape(apply, cm.params, x).shape == (5, 1)
    with pytest.raises(InputError, match="apply.*params keys differ"):  # checks travel too
        apply({}, x)
    with pytest.raises(InputError, match="shipped to SecretFlow's workers without its weights"):
        shipped(x)
    # the original is untouched
    assert not any(
        isinstance(p, jax.ShapeDtypeStruct) for p in jax.tree_util.tree_leaves(cm.params)
    )
    if route == "graph":
        assert "exported_program" in cm.extras


def test_graph_apply_carries_no_example_data():
    """A model converted on a party's real rows: its apply_fn keeps only their shapes."""
    from ray import cloudpickle

    from ppml_torch.converters.fx import convert

    x = torch.full((5, 6), 1234.5678)
    cm = convert(tiny_mlp(), (x,))
    data = cloudpickle.dumps(cm.apply_fn)
    assert np.float32(1234.5678).tobytes() not in data
    np.testing.assert_allclose(
        np.asarray(cm.apply_fn(cm.params, x.numpy())), tiny_mlp()(x).detach().numpy(), rtol=1e-6
    )
